#!/usr/bin/env bash
# Fetch the inference runtime veil loads at run time, from its package
# registry, by name and pinned version, and check it: nothing is installed
# system-wide and no Python runs when veil does.
#
# OpenVINO 2026.4.1's shared libraries ship inside the PyPI wheel
# openvino==2026.4.1 (Apache-2.0). The wheel for CPython 3.11 on
# manylinux_2_28 x86_64 is downloaded with pip (no dependencies, nothing
# installed; the C libraries inside do not depend on Python), its sha256
# checked, and the libraries CenterFace on the CPU needs (the C API, the
# core, the CPU plugin, the ONNX frontend, TBB) are unpacked to
#   ${VEIL_CACHE:-~/.cache/veil}/runtimes/openvino-2026.4.1/
# (detector.runtime_dir). Idempotent: an unpacked, checked copy is kept.
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"
VERSION=2026.4.1
WHEEL=openvino-2026.4.1-22982-cp311-cp311-manylinux_2_28_x86_64.whl
WANT=2d22b1da03f7caf74df30e9f6417d0ab2f637e4a38e08e1dcd294d2c37407aaf
DIR="$CACHE/runtimes/openvino-$VERSION"
LIBS="libopenvino_c.so.2641 libopenvino.so.2641 libopenvino_intel_cpu_plugin.so libopenvino_onnx_frontend.so.2641 libtbb.so.12 libtbbmalloc.so.2"

log() { printf 'fetch-runtimes: %s\n' "$*" >&2; }

if [ -f "$DIR/.wheel-sha256" ] && [ "$(cat "$DIR/.wheel-sha256")" = "$WANT" ]; then
	log "have $DIR"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "pip download openvino==$VERSION (its C libraries only are kept)"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
	--platform manylinux_2_28_x86_64 -d "$tmp" "openvino==$VERSION"
got=$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)
if [ "$got" != "$WANT" ]; then
	log "$WHEEL checksum $got, want $WANT: refusing it"
	exit 1
fi
mkdir -p "$tmp/out"
python3 - "$tmp/$WHEEL" "$tmp/out" $LIBS <<'PY'
import sys, zipfile, os
wheel, out, libs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for lib in libs:
        with open(os.path.join(out, lib), "wb") as f:
            f.write(z.read("openvino/libs/" + lib))
PY
echo "$WANT" >"$tmp/out/.wheel-sha256"
mkdir -p "$(dirname "$DIR")"
rm -rf "$DIR"
mv "$tmp/out" "$DIR"
log "ok $DIR"
