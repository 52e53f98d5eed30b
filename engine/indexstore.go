package engine

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"
)

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
//     memtables have room (index.room), skips Close's flush on a failing
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

// index owns the Pebble index: every read and write the engine makes of it
// goes through here, so the rules above are applied in one place. Live
// writes (indexer.go) and replay (recover.go, reconcile.go,
// indexrebuild.go) share it. read.go still reads through DB.idx, the same
// *pebble.DB.
type index struct {
	indexView // reads of the live index
	db        *pebble.DB
	health    *indexHealth // the index's ability to write (indexhealth.go)
	// migrated is set when Open found index format 1 and removed it
	// (indexmigrate.go), so recovery indexed every segment again.
	migrated bool
	// rebuild is what Options.RebuildIndex did (nil without it).
	rebuild *IndexRebuild
}

func newIndex(idx *pebble.DB, h *indexHealth) *index {
	return &index{indexView: indexView{idx}, db: idx, health: h}
}

// indexView reads the index: the live one, or a snapshot of it.
type indexView struct{ r pebble.Reader }

// get returns a copy of key's value; found is false when there is none.
func (v indexView) get(key []byte) (val []byte, found bool, err error) {
	b, closer, err := v.r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val = append([]byte(nil), b...)
	return val, true, closer.Close()
}

// scan calls f for each entry with lo <= key < hi (nil: unbounded), in key
// order, until f returns an error; k and v are valid only during the call.
func (v indexView) scan(lo, hi []byte, f func(k, v []byte) error) error {
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := f(it.Key(), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// scanPrefix is scan over the keys starting with p.
func (v indexView) scanPrefix(p []byte, f func(k, v []byte) error) error {
	return v.scan(p, prefixEnd(p), f)
}

// segmentsIn lists, in key order, the segment ids of the 'b' keys under
// tenant prefix p (tenant, then a 16-byte segment id, then a sequence
// number), seeking past each segment's keys rather than reading them. A key
// too short to name a segment is reported to bad and skipped.
func (v indexView) segmentsIn(p []byte, bad func(error)) ([][16]byte, error) {
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var out [][16]byte
	for valid := it.First(); valid; {
		k := it.Key()
		if len(k) < len(p)+16 {
			bad(fmt.Errorf("%w: index key %x: too short for a block key (`logstore segments reindex` rebuilds it)", ErrIndexCorrupt, k))
			valid = it.Next()
			continue
		}
		seg := [16]byte(k[len(p):])
		out = append(out, seg)
		end := prefixEnd(append(slices.Clip(p), seg[:]...))
		if end == nil {
			break // the last possible segment id
		}
		valid = it.SeekGE(end)
	}
	return out, errors.Join(it.Error(), it.Close())
}

// indexBatch is a set of changes committed atomically by index.commit.
type indexBatch struct{ b *pebble.Batch }

func (x *index) newBatch() *indexBatch { return &indexBatch{x.db.NewBatch()} }

func (b *indexBatch) set(k, v []byte) error           { return b.b.Set(k, v, nil) }
func (b *indexBatch) delete(k []byte) error           { return b.b.Delete(k, nil) }
func (b *indexBatch) deleteRange(lo, hi []byte) error { return b.b.DeleteRange(lo, hi, nil) }

// size is the batch's encoded size in bytes.
func (b *indexBatch) size() int { return b.b.Len() }
func (b *indexBatch) reset()    { b.b.Reset() }

// close releases the batch; a batch that is not committed is dropped.
func (b *indexBatch) close() { _ = b.b.Close() }

// commit applies b without a WAL (the segments are the log, see
// indexOptions), turning a Pebble Fatalf into an error and typing the error
// (typed).
func (x *index) commit(b *indexBatch) error {
	return x.typed(guardIndex(func() error { return b.b.Commit(pebble.NoSync) }))
}

// commitDerived commits a batch derived from blocks already in their
// segments. While the index cannot write, such a batch is committed only
// if the memtables have room (room); otherwise it is refused with the
// reason, and the next Open replays its blocks.
func (x *index) commitDerived(b *indexBatch) error {
	if err := x.writable(); err != nil && !x.room(b.size()) {
		return err
	}
	return x.commit(b)
}

// set writes one entry on its own.
func (x *index) set(k, v []byte) error {
	return x.typed(guardIndex(func() error { return x.db.Set(k, v, pebble.NoSync) }))
}

// compact compacts [lo, hi), so the files of deleted entries are rewritten
// without them (DeleteTenant: plaintext metadata must not linger on disk).
func (x *index) compact(lo, hi []byte) error {
	return x.typed(guardIndex(func() error { return x.db.Compact(context.Background(), lo, hi, false) }))
}

// awaitObsoleteRemoved waits, up to max, until Pebble has deleted the
// files a compaction made obsolete (it deletes them in the background, and
// keeps those an open iterator still reads), and returns how many remain.
// A compaction that must leave no deleted entry on disk (an erase) waits
// for it before returning.
func (x *index) awaitObsoleteRemoved(max time.Duration) int64 {
	deadline := time.Now().Add(max)
	for {
		m := x.db.Metrics()
		n := m.Table.ObsoleteCount + m.Table.ZombieCount
		if n <= 0 || time.Now().After(deadline) {
			return max64(n, 0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// writable is nil when the index may take writes, else why not.
func (x *index) writable() error { return x.health.writable() }

// typed types an error returned by a Pebble read or write: ENOSPC as
// ErrDiskFull, corruption as ErrIndexCorrupt.
func (x *index) typed(err error) error { return x.health.typed(err) }

// room reports whether a batch of n bytes can be committed without
// Pebble stalling the commit behind a flush (maybeInduceWriteStall: the
// memtables queued reach MemTableStopWritesThreshold memtables): while the
// index cannot flush, a commit that finds room is safe, one that does not
// would wait until space returns.
func (x *index) room(n int) bool {
	if !x.health.transientNoSpace() {
		return false // failed: a goroutine stopped by Fatalf may hold Pebble's mutex
	}
	m := x.db.Metrics()
	return m.MemTable.Size+uint64(max(n, indexMemTableSize)) < indexStopWritesMemtables*indexMemTableSize
}

// flush flushes the memtable and waits for it, unless the index cannot
// write (then it returns why at once, or as soon as it learns it). It makes
// every committed change durable: used after changes that segments cannot
// reproduce.
func (x *index) flush() error { return flushIndex(x.db, x.health, 0) }

// close flushes what it can and closes the index (closeIndex).
func (x *index) close() error { return closeIndex(x.db, x.health) }

// indexErr types an error returned by a Pebble read or write (read.go).
func (db *DB) indexErr(err error) error { return db.index.typed(err) }

// durableIndex makes every committed index change durable.
func (db *DB) durableIndex() error { return db.index.flush() }

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

// indexPlace is where the index lives.
type indexPlace struct {
	dir  string
	fs   pvfs.FS
	osFS bool // files are real (not Options.IndexInMemory)
}

func indexPlaceOf(dir string, opts Options) indexPlace {
	p := indexPlace{dir: opts.IndexDir, fs: pvfs.Default, osFS: true}
	if p.dir == "" {
		p.dir = indexDirOf(dir)
	}
	if opts.IndexInMemory {
		p.fs, p.osFS = pvfs.NewMem(), false
	}
	return p
}

// openIndex opens (creating if needed) the index of the data directory dir.
// With Options.RebuildIndex it first replaces the index by an empty one,
// keeping what tenant configuration it can (clearIndex); Open's recovery
// then indexes every segment.
func openIndex(dir string, opts Options) (*index, error) {
	p := indexPlaceOf(dir, opts)
	var rebuild *IndexRebuild
	if p.osFS {
		if err := privateTree(p.dir); err != nil {
			return nil, fmt.Errorf("logstore/engine: index %s: %w", p.dir, err)
		}
		if opts.RebuildIndex {
			var err error
			if rebuild, err = clearIndex(p.dir, p.fs); err != nil {
				return nil, err
			}
		}
	}
	x, err := p.open(opts.RebuildIndex)
	if err != nil {
		return nil, err
	}
	if rebuild != nil {
		if err := x.restore(rebuild, opts.FS, segmentsDirOf(dir)); err != nil {
			_ = x.close()
			return nil, err
		}
		x.rebuild = rebuild
	}
	if x.migrated, err = x.migrateIndex(); err != nil {
		_ = x.close()
		return nil, err
	}
	return x, nil
}

// open opens the Pebble index. A read-write Open writes: an OPTIONS file, a
// new MANIFEST, and the flush of the (empty) memtable it replays from the
// WAL directory, which Open waits for (open.go) and which Pebble retries for
// ever if it fails. So on a nearly full disk, or when a read-write Open
// meets ENOSPC, the index is opened read-only: queries work, writes fail
// with ErrDiskFull. A rebuild needs to write, so it never falls back.
func (p indexPlace) open(rebuilding bool) (*index, error) {
	readOnly := !rebuilding && p.nearlyFull()
	h := newIndexHealth(p.dir, p.fs, p.osFS)
	idx, err := openPebble(p.dir, p.fs, h, readOnly)
	if err != nil && isNoSpace(err) && !readOnly && !rebuilding {
		readOnly = true
		h = newIndexHealth(p.dir, p.fs, p.osFS)
		idx, err = openPebble(p.dir, p.fs, h, true)
	}
	if err != nil {
		return nil, openIndexError(p.dir, err)
	}
	if readOnly {
		h.setReadOnly(fmt.Errorf("%w: index %s opened read-only, the disk being full; reopen the store once space is freed", ErrDiskFull, p.dir))
		return newIndex(idx, h), nil
	}
	if err := checkSeqNums(idx); err != nil {
		_ = closeIndex(idx, h)
		return nil, fmt.Errorf("%w: open index %s: %w", ErrIndexCorrupt, p.dir, err)
	}
	return newIndex(idx, h), nil
}

// nearlyFull reports whether the disk under the index has less than
// indexOpenMinFree left.
func (p indexPlace) nearlyFull() bool {
	u, err := p.fs.GetDiskUsage(filepath.Dir(p.dir))
	return err == nil && u.AvailBytes < indexOpenMinFree && p.osFS
}

// openIndexError types an error of Pebble's Open.
func openIndexError(dir string, err error) error {
	switch {
	case errors.Is(err, ErrDiskFull), errors.Is(err, ErrIndexCorrupt), errors.Is(err, ErrIndexFailed):
		return err
	case isNoSpace(err):
		return fmt.Errorf("%w: open index %s: %w", ErrDiskFull, dir, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("logstore/engine: open index: %w", err)
	default:
		// A MANIFEST that fails its checksum, a damaged OPTIONS file,
		// a missing sstable: the index is unreadable.
		return &indexError{ErrIndexCorrupt, "open index " + dir + ": " + pebbleMsg(err), err}
	}
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
