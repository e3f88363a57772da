//! `mitoscope train --config FILE` as a user runs it: a small data set made by `mitoscope
//! dataset` from `../shared/data`, two short epochs, the history, the checkpoint, the weights
//! the classifier loads, a rerun that resumes, and bad configurations.

use std::path::PathBuf;

use mitoscope_models::classifier::Classifier;

mod common;
use common::mitoscope;

fn data() -> Option<PathBuf> {
    common::shared_data("")
}

#[test]
fn a_short_run_writes_history_checkpoint_and_weights_and_resumes() {
    let Some(data) = data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let made = mitoscope(&[
        "dataset",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dataset.to_str().unwrap(),
        "--every",
        "100",
    ]);
    assert!(made.status.success());

    // Relative paths: from the configuration's folder.
    let config = dir.path().join("train.json");
    let config_text = serde_json::json!({
        "dataset": "dataset",
        "data": data,
        "out": "run",
        "include_padded": true,
        "training": { "epochs": 2, "warmup_epochs": 1, "batch_size": 8, "seed": 3 }
    });
    std::fs::write(&config, config_text.to_string()).unwrap();
    let trained = mitoscope(&["train", "--config", config.to_str().unwrap()]);
    assert!(trained.status.success());
    let out = dir.path().join("run");
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(epochs.len(), 2, "{history}");
    // Every validation figure is a TP or an FN: its matched proposal, or none.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dataset.join("proposals.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let val_figures: u64 = records
        .iter()
        .filter(|r| r["split"] == "val")
        .map(|r| r["figures"].as_array().unwrap().len() as u64)
        .sum();
    assert!(val_figures > 0, "the sample has validation figures");
    for (n, epoch) in epochs.iter().enumerate() {
        assert_eq!(epoch["epoch"], n as u64 + 1);
        assert!(epoch["mean_loss"].as_f64().unwrap().is_finite());
        let v = &epoch["validation"];
        assert_eq!(
            v["tp"].as_u64().unwrap() + v["fn"].as_u64().unwrap(),
            val_figures,
            "{v}"
        );
    }
    let weights = out.join("classifier.safetensors");
    let classifier = Classifier::load(&weights, &burn::prelude::Device::flex()).unwrap();
    assert!(classifier.uses_mask());

    // A rerun finds the finished checkpoint: nothing more to train, the same weights.
    let before = std::fs::read(&weights).unwrap();
    let again = mitoscope(&["train", "--config", config.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming at step"));
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(out.join("history.jsonl")).unwrap(),
        history
    );

    // Other settings against that checkpoint are refused.
    let changed = config_text.to_string().replace("\"seed\":3", "\"seed\":4");
    assert_ne!(changed, config_text.to_string());
    std::fs::write(&config, changed).unwrap();
    let refused = mitoscope(&["train", "--config", config.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("other training settings"));

    // Fine-tuning: a new run that starts from those weights, look-alikes in every batch.
    let tune = |init: &str| {
        let text = serde_json::json!({
            "dataset": "dataset",
            "data": data,
            "out": "tuned",
            "include_padded": true,
            "init": init,
            "training": {
                "max_steps": 2, "warmup_epochs": 0, "batch_size": 8, "seed": 5,
                "learning_rate": 1e-4, "hard_negative_share": 0.25
            }
        });
        std::fs::write(&config, text.to_string()).unwrap();
        mitoscope(&["train", "--config", config.to_str().unwrap()])
    };
    let bad = tune("run/history.jsonl");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("cannot start from"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let tuned = tune("run/classifier.safetensors");
    let stderr = String::from_utf8_lossy(&tuned.stderr);
    assert!(tuned.status.success(), "{stderr}");
    assert!(stderr.contains("starting from"), "{stderr}");
    let tuned = std::fs::read(dir.path().join("tuned/classifier.safetensors")).unwrap();
    assert_eq!(tuned.len(), before.len());
    assert_ne!(tuned, before, "two steps move the weights");
}

#[test]
fn bad_configurations_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("train.json");
    let cases = [
        ("{", "is not a training configuration"),
        (
            r#"{"dataset": "d", "data": "d", "out": "o", "epochs": 3}"#,
            "is not a training configuration",
        ),
        (
            r#"{"dataset": "d", "data": "d", "out": "o", "training": {"batch_size": 0}}"#,
            "invalid training settings",
        ),
        (
            r#"{"dataset": "missing", "data": "d", "out": "o"}"#,
            "mitoscope dataset --out",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let output = mitoscope(&["train", "--config", config.to_str().unwrap()]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = mitoscope(&["train", "--config", "/nonexistent/train.json"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the configuration"));
}
