package engine

// The Pebble index: its options, file system wrapper, logger, event listener
// and health. The index is derived from the segments (Pebble's WAL is off;
// recovery replays blocks the index has not seen), so the engine may always
// drop what Pebble holds in memory: that costs a replay on the next Open,
// never data. What it must never do is hang, spin, or exit the process.
//
// What Pebble v2.1.7 does on its own (file:line in its module), and the
// answer here:
//
//   - A failed flush is retried at once, for ever, with no backoff
//     (compaction.go:1483 "TODO(peter): count consecutive flush errors and
//     backoff"; failed compactions likewise, compaction.go:2623). On a full
//     disk that is a tight create/write/ENOSPC/unlink loop at 100% CPU.
//     indexFS notices ENOSPC on any index write and makes each new sstable
//     wait (100 ms doubling to 2 s) while the index is failing to write:
//     the wait holds no Pebble lock (runCompaction drops DB.mu around its
//     I/O) and ends at once when Close begins.
//   - DB.Flush waits for a flush that never succeeds (db.go:2039), and a
//     commit that finds MemTableStopWritesThreshold memtables queued waits
//     for one (maybeInduceWriteStall, db.go:2644) holding the commit
//     pipeline's mutex, which DB.Close takes first (db.go:1689) before it
//     waits for the running flush (db.go:1713). So the engine waits on a
//     flush only while watching the health (flushIndex), refuses appends as
//     soon as the index reports ENOSPC (ErrDiskFull, before any segment
//     write), commits a batch already in its segments only while the
//     memtables have room (indexRoom), skips Close's flush on a failing
//     index, and bounds Close by indexCloseTimeout (ErrIndexUnclosed).
//   - Open writes an OPTIONS file (open.go:580), a new MANIFEST, and
//     flushes the memtable it replays, waiting for that flush
//     (open.go:535), which is retried for ever on a full disk. On a nearly
//     full disk the index is opened read-only instead (queries work,
//     appends fail with ErrDiskFull); an Open that still stalls after a
//     write failure is given up after indexOpenGrace.
//   - Logger.Fatalf, which Pebble expects not to return, is called by the
//     default EventListener.DataCorruption on any checksum failure
//     (event.go:985), on a failed MANIFEST write such as ENOSPC
//     (version_set.go:191-202, :671) and on invariant violations; the
//     engine's logger used to os.Exit(2). Now corruption goes to our
//     DataCorruption handler, which marks the index corrupt, and the read
//     gets Pebble's corruption error back (event.go:1374). indexLogger.Fatalf
//     marks the index failed and then: inside guardIndex it panics and the
//     guard returns the error (pebble.Open releases its lock and memory on a
//     panic, open.go:237); for a failed MANIFEST write it returns, as every
//     such call site returns the error right after Fatalf, the new version
//     is not installed, the MANIFEST writer's error is sticky and a torn
//     last record is ignored on the next Open (version_set.go:247); any
//     other Fatalf (a Pebble invariant) ends only its goroutine
//     (runtime.Goexit runs its deferred unlocks).
//   - A bit flipped in the last MANIFEST record is taken for a torn write
//     and ignored (version_set.go:247): tables named by earlier records may
//     then hold sequence numbers above the reloaded one, new writes reuse
//     them, and the next compaction over both panics on a background
//     goroutine (internal/compact/iterator.go:786), killing the process.
//     checkSeqNums refuses such an index on Open (ErrIndexCorrupt).
//   - Block checksums are always verified when a block is read
//     (sstable/block/block.go:596); there is no option to turn on.
//   - vfs.Default creates files 0666 minus the umask (vfs/vfs.go:250) and
//     Pebble its directory 0755 (checkpoint.go:110); indexFS makes them
//     0600 and 0700, and Open tightens an index left by older versions.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logstore/logstore/vfs"
)

const (
	indexMemTableSize = 4 << 20
	// indexStopWritesMemtables is MemTableStopWritesThreshold: room for a
	// few memtables queued behind a failing flush before Pebble stalls a
	// commit; the engine stops committing long before that.
	indexStopWritesMemtables = 4
	// manifestReserve is how much of the MANIFEST is preallocated ahead of
	// its end, so the version edit that completes a flush does not meet
	// ENOSPC (which Pebble treats as fatal).
	manifestReserve = 256 << 10
)

// Tunables (variables for tests).
var (
	// indexCloseTimeout bounds the final flush and Pebble's Close.
	indexCloseTimeout = 30 * time.Second
	// indexBackoffMax is the longest a new sstable waits while the index
	// fails to write.
	indexBackoffMax = 2 * time.Second
	// indexProbeFree is the free space at which an index that ran out of
	// space accepts writes again without waiting for a flush to succeed.
	indexProbeFree uint64 = 3 * indexMemTableSize
	// indexOpenMinFree is the free space below which the index is opened
	// read-only.
	indexOpenMinFree uint64 = 128 << 10
	// indexOpenGrace is how long Open may go on after Pebble reported a
	// write failure before it is given up on.
	indexOpenGrace = 5 * time.Second
)

// IndexHealth reports whether the index can take writes: nil, or an error
// matching ErrDiskFull (retry when space has been freed), ErrIndexCorrupt
// (rebuild it: `logstore segments reindex`, Options.RebuildIndex) or
// ErrIndexFailed. Reads of undamaged parts of the index keep working in
// every case.
func (db *DB) IndexHealth() error { return db.ih.writable() }

// indexWritable is checked before anything is committed to the index.
func (db *DB) indexWritable() error { return db.ih.writable() }

// indexRoom reports whether a batch of n bytes can be committed without
// Pebble stalling the commit behind a flush (maybeInduceWriteStall: the
// memtables queued reach MemTableStopWritesThreshold memtables): while the
// index cannot flush, a commit that finds room is safe, one that does not
// would wait until space returns.
func (db *DB) indexRoom(n int) bool {
	h := db.ih
	h.mu.Lock()
	transient := h.noSpace != nil && h.failed == nil && !h.readOnly
	h.mu.Unlock()
	if !transient {
		return false // failed: a goroutine stopped by Fatalf may hold Pebble's mutex
	}
	m := db.idx.Metrics()
	return m.MemTable.Size+uint64(max(n, indexMemTableSize)) < indexStopWritesMemtables*indexMemTableSize
}

func (h *indexHealth) readOnlyMode() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readOnly
}

// flushIndex flushes the memtable and waits for it, unless the index cannot
// write (then it returns why at once, or as soon as it learns it).
func (db *DB) flushIndex() error { return flushIndex(db.idx, db.ih, 0) }

// indexErr types an error returned by a Pebble read or write: ENOSPC as
// ErrDiskFull, corruption as ErrIndexCorrupt.
func (db *DB) indexErr(err error) error { return db.ih.typed(err) }

// indexHealth is what the engine knows about the index's ability to write.
type indexHealth struct {
	dir  string
	fs   pvfs.FS // the unwrapped file system, for the free-space probe
	osFS bool    // files are real: force their modes

	mu        sync.Mutex
	noSpace   error // ErrDiskFull while writes fail for lack of space
	writeErr  error // another error failing flushes (e.g. EIO), until one succeeds
	failed    error // sticky: corruption or a fatal Pebble error
	readOnly  bool  // opened read-only because the disk was full
	backoff   time.Duration
	probed    time.Time
	wake      chan struct{} // closed and replaced when the state clears
	closing   chan struct{}
	closed    bool
	lastLog   time.Time
	muted     int  // log lines suppressed since lastLog
	stalls    int  // write stalls in progress
	abandoned bool // Open was given up on: a later Fatalf stops its goroutine
	rebuild   *IndexRebuild
}

func newIndexHealth(dir string, fs pvfs.FS, osFS bool) *indexHealth {
	return &indexHealth{dir: dir, fs: fs, osFS: osFS, wake: make(chan struct{}), closing: make(chan struct{})}
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

// indexFS wraps Pebble's file system: it forces private modes, notices
// write errors before Pebble reports them, reserves MANIFEST space and
// paces the creation of sstables while writes fail.
type indexFS struct {
	pvfs.FS
	h *indexHealth
}

func (fs indexFS) Unwrap() pvfs.FS { return fs.FS }

func (fs indexFS) note(err error) error {
	if err != nil && isNoSpace(err) {
		fs.h.noteNoSpace(err)
	}
	return err
}

func (fs indexFS) private(name string, dir bool) {
	if !fs.h.osFS {
		return
	}
	mode := os.FileMode(0o600)
	if dir {
		mode = 0o700
	}
	_ = os.Chmod(name, mode) // chmod ignores the umask
}

func (fs indexFS) Create(name string, cat pvfs.DiskWriteCategory) (pvfs.File, error) {
	base := filepath.Base(name)
	if strings.HasSuffix(base, ".sst") || strings.HasSuffix(base, ".blob") {
		fs.h.pause()
	}
	f, err := fs.FS.Create(name, cat)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(name, false)
	w := &indexFile{File: f, fs: fs}
	if strings.HasPrefix(base, "MANIFEST-") {
		w.manifest = true
		w.reserve()
	}
	return w, nil
}

func (fs indexFS) OpenReadWrite(name string, cat pvfs.DiskWriteCategory, opts ...pvfs.OpenOption) (pvfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(name, false)
	return &indexFile{File: f, fs: fs}, nil
}

func (fs indexFS) ReuseForWrite(oldname, newname string, cat pvfs.DiskWriteCategory) (pvfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(newname, false)
	return &indexFile{File: f, fs: fs}, nil
}

func (fs indexFS) MkdirAll(dir string, _ os.FileMode) error {
	if err := fs.FS.MkdirAll(dir, 0o700); err != nil {
		return fs.note(err)
	}
	fs.private(dir, true)
	return nil
}

func (fs indexFS) Lock(name string) (io.Closer, error) {
	c, err := fs.FS.Lock(name)
	if err == nil {
		fs.private(name, false)
	}
	return c, fs.note(err)
}

func (fs indexFS) Rename(oldname, newname string) error {
	return fs.note(fs.FS.Rename(oldname, newname))
}
func (fs indexFS) Link(oldname, newname string) error { return fs.note(fs.FS.Link(oldname, newname)) }

// indexFile reports write errors to the health; a MANIFEST keeps
// manifestReserve bytes preallocated past its end.
type indexFile struct {
	pvfs.File
	fs       indexFS
	manifest bool
	off      int64 // bytes written (MANIFEST only)
	reserved int64 // preallocated up to here (MANIFEST only)
}

func (f *indexFile) reserve() {
	if f.reserved-f.off >= manifestReserve/4 {
		return
	}
	if err := f.File.Preallocate(f.off, manifestReserve); err != nil {
		// Not fatal: the reserve left covers the next edits, and the index
		// stops taking writes now.
		f.fs.note(err)
		return
	}
	f.reserved = f.off + manifestReserve
}

func (f *indexFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.manifest {
		f.off += int64(n)
		if err == nil {
			f.reserve()
		}
	}
	return n, f.fs.note(err)
}

func (f *indexFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.fs.note(err)
}

func (f *indexFile) Preallocate(off, n int64) error { return f.fs.note(f.File.Preallocate(off, n)) }
func (f *indexFile) Sync() error                    { return f.fs.note(f.File.Sync()) }
func (f *indexFile) SyncData() error                { return f.fs.note(f.File.SyncData()) }
func (f *indexFile) SyncTo(n int64) (bool, error) {
	full, err := f.File.SyncTo(n)
	return full, f.fs.note(err)
}
func (f *indexFile) Close() error { return f.fs.note(f.File.Close()) }

// indexOptions are the Pebble options of the index.
//
// The segments are the index's write-ahead log: every batch the engine
// commits is derived from blocks already in a segment, and recovery replays
// blocks the index has not seen. So Pebble's own WAL is off, and the few
// changes that cannot be derived (tenant configuration) are flushed
// explicitly (durableIndex). Index entries arrive in time order per tenant
// but spread over many key prefixes; larger memtables and a lazier L0 cut
// compaction work, which otherwise takes most of the CPU of a sustained
// append.
func indexOptions(fs pvfs.FS, h *indexHealth) *pebble.Options {
	return &pebble.Options{
		FS: indexFS{FS: fs, h: h}, Logger: indexLogger{h}, EventListener: h.listener(),
		DisableWAL: true, MemTableSize: indexMemTableSize, MemTableStopWritesThreshold: indexStopWritesMemtables,
		L0CompactionThreshold: 8, L0StopWritesThreshold: 64, LBaseMaxBytes: 256 << 20,
	}
}

// openIndex opens (creating if needed) the index of the data directory dir.
// With Options.RebuildIndex it first replaces the index by an empty one,
// keeping what tenant configuration it can (rebuildIndex); Open's recovery
// then indexes every segment.
func openIndex(dir string, opts Options) (*pebble.DB, *indexHealth, error) {
	fs, osFS := pvfs.Default, true
	indexDir := opts.IndexDir
	if indexDir == "" {
		indexDir = filepath.Join(dir, "index")
	}
	if opts.IndexInMemory {
		fs, osFS = pvfs.NewMem(), false
	}
	h := newIndexHealth(indexDir, fs, osFS)
	if osFS {
		if err := privateTree(indexDir); err != nil {
			return nil, nil, fmt.Errorf("logstore/engine: index %s: %w", indexDir, err)
		}
	}
	var rebuild *IndexRebuild
	if opts.RebuildIndex && osFS {
		var err error
		if rebuild, err = clearIndex(indexDir, fs); err != nil {
			return nil, nil, err
		}
	}
	// A read-write Open writes: an OPTIONS file, a new MANIFEST, and the
	// flush of the (empty) memtable it replays from the WAL directory,
	// which Open waits for (open.go) and which Pebble retries for ever if
	// it fails. So on a nearly full disk the index is opened read-only:
	// queries work, writes fail with ErrDiskFull.
	readOnly := false
	if u, err := fs.GetDiskUsage(filepath.Dir(indexDir)); err == nil && u.AvailBytes < indexOpenMinFree && osFS && !opts.RebuildIndex {
		readOnly = true
	}
	idx, err := openPebble(indexDir, fs, h, readOnly)
	if err != nil && isNoSpace(err) && !readOnly && !opts.RebuildIndex {
		readOnly = true
		h = newIndexHealth(indexDir, fs, osFS)
		idx, err = openPebble(indexDir, fs, h, true)
	}
	if err == nil && readOnly {
		h.mu.Lock()
		h.readOnly = true
		h.failed = fmt.Errorf("%w: index %s opened read-only, the disk being full; reopen the store once space is freed", ErrDiskFull, indexDir)
		h.mu.Unlock()
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrDiskFull), errors.Is(err, ErrIndexCorrupt), errors.Is(err, ErrIndexFailed):
		case isNoSpace(err):
			err = fmt.Errorf("%w: open index %s: %w", ErrDiskFull, indexDir, err)
		case errors.Is(err, os.ErrPermission):
			err = fmt.Errorf("logstore/engine: open index: %w", err)
		default:
			// A MANIFEST that fails its checksum, a damaged OPTIONS file,
			// a missing sstable: the index is unreadable.
			err = &indexError{ErrIndexCorrupt, "open index " + indexDir + ": " + pebbleMsg(err), err}
		}
		return nil, nil, err
	}
	if !readOnly {
		if err := checkSeqNums(idx); err != nil {
			_ = closeIndex(idx, h)
			return nil, nil, fmt.Errorf("%w: open index %s: %w", ErrIndexCorrupt, indexDir, err)
		}
	}
	if rebuild != nil {
		if err := restoreEntries(idx, h, rebuild, opts.FS, filepath.Join(dir, "segments")); err != nil {
			_ = closeIndex(idx, h)
			return nil, nil, err
		}
		h.rebuild = rebuild
	}
	return idx, h, nil
}

// openPebble opens the index, giving up (ErrDiskFull or the fatal error)
// when Pebble reports a write failure during Open and Open does not return
// within indexOpenGrace of it: Open would wait for ever for a flush that
// cannot succeed. Pebble's goroutines then keep its LOCK until the process
// exits.
func openPebble(dir string, fs pvfs.FS, h *indexHealth, readOnly bool) (*pebble.DB, error) {
	popts := indexOptions(fs, h)
	popts.ReadOnly = readOnly
	type result struct {
		idx *pebble.DB
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var idx *pebble.DB
		err := guardIndex(func() (err error) { idx, err = pebble.Open(dir, popts); return err })
		h.mu.Lock()
		if !h.abandoned {
			ch <- result{idx, err}
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if idx != nil {
			_ = closeIndex(idx, h)
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var since time.Time
	for {
		select {
		case r := <-ch:
			return r.idx, r.err
		case <-tick.C:
		}
		h.mu.Lock()
		bad := h.failed
		if bad == nil {
			bad = h.noSpace
		}
		if bad == nil {
			bad = h.writeErr
		}
		switch {
		case bad == nil:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= indexOpenGrace:
			select {
			case r := <-ch: // it finished after all
				h.mu.Unlock()
				return r.idx, r.err
			default:
			}
			h.abandoned = true
			h.mu.Unlock()
			log.Printf("logstore/engine: index: Open is stuck after a write failure (%v); giving up on it", bad)
			return nil, fmt.Errorf("%w; Pebble's Open did not finish (its files stay locked until the process exits)", bad)
		}
		h.mu.Unlock()
	}
}

// checkSeqNums checks that the next sequence number is above every table's.
// Pebble ignores an invalid last record of the MANIFEST (a torn write after
// a crash: the files it named are then unreferenced and deleted). A bit
// flipped in a complete last record is ignored the same way, but the tables
// that record's predecessors named may carry sequence numbers the reloaded
// version does not know: new writes would reuse them, and the first
// compaction over both panics ("invariant violation ... out of order"), on
// a background goroutine, killing the process.
func checkSeqNums(idx *pebble.DB) error {
	return guardIndex(func() error {
		b := idx.NewBatch()
		defer b.Close()
		if err := b.LogData([]byte("logstore"), nil); err != nil {
			return err
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		next := b.SeqNum()
		levels, err := idx.SSTables()
		if err != nil {
			return err
		}
		for l, tables := range levels {
			for _, t := range tables {
				if t.LargestSeqNum >= next {
					return fmt.Errorf("table %s in L%d holds sequence number %d, but the MANIFEST's last sequence number is below %d (a damaged MANIFEST record)",
						t.FileNum, l, t.LargestSeqNum, next)
				}
			}
		}
		return nil
	})
}

// privateTree makes dir (if it exists) 0700 and the files in it 0600: older
// versions left them 0755 and 0644.
func privateTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushIndex flushes idx's memtable and waits for it: until the flush is
// done, the index reports that it cannot write, Close begins, or (timeout >
// 0) the timeout passes.
func flushIndex(idx *pebble.DB, h *indexHealth, timeout time.Duration) error {
	if err := h.writable(); err != nil {
		return err
	}
	var done <-chan struct{}
	if err := guardIndex(func() (err error) { done, err = idx.AsyncFlush(); return err }); err != nil {
		return h.typed(err)
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		h.mu.Lock()
		wake := h.wake
		h.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-deadline:
			return fmt.Errorf("logstore/engine: index flush did not finish in %v", timeout)
		case <-h.closing:
			return ErrClosed
		case <-wake:
		case <-time.After(50 * time.Millisecond):
		}
		if err := h.writable(); err != nil {
			return err
		}
	}
}

// closeIndex flushes (when the index can write) and closes idx, giving up
// after indexCloseTimeout. A memtable that cannot be flushed is dropped:
// it holds only entries derived from the segments, which the next Open
// replays.
func closeIndex(idx *pebble.DB, h *indexHealth) error {
	var errs []error
	if err := h.writable(); err == nil {
		if err := flushIndex(idx, h, indexCloseTimeout); err != nil && !errors.Is(err, ErrDiskFull) {
			errs = append(errs, err)
		}
	}
	if err := h.writable(); err != nil && !h.readOnlyMode() {
		h.mu.Lock()
		h.logAt(true, "index: closing without flushing (%v); the next Open replays the unindexed blocks from the segments", err)
		h.mu.Unlock()
	}
	h.beginClose()
	done := make(chan error, 1)
	go func() { done <- guardIndex(idx.Close) }()
	t := time.NewTimer(indexCloseTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil && !isNoSpace(err) {
			errs = append(errs, h.typed(err))
		}
	case <-t.C:
		h.mu.Lock()
		why, stalls := h.failed, h.stalls
		if why == nil {
			why = h.noSpace
		}
		h.mu.Unlock()
		errs = append(errs, fmt.Errorf("%w: after %v (%d write stall(s) in progress; cause: %v); its files stay locked until the process exits",
			ErrIndexUnclosed, indexCloseTimeout, stalls, why))
	}
	return errors.Join(errs...)
}

// IndexRebuild says what Open did with Options.RebuildIndex. The index is
// derived from the segments and the tenant manifests except for two kinds of
// entry, which are copied from the old index when it can be read: the
// configuration of tenants from before manifests ('c', used to adopt them)
// and the newest manifest sequence seen per tenant ('m', the index's check
// against an older manifest copied back, docs/security.md).
type IndexRebuild struct {
	// OldIndex is why the old index could not be read in full (empty: it
	// could, and every such entry was kept).
	OldIndex string
	// Kept lists the tenants with entries copied from the old index.
	Kept []string
	// Lost lists tenants with segments and nothing copied while the old
	// index was unreadable: their rollback check restarts from the current
	// manifest.
	Lost []string
	// RemovedFiles counts the old index's files deleted (the old index
	// holds plaintext metadata, so it is not kept aside).
	RemovedFiles int

	kept map[string][]byte // key -> value
}

// IndexRebuild is what Open did with Options.RebuildIndex (nil without it).
func (db *DB) IndexRebuild() *IndexRebuild { return db.ih.rebuild }

// clearIndex copies what it can of the entries a rebuild keeps from the
// index in indexDir and deletes the index's files.
func clearIndex(indexDir string, fs pvfs.FS) (*IndexRebuild, error) {
	rb := &IndexRebuild{kept: map[string][]byte{}}
	if _, err := os.Stat(indexDir); errors.Is(err, os.ErrNotExist) {
		return rb, nil
	}
	if err := salvageEntries(indexDir, fs, rb); err != nil {
		rb.OldIndex = pebbleMsg(err)
	}
	ents, err := os.ReadDir(indexDir)
	if err != nil {
		return nil, fmt.Errorf("logstore/engine: rebuild index: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !isPebbleFile(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(indexDir, e.Name())); err != nil {
			return nil, fmt.Errorf("logstore/engine: rebuild index: %w", err)
		}
		rb.RemovedFiles++
	}
	return rb, nil
}

// isPebbleFile matches the names Pebble gives its files, so a rebuild never
// deletes anything else from a directory given as Options.IndexDir.
func isPebbleFile(name string) bool {
	for _, s := range []string{".sst", ".log", ".blob", ".dbtmp"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	for _, p := range []string{"MANIFEST-", "OPTIONS-", "marker."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "LOCK" || name == "CURRENT"
}

// salvageEntries copies the 'c' and 'm' entries of the index in indexDir
// into rb, opening it read-only; it keeps what it read before an error.
func salvageEntries(indexDir string, fs pvfs.FS, rb *IndexRebuild) error {
	h := newIndexHealth(indexDir, fs, true)
	popts := indexOptions(fs, h)
	popts.ReadOnly = true
	var idx *pebble.DB
	if err := guardIndex(func() (err error) { idx, err = pebble.Open(indexDir, popts); return err }); err != nil {
		return err
	}
	defer closeIndex(idx, h)
	var errs []error
	for _, kind := range []byte{keyConfig, keyManifestSeq} {
		errs = append(errs, guardIndex(func() error {
			it, err := idx.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
			if err != nil {
				return err
			}
			for it.First(); it.Valid(); it.Next() {
				if tenant, rest, err := readEscaped(it.Key()[1:]); err == nil && len(rest) == 0 && ValidateTenant(tenant) == nil {
					rb.kept[string(it.Key())] = append([]byte(nil), it.Value()...)
				}
			}
			return errors.Join(it.Error(), it.Close())
		}))
	}
	return errors.Join(errs...)
}

// restoreEntries writes the salvaged entries into the new index.
func restoreEntries(idx *pebble.DB, h *indexHealth, rb *IndexRebuild, fs vfs.FS, segDir string) error {
	b := idx.NewBatch()
	defer b.Close()
	kept := map[string]bool{}
	for k, v := range rb.kept {
		if err := b.Set([]byte(k), v, nil); err != nil {
			return err
		}
		tenant, _, _ := readEscaped([]byte(k)[1:])
		kept[tenant] = true
	}
	for t := range kept {
		rb.Kept = append(rb.Kept, t)
	}
	if rb.OldIndex != "" {
		tenants, _ := fs.List(segDir)
		for _, t := range tenants {
			if ValidateTenant(t) == nil && !kept[t] {
				rb.Lost = append(rb.Lost, t)
			}
		}
	}
	slices.Sort(rb.Kept)
	slices.Sort(rb.Lost)
	if err := guardIndex(func() error { return b.Commit(pebble.NoSync) }); err != nil {
		return h.typed(err)
	}
	return flushIndex(idx, h, 0)
}

// VerifyIndex reads every entry of the index, which makes Pebble check the
// checksum of every block: nil, or an error matching ErrIndexCorrupt (the
// repair is `logstore segments reindex`). It takes time proportional to the
// index's size.
func (db *DB) VerifyIndex(ctx context.Context) error {
	err := guardIndex(func() error {
		it, err := db.idx.NewIter(nil)
		if err != nil {
			return err
		}
		n := 0
		for it.First(); it.Valid(); it.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					_ = it.Close()
					return err
				}
			}
		}
		return errors.Join(it.Error(), it.Close())
	})
	if err != nil && isCorruption(err) {
		return db.indexErr(err)
	}
	return err
}
