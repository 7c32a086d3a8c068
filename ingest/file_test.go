package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// makeVideo encodes a synthetic clip with ffmpeg's test source.
func makeVideo(t *testing.T, name string, frames int, size, rate string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i",
		"testsrc2=size="+size+":rate="+rate, "-frames:v", strconv.Itoa(frames), "-pix_fmt", "yuv420p", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	return path
}

func drain(t *testing.T, src *File) ([]*frame.Raw, error) {
	q := queue.New[*frame.Raw](4, queue.Block, nil)
	errc := make(chan error, 1)
	go func() { errc <- src.Run(context.Background(), q) }()
	var got []*frame.Raw
	for r := range q.C() {
		got = append(got, r)
	}
	return got, <-errc
}

func TestFileDecodesEveryFrame(t *testing.T) {
	for _, tc := range []struct {
		name, size, rate string
		frames           int
		fps              float64
	}{
		{"a.mp4", "320x240", "25", 37, 25},
		{"b.mkv", "160x120", "30000/1001", 20, 29.97},
		{"c.avi", "64x48", "10", 5, 10},
		{"d.mov", "96x64", "15", 9, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := makeVideo(t, tc.name, tc.frames, tc.size, tc.rate)
			src, err := NewFile(context.Background(), path, "cam", nil)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := NewMetrics(prometheus.NewRegistry())
			src.Metrics = m
			info := src.Info()
			if got := strconv.Itoa(info.Width) + "x" + strconv.Itoa(info.Height); got != tc.size {
				t.Errorf("size %s, want %s", got, tc.size)
			}
			if d := info.FPS - tc.fps; d > 0.01 || d < -0.01 {
				t.Errorf("fps %v, want %v", info.FPS, tc.fps)
			}
			got, err := drain(t, src)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.frames || src.Decoded() != int64(tc.frames) {
				t.Fatalf("%d frames, want %d", len(got), tc.frames)
			}
			if n := testutil.ToFloat64(m.Decoded("cam")); n != float64(tc.frames) {
				t.Errorf("veil_ingest_frames_decoded_total %v, want %d", n, tc.frames)
			}
			if up := testutil.ToFloat64(m.Up("cam")); up != 0 {
				t.Errorf("veil_camera_up %v after the file ended", up)
			}
			for i, r := range got {
				if err := r.Validate(); err != nil || r.Seq != uint64(i) || r.Camera != "cam" {
					t.Fatalf("frame %d: %v seq %d", i, err, r.Seq)
				}
			}
		})
	}
}

func TestFileErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mp4")
	os.WriteFile(garbage, []byte("this is not a video at all"), 0o644)
	good := makeVideo(t, "good.mp4", 30, "320x240", "25")
	data, _ := os.ReadFile(good)
	truncated := filepath.Join(dir, "truncated.mkv")
	// Remux to mkv (written linearly) and cut it: the first frames decode,
	// the rest is gone.
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", good, "-c", "copy", truncated).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	data, _ = os.ReadFile(truncated)
	os.WriteFile(truncated, data[:len(data)/2], 0o644)

	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing.mp4"), "missing.mp4"},
		{garbage, "garbage.mp4: not a readable video"},
		{filepath.Join(dir, "notes.txt"), "unsupported file type"},
	} {
		_, err := NewFile(context.Background(), tc.path, "cam", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.path, err, tc.want)
		}
	}
	// A truncated file yields the frames that are there, then ends; it
	// never hangs or panics.
	src, err := NewFile(context.Background(), truncated, "cam", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, src)
	if len(got) == 0 || len(got) >= 30 {
		t.Errorf("truncated file gave %d frames (err %v)", len(got), err)
	}
}

func TestFileStopsOnCancel(t *testing.T) {
	path := makeVideo(t, "long.mp4", 200, "320x240", "25")
	src, err := NewFile(context.Background(), path, "cam", nil)
	if err != nil {
		t.Fatal(err)
	}
	src.Realtime = true
	ctx, cancel := context.WithCancel(context.Background())
	q := queue.New[*frame.Raw](1, queue.DropOldest, nil)
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, q) }()
	<-q.C()
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestParseProbe(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string
		fps     float64
	}{
		{`{"streams":[{"width":640,"height":480,"r_frame_rate":"25/1","nb_frames":"10"}]}`, "", 25},
		{`{"streams":[{"width":640,"height":480,"r_frame_rate":"0/0","avg_frame_rate":"30000/1001"}]}`, "", 29.97002997002997},
		{`{"streams":[]}`, "no video stream", 0},
		{`{"streams":[{"width":0,"height":480,"r_frame_rate":"25/1"}]}`, "frame size", 0},
		{`{"streams":[{"width":99999,"height":480,"r_frame_rate":"25/1"}]}`, "frame size", 0},
		{`{"streams":[{"width":640,"height":480,"r_frame_rate":"x"}]}`, "frame rate", 0},
		{`not json`, "ffprobe output", 0},
	} {
		info, err := parseProbe("f.mp4", []byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: got %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || info.FPS != tc.fps {
			t.Errorf("%s: got %+v, %v", tc.in, info, err)
		}
	}
}

// FuzzParseProbe feeds arbitrary ffprobe output: it must never panic, and
// anything it accepts must be usable.
func FuzzParseProbe(f *testing.F) {
	f.Add([]byte(`{"streams":[{"width":640,"height":480,"r_frame_rate":"25/1","nb_frames":"10"}]}`))
	f.Add([]byte(`{"streams":[{"width":1,"height":1,"r_frame_rate":"1/0"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseProbe("f", b)
		if err != nil {
			return
		}
		if info.Width <= 0 || info.Height <= 0 || !(info.FPS > 0) || info.FPS > 1000 || info.FrameRate == "" {
			t.Fatalf("accepted unusable %+v", info)
		}
	})
}

func TestDecodeImage(t *testing.T) {
	dir := t.TempDir()
	png := filepath.Join(dir, "a.png")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:size=33x17,format=rgb24", "-frames:v", "1", png).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	raw, err := DecodeImage(png, "cam")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Width != 33 || raw.Height != 17 || raw.Pix[0] > 10 || raw.Pix[2] < 240 {
		t.Errorf("got %dx%d BGR %v", raw.Width, raw.Height, raw.Pix[:3])
	}
	bad := filepath.Join(dir, "bad.jpg")
	os.WriteFile(bad, []byte("nope"), 0o644)
	if _, err := DecodeImage(bad, "cam"); err == nil || !strings.Contains(err.Error(), "bad.jpg: not a readable image") {
		t.Errorf("got %v", err)
	}
}

func TestFileLoopsAsOneSource(t *testing.T) {
	path := makeVideo(t, "loop.mp4", 5, "64x48", "10")
	src, err := NewFile(context.Background(), path, "cam", nil)
	if err != nil {
		t.Fatal(err)
	}
	src.Loop = true
	ctx, cancel := context.WithCancel(context.Background())
	q := queue.New[*frame.Raw](2, queue.Block, nil)
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, q) }()
	for i := 0; i < 12; i++ {
		r := <-q.C()
		if r.Seq != uint64(i) || r.PTS != time.Duration(i)*100*time.Millisecond {
			t.Fatalf("frame %d: seq %d pts %v", i, r.Seq, r.PTS)
		}
	}
	cancel()
	for range q.C() {
	}
	if err := <-errc; err != context.Canceled {
		t.Errorf("got %v", err)
	}
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("VEIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// TestPicturesOverTheLimitAreRefused: a video of pictures above the
// configured limit is refused by name before any frame is decoded, and a
// still whose header declares 20000x20000 (a forged PNG: the pixel data
// would take 1.2 GB) is refused from its header.
func TestPicturesOverTheLimitAreRefused(t *testing.T) {
	path := makeVideo(t, "big.mp4", 3, "640x480", "10")
	f, err := NewFile(context.Background(), path, "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.MaxPixels = 320 * 240
	q := queue.New[*frame.Raw](4, queue.Block, nil)
	if err := f.Run(context.Background(), q); err == nil || !strings.Contains(err.Error(), "big.mp4") || !strings.Contains(err.Error(), "limit") {
		t.Errorf("video over the limit: %v", err)
	}
	if q.Len() != 0 {
		t.Error("frames decoded from a video over the limit")
	}
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)))
	b := buf.Bytes()
	// IHDR starts at byte 8: length(4) "IHDR"(4) width(4) height(4) ... crc.
	binary.BigEndian.PutUint32(b[16:], 20000)
	binary.BigEndian.PutUint32(b[20:], 20000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	forged := filepath.Join(t.TempDir(), "forged.png")
	os.WriteFile(forged, b, 0o644)
	if _, err := DecodeImage(forged, "c"); err == nil || !strings.Contains(err.Error(), "20000x20000") {
		t.Errorf("forged picture: %v", err)
	}
}
