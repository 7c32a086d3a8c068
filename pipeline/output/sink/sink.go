// Package sink writes obscured frames out: video files and images. Every
// writer here takes *blur.Frame, the type only the blur stage can make, so
// an un-obscured picture cannot be handed to it.
package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/veilproject/veil/blur"
)

// ErrAborted is what Close returns after Abort.
var ErrAborted = errors.New("sink: aborted")

// ErrNotObscured is returned for a frame that blur did not make (a zero
// value).
var ErrNotObscured = errors.New("sink: frame was not made by blur; refusing to write it")

// containers maps output extensions to ffmpeg muxers.
var containers = map[string]string{
	".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm",
}

// VideoOptions tune the encoder.
type VideoOptions struct {
	// Width, Height and FrameRate ("25/1") describe the frames to come.
	Width, Height int
	FrameRate     string
	// Preset is the libx264 preset. It defaults to veryfast.
	Preset string
	// CRF is libx264's quality (lower is better). It defaults to 20.
	CRF int
}

// Video encodes obscured frames to a file with an ffmpeg child process fed
// through a pipe. The file appears under its final name only when Close
// succeeds; until then it is a hidden partial file beside it, removed on
// failure. Both only ever hold obscured pixels.
type Video struct {
	path, tmp string
	opts      VideoOptions
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	w         *bufio.Writer
	stderr    bytes.Buffer
	frames    int
	closeOnce sync.Once
	closeErr  error
}

// NewVideo starts the encoder for path; the container follows the extension.
func NewVideo(ctx context.Context, path string, opts VideoOptions) (*Video, error) {
	ext := strings.ToLower(filepath.Ext(path))
	muxer, ok := containers[ext]
	if !ok {
		return nil, fmt.Errorf("output %s: unsupported video type %q (want .mp4, .mov, .mkv, .avi, .m4v or .webm)", path, ext)
	}
	if opts.Width <= 0 || opts.Height <= 0 || opts.FrameRate == "" {
		return nil, fmt.Errorf("output %s: missing frame size or rate", path)
	}
	if opts.Preset == "" {
		opts.Preset = "veryfast"
	}
	if opts.CRF == 0 {
		opts.CRF = 20
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial")
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output %s: cannot write: %w", path, unwrapPath(err))
	}
	fh.Close()
	codec := []string{"-c:v", "libx264", "-preset", opts.Preset, "-crf", fmt.Sprint(opts.CRF)}
	pixFmt := "yuv420p"
	if opts.Width%2 == 1 || opts.Height%2 == 1 {
		pixFmt = "yuv444p" // 4:2:0 needs even sides; keep the size rather than pad
	}
	if muxer == "webm" {
		codec = []string{"-c:v", "libvpx", "-b:v", "0", "-crf", "10", "-deadline", "realtime", "-cpu-used", "8"}
		pixFmt = "yuv420p"
	}
	args := []string{"-nostdin", "-v", "error", "-y",
		"-f", "rawvideo", "-pix_fmt", "bgr24", "-s", fmt.Sprintf("%dx%d", opts.Width, opts.Height),
		"-framerate", opts.FrameRate, "-i", "pipe:0", "-an", "-fps_mode", "passthrough", "-threads", "1"}
	args = append(args, codec...)
	args = append(args, "-pix_fmt", pixFmt, "-f", muxer, tmp)
	v := &Video{path: path, tmp: tmp, opts: opts}
	v.cmd = exec.CommandContext(ctx, "ffmpeg", args...)
	v.cmd.Stderr = &v.stderr
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := v.cmd.Start(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("output %s: starting ffmpeg: %w", path, err)
	}
	v.w = bufio.NewWriterSize(v.stdin, opts.Width*opts.Height*3)
	return v, nil
}

// Write appends one frame.
func (v *Video) Write(f *blur.Frame) error {
	if !f.Valid() {
		return ErrNotObscured
	}
	if f.Width() != v.opts.Width || f.Height() != v.opts.Height {
		return fmt.Errorf("output %s: frame %dx%d in a %dx%d video", v.path, f.Width(), f.Height(), v.opts.Width, v.opts.Height)
	}
	if _, err := v.w.Write(f.Pix()); err != nil {
		return fmt.Errorf("output %s: encoder stopped: %s", v.path, v.reason(err))
	}
	v.frames++
	return nil
}

// Frames is the number of frames written.
func (v *Video) Frames() int { return v.frames }

// Name labels the output in metrics.
func (v *Video) Name() string { return "file" }

// Close finishes the file and moves it to its final name. If ctx ends
// first the encoder is killed and the partial file removed. Safe to call
// twice.
func (v *Video) Close(ctx context.Context) error {
	if ctx.Err() != nil {
		v.Abort()
		return v.closeErr
	}
	done := make(chan struct{})
	go func() { v.finish(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if v.cmd.Process != nil {
			v.cmd.Process.Kill()
		}
		<-done
	}
	return v.closeErr
}

func (v *Video) finish() {
	v.closeOnce.Do(func() {
		err := v.w.Flush()
		if cerr := v.stdin.Close(); err == nil {
			err = cerr
		}
		if werr := v.cmd.Wait(); werr != nil || err != nil {
			v.closeErr = fmt.Errorf("output %s: encoding failed: %s", v.path, v.reason(errors.Join(err, werr)))
			os.Remove(v.tmp)
			return
		}
		if err := os.Rename(v.tmp, v.path); err != nil {
			os.Remove(v.tmp)
			v.closeErr = fmt.Errorf("output %s: %w", v.path, err)
		}
	})
}

// Abort stops the encoder and removes the partial file.
func (v *Video) Abort() {
	v.closeOnce.Do(func() {
		v.stdin.Close()
		if v.cmd.Process != nil {
			v.cmd.Process.Kill()
		}
		v.cmd.Wait()
		os.Remove(v.tmp)
		v.closeErr = ErrAborted
	})
}

func (v *Video) reason(err error) string {
	if s := strings.TrimSpace(v.stderr.String()); s != "" {
		line, _, _ := strings.Cut(s, "\n")
		return line
	}
	return err.Error()
}

// Image writes the one frame of a still picture to Path (JPEG or PNG by
// its extension).
type Image struct {
	Path    string
	written bool
}

// Name labels the output in metrics.
func (im *Image) Name() string { return "file" }

// Write encodes f to Path; a second frame is an error.
func (im *Image) Write(f *blur.Frame) error {
	if im.written {
		return fmt.Errorf("output %s: an image holds one frame", im.Path)
	}
	im.written = true
	return WriteImage(im.Path, f)
}

// Close reports a picture that was never written.
func (im *Image) Close(context.Context) error {
	if !im.written {
		return fmt.Errorf("output %s: no frame to write", im.Path)
	}
	return nil
}

// WriteImage encodes f as JPEG or PNG by path's extension, through a
// partial file renamed into place.
func WriteImage(path string, f *blur.Frame) error {
	if !f.Valid() {
		return ErrNotObscured
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".jpg" && ext != ".jpeg" && ext != ".png" {
		return fmt.Errorf("output %s: unsupported image type %q (want .jpg, .jpeg or .png)", path, ext)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial")
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("output %s: cannot write: %w", path, unwrapPath(err))
	}
	bw := bufio.NewWriter(fh)
	img := f.Image()
	if ext == ".png" {
		err = png.Encode(bw, img)
	} else {
		err = jpeg.Encode(bw, img, &jpeg.Options{Quality: 92})
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("output %s: %w", path, unwrapPath(err))
	}
	return nil
}

// unwrapPath drops the *PathError wrapper (whose path is the partial
// file) so the message names the output the user asked for.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
