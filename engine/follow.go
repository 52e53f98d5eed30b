package engine

// Live tail (Tenant.Follow): the records a tenant acknowledges after the
// follow starts, whatever their capture time. Records carry their own time
// (an ingest of an old HAR file stores old times), so "new" cannot mean a
// newer time or id: it means "in a block the follower has not seen".
//
// The follow position is a watermark per segment: segments are append-only
// files whose blocks have increasing sequence numbers and whose ids are never
// reused, so "the blocks of segment S from sequence N on" is exact and costs
// a few bytes per segment. A sealed segment (it never grows again) is marked
// done once read to its end. The records a journal serves (journal.go) have
// a second home later, the block a flush writes: the ids of those a follower
// took from a journal (or that a journal held when it started) are kept
// until that block is read, so they are skipped there; that set is bounded
// by what journals hold unflushed (a block's worth per segment), not by the
// records followed.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"sync"
	"time"
)

// DefaultFollowInterval is how often a follow on a read-only DB refreshes
// its view of the store (FollowOptions.Interval), and how often one on the
// writer DB looks again when no append woke it.
const DefaultFollowInterval = 250 * time.Millisecond

// defaultFollowFailAfter is FollowOptions.FailAfter's default.
const defaultFollowFailAfter = 8

// ErrFollowStalled is yielded by Follow when it has failed to read the store
// for FailAfter ticks in a row (a Refresh, a segment or journal that does
// not read): it wraps the last failure. The follow goes on and retries at
// every tick; the caller stops it by breaking out of the loop.
var ErrFollowStalled = errors.New("logstore/engine: follow cannot read the store")

// FollowOptions select the records a follow yields and how it waits.
type FollowOptions struct {
	// Index, From, To and Ranges select records as in ScanOptions
	// (default: every record).
	Index    Index
	From, To time.Time
	Ranges   []Range
	// Interval is how often a read-only DB refreshes (default
	// DefaultFollowInterval). A follow on the writer DB is woken by the
	// appends it acknowledges, and looks again at this interval too.
	Interval time.Duration
	// FailAfter is how many consecutive failed ticks make Follow yield
	// ErrFollowStalled (default 8); it is yielded once per outage.
	FailAfter int
	// Started, if set, is called once the follow's position is taken
	// (before its first record): every record acknowledged after it is
	// called is yielded. A caller that prints what exists first (query
	// --follow) or a test waits for it.
	Started func()
}

func (o *FollowOptions) scanOptions() (ScanOptions, error) {
	s := ScanOptions{Index: o.Index, From: o.From, To: o.To, Ranges: o.Ranges}
	switch {
	case o.Interval < 0:
		return s, fmt.Errorf("%w: negative follow Interval %s", ErrInvalidOptions, o.Interval)
	case o.FailAfter < 0:
		return s, fmt.Errorf("%w: negative follow FailAfter %d", ErrInvalidOptions, o.FailAfter)
	}
	if o.Interval == 0 {
		o.Interval = DefaultFollowInterval
	}
	if o.FailAfter == 0 {
		o.FailAfter = defaultFollowFailAfter
	}
	return s, s.check()
}

// Follow yields the metadata of every record of the tenant that o selects
// and that is acknowledged after Follow starts (the iteration's first
// step): each exactly once, whatever its capture time, across flushes of
// journals, seals and retention. Records acknowledged before are never
// yielded (query.FollowLast yields the newest existing matches first,
// exactly). "Starts" is the first tick that reads the store: a failed
// Refresh delays it; FollowOptions.Started is called then.
//
// Visibility: on the writer DB a record is yielded soon after its Append
// returns (an append wakes the follow); on a read-only DB within about one
// Interval of its acknowledgement by the writer process (each tick is a
// Refresh of the DB, whose cost is a read of every active segment's
// blocks). Records come in batches, one per tick; within a batch they are
// ordered by time, then id. Across batches the order is that of
// acknowledgement, not time.
//
// A tick that cannot read the store (Refresh fails, a new block does not
// read) keeps the position where it was and is retried at the next tick:
// nothing is skipped or yielded twice. After FailAfter failed ticks in a
// row Follow yields one error wrapping ErrFollowStalled and goes on. Faults
// of the tenant that a scan would report (a damaged segment) count as
// failures of the ticks they persist in.
//
// The iteration ends when the consumer stops it, without an error when ctx
// is done, and with ErrClosed when the DB is closed; it starts no goroutine
// (the waiting is in the iterating one) and holds the DB only during a
// tick, so Close does not wait for a follow. Memory is a watermark per
// segment of the tenant and the ids of journal records not yet flushed.
//
// Limits: a segment the follow could not read when it started (a fault) has
// its position taken when it first reads, so records acknowledged into it
// meanwhile are not yielded; one whose journal could not be read then may
// have those journal records yielded.
func (t *Tenant) Follow(ctx context.Context, o FollowOptions) iter.Seq2[*Meta, error] {
	return func(yield func(*Meta, error) bool) {
		so, err := o.scanOptions()
		if err == nil {
			err = t.enter(ctx)
			if err == nil {
				t.db.leave()
			}
		}
		if err != nil {
			yield(nil, err)
			return
		}
		empty := so.clampTimes()
		f := &follower{db: t.db, tenant: t.name, bounds: newScanBounds(&so), empty: empty,
			segs: map[[16]byte]*followSeg{}, skip: map[ID][16]byte{}}
		f.keep = f.bounds.keepFor()
		t.db.runFollow(ctx, f, o, yield)
	}
}

// runFollow is Follow's loop: take the baseline, then a batch per tick.
func (db *DB) runFollow(ctx context.Context, f *follower, o FollowOptions, yield func(*Meta, error) bool) {
	based, failed := false, 0
	for {
		wake := db.catalog.changes.wait() // before the tick: no append is missed
		var batch []*Meta
		err := db.followTick(ctx, func() error {
			if !based {
				return f.baseline()
			}
			var err error
			batch, err = f.tick()
			return err
		})
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrClosed):
			yield(nil, err)
			return
		case err != nil:
			failed++
			if failed == o.FailAfter && !yield(nil, fmt.Errorf("%w: %d ticks in a row failed: %w", ErrFollowStalled, failed, err)) {
				return
			}
		default:
			if !based && o.Started != nil {
				o.Started()
			}
			based, failed = true, 0
		}
		for _, m := range batch {
			if !yield(m, nil) {
				return
			}
		}
		if !db.followWait(ctx, wake, o.Interval) {
			return
		}
	}
}

// followTick runs one tick of a follow inside enter/leave, refreshing a
// read-only DB first.
func (db *DB) followTick(ctx context.Context, tick func() error) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	if err := db.Refresh(ctx); err != nil {
		return err
	}
	return tick()
}

// followWait waits for the next tick: interval, an append (wake), ctx or
// Close (which the next tick reports). It returns false when ctx is done.
func (db *DB) followWait(ctx context.Context, wake <-chan struct{}, interval time.Duration) bool {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	if db.opts.ReadOnly {
		wake = nil // nothing in this process appends
	}
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-timer.C:
	case <-db.quit:
	}
	return true
}

// follower is one follow's position in a tenant.
type follower struct {
	db     *DB
	tenant string
	bounds scanBounds
	keep   func(raw []byte) bool
	empty  bool // the time range is outside what can be stored
	// segs are the watermarks, by segment (and journal) id.
	segs map[[16]byte]*followSeg
	// skip are the ids of records a journal served that were yielded or
	// predate the follow, by journal id: skipped in the block their flush
	// writes, then forgotten.
	skip map[ID][16]byte
}

// followSeg is a follower's position in one segment or journal.
type followSeg struct {
	next uint64 // the first block sequence number not read yet
	done bool   // sealed and read to its end: nothing more will come
	// unknown: the segment was not readable at the baseline; its position
	// is taken when it first reads.
	unknown bool
	journal bool
}

// baseline takes the position "now": every block the tenant has, and
// every journal record, counts as read.
func (f *follower) baseline() error {
	segs, faults, err := f.db.catalog.snapshot(f.tenant)
	if err != nil {
		return err
	}
	for _, sv := range segs {
		fs := &followSeg{done: sv.lazy != nil}
		if n := len(sv.blocks); n > 0 {
			fs.next = sv.blocks[n-1].seq + 1
		}
		if isJournal(sv) {
			fs.journal = true
			f.skipJournal(sv)
		}
		f.segs[sv.id] = fs
	}
	if faults != nil {
		files, err := f.db.listSegmentFiles(f.tenant)
		if err != nil {
			return err
		}
		for _, id := range files {
			if f.segs[id] == nil {
				f.segs[id] = &followSeg{unknown: true}
			}
		}
	}
	return nil
}

func isJournal(sv segView) bool { return len(sv.blocks) > 0 && sv.blocks[0].mem != nil }

// skipJournal records the ids of journal view sv's log records as read.
func (f *follower) skipJournal(sv segView) {
	for _, s := range sv.blocks {
		if s.kind != kindLog || s.mem == nil {
			continue
		}
		for _, raw := range s.mem.meta {
			if len(raw) >= 18 {
				f.skip[ID(raw[2:18])] = sv.id
			}
		}
	}
}

// tick reads what the tenant acknowledged since the last tick. On error the
// positions of what it could not read stay where they were, and what it
// returns with the error is what it did read (yielded: its positions moved).
func (f *follower) tick() ([]*Meta, error) {
	segs, faults, err := f.db.catalog.snapshot(f.tenant)
	if err != nil {
		return nil, err
	}
	var out []*Meta
	var errs []error
	seen := make(map[[16]byte]bool, len(segs))
	for i := range segs {
		seen[segs[i].id] = true
		metas, err := f.segment(&segs[i])
		out = append(out, metas...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if faults == nil && len(errs) == 0 {
		f.prune(seen)
	}
	slices.SortFunc(out, func(a, b *Meta) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(string(a.ID[:]), string(b.ID[:])))
	})
	return out, errors.Join(append(errs, faults)...)
}

// rewritten reports whether segment id was written by an erase to replace
// another (its manifest entry names it): its records are not new.
func (f *follower) rewritten(id [16]byte) bool {
	tm := f.db.manifests.get(f.tenant)
	if tm == nil {
		return false
	}
	e := tm.entry(segHex(id))
	return e != nil && e.Replaces != ""
}

// prune forgets, after a tick that read everything, the segments that are
// gone (retention, deletion) and the journals retired: their records are
// in blocks this tick read, or deleted.
func (f *follower) prune(seen map[[16]byte]bool) {
	for id := range f.segs {
		if !seen[id] {
			delete(f.segs, id)
		}
	}
	for id, j := range f.skip {
		if !seen[j] {
			delete(f.skip, id)
		}
	}
}

// segment returns the new records of segment (or journal) view sv that the
// follow selects, and moves its position.
func (f *follower) segment(sv *segView) ([]*Meta, error) {
	fs := f.segs[sv.id]
	if fs == nil {
		fs = &followSeg{journal: isJournal(*sv)}
		f.segs[sv.id] = fs
		if f.rewritten(sv.id) {
			fs.done = true // an erase's rewrite of a segment already followed: nothing new
		}
	}
	if fs.done {
		return nil, nil
	}
	blocks := sv.blocks
	if sv.lazy != nil {
		if !fs.unknown && (sv.lazy.rollup.count == 0 || !f.bounds.inRange(sv.lazy.rollup)) && fs.next == 0 {
			fs.done = true // new and sealed, but nothing the follow selects
			return nil, nil
		}
		var err error
		if blocks, _, _, err = sv.lazy.get(); err != nil {
			return nil, err
		}
	}
	if fs.unknown {
		fs.unknown = false
		if n := len(blocks); n > 0 {
			fs.next = blocks[n-1].seq + 1
		}
		fs.done = sv.lazy != nil
		return nil, nil
	}
	var out []*Meta
	// Blocks are in sequence order: start at the first one not read.
	from := sort.Search(len(blocks), func(i int) bool { return blocks[i].seq >= fs.next })
	for _, s := range blocks[from:] {
		metas, err := f.block(sv.id, s, fs.journal)
		if err != nil {
			return out, err
		}
		out = append(out, metas...)
		fs.next = s.seq + 1
	}
	fs.done = sv.lazy != nil
	return out, nil
}

// block returns the records of new block s of segment seg that the follow
// selects: a journal block's are remembered (their flush is skipped), and a
// record already remembered (a segment block's flushed from a journal, or
// a journal block's carried over from another journal) is skipped.
func (f *follower) block(seg [16]byte, s *blockSummary, journal bool) ([]*Meta, error) {
	if s.kind != kindLog {
		return nil, nil
	}
	if f.empty || (!f.bounds.block(s) && (journal || len(f.skip) == 0)) {
		if journal {
			f.skipJournal(segView{id: seg, blocks: []*blockSummary{s}})
		}
		return nil, nil
	}
	var served []ID
	keep := func(raw []byte) bool {
		if len(f.skip) > 0 && len(raw) >= 18 {
			if _, ok := f.skip[ID(raw[2:18])]; ok {
				served = append(served, ID(raw[2:18]))
				return false
			}
		}
		return f.keep(raw)
	}
	metas, err := f.db.readBlockMetas(f.tenant, seg, s, keep)
	if err != nil {
		return nil, err
	}
	if journal {
		f.skipJournal(segView{id: seg, blocks: []*blockSummary{s}})
	} else {
		for _, id := range served {
			delete(f.skip, id)
		}
	}
	out := metas[:0]
	for _, m := range metas {
		if f.bounds.record(m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// notifier wakes the follows of a writer DB when the catalog changes
// (catalog.changes): an acknowledged append, a flush, a reset.
type notifier struct {
	mu sync.Mutex    // guards ch
	ch chan struct{} // closed by signal; nil while nobody waits
}

// wait returns a channel that the next signal closes.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// signal wakes every waiter; it costs a lock when nobody waits.
func (n *notifier) signal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
