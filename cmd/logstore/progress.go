package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a bar on stderr, drawn only when stderr is a terminal (a nil
// *progress draws nothing), shared by ingest and export.
type progress struct {
	bar   *progressbar.ProgressBar
	name  string
	start time.Time
}

// newProgress returns a bar for total units (-1: unknown), of bytes when
// bytes is set, described by name; nil when stderr is not a terminal.
func (a *app) newProgress(name string, total int64, bytes bool) *progress {
	if !a.stderrIsTerminal() {
		return nil
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionShowBytes(bytes),
		progressbar.OptionSetDescription(name), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
	return &progress{bar: bar, name: name, start: time.Now()}
}

// set moves the bar to done units, records records so far.
func (p *progress) set(done int64, records int) {
	if p == nil {
		return
	}
	_ = p.bar.Set64(done)
	p.bar.Describe(fmt.Sprintf("%s: %d records, %.0f/s", p.name, records, float64(records)/time.Since(p.start).Seconds()))
}

func (p *progress) finish() {
	if p != nil {
		_ = p.bar.Finish()
	}
}

func (a *app) stderrIsTerminal() bool {
	fd, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(fd.Fd()))
}
