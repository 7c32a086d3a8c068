#!/usr/bin/env bash
# veil's speed report, side by side with deface (the PyPI CLI that does the
# same job with the same CenterFace model, on onnxruntime).
#
#   1. go test -bench: detector and obscuring cost per frame at 640x480,
#      1280x720 and 1920x1080;
#   2. end to end on a 720p video (Megamind.avi from opencv-doc, scaled to
#      1280x720, 120 frames): `veil anonymize` and `deface`, alternated RUNS
#      times in the same session; medians of wall time, throughput ratio,
#      peak RSS;
#   3. faces found: veil's count of detections against deface's detector
#      with its default settings on the same frames;
#   4. capacity: N = 1, 2, 3, 4, 8 RTSP cameras at 1280x720 15 fps through
#      `veil run` with counting and recording (go test -bench Capacity);
#   5. live view: CPU for 1 and 10 WebRTC viewers of one camera, and
#      glass-to-glass latency (go test -bench LiveViewers); decoding cost
#      per camera codec (go test -bench Decode).
#
# Writes bench-out/report.md and prints it. Needs `make models testdata
# build` (the Makefile's bench target does that).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
FRAMES=${FRAMES:-120}
CACHE="${VEIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"
VENV="$CACHE/deface-venv"
OUT=bench-out
VEIL=./bin/veil
mkdir -p "$OUT"
log() { printf 'bench: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/deface" ]; then
	log "installing deface 1.5.0 with onnxruntime into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet deface==1.5.0 onnx==1.23.2 onnxruntime==1.32.0
fi

CLIP="$OUT/megamind-720p.mp4"
if [ ! -f "$CLIP" ]; then
	log "making $CLIP"
	ffmpeg -v error -y -i /usr/share/doc/opencv-doc/examples/data/Megamind.avi -an \
		-vf scale=1280:720 -frames:v "$FRAMES" -c:v libx264 -preset veryfast -crf 18 "$CLIP"
fi

log "go test -bench (detector, obscuring)"
go test -run XXX -bench . -benchtime 5x ./blur/ ./blur/detect/ ./counter/ ./pipeline/output/encode/ | tee "$OUT/go-bench.txt" >&2
log "go test -bench Decode (per codec a camera may send, 1280x720)"
go test -run XXX -bench Decode -benchtime 200x -count 3 ./ingest/decode/ | tee "$OUT/decode-bench.txt" >&2
log "go test -bench Capacity (N RTSP cameras at 720p15 through veil run; about 4 minutes)"
go test -run XXX -bench Capacity -benchtime 1x -timeout 30m ./cmd/veil/ | tee "$OUT/capacity.txt" >&2
log "go test -bench LiveViewers (1 and 10 WebRTC viewers of one 720p15 camera: CPU, glass-to-glass latency)"
go test -run XXX -bench LiveViewers -benchtime 1x ./pipeline/output/live/ | tee "$OUT/live-bench.txt" >&2
log "go test -bench (count events: publisher -> real Kafka -> exporter)"
go test -run XXX -bench PublishToMetric -benchtime 3x ./pipeline/counts/exporter/ | tee "$OUT/kafka-bench.txt" >&2

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$OUT/veil.times"
: >"$OUT/deface.times"
for i in $(seq "$RUNS"); do
	log "run $i/$RUNS: veil anonymize"
	/usr/bin/time -f "%e %M" -o "$OUT/t" "$VEIL" anonymize -quiet "$CLIP" "$OUT/veil-out.mp4" >"$OUT/veil-summary.txt" 2>/dev/null
	cat "$OUT/t" >>"$OUT/veil.times"
	log "run $i/$RUNS: deface"
	/usr/bin/time -f "%e %M" -o "$OUT/t" "$VENV/bin/deface" "$CLIP" -o "$OUT/deface-out.mp4" >/dev/null 2>&1
	cat "$OUT/t" >>"$OUT/deface.times"
done
vt=$(cut -d' ' -f1 "$OUT/veil.times" | median)
dt=$(cut -d' ' -f1 "$OUT/deface.times" | median)
vm=$(cut -d' ' -f2 "$OUT/veil.times" | median)
dm=$(cut -d' ' -f2 "$OUT/deface.times" | median)

log "counting deface's detections on the same frames"
dfaces=$("$VENV/bin/python" - "$CLIP" <<'PY'
import sys, cv2
from deface.centerface import CenterFace
cf = CenterFace(backend="auto")  # what the deface CLI uses: onnxruntime when installed
cap = cv2.VideoCapture(sys.argv[1])
n = 0
while True:
    ok, frame = cap.read()
    if not ok:
        break
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # deface reads frames as RGB
    dets, _ = cf(rgb, threshold=0.2)              # deface's default --thresh
    n += len(dets)
print(n)
PY
)
dfaces=$(printf '%s\n' "$dfaces" | tail -n 1) # deface prints its execution provider first
vfaces=$(sed -n 's/.* \([0-9]*\) faces detected.*/\1/p' "$OUT/veil-summary.txt")
vfc=$(sed -n 's/.* \([0-9]*\) fail-closed.*/\1/p' "$OUT/veil-summary.txt")

awk -v f="$FRAMES" -v vt="$vt" -v dt="$dt" -v vm="$vm" -v dm="$dm" -v vf="$vfaces" -v df="$dfaces" -v vfc="$vfc" -v runs="$RUNS" '
BEGIN {
	printf "## veil anonymize vs deface, 1280x720, %d frames, median of %d alternated runs\n\n", f, runs
	printf "| | wall s | fps | peak RSS MiB | faces detected | fail-closed frames |\n|---|---|---|---|---|---|\n"
	printf "| veil (CenterFace, OpenVINO 2026.4, its precision for this CPU) | %.1f | %.2f | %.0f | %d | %d |\n", vt, f/vt, vm/1024, vf, vfc
	printf "| deface 1.5.0 (CenterFace, onnxruntime) | %.1f | %.2f | %.0f | %d | n/a |\n", dt, f/dt, dm/1024, df
	printf "\nthroughput veil/deface: **%.2fx**; faces found veil/deface: **%.2f**\n", dt/vt, (df>0? vf/df : 0)
}' >"$OUT/report.md"
{
	echo
	echo "## go test -bench (ms/frame)"
	echo
	echo '```'
	grep -E '^Benchmark' "$OUT/go-bench.txt" | awk '{for (i=1;i<=NF;i++) if ($(i)=="ms/frame") printf "%-45s %8s ms/frame\n", $1, $(i-1)}'
	echo '```'
	echo
	echo "## capacity: RTSP cameras at 1280x720, 15 fps, veil run with counting and recording, 30 s window"
	sed -n '/^| cameras/,/^largest N/p' "$OUT/capacity.txt"
	echo
	echo "## live view: one 720p15 camera, 1 and 10 WebRTC viewers"
	awk '/^\| viewers/ {p = 1} p && !/^\|/ {exit} p' "$OUT/live-bench.txt" # the table alone
	echo
	echo "## decoding per codec, 1280x720 (ms/picture)"
	echo
	echo '```'
	grep -E '^BenchmarkDecode' "$OUT/decode-bench.txt"
	echo '```'
	echo
	echo "## count events through Kafka"
	echo
	echo '```'
	grep -E '^Benchmark' "$OUT/kafka-bench.txt"
	echo '```'
} >>"$OUT/report.md"
cat "$OUT/report.md"
