package engine

import (
	"errors"
	"fmt"
	"log"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"
)

// indexHealth is what the engine knows about the index's ability to write.
type indexHealth struct {
	dir  string
	fs   pvfs.FS // the unwrapped file system, for the free-space probe
	osFS bool    // files are real: force their modes

	mu        sync.Mutex    // guards every field below; Pebble's goroutines report here
	noSpace   error         // ErrDiskFull while writes fail for lack of space
	writeErr  error         // another error failing flushes (e.g. EIO), until one succeeds
	failed    error         // sticky: corruption or a fatal Pebble error
	readOnly  bool          // opened read-only because the disk was full
	backoff   time.Duration // pause's current wait
	probed    time.Time     // last free-space probe while out of space
	wake      chan struct{} // closed and replaced when the state clears
	closing   chan struct{} // closed when Close begins: no wait outlives it
	closed    bool
	lastLog   time.Time
	muted     int  // log lines suppressed since lastLog
	stalls    int  // write stalls in progress
	abandoned bool // Open was given up on: a later Fatalf stops its goroutine
}

func newIndexHealth(dir string, fs pvfs.FS, osFS bool) *indexHealth {
	return &indexHealth{dir: dir, fs: fs, osFS: osFS, wake: make(chan struct{}), closing: make(chan struct{})}
}

func (h *indexHealth) readOnlyMode() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readOnly
}

// setReadOnly records that the index was opened read-only, and why: it
// takes no writes until reopened.
func (h *indexHealth) setReadOnly(why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.readOnly = true
	h.failed = why
}

// transientNoSpace reports whether the index is out of space and may come
// back by itself (not failed, not opened read-only).
func (h *indexHealth) transientNoSpace() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.noSpace != nil && h.failed == nil && !h.readOnly
}

// writable is nil when the index may take writes.
func (h *indexHealth) writable() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed != nil {
		return h.failed
	}
	if h.noSpace != nil && !h.readOnly && h.fs != nil && time.Since(h.probed) >= time.Second {
		h.probed = time.Now()
		if u, err := h.fs.GetDiskUsage(h.dir); err == nil && u.AvailBytes >= indexProbeFree {
			h.logf("index: %d MiB free again; accepting writes", u.AvailBytes>>20)
			h.clearLocked()
		}
	}
	if h.noSpace != nil {
		return h.noSpace
	}
	return h.writeErr
}

func (h *indexHealth) clearLocked() {
	if h.noSpace == nil && h.writeErr == nil {
		return
	}
	h.noSpace, h.writeErr, h.backoff = nil, nil, 0
	close(h.wake)
	h.wake = make(chan struct{})
}

// logf logs at most one line every 10 s unless the state changes (force).
func (h *indexHealth) logf(format string, args ...any) { h.logAt(true, format, args...) }

func (h *indexHealth) logAt(force bool, format string, args ...any) {
	if !force && time.Since(h.lastLog) < 10*time.Second {
		h.muted++
		return
	}
	if h.muted > 0 {
		format += fmt.Sprintf(" [%d earlier index message(s) suppressed]", h.muted)
	}
	h.lastLog, h.muted = time.Now(), 0
	log.Printf("logstore/engine: "+format, args...)
}

func isNoSpace(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "no space left on device") || strings.Contains(err.Error(), "disk quota exceeded"))
}

func isCorruption(err error) bool {
	return err != nil && (errors.Is(err, pebble.ErrCorruption) || pebble.IsCorruptionError(err))
}

// typed maps a Pebble error to the engine's sentinels.
func (h *indexHealth) typed(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrDiskFull) || errors.Is(err, ErrIndexCorrupt) || errors.Is(err, ErrIndexFailed) ||
		errors.Is(err, pebble.ErrNotFound):
		return err
	case isNoSpace(err):
		return &indexError{ErrDiskFull, "index " + h.dirName() + ": " + pebbleMsg(err), err}
	case isCorruption(err):
		h.markCorrupt(pebbleMsg(err))
		return &indexError{ErrIndexCorrupt, pebbleMsg(err), err}
	case errors.Is(err, pebble.ErrReadOnly):
		if ferr := h.writable(); ferr != nil {
			return fmt.Errorf("%w (%v)", ferr, err)
		}
	}
	return err
}

// indexError is a sentinel with a Pebble error's message (without the
// detail Pebble joins to it) that unwraps to both.
type indexError struct {
	sentinel error
	msg      string
	cause    error
}

func (e *indexError) Error() string   { return e.sentinel.Error() + ": " + e.msg }
func (e *indexError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// pebbleMsg is the first line of a Pebble error: a corruption error is
// joined with a "<corruption detail carrier>".
func pebbleMsg(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

func (h *indexHealth) dirName() string {
	if h == nil {
		return ""
	}
	return h.dir
}

func (h *indexHealth) noteNoSpace(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probed = time.Now()
	if h.noSpace == nil {
		h.noSpace = fmt.Errorf("%w: index %s: %w; appends are refused until space is freed (acknowledged records are safe)", ErrDiskFull, h.dir, err)
		h.logf("index: out of space (%v); appends fail with ErrDiskFull until space is freed", err)
		return
	}
	h.logAt(false, "index: still out of space: %v", err)
}

func (h *indexHealth) noteWriteErr(err error) {
	if isNoSpace(err) {
		h.noteNoSpace(err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writeErr == nil {
		h.writeErr = fmt.Errorf("logstore/engine: index %s cannot write: %w", h.dir, err)
		h.logf("index: write failed (%v); appends fail until a flush succeeds", err)
		return
	}
	h.logAt(false, "index: write failed again: %v", err)
}

func (h *indexHealth) noteWriteOK() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noSpace != nil || h.writeErr != nil {
		h.logf("index: writing again")
		h.clearLocked()
	}
}

func (h *indexHealth) markCorrupt(detail any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed == nil {
		h.failed = fmt.Errorf("%w: %v", ErrIndexCorrupt, detail)
		h.logf("index: %v", h.failed)
	}
}

// markFatal records a Pebble fatal error and returns the error to report.
func (h *indexHealth) markFatal(msg string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	switch {
	case isNoSpace(errors.New(msg)):
		err = fmt.Errorf("%w: index %s: %s (the index must be reopened once space is freed; acknowledged records are safe)", ErrDiskFull, h.dir, msg)
	case strings.Contains(msg, "corrupt"):
		err = fmt.Errorf("%w: %s", ErrIndexCorrupt, msg)
	default:
		err = fmt.Errorf("%w: %s", ErrIndexFailed, msg)
	}
	if h.failed == nil {
		h.failed = err
	}
	return err
}

// pause makes a new sstable wait while the index is failing to write, so
// Pebble's immediate retries of a failed flush or compaction do not spin.
func (h *indexHealth) pause() {
	h.mu.Lock()
	if h.closed || (h.noSpace == nil && h.writeErr == nil && h.failed == nil) {
		h.mu.Unlock()
		return
	}
	if h.backoff == 0 {
		h.backoff = 100 * time.Millisecond
	} else if h.backoff = 2 * h.backoff; h.backoff > indexBackoffMax {
		h.backoff = indexBackoffMax
	}
	d, wake, closing := h.backoff, h.wake, h.closing
	h.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-closing:
	}
}

func (h *indexHealth) beginClose() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.closing)
	}
}

// indexLogger drops Pebble's informational messages, keeps errors, and
// never exits the process (see the file comment).
type indexLogger struct{ h *indexHealth }

func (indexLogger) Infof(string, ...any) {}
func (l indexLogger) Errorf(format string, args ...any) {
	l.h.mu.Lock()
	l.h.logAt(false, "index: "+format, args...)
	l.h.mu.Unlock()
}
func (l indexLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.h.mu.Lock()
	l.h.logAt(l.h.failed == nil, "index fatal: %s", msg)
	abandoned := l.h.abandoned
	l.h.mu.Unlock()
	err := l.h.markFatal(msg)
	if inGuard() {
		panic(indexPanic{err})
	}
	if strings.HasPrefix(msg, "MANIFEST ") && strings.Contains(msg, " failed") && !abandoned {
		// A failed MANIFEST write (version_set.go: create and
		// UpdateVersionLocked): every caller returns the error after
		// Fatalf, the new version is not installed, the MANIFEST writer's
		// error is sticky and a torn last record is ignored when the
		// MANIFEST is next read. Pebble's comment asks for the standard
		// recovery on the next Open; until then the index is marked failed
		// and takes no writes. The flush or compaction that failed is
		// retried by Pebble at once, so it is slowed down here.
		l.h.pause()
		return
	}
	log.Printf("logstore/engine: index: stopping the Pebble goroutine that failed; the index is unusable until reopened")
	runtime.Goexit()
}

// quietLogger is a Pebble logger for code that opens an index directly
// (tests, tools): it drops informational messages, keeps errors, and panics
// on Fatalf instead of exiting.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	log.Printf("logstore/engine: index: "+format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("logstore/engine: index fatal: "+format, args...))
}

// indexPanic carries a Fatalf through a guarded call.
type indexPanic struct{ err error }

// guardIndex runs f, turning a Pebble Fatalf inside it into an error.
//
//go:noinline
func guardIndex(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p, ok := r.(indexPanic)
			if !ok {
				panic(r)
			}
			err = p.err
		}
	}()
	return f()
}

var guardName = runtime.FuncForPC(reflect.ValueOf(guardIndex).Pointer()).Name()

// inGuard reports whether guardIndex is on the calling goroutine's stack.
func inGuard() bool {
	pcs := make([]uintptr, 1024)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == guardName {
			return true
		}
		if !more {
			return false
		}
	}
}

func (h *indexHealth) listener() *pebble.EventListener {
	ok := func(err error) bool { return err == nil || strings.Contains(err.Error(), "empty table") }
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			switch {
			case isNoSpace(err):
				h.noteNoSpace(err)
			case isCorruption(err):
				h.markCorrupt(pebbleMsg(err))
			default:
				h.mu.Lock()
				h.logAt(false, "index: background error: %s", pebbleMsg(err))
				h.mu.Unlock()
			}
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) { h.markCorrupt(info.Path + ": " + info.Details.Error()) },
		FlushEnd: func(info pebble.FlushInfo) {
			if ok(info.Err) {
				h.noteWriteOK()
			} else {
				h.noteWriteErr(info.Err)
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			switch {
			case info.Err == nil:
				h.noteWriteOK()
			case isNoSpace(info.Err):
				h.noteNoSpace(info.Err)
			}
		},
		WriteStallBegin: func(pebble.WriteStallBeginInfo) { h.mu.Lock(); h.stalls++; h.mu.Unlock() },
		WriteStallEnd:   func() { h.mu.Lock(); h.stalls--; h.mu.Unlock() },
	}
}
