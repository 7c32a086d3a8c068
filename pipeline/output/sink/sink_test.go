package sink

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func obscuredFrames(t *testing.T, n, w, h int) []*blur.Frame {
	t.Helper()
	m, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	if err := st.WarmUp(context.Background(), w, h); err != nil {
		t.Fatal(err)
	}
	var out []*blur.Frame
	for i := 0; i < n; i++ {
		raw := frame.NewRaw(frame.Meta{Seq: uint64(i)}, w, h)
		for j := range raw.Pix {
			raw.Pix[j] = byte(i*7 + j%251)
		}
		f, err := st.Obscure(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func probe(t *testing.T, path string) string {
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,r_frame_rate,nb_read_frames", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

func TestVideoKeepsSizeRateAndCount(t *testing.T) {
	frames := obscuredFrames(t, 23, 160, 120)
	for _, tc := range []struct{ name, rate, want string }{
		{"out.mp4", "25/1", "160,120,25/1,23"},
		{"out.mkv", "30000/1001", "160,120,30000/1001,23"},
		{"out.mov", "10/1", "160,120,10/1,23"},
		{"out.avi", "15/1", "160,120,15/1,23"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.name)
			v, err := NewVideo(context.Background(), path, VideoOptions{Width: 160, Height: 120, FrameRate: tc.rate})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Error("output visible before it is complete")
			}
			for _, f := range frames {
				if err := v.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := v.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := probe(t, path); got != tc.want {
				t.Errorf("ffprobe: %s, want %s", got, tc.want)
			}
			if err := v.Close(context.Background()); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestVideoRefusesWhatBlurDidNotMake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.mp4")
	v, err := NewVideo(context.Background(), path, VideoOptions{Width: 16, Height: 16, FrameRate: "25/1"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Abort()
	if err := v.Write(&blur.Frame{}); !errors.Is(err, ErrNotObscured) {
		t.Errorf("zero frame: %v", err)
	}
	if err := v.Write(nil); !errors.Is(err, ErrNotObscured) {
		t.Errorf("nil frame: %v", err)
	}
	if err := WriteImage(filepath.Join(t.TempDir(), "x.png"), &blur.Frame{}); !errors.Is(err, ErrNotObscured) {
		t.Errorf("image: %v", err)
	}
}

func TestVideoErrorsNameTheOutput(t *testing.T) {
	_, err := NewVideo(context.Background(), "/nonexistent-dir/out.mp4", VideoOptions{Width: 16, Height: 16, FrameRate: "25/1"})
	if err == nil || !strings.Contains(err.Error(), "output /nonexistent-dir/out.mp4: cannot write") {
		t.Errorf("unwritable: %v", err)
	}
	_, err = NewVideo(context.Background(), filepath.Join(t.TempDir(), "out.gif"), VideoOptions{Width: 16, Height: 16, FrameRate: "25/1"})
	if err == nil || !strings.Contains(err.Error(), "unsupported video type") {
		t.Errorf("gif: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "a.mp4")
	v, err := NewVideo(context.Background(), path, VideoOptions{Width: 160, Height: 120, FrameRate: "25/1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Write(obscuredFrames(t, 1, 32, 32)[0]); err == nil {
		t.Error("frame of the wrong size accepted")
	}
	v.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("abort left %v", ents)
	}
}

func TestWriteImage(t *testing.T) {
	f := obscuredFrames(t, 1, 31, 17)[0]
	for _, name := range []string{"a.png", "a.jpg"} {
		path := filepath.Join(t.TempDir(), name)
		if err := WriteImage(path, f); err != nil {
			t.Fatal(err)
		}
		if got := probe(t, path); !strings.HasPrefix(got, "31,17,") {
			t.Errorf("%s: %s", name, got)
		}
	}
	if err := WriteImage("/nonexistent-dir/a.png", f); err == nil || !strings.Contains(err.Error(), "/nonexistent-dir/a.png") {
		t.Errorf("got %v", err)
	}
}
