// Package ingest turns sources (RTSP cameras, WebRTC publishers over WHIP,
// video files and still images) into decoded *frame.Raw values for the
// blur stage, and hands them to nothing else. Every source has the same
// shape: Run(ctx, out) decodes into out until its input or ctx ends, then
// closes out (pipeline.Source is that contract).
package ingest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // registers the decoder used by DecodeImage
	_ "image/png"  // registers the decoder used by DecodeImage
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/queue"
)

// VideoInfo is what ffprobe says about a file's first video stream.
type VideoInfo struct {
	Width, Height int
	// FrameRate is the stream's frame rate as ffmpeg writes it ("25/1").
	FrameRate string
	// FPS is FrameRate as a number.
	FPS float64
	// Frames is the container's frame count, 0 when unknown.
	Frames int
}

// Kind of input file, judged by extension.
type Kind int

// Input kinds.
const (
	KindUnsupported Kind = iota
	KindImage
	KindVideo
)

// KindOf classifies path by its extension.
func KindOf(path string) Kind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jpg", ".jpeg", ".png":
		return KindImage
	case ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm":
		return KindVideo
	}
	return KindUnsupported
}

// Probe asks ffprobe for the first video stream of path.
func Probe(ctx context.Context, path string) (VideoInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return VideoInfo{}, fmt.Errorf("input %s: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,r_frame_rate,avg_frame_rate,nb_frames:stream_side_data=rotation", "-of", "json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return VideoInfo{}, ctx.Err()
		}
		if errors.Is(err, exec.ErrNotFound) {
			return VideoInfo{}, fmt.Errorf("input %s: ffprobe not found (install Debian's ffmpeg)", path)
		}
		return VideoInfo{}, fmt.Errorf("input %s: not a readable video: %s", path, firstLine(stderr.String(), err))
	}
	return parseProbe(path, out)
}

func parseProbe(path string, out []byte) (VideoInfo, error) {
	var p struct {
		Streams []struct {
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			RFrameRate   string `json:"r_frame_rate"`
			AvgFrameRate string `json:"avg_frame_rate"`
			NbFrames     string `json:"nb_frames"`
			SideData     []struct {
				Rotation *int `json:"rotation"`
			} `json:"side_data_list"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return VideoInfo{}, fmt.Errorf("input %s: ffprobe output: %w", path, err)
	}
	if len(p.Streams) == 0 {
		return VideoInfo{}, fmt.Errorf("input %s: no video stream", path)
	}
	s := p.Streams[0]
	if s.Width <= 0 || s.Height <= 0 || s.Width > 16384 || s.Height > 16384 {
		return VideoInfo{}, fmt.Errorf("input %s: unusable frame size %dx%d", path, s.Width, s.Height)
	}
	info := VideoInfo{Width: s.Width, Height: s.Height}
	for _, sd := range s.SideData {
		if sd.Rotation != nil && (*sd.Rotation%180+180)%180 == 90 {
			info.Width, info.Height = s.Height, s.Width // decoded upright: a quarter turn swaps the sides
		}
	}
	for _, r := range []string{s.RFrameRate, s.AvgFrameRate} {
		if fps, ok := parseRate(r); ok {
			info.FrameRate, info.FPS = r, fps
			break
		}
	}
	if info.FrameRate == "" {
		return VideoInfo{}, fmt.Errorf("input %s: unknown frame rate", path)
	}
	info.Frames, _ = strconv.Atoi(s.NbFrames)
	return info, nil
}

func parseRate(r string) (float64, bool) {
	num, den, ok := strings.Cut(r, "/")
	if !ok {
		den = "1"
	}
	n, err1 := strconv.ParseFloat(num, 64)
	d, err2 := strconv.ParseFloat(den, 64)
	if err1 != nil || err2 != nil || d <= 0 || n <= 0 || n/d > 1000 {
		return 0, false
	}
	return n / d, true
}

// File replays a video file as a source: it decodes every frame in order,
// with an ffmpeg child process that writes raw BGR24 to a pipe, so no
// decoded picture ever touches the disk.
type File struct {
	cfg  FileConfig
	deps FileDeps

	info    VideoInfo
	decoded atomic.Int64
}

// FileConfig is what a file source plays, and how.
type FileConfig struct {
	// Path is the file to read.
	Path string
	// Camera labels the frames.
	Camera string
	// Realtime paces frames at the file's frame rate, as a camera would
	// deliver them; otherwise frames come as fast as they decode.
	Realtime bool
	// Loop replays the file from the start at its end, forever, as one
	// continuous source.
	Loop bool
	// MaxPixels refuses a video of larger pictures; 0 is
	// decode.DefaultMaxPixels (4096x2160).
	MaxPixels int
}

// FileDeps are a file source's collaborators.
type FileDeps struct {
	// Metrics, if set, count decoded frames and mark the camera up while
	// the file plays, as for live cameras.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Decoded is the number of frames decoded so far.
func (f *File) Decoded() int64 { return f.decoded.Load() }

// NewFile probes cfg.Path and returns a source for it.
func NewFile(ctx context.Context, cfg FileConfig, deps FileDeps) (*File, error) {
	if KindOf(cfg.Path) != KindVideo {
		return nil, fmt.Errorf("input %s: unsupported file type (want .mp4, .avi, .mkv, .mov, .m4v or .webm)", cfg.Path)
	}
	info, err := Probe(ctx, cfg.Path)
	if err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &File{cfg: cfg, deps: deps, info: info}, nil
}

// Info is what the probe found.
func (f *File) Info() VideoInfo { return f.info }

// Run decodes the file into out, then closes out. It returns nil at the end
// of the file and an error naming the file if decoding failed.
func (f *File) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	defer out.Close()
	if limit := cmp.Or(f.cfg.MaxPixels, decode.DefaultMaxPixels); f.info.Width*f.info.Height > limit {
		return fmt.Errorf("input %s: %dx%d pictures are over the limit of %d pixels", f.cfg.Path, f.info.Width, f.info.Height, limit)
	}
	if f.deps.Metrics != nil {
		up := f.deps.Metrics.Up(f.cfg.Camera)
		up.Set(1)
		defer up.Set(0)
		// A file decodes in an ffmpeg process, not in veil's: its decode
		// time series exists (so that per-camera panels and the capacity
		// split cover it) and stays at zero.
		f.deps.Metrics.decodeTime.WithLabelValues(f.cfg.Camera)
	}
	start := time.Now()
	var seq uint64
	for {
		n, err := f.pass(ctx, out, &seq, start)
		if err != nil || !f.cfg.Loop {
			return err
		}
		if n == 0 {
			return fmt.Errorf("input %s: no frames decoded", f.cfg.Path)
		}
	}
}

// pass decodes the file once, numbering frames on from *seq, so that a
// looping file looks like one continuous camera (sequence numbers and
// timestamps keep growing).
func (f *File) pass(parent context.Context, out *queue.Queue[*frame.Raw], seq *uint64, start time.Time) (int, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// ffmpeg applies the stream's rotation (a phone's portrait video is
	// stored sideways), so faces reach the detector upright; the probe
	// swapped the size to match. -fps_mode passthrough keeps every decoded
	// frame, neither duplicating nor dropping any.
	cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-v", "error", "-threads", "1",
		"-i", f.cfg.Path, "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
		"-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("input %s: starting ffmpeg: %w", f.cfg.Path, err)
	}
	size := f.info.Width * f.info.Height * 3
	r := bufio.NewReaderSize(stdout, size)
	n := 0
	var readErr error
	for {
		// ReadFull fills every byte or the frame is not used, so a buffer
		// given back by a frame done with (frame.Reuse) will do.
		raw := frame.Reuse(frame.Meta{Camera: f.cfg.Camera, Seq: *seq}, f.info.Width, f.info.Height)
		if _, err := io.ReadFull(r, raw.Pix); err != nil {
			raw.Release()
			if !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("input %s: truncated frame %d: %w", f.cfg.Path, n, err)
			}
			break
		}
		raw.PTS = time.Duration(float64(*seq) / f.info.FPS * float64(time.Second))
		raw.Captured = time.Now()
		if f.cfg.Realtime {
			if d := time.Until(start.Add(raw.PTS)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		if err := out.Push(ctx, raw); err != nil {
			readErr = err
			break
		}
		*seq++
		n++
		f.decoded.Add(1)
		if f.deps.Metrics != nil {
			f.deps.Metrics.Decoded(f.cfg.Camera).Inc()
		}
	}
	if readErr != nil {
		cancel() // stopped early: ffmpeg would block on a full pipe
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if err := parent.Err(); err != nil {
		return n, err
	}
	if readErr != nil {
		return n, readErr
	}
	if waitErr != nil {
		return n, fmt.Errorf("input %s: decoding failed after %d frames: %s", f.cfg.Path, n, firstLine(stderr.String(), waitErr))
	}
	if n == 0 {
		return 0, fmt.Errorf("input %s: no frames decoded", f.cfg.Path)
	}
	return n, nil
}

// MaxImagePixels is the largest still picture decoded (8192x8192, 64 MP:
// every phone camera's photos fit); a header that declares more is refused
// before anything is allocated for it.
const MaxImagePixels = 8192 * 8192

// Image is a still picture (JPEG or PNG) as a source of one frame.
type Image struct {
	Path   string
	Camera string
}

// Run decodes the picture into out, then closes out.
func (im *Image) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	defer out.Close()
	raw, err := DecodeImage(im.Path, im.Camera)
	if err != nil {
		return err
	}
	return out.Push(ctx, raw)
}

// DecodeImage reads a JPEG or PNG into a raw frame.
func DecodeImage(path, camera string) (*frame.Raw, error) {
	if KindOf(path) != KindImage {
		return nil, fmt.Errorf("input %s: unsupported file type (want .jpg, .jpeg or .png)", path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	defer fh.Close()
	// The header says the size: refuse a picture over the limit before
	// decoding allocates it.
	cfg, _, err := image.DecodeConfig(bufio.NewReader(fh))
	if err != nil {
		return nil, fmt.Errorf("input %s: not a readable image: %w", path, err)
	}
	if cfg.Width*cfg.Height > MaxImagePixels {
		return nil, fmt.Errorf("input %s: a %dx%d picture is over the limit of %d pixels", path, cfg.Width, cfg.Height, MaxImagePixels)
	}
	// EXIF (in a JPEG's first segments) says which way up the picture is.
	head := make([]byte, 256<<10)
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	n, _ := io.ReadFull(fh, head)
	orientation := exifOrientation(head[:n])
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	img, _, err := image.Decode(bufio.NewReader(fh))
	if err != nil {
		return nil, fmt.Errorf("input %s: not a readable image: %w", path, err)
	}
	b := img.Bounds()
	raw := frame.NewRaw(frame.Meta{Camera: camera, Captured: time.Now()}, b.Dx(), b.Dy())
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			raw.Pix[i], raw.Pix[i+1], raw.Pix[i+2] = byte(bl>>8), byte(g>>8), byte(r>>8)
			i += 3
		}
	}
	// Upright before detection: the detector finds faces the right way up.
	return orient(raw, orientation), nil
}

func firstLine(s string, err error) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
