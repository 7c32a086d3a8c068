package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/veilproject/veil/blur"
)

// Progress is an output that shows how far a file job is: frames done,
// speed and time left.
type Progress struct {
	p    *progress
	done int
}

// NewProgress reports to w a job of total frames (0 if unknown).
func NewProgress(w io.Writer, total int) *Progress { return &Progress{p: newProgress(w, total)} }

// Name labels the output in metrics.
func (p *Progress) Name() string { return "progress" }

// Write counts a frame.
func (p *Progress) Write(*blur.Frame) error {
	p.done++
	p.p.update(p.done)
	return nil
}

// Close ends the bar's line on a terminal.
func (p *Progress) Close(context.Context) error {
	p.p.finish(p.done)
	return nil
}

// progress reports frames done, speed and time left: a bar redrawn in place
// on a terminal, a plain line every few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	total    int
	start    time.Time
	last     time.Time
	interval time.Duration
}

func newProgress(w io.Writer, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	iv := 5 * time.Second
	if tty {
		iv = 200 * time.Millisecond
	}
	now := time.Now()
	return &progress{w: w, tty: tty, total: total, start: now, last: now, interval: iv}
}

func (p *progress) update(done int) {
	now := time.Now()
	if now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	p.print(done, now)
}

func (p *progress) print(done int, now time.Time) {
	el := now.Sub(p.start).Seconds()
	fps := 0.0
	if el > 0 {
		fps = float64(done) / el
	}
	eta := "?"
	if p.total > 0 && fps > 0 {
		eta = fmtDuration(time.Duration(float64(p.total-done) / fps * float64(time.Second)))
	}
	if !p.tty {
		if p.total > 0 {
			fmt.Fprintf(p.w, "progress: %d/%d frames (%.0f%%), %.1f fps, ETA %s\n", done, p.total, 100*float64(done)/float64(p.total), fps, eta)
		} else {
			fmt.Fprintf(p.w, "progress: %d frames, %.1f fps\n", done, fps)
		}
		return
	}
	const width = 30
	if p.total > 0 {
		n := min(width, done*width/p.total)
		bar := strings.Repeat("#", n) + strings.Repeat("-", width-n)
		fmt.Fprintf(p.w, "\r[%s] %d/%d frames  %.1f fps  ETA %s ", bar, done, p.total, fps, eta)
	} else {
		fmt.Fprintf(p.w, "\r%d frames  %.1f fps ", done, fps)
	}
}

// finish draws the final state: the bar's last frame and a line break on
// a terminal, a last plain line otherwise.
func (p *progress) finish(done int) {
	p.print(done, time.Now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
