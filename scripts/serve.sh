#!/usr/bin/env bash
# Builds the web app and the server, then serves the app with the embedded default models at
# the printed URL (http://127.0.0.1:8080/ unless --bind says otherwise). Arguments go to
# `mitoscope serve` (see `mitoscope serve --help`), e.g. `--bind 0.0.0.0:8080 --token-file F`.
#
# The first run installs the wasm target, trunk and wasm-bindgen-cli (from crates.io) and
# compiles everything: about an hour on two cores; later runs start in seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/build-web.sh

# Whole-slide images (not needed by the web app) when OpenSlide and libclang are installed.
features=()
if pkg-config --exists openslide 2>/dev/null && ldconfig -p 2>/dev/null | grep -q 'libclang'; then
  features=(--features openslide)
fi
# mimalloc keeps freed memory for the next image instead of returning it to the kernel (see
# README.md, Speed); a value already in the environment wins.
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:--1}"
echo "== building and starting the server"
exec cargo run --release --locked -p mitoscope "${features[@]}" -- serve --web dist "$@"
