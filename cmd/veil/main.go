// Command veil anonymizes camera video before anything is stored: every
// frame passes face detection and irreversible obscuring first.
//
//	veil anonymize IN OUT   obscure faces in an image or video file
//	veil count VIDEO        count people crossing lines, on obscured frames
//	veil demo               the whole pipeline on a built-in sample
//	veil exporter           count events from Kafka into Prometheus metrics
//	veil run                the service, configured by veil.yaml
//	veil passwd             hash a console password
//	veil version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/veilproject/veil/pipeline/console"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `veil anonymizes camera video before anything is stored.

usage:
  veil anonymize [flags] IN OUT   obscure every face in an image (jpg, png) or video (mp4, avi, mkv, mov)
  veil count -config LINES.yaml VIDEO
                                  count people crossing lines and in zones (on obscured frames)
  veil demo [flags]               run the pipeline on the built-in sample camera and serve /metrics
  veil exporter -brokers LIST     turn count events from Kafka into Prometheus metrics
  veil run -config veil.yaml      the service: cameras (RTSP, files), obscure, count, record, publish
  veil passwd < PASSWORD          print a console user's password_hash
  veil version

Run 'veil COMMAND -h' for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err := errors.Join(noCoreDumps(), tuneMemory(os.Getenv)); err != nil {
		fmt.Fprintf(stderr, "veil: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var err error
	switch args[0] {
	case "anonymize":
		err = cmdAnonymize(ctx, args[1:], stdout, stderr, log)
	case "count":
		err = cmdCount(ctx, args[1:], stdout, stderr, log)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr, log)
	case "exporter":
		err = cmdExporter(ctx, args[1:], stdout, stderr, log)
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr, log)
	case "passwd":
		err = console.Passwd(os.Stdin, stdout)
	case "version":
		fmt.Fprintln(stdout, "veil", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "veil: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "veil %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "veil: interrupted")
		return 130
	default:
		fmt.Fprintf(stderr, "veil: %v\n", err)
		return 1
	}
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }
