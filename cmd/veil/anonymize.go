package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/config"
)

const anonymizeUsage = `usage: veil anonymize [flags] IN OUT

Obscures every face in IN and writes OUT. IN and OUT are both images (.jpg,
.jpeg, .png) or both videos (.mp4, .avi, .mkv, .mov, .m4v, .webm). A video
keeps its size, frame rate and frame count; audio is dropped. OUT appears
only once it is complete.

flags:
`

func cmdAnonymize(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	cfg := jobDefaults()
	fs := newFlagSet("anonymize", stderr, anonymizeUsage)
	var of obscureFlags
	// A batch job has no frame budget: wait long for the detector rather
	// than obscuring whole frames that merely took a while.
	of.register(fs, &cfg, 30*time.Second)
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageError{errors.New("want IN and OUT")}
	}
	if err := of.validate(); err != nil {
		return err
	}
	in, out := fs.Arg(0), fs.Arg(1)
	inKind, outKind := ingest.KindOf(in), ingest.KindOf(out)
	if inKind == ingest.KindUnsupported {
		return fmt.Errorf("input %s: unsupported file type (want .jpg, .jpeg, .png, .mp4, .avi, .mkv, .mov, .m4v or .webm)", in)
	}
	if _, err := os.Stat(in); err != nil {
		return fmt.Errorf("input %s: %w", in, config.UnwrapPathErr(err))
	}
	if outKind != inKind {
		return fmt.Errorf("output %s: input is %s, so output must be too", out, kindName(inKind))
	}
	if abs(in) == abs(out) {
		return fmt.Errorf("output %s: same file as the input", out)
	}
	start := time.Now()
	job := pipeline.FileJob{In: in, Out: out, Progress: stderr}
	if *quiet {
		job.Progress = nil
	}
	sum, err := job.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s -> %s: %s\n", in, out, sum.Line(time.Since(start)))
	return nil
}

func kindName(k ingest.Kind) string {
	if k == ingest.KindImage {
		return "an image"
	}
	return "a video"
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
