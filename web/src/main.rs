//! The browser app's entry point (Trunk builds it for wasm32). Natively there is nothing to run:
//! the binary exists so that the workspace builds everywhere.

fn main() {
    #[cfg(target_arch = "wasm32")]
    mitoscope_web::start();
}
