#!/usr/bin/env bash
# Fetch the inference runtimes veil loads at run time, from their package
# registry, by name and pinned version, and check them: nothing is
# installed system-wide and no Python runs when veil does.
#
# OpenVINO 2026.4.1's shared libraries ship inside the PyPI wheel
# openvino==2026.4.1 (Apache-2.0); ONNX Runtime 1.32.0's inside
# onnxruntime==1.32.0 (MIT). Each wheel for CPython 3.11 on
# manylinux_2_28 x86_64 is downloaded with pip (no dependencies, nothing
# installed; the C libraries inside do not depend on Python), its sha256
# checked, and the libraries CenterFace on the CPU needs are unpacked to
#   ${VEIL_CACHE:-~/.cache/veil}/runtimes/openvino-2026.4.1/ (the C API,
#     the core, the CPU plugin, the ONNX frontend, TBB; the default
#     detector.runtime_dir)
#   ${VEIL_CACHE:-~/.cache/veil}/runtimes/onnxruntime-1.32.0/
#     (libonnxruntime, for detector.runtime: onnxruntime)
# Idempotent: an unpacked, checked copy is kept.
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"

log() { printf 'fetch-runtimes: %s\n' "$*" >&2; }

# fetch NAME VERSION WHEEL SHA256 DIR-IN-WHEEL LIB...
fetch() {
	local name=$1 version=$2 wheel=$3 want=$4 inner=$5
	shift 5
	local dir="$CACHE/runtimes/$name-$version"
	if [ -f "$dir/.wheel-sha256" ] && [ "$(cat "$dir/.wheel-sha256")" = "$want" ]; then
		log "have $dir"
		return 0
	fi
	local tmp
	tmp=$(mktemp -d)
	log "pip download $name==$version (its C libraries only are kept)"
	python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
		--platform manylinux_2_28_x86_64 -d "$tmp" "$name==$version"
	local got
	got=$(sha256sum "$tmp/$wheel" | cut -d' ' -f1)
	if [ "$got" != "$want" ]; then
		log "$wheel checksum $got, want $want: refusing it"
		rm -rf "$tmp"
		exit 1
	fi
	mkdir -p "$tmp/out"
	python3 - "$tmp/$wheel" "$tmp/out" "$inner" "$@" <<'PY'
import sys, zipfile, os
wheel, out, inner, libs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for lib in libs:
        with open(os.path.join(out, lib), "wb") as f:
            f.write(z.read(inner + "/" + lib))
PY
	echo "$want" >"$tmp/out/.wheel-sha256"
	mkdir -p "$(dirname "$dir")"
	rm -rf "$dir"
	mv "$tmp/out" "$dir"
	rm -rf "$tmp"
	log "ok $dir"
}

fetch openvino 2026.4.1 openvino-2026.4.1-22982-cp311-cp311-manylinux_2_28_x86_64.whl \
	2d22b1da03f7caf74df30e9f6417d0ab2f637e4a38e08e1dcd294d2c37407aaf openvino/libs \
	libopenvino_c.so.2641 libopenvino.so.2641 libopenvino_intel_cpu_plugin.so libopenvino_onnx_frontend.so.2641 libtbb.so.12 libtbbmalloc.so.2
fetch onnxruntime 1.32.0 onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl \
	5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d onnxruntime/capi \
	libonnxruntime.so.1.32.0
