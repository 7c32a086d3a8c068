package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
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

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
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
			src, err := NewFile(context.Background(), FileConfig{Path: path, Camera: "cam"}, FileDeps{})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := NewMetrics(prometheus.NewRegistry())
			src.deps.Metrics = m
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
	truncated := filepath.Join(dir, "truncated.mkv")
	// Remux to mkv (written linearly) and cut it: the first frames decode,
	// the rest is gone.
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", good, "-c", "copy", truncated).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	data, _ := os.ReadFile(truncated)
	os.WriteFile(truncated, data[:len(data)/2], 0o644)

	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing.mp4"), "missing.mp4"},
		{garbage, "garbage.mp4: not a readable video"},
		{filepath.Join(dir, "notes.txt"), "unsupported file type"},
	} {
		_, err := NewFile(context.Background(), FileConfig{Path: tc.path, Camera: "cam"}, FileDeps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.path, err, tc.want)
		}
	}
	// A truncated file yields the frames that are there, then ends; it
	// never hangs or panics.
	src, err := NewFile(context.Background(), FileConfig{Path: truncated, Camera: "cam"}, FileDeps{})
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
	src, err := NewFile(context.Background(), FileConfig{Path: path, Camera: "cam"}, FileDeps{})
	if err != nil {
		t.Fatal(err)
	}
	src.cfg.Realtime = true
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
	f.Add([]byte(`{"streams":[{"width":320,"height":240,"r_frame_rate":"10/1","side_data_list":[{"rotation":-90}]}]}`))
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
	src, err := NewFile(context.Background(), FileConfig{Path: path, Camera: "cam"}, FileDeps{})
	if err != nil {
		t.Fatal(err)
	}
	src.cfg.Loop = true
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
	f, err := NewFile(context.Background(), FileConfig{Path: path, Camera: "c"}, FileDeps{})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.MaxPixels = 320 * 240
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

// withOrientation inserts an EXIF block saying orientation o after a
// JPEG's start marker, as a phone camera writes it.
func withOrientation(jpg []byte, o uint16, order binary.ByteOrder) []byte {
	var tiff bytes.Buffer
	if order == binary.LittleEndian {
		tiff.WriteString("II")
	} else {
		tiff.WriteString("MM")
	}
	binary.Write(&tiff, order, uint16(42))
	binary.Write(&tiff, order, uint32(8))     // IFD0 at 8
	binary.Write(&tiff, order, uint16(1))     // one entry
	binary.Write(&tiff, order, uint16(0x112)) // Orientation
	binary.Write(&tiff, order, uint16(3))     // SHORT
	binary.Write(&tiff, order, uint32(1))
	binary.Write(&tiff, order, o)
	binary.Write(&tiff, order, uint16(0))
	binary.Write(&tiff, order, uint32(0)) // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	app1 := []byte{0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}
	return append(append(append([]byte{0xFF, 0xD8}, app1...), seg...), jpg[2:]...)
}

// TestRotationIsAppliedBeforeDetection: a photo stored sideways with an
// EXIF orientation, and a video with a rotation in its display matrix,
// both reach the detector upright.
func TestRotationIsAppliedBeforeDetection(t *testing.T) {
	// 40x20, white on the left half: upright after a quarter turn right
	// (orientation 6) it is 20x40 with white on top.
	src := image.NewRGBA(image.Rect(0, 0, 40, 20))
	for y := 0; y < 20; y++ {
		for x := 0; x < 20; x++ {
			src.Set(x, y, color.White)
		}
	}
	var jb bytes.Buffer
	jpeg.Encode(&jb, src, &jpeg.Options{Quality: 95})
	for _, tc := range []struct {
		o       uint16
		order   binary.ByteOrder
		w, h    int
		whiteAt image.Point
		blackAt image.Point
	}{
		{1, binary.BigEndian, 40, 20, image.Pt(5, 10), image.Pt(35, 10)},
		{6, binary.LittleEndian, 20, 40, image.Pt(10, 5), image.Pt(10, 35)},
		{8, binary.BigEndian, 20, 40, image.Pt(10, 35), image.Pt(10, 5)},
		{3, binary.BigEndian, 40, 20, image.Pt(35, 10), image.Pt(5, 10)},
	} {
		path := filepath.Join(t.TempDir(), "p.jpg")
		os.WriteFile(path, withOrientation(jb.Bytes(), tc.o, tc.order), 0o644)
		raw, err := DecodeImage(path, "c")
		if err != nil {
			t.Fatal(err)
		}
		px := func(p image.Point) byte { return raw.Pix[(p.Y*raw.Width+p.X)*3] }
		if raw.Width != tc.w || raw.Height != tc.h || px(tc.whiteAt) < 200 || px(tc.blackAt) > 50 {
			t.Errorf("orientation %d: %dx%d, white %d at %v, black %d at %v", tc.o, raw.Width, raw.Height, px(tc.whiteAt), tc.whiteAt, px(tc.blackAt), tc.blackAt)
		}
	}
	// A 320x240 video whose display matrix turns it a quarter: decoded
	// upright, 240x320.
	plain := makeVideo(t, "plain.mp4", 3, "320x240", "10")
	rotated := filepath.Join(t.TempDir(), "rotated.mp4")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	f, err := NewFile(context.Background(), FileConfig{Path: rotated, Camera: "c"}, FileDeps{})
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[*frame.Raw](8, queue.Block, nil)
	if err := f.Run(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range q.C() {
		n++
		if r.Width != 240 || r.Height != 320 || len(r.Pix) != 240*320*3 {
			t.Fatalf("frame %dx%d (%d bytes), want upright 240x320", r.Width, r.Height, len(r.Pix))
		}
	}
	if n != 3 {
		t.Errorf("%d frames", n)
	}
}

// FuzzExifOrientation: any bytes as a JPEG head give an orientation in
// 1-8, never a panic (the EXIF block comes from outside).
func FuzzExifOrientation(f *testing.F) {
	var jb bytes.Buffer
	jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 8, 8)), nil)
	f.Add(withOrientation(jb.Bytes(), 6, binary.LittleEndian))
	f.Add(withOrientation(jb.Bytes(), 3, binary.BigEndian))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		if o := exifOrientation(b); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}
