#!/usr/bin/env bash
# Builds the browser app (web/) into dist/, which `mitoscope serve --web dist` serves.
#
# Idempotent: installs only what is missing, each with cargo (works offline from the crates.io
# registry): the wasm32 target, trunk 0.21.14 and wasm-bindgen-cli at exactly the version of
# wasm-bindgen in Cargo.lock (both Trunk and the wasm it loads need that one). Then
# `trunk build` with the `web` cargo profile (see Trunk.toml and the root Cargo.toml), and gzip
# of the wasm and JavaScript beside them.
#
# Usage: scripts/build-web.sh     (NICE=10 to lower its priority)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
trunk_version="0.21.14"
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)"
if [[ -z "$bindgen_version" ]]; then
    echo "build-web: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
pinned="$(awk -F'"' '/^wasm_bindgen *=/ { print $2 }' Trunk.toml)"
if [[ -n "$pinned" && "$pinned" != "$bindgen_version" ]]; then
    echo "build-web: Trunk.toml pins wasm-bindgen $pinned but Cargo.lock has $bindgen_version;" \
        "update [tools] wasm_bindgen in Trunk.toml" >&2
    exit 1
fi
run() {
    echo "build-web: $*"
    nice -n "${NICE:-0}" "$@"
}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    run rustup target add wasm32-unknown-unknown
else
    echo "build-web: target wasm32-unknown-unknown is installed"
fi

if [[ "$(trunk --version 2>/dev/null)" != "trunk $trunk_version" ]]; then
    run cargo install trunk --version "$trunk_version" --locked
else
    echo "build-web: trunk $trunk_version is installed"
fi

if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]]; then
    run cargo install wasm-bindgen-cli --version "$bindgen_version"
else
    echo "build-web: wasm-bindgen-cli $bindgen_version is installed"
fi

started=$(date +%s)
run trunk build
# `mitoscope serve --web` sends a `.gz` beside a file to browsers that accept gzip.
run gzip -9 --keep --force dist/*.wasm dist/*.js
echo "build-web: dist/ built in $(( $(date +%s) - started )) s:"
ls -l dist/
