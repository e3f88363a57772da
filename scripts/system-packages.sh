#!/usr/bin/env bash
# Installs the Debian packages the tests need when any is missing: chromium (the web tests drive
# it) and OpenSlide's libraries (whole-slide images: libopenslide-dev, with libclang-dev and
# pkg-config to build its binding), and libtiff's tools (a test tiles a TIFF with tiffcp). As root,
# or through sudo.
set -euo pipefail

packages=(chromium libopenslide-dev libclang-dev pkg-config libtiff-tools)
if dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  exit 0
fi
as_root=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
  else
    echo "error: the tests need the Debian packages ${packages[*]}; install them as root" >&2
    exit 1
  fi
fi
echo "== installing ${packages[*]}"
$as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${packages[@]}"
