//! The web app's files, served from the same origin as the API, and the headers every response
//! carries.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Html;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use super::ServeOptions;
use super::api::REQUEST_ID;

/// The page served at `/` when no web app folder is given.
const NO_APP: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mitoscope server</title></head>
<body>
<h1>Mitoscope server</h1>
<p>The proposal API is running. No web app was given to this server (start it with
<code>--web DIR</code>, the folder of the built app).</p>
<p>Try it: <code>curl --data-binary @image.png 'http://HOST/api/v1/proposals?mpp=0.25'</code></p>
<p><a href="/healthz">/healthz</a> &middot; <a href="/version">/version</a></p>
</body></html>
"#;

/// Adds the web app (or the placeholder page), CORS when configured, and the cross-origin
/// isolation headers.
///
/// The app uses WebGPU and wasm threads' shared memory, which need a cross-origin isolated page:
/// `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`.
/// Every response also carries `X-Content-Type-Options: nosniff`. Content types come from the
/// file extension (`.wasm` is `application/wasm`, which streaming compilation requires).
pub(crate) fn with_web(app: Router, options: &ServeOptions) -> Router {
    let app = match &options.web {
        // `scripts/build-web.sh` writes a gzip copy of the wasm and the script beside them (the
        // wasm shrinks about sixfold); a browser that accepts gzip gets that copy.
        Some(dir) => app.fallback_service(ServeDir::new(dir).precompressed_gzip()),
        None => app.route("/", get(|| async { Html(NO_APP) })),
    };
    let app = app
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-embedder-policy"),
            HeaderValue::from_static("require-corp"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    if options.cors_origins.is_empty() {
        return app;
    }
    let origins: Vec<HeaderValue> = options
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([HeaderName::from_static(REQUEST_ID)]),
    )
}
