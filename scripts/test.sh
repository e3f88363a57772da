#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing: Debian's chromium (the web
# tests drive it) and OpenSlide's libraries (the whole-slide tests), when run as root or with
# sudo; the wasm target, trunk and wasm-bindgen-cli (scripts/build-web.sh). Then builds the web
# app and runs `cargo test` over the workspace with whole-slide support on.
#
# The first run compiles burn twice (natively and for wasm): about an hour on two cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/system-packages.sh

bash scripts/build-web.sh

echo "== tests"
cargo test --workspace --locked --features mitoscope/openslide "$@"
