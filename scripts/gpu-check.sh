#!/usr/bin/env bash
# One-off check on a machine with an NVIDIA GPU: the CUDA backend's proposals against the CPU's on
# a real tile, and the time of each. Needs the NVIDIA driver, the CUDA toolkit and internet access
# for the build (burn's CUDA backend downloads LLVM while building).
#
#   scripts/gpu-check.sh [IMAGE] [MPP]
#
# Default image: the 256 px fixture tile cut from ../shared/data. Prints both timings and the
# comparison (scripts/compare_proposals.py); exits non-zero when they disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-tests/fixtures/proposals_lite_medsam/tile.png}
mpp=${2:-0.25}
out=$(mktemp -d)
cargo build --release -p mitoscope --features cuda
bin=target/release/mitoscope
for backend in cpu cuda; do
    start=$(date +%s.%N)
    "$bin" propose "$image" --mpp "$mpp" --backend "$backend" --out "$out/$backend.geojson"
    end=$(date +%s.%N)
    echo "$backend: $(echo "$end - $start" | bc) s (whole command, model load included)"
done
python3 scripts/compare_proposals.py "$out/cpu.geojson" "$out/cuda.geojson"
