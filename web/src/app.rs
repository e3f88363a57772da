//! The page: upload, progress, viewer, threshold, counts, review list and exports.
//!
//! A job: the file is read and decoded here (the image shows at once), then sent to the server,
//! whose proposals arrive tile by tile; each tile's proposals are cropped from the decoded
//! image and classified before the next tile is read. `<main data-state>` says where the job
//! is (`idle`, `running`, `done`, `error`); `data-testid` marks the elements tests read.
//!
//! Nothing the user typed (pixel size, token) or decided (accept / reject) is reset by an error:
//! an error only sets the message; a new review starts only once a new image has decoded.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::ev;
use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use mitoscope_core::crop::{Crop, crop, scale_warning};
use mitoscope_core::density::{DEFAULT_HPF_AREA_MM2, DEFAULT_THRESHOLD};
use mitoscope_core::wire::JobEvent;
use mitoscope_io::{Limits, read_bytes};
use serde::Serialize;
use web_sys::{DragEvent, HtmlInputElement, MouseEvent, WheelEvent};

use crate::api::{self, Failure};
use crate::classify::{self, Backend, Ensemble};
use crate::dom::{self, now_ms};
use crate::review::{Decision, Item, Review};
use crate::viewer::{self, View};

/// The pixel size the field starts with: a 40x scan.
const DEFAULT_MPP: &str = "0.25";

thread_local! {
    /// The loaded classifier, shared by every job of the page.
    static CLASSIFIER: RefCell<Option<Rc<Ensemble>>> = const { RefCell::new(None) };
    /// The device, created once (WebGPU can be initialised only once per page).
    static DEVICE: RefCell<Option<(burn::prelude::Device, Backend)>> = const { RefCell::new(None) };
    /// Whether the classifier is being loaded.
    static LOADING: RefCell<bool> = const { RefCell::new(false) };
}

/// Times the page measured, in milliseconds since it started loading, exposed for benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct Timings {
    /// The app was mounted and answers input.
    mounted_ms: f64,
    /// The classifier was loaded and ready.
    classifier_ready_ms: Option<f64>,
    /// Bytes of weights downloaded.
    weights_bytes: u64,
    /// Decoding the last image.
    decode_ms: Option<f64>,
    /// Time spent classifying the last job's proposals (cropping included).
    classify_ms: f64,
    /// Crops classified in the last job.
    crops: usize,
    /// From the upload to the last job's end.
    job_ms: Option<f64>,
}

/// Everything the page's parts share.
#[derive(Clone, Copy)]
struct Ui {
    mpp: RwSignal<String>,
    token: RwSignal<String>,
    file_mpp: RwSignal<Option<f64>>,
    state: RwSignal<&'static str>,
    error: RwSignal<Option<String>>,
    status: RwSignal<String>,
    progress: RwSignal<(usize, usize)>,
    backend: RwSignal<Option<&'static str>>,
    review: RwSignal<Review>,
    view: RwSignal<View>,
    selected: RwSignal<Option<u64>>,
    timings: RwSignal<Timings>,
    file_name: RwSignal<String>,
    default_threshold: RwSignal<f64>,
}

impl Ui {
    fn new() -> Self {
        Self {
            mpp: RwSignal::new(DEFAULT_MPP.to_owned()),
            token: RwSignal::new(String::new()),
            file_mpp: RwSignal::new(None),
            state: RwSignal::new("idle"),
            error: RwSignal::new(None),
            status: RwSignal::new("Choose an image to analyse.".into()),
            progress: RwSignal::new((0, 0)),
            backend: RwSignal::new(None),
            review: RwSignal::new(Review::default()),
            view: RwSignal::new(View::default()),
            selected: RwSignal::new(None),
            timings: RwSignal::new(Timings::default()),
            file_name: RwSignal::new("mitoscope".into()),
            default_threshold: RwSignal::new(DEFAULT_THRESHOLD),
        }
    }

    fn fail(&self, message: String) {
        self.error.set(Some(message));
        self.status.set("Stopped.".into());
        self.state.set("error");
    }
}

/// What the page showed before a job replaced it: brought back when the job fails before the
/// server starts it (a refused token, a full queue, an unreachable server), so that a review in
/// progress is not lost.
struct Previous {
    picture: viewer::Saved,
    review: Review,
    file_mpp: Option<f64>,
    file_name: String,
    view: View,
    progress: (usize, usize),
}

impl Previous {
    fn restore(self, ui: Ui, message: String) {
        let had_review = !self.review.items.is_empty();
        viewer::restore(self.picture);
        ui.review.set(self.review);
        ui.file_mpp.set(self.file_mpp);
        ui.file_name.set(self.file_name);
        ui.view.set(self.view);
        ui.progress.set(self.progress);
        if had_review {
            ui.fail(format!(
                "{message} The previous image and its review are shown again."
            ));
        } else {
            ui.fail(message);
        }
    }
}

/// Loads the classifier once: the device, the server's manifest and each member's weights.
async fn classifier(ui: Ui, token: String) -> Result<Rc<Ensemble>, Failure> {
    loop {
        if let Some(ready) = CLASSIFIER.with_borrow(Clone::clone) {
            return Ok(ready);
        }
        if !LOADING.with_borrow(|l| *l) {
            break;
        }
        dom::sleep(50).await;
    }
    LOADING.with_borrow_mut(|l| *l = true);
    let result = load_classifier(ui, &token).await;
    LOADING.with_borrow_mut(|l| *l = false);
    let ensemble = Rc::new(result?);
    CLASSIFIER.with_borrow_mut(|c| *c = Some(Rc::clone(&ensemble)));
    ui.timings
        .update(|t| t.classifier_ready_ms = Some(now_ms()));
    Ok(ensemble)
}

async fn load_classifier(ui: Ui, token: &str) -> Result<Ensemble, Failure> {
    let (device, backend) = match DEVICE.with_borrow(Clone::clone) {
        Some(found) => found,
        None => {
            ui.status.set("Starting the classifier's device...".into());
            let force_cpu = dom::query_param("backend").as_deref() == Some("cpu");
            let found = classify::device(force_cpu).await;
            DEVICE.with_borrow_mut(|d| *d = Some(found.clone()));
            found
        }
    };
    ui.backend.set(Some(backend.name()));
    ui.status.set("Downloading the classifier...".into());
    let manifest = api::manifest(token).await?;
    let mut files = Vec::with_capacity(manifest.members.len());
    for member in &manifest.members {
        let bytes = api::weights(&member.url, token).await?;
        ui.timings.update(|t| t.weights_bytes += bytes.len() as u64);
        files.push((member.name.clone(), bytes));
    }
    let ensemble = Ensemble::load(files, &device, backend).map_err(Failure::Broken)?;
    if ui.review.with_untracked(|r| r.items.is_empty()) {
        ui.review
            .update(|r| r.threshold = manifest.default_threshold);
    }
    ui.default_threshold.set(manifest.default_threshold);
    ui.status
        .set(format!("Classifier ready ({}).", backend.name()));
    Ok(ensemble)
}

/// One job: decode, show, send, classify tile by tile.
async fn run_job(ui: Ui, file: web_sys::File) {
    let started = now_ms();
    ui.error.set(None);
    ui.state.set("running");
    ui.status.set("Reading the image...".into());
    let bytes = match dom::file_bytes(&file).await {
        Ok(bytes) => bytes,
        Err(err) => return ui.fail(format!("The image could not be read: {err}.")),
    };
    dom::sleep(0).await;
    let decode_started = now_ms();
    let image = match read_bytes(&bytes, &Limits::default()) {
        Ok(image) => image,
        Err(err) => {
            return ui.fail(format!(
                "This file could not be opened as an image: {err}. Choose a PNG, JPEG or TIFF \
                 field."
            ));
        }
    };
    ui.timings
        .update(|t| t.decode_ms = Some(now_ms() - decode_started));
    let (width, height, file_mpp) = (image.width, image.height, image.mpp);
    let picture = match viewer::set_picture(image.rgb, width, height) {
        Ok(saved) => saved,
        Err(err) => return ui.fail(format!("The image could not be shown: {err}.")),
    };
    let previous = Previous {
        picture,
        review: ui.review.get_untracked(),
        file_mpp: ui.file_mpp.get_untracked(),
        file_name: ui.file_name.get_untracked(),
        view: ui.view.get_untracked(),
        progress: ui.progress.get_untracked(),
    };
    ui.file_name.set(file_stem(&file.name()));
    ui.file_mpp.set(file_mpp);
    ui.selected.set(None);
    ui.progress.set((0, 0));
    let threshold = ui.review.with_untracked(|r| r.threshold);
    ui.review.set(Review::new(threshold));
    fit_view(ui);

    let mpp = match (file_mpp, ui.mpp.get_untracked().trim().parse::<f64>()) {
        (Some(mpp), _) => mpp,
        (None, Ok(mpp)) if mpp > 0.0 && mpp.is_finite() => mpp,
        (None, _) => {
            return previous.restore(
                ui,
                "The file does not state its pixel size: type it in the Pixel size field in \
                 micrometres per pixel (0.25 for a 40x scan, 0.5 for 20x), then choose the \
                 image again."
                    .into(),
            );
        }
    };
    let token = ui.token.get_untracked();
    let ensemble = match classifier(ui, token.clone()).await {
        Ok(ensemble) => ensemble,
        Err(failure) => return previous.restore(ui, failure.message()),
    };

    ui.status.set("Sending the image to the server...".into());
    let mut job = match api::start_job(&bytes, mpp, &token).await {
        Ok(job) => job,
        Err(failure) => return previous.restore(ui, failure.message()),
    };
    let mut previous = Some(previous);
    drop(bytes);
    let mut done = false;
    loop {
        let event = match job.next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(failure) => {
                return match previous.take() {
                    Some(previous) => previous.restore(ui, failure.message()),
                    None => ui.fail(failure.message()),
                };
            }
        };
        match event {
            JobEvent::Started {
                microns_per_pixel,
                tiles_to_analyse,
                ..
            } => {
                ui.review
                    .update(|r| r.microns_per_pixel = Some(microns_per_pixel));
                ui.progress.set((0, tiles_to_analyse));
                ui.status.set("Finding cells...".into());
            }
            JobEvent::Tile {
                done: tiles,
                total,
                proposals,
            } => {
                let mut added = Ok(0);
                ui.review.update(|r| added = r.add(&proposals));
                let first = match added {
                    Ok(first) => first,
                    Err(err) => return ui.fail(format!("The server sent a broken result: {err}.")),
                };
                let items: Vec<Item> = ui.review.with_untracked(|r| r.items[first..].to_vec());
                viewer::add_outlines(&items);
                ui.status
                    .set(format!("Classifying {} objects...", items.len()));
                let classify_started = now_ms();
                let probabilities = match crops(&items) {
                    Ok(crops) => ensemble.classify(&crops).await,
                    Err(err) => Err(err),
                };
                let probabilities = match probabilities {
                    Ok(p) => p,
                    Err(err) => return ui.fail(format!("The classifier failed: {err}.")),
                };
                ui.timings.update(|t| {
                    t.classify_ms += now_ms() - classify_started;
                    t.crops += items.len();
                });
                ui.review
                    .update(|r| r.set_probabilities(first, &probabilities));
                ui.progress.set((tiles, total));
                ui.status.set(format!("Analysed {tiles} of {total} tiles."));
            }
            JobEvent::Done { analysed_mm2, .. } => {
                ui.review.update(|r| r.analysed_mm2 = Some(analysed_mm2));
                done = true;
            }
            JobEvent::Error(error) => {
                if let Some(previous) = previous.take() {
                    return previous.restore(ui, error.message);
                }
                return ui.fail(format!(
                    "The analysis stopped before the end: {} The detections found so far are \
                     kept.",
                    error.message
                ));
            }
        }
    }
    if !done {
        return ui.fail(
            "The server's answer ended before the analysis was complete. The detections found \
             so far are kept; choose the image again to retry."
                .into(),
        );
    }
    ui.timings.update(|t| t.job_ms = Some(now_ms() - started));
    ui.status
        .set("Done. Review the detections, then export.".into());
    ui.state.set("done");
}

/// The classifier's crops of `items` from the picture.
fn crops(items: &[Item]) -> Result<Vec<Crop>, String> {
    let (width, height, rgb) = viewer::picture().ok_or("no image is loaded")?;
    items
        .iter()
        .map(|item| crop(&rgb, width, height, &item.mask).map_err(|err| err.to_string()))
        .collect()
}

fn file_stem(name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    if stem.is_empty() {
        "mitoscope".into()
    } else {
        stem.to_owned()
    }
}

fn canvas_size() -> (f64, f64) {
    dom::window()
        .document()
        .and_then(|d| d.query_selector("canvas.viewer").ok().flatten())
        .map_or((800.0, 600.0), |c| {
            (f64::from(c.client_width()), f64::from(c.client_height()))
        })
}

fn fit_view(ui: Ui) {
    if let Some((w, h, _)) = viewer::picture() {
        let (cw, ch) = canvas_size();
        ui.view.set(View::fit((w, h), cw, ch));
    }
}

fn export(ui: Ui, kind: &str) {
    let name = ui.file_name.get_untracked();
    let result = ui.review.with_untracked(|r| match kind {
        "geojson" => r.geojson().map(|t| (t, "application/geo+json")),
        _ => r.csv().map(|t| (t, "text/csv")),
    });
    match result.and_then(|(text, mime)| dom::download(&format!("{name}.{kind}"), &text, mime)) {
        Ok(()) => {}
        Err(err) => ui.error.set(Some(format!("The export failed: {err}."))),
    }
}

fn format_density(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// The page.
#[component]
pub fn App() -> impl IntoView {
    let ui = Ui::new();
    ui.timings.update(|t| t.mounted_ms = now_ms());
    let canvas = NodeRef::<Canvas>::new();
    let dragging = StoredValue::new(None::<(f64, f64)>);

    // The classifier starts loading with the page; a server that wants a token answers 401
    // here, and the classifier then loads with the first job.
    spawn_local(async move {
        if let Err(failure) = classifier(ui, String::new()).await {
            let note = match failure {
                Failure::Refused { status: 401, .. } => {
                    "The classifier loads when you start an analysis (the server needs the \
                     token)."
                        .to_owned()
                }
                other => format!("The classifier is not loaded yet: {}", other.message()),
            };
            ui.status.set(note);
        }
    });

    // The warning for the analysed image's pixel size when it is far from the 40x the classifier
    // works at (as `mitoscope detect` warns): worked out when the pixel size changes, not on
    // every change of the review.
    let analysed_mpp = Memo::new(move |_| ui.review.with(|r| r.microns_per_pixel));
    let scale_warning_text = Memo::new(move |_| analysed_mpp.get().and_then(scale_warning));

    // Redraw whenever the picture's view or the review changes; what is outlined (the repeats
    // left out) is worked out once per change of the review, not per frame.
    let listed = Memo::new(move |_| {
        ui.review.with(|r| {
            r.listed()
                .map(|item| item.id)
                .collect::<std::collections::HashSet<u64>>()
        })
    });
    Effect::new(move |_| {
        let view = ui.view.get();
        let selected = ui.selected.get();
        listed.with(|listed| {
            ui.review.with(|review| {
                if let Some(canvas) = canvas.get() {
                    viewer::draw(&canvas, view, review, listed, selected);
                }
            });
        });
    });

    let start = move |file: web_sys::File| spawn_local(run_job(ui, file));
    let on_file = move |ev: ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            start(file);
        }
        // Choosing the same file again starts a new job.
        input.set_value("");
    };
    let on_drop = move |ev: DragEvent| {
        ev.prevent_default();
        if let Some(file) = ev
            .data_transfer()
            .and_then(|t| t.files())
            .and_then(|files| files.get(0))
        {
            start(file);
        }
    };
    let on_wheel = move |ev: WheelEvent| {
        ev.prevent_default();
        let factor = (-ev.delta_y() * 0.0015).exp();
        let (x, y) = (f64::from(ev.offset_x()), f64::from(ev.offset_y()));
        ui.view.update(|v| *v = v.zoom(factor, x, y));
    };
    let on_down = move |ev: MouseEvent| {
        dragging.set_value(Some((f64::from(ev.client_x()), f64::from(ev.client_y()))));
    };
    let on_move = move |ev: MouseEvent| {
        if let Some((x0, y0)) = dragging.get_value() {
            let (x, y) = (f64::from(ev.client_x()), f64::from(ev.client_y()));
            dragging.set_value(Some((x, y)));
            ui.view.update(|v| *v = v.pan(x - x0, y - y0));
        }
    };
    let on_up = move |_: MouseEvent| dragging.set_value(None);

    let results = move || {
        let summary = ui.review.with(Review::summary);
        serde_json::json!({
            "state": ui.state.get(),
            "backend": ui.backend.get(),
            "error": ui.error.get(),
            "summary": summary,
            "timings": ui.timings.get(),
        })
        .to_string()
    };

    let listed = move || {
        ui.review.with(|r| {
            r.listed()
                .map(|item| (item.clone(), item.probability.unwrap_or(1.0)))
                .collect::<Vec<_>>()
        })
    };

    view! {
        <header>
            <h1>"Mitoscope"</h1>
            <p class="subtitle">"Mitotic figures in H&E fields"</p>
            <p class="backend">
                "Classifier: " <span data-testid="backend">{move || ui.backend.get().unwrap_or("")}</span>
            </p>
        </header>
        <main data-state=move || ui.state.get()>
            <section class="controls"
                on:dragover=move |ev: DragEvent| ev.prevent_default()
                on:drop=on_drop>
                <label class="file">
                    "Image (PNG, JPEG, TIFF), or drop it here: "
                    <input type="file" data-testid="file"
                        accept=".png,.jpg,.jpeg,.tif,.tiff,image/png,image/jpeg,image/tiff"
                        on:change=on_file />
                </label>
                <label>
                    "Pixel size (um/px): "
                    <input type="text" inputmode="decimal" size="8" data-testid="mpp"
                        prop:value=move || ui.mpp.get()
                        on:input=move |ev| ui.mpp.set(event_target_value(&ev)) />
                </label>
                <span class="note" data-testid="file-mpp">
                    {move || ui.file_mpp.get().map(|m| format!("The file states {m:.4} um/px, which is used.")).unwrap_or_default()}
                </span>
                <label>
                    "Token: "
                    <input type="password" size="16" data-testid="token" autocomplete="off"
                        prop:value=move || ui.token.get()
                        on:input=move |ev| ui.token.set(event_target_value(&ev)) />
                </label>
            </section>
            <p class="status" data-testid="status">{move || ui.status.get()}</p>
            <p class="error" role="alert" data-testid="error"
                hidden=move || ui.error.get().is_none()>
                {move || ui.error.get().unwrap_or_default()}
            </p>
            <p class="warning" role="status" data-testid="scale-warning"
                hidden=move || scale_warning_text.with(Option::is_none)>
                {move || scale_warning_text.with(|w| w.as_ref().map(|w| format!("Pixel size: {w}.")).unwrap_or_default())}
            </p>
            <progress data-testid="progress"
                max=move || ui.progress.get().1.max(1)
                value=move || ui.progress.get().0></progress>
            <div class="workspace">
                <canvas class="viewer" node_ref=canvas
                    on:wheel=on_wheel on:mousedown=on_down on:mousemove=on_move
                    on:mouseup=on_up on:mouseleave=on_up
                    on:dblclick=move |_| fit_view(ui)></canvas>
                <aside>
                    <dl class="counts">
                        <dt>"Mitotic figures"</dt>
                        <dd data-testid="count">{move || ui.review.with(Review::count)}</dd>
                        <dt>"per mm²"</dt>
                        <dd data-testid="per-mm2">{move || format_density(ui.review.with(Review::per_mm2))}</dd>
                        <dt>{format!("per 10 HPF ({DEFAULT_HPF_AREA_MM2} mm² each)")}</dt>
                        <dd data-testid="per-10-hpf">{move || format_density(ui.review.with(Review::per_10_hpf))}</dd>
                        <dt>"analysed tissue"</dt>
                        <dd>{move || ui.review.with(|r| r.analysed_mm2.map_or("-".into(), |a| format!("{a:.4} mm²")))}</dd>
                    </dl>
                    <label class="threshold">
                        "Threshold: "
                        <input type="range" min="0" max="1" step="0.01" data-testid="threshold"
                            prop:value=move || ui.review.with(|r| r.threshold).to_string()
                            on:input=move |ev| {
                                if let Ok(t) = event_target_value(&ev).parse::<f64>() {
                                    ui.review.update(|r| r.threshold = t);
                                }
                            } />
                        <span>{move || format!("{:.2}", ui.review.with(|r| r.threshold))}</span>
                        <button on:click=move |_| {
                            let t = ui.default_threshold.get_untracked();
                            ui.review.update(|r| r.threshold = t);
                        }>"default"</button>
                    </label>
                    <div class="exports">
                        <button data-testid="export-geojson" on:click=move |_| export(ui, "geojson")>
                            "Export GeoJSON (QuPath)"
                        </button>
                        <button data-testid="export-csv" on:click=move |_| export(ui, "csv")>
                            "Export CSV"
                        </button>
                    </div>
                    <ul class="detections" data-testid="detections">
                        <For each=listed key=|(item, p)| (item.id, item.decision, p.to_bits())
                            children=move |(item, p)| {
                                let id = item.id;
                                let decision = item.decision;
                                let [x, y] = item.centre();
                                let toggle = move |to: Decision| {
                                    let next = if decision == to { Decision::Undecided } else { to };
                                    ui.review.update(|r| { r.decide(id, next); });
                                };
                                let class = match decision {
                                    Decision::Accepted => "accepted",
                                    Decision::Rejected => "rejected",
                                    Decision::Undecided => "",
                                };
                                view! {
                                    <li class=class data-id=id.to_string()
                                        on:click=move |_| {
                                            // Select it and bring it to the viewer's centre.
                                            ui.selected.set(Some(id));
                                            let (cw, ch) = canvas_size();
                                            ui.view.update(|v| {
                                                v.x = cw / 2.0 - x * v.scale;
                                                v.y = ch / 2.0 - y * v.scale;
                                            });
                                        }>
                                        <img src=viewer::thumbnail(&item) width="64" height="64" alt="crop" />
                                        <span class="about">
                                            <span class="p">{format!("p {p:.3}")}</span>
                                            <span class="at">{format!("at ({x:.0}, {y:.0})")}</span>
                                        </span>
                                        <span class="decide">
                                            <button class="accept" data-testid="accept"
                                                on:click=move |_| toggle(Decision::Accepted)>"accept"</button>
                                            <button class="reject" data-testid="reject"
                                                on:click=move |_| toggle(Decision::Rejected)>"reject"</button>
                                        </span>
                                    </li>
                                }
                            } />
                    </ul>
                </aside>
            </div>
            <pre data-testid="results" hidden>{results}</pre>
        </main>
    }
}
