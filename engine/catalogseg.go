package engine

// Lazy segments of the catalog: a sealed segment whose manifest entry has a
// rollup (rollup.go) enters the catalog as that rollup alone, and its block
// summaries are loaded (from the index, the summary file or the segment,
// anchored by the manifest's digest) the first time a read cannot be decided
// without them. A sealed segment's summaries never change, so once loaded
// they are kept, immutable, until the catalog drops the tenant.

import (
	"sync"
)

// lazySegment is a sealed segment's entry before and after its load.
type lazySegment struct {
	// rollup is the segment's rollup as one request-log summary spanning
	// it: ranges, no filters (segRollup.summary).
	rollup *blockSummary
	// load returns the segment's anchored summaries in file order, and
	// what it tolerated on the way (index entries it could not use: the
	// answer is complete, but the damage is reported).
	load func() (sums []*blockSummary, faults error, err error)

	mu     sync.Mutex // guards done, blocks, byID, faults; held through a load
	done   bool
	blocks []*blockSummary
	byID   [3]idLookup // sorted at load, so lookups never write it
	faults error
}

// get returns the segment's summaries, loading them on first use. A failed
// load is not kept: the next read tries again.
func (l *lazySegment) get() ([]*blockSummary, *[3]idLookup, error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		sums, faults, err := l.load()
		if err != nil {
			return nil, nil, nil, err
		}
		for _, s := range sums {
			l.byID[s.kind].add(s)
		}
		for i := range l.byID {
			l.byID[i].sort()
		}
		l.blocks, l.faults, l.done = sums, faults, true
	}
	return l.blocks, &l.byID, l.faults, nil
}

// loaded reports whether the segment's summaries are loaded.
func (l *lazySegment) loaded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

// mayHoldID reports whether the segment's id range holds id.
func (l *lazySegment) mayHoldID(id ID) bool {
	return string(id[:]) >= string(l.rollup.minID[:]) && string(id[:]) <= string(l.rollup.maxID[:])
}

// addLazy adds sealed segment seg as its rollup r, loaded by load.
func (tb *tenantBlocks) addLazy(seg [16]byte, r *blockSummary, load func() ([]*blockSummary, error, error)) {
	if tb.bySeg[seg] != nil {
		return
	}
	sb := &segBlocks{id: seg, minID: r.minID, maxID: r.maxID, lazy: &lazySegment{rollup: r, load: load}}
	tb.bySeg[seg] = sb
	tb.segs = append(tb.segs, sb)
}

// sort orders the lookup's blocks by min id (see find), once.
func (l *idLookup) sort() {
	if l.dirty {
		l.find(ID{}, nil)
	}
}

// summaries returns a segment view's blocks, loading a lazy segment's, and
// the faults its load tolerated.
func (sv *segView) summaries() ([]*blockSummary, error, error) {
	if sv.lazy == nil {
		return sv.blocks, nil, nil
	}
	blocks, _, faults, err := sv.lazy.get()
	return blocks, faults, err
}

// lazyCandidate is the candidate standing for lazy segment sv in a scan:
// its rollup, which the scan replaces with the segment's blocks when it
// reaches it (lazyBlocks). ok is false when the scan cannot need the segment.
func (b *scanBounds) lazyCandidate(sv segView) (candidate, bool) {
	r := sv.lazy.rollup
	if r.count == 0 || !b.inRange(r) {
		return candidate{}, false
	}
	return candidate{seg: sv.id, sum: r, lazy: sv.lazy}, true
}

// lazyBlocks returns the blocks of lazy candidate c's segment that b may
// need, loading its summaries; a segment that cannot be loaded is a fault
// (nothing returned).
func (b *scanBounds) lazyBlocks(c candidate, f *scanFaults) []candidate {
	blocks, _, faults, err := c.lazy.get()
	if err != nil {
		f.fault(c.seg, err)
		return nil
	}
	f.note(faults)
	return b.appendBlocks(nil, c.seg, blocks)
}

// appendBlocks appends to out the blocks of segment seg b may need.
func (b *scanBounds) appendBlocks(out []candidate, seg [16]byte, blocks []*blockSummary) []candidate {
	skip := b.skippedGroups(blocks)
	for _, s := range blocks {
		if skip != nil && skip[s.seq/groupBlocks] {
			continue
		}
		if b.block(s) {
			out = append(out, candidate{seg: seg, sum: s})
		}
	}
	return out
}

// candQueue orders a scan's candidates as the merge wants them (a heap): by
// max time descending (newest first) or min time ascending (oldest first).
// A lazy segment's blocks are pushed when the scan reaches its rollup, at
// O(log n) each, so a scan that needs every segment costs about one sort.
type candQueue struct {
	oldest bool
	c      []candidate
}

func (q *candQueue) Len() int { return len(q.c) }
func (q *candQueue) Less(i, j int) bool {
	if q.oldest {
		return q.c[i].sum.minTime < q.c[j].sum.minTime
	}
	return q.c[i].sum.maxTime > q.c[j].sum.maxTime
}
func (q *candQueue) Swap(i, j int) { q.c[i], q.c[j] = q.c[j], q.c[i] }
func (q *candQueue) Push(x any)    { q.c = append(q.c, x.(candidate)) }
func (q *candQueue) Pop() any {
	x := q.c[len(q.c)-1]
	q.c = q.c[:len(q.c)-1]
	return x
}
