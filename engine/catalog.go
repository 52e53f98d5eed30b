package engine

// The catalog: the index's block summaries held in memory, by tenant and
// segment, so a scan or a Get picks its blocks without walking Pebble. The
// index is the durable copy; the catalog is loaded from it per tenant on
// first use. The indexer goroutine adds the summaries it commits (before it
// acknowledges their appends, so a scan started after an acknowledgement
// sees the record); every other change of summaries in the index (replay,
// retention, deletion, rebuild) drops the catalog, which reloads lazily.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// catalog holds the loaded tenants' block summaries.
type catalog struct {
	// load passes add every block summary of a tenant: from the index
	// (loadFromIndex), or from the segments in a read-only DB
	// (loadFromSegments).
	load func(tenant string, tb *tenantBlocks) error
	mu   sync.Mutex // guards tenants and every segBlocks.blocks append
	// tenants holds the loaded tenants; a tenant absent is loaded from
	// the index by the next snapshot.
	tenants map[string]*tenantBlocks
	// mems are, per tenant, the journal blocks (journal.go) whose records
	// no block of a segment holds yet: the index never has them, so they
	// outlive reset and are added to every load, until a flush drops them.
	mems map[string][]*blockSummary
	// changes wakes the follows of the DB (follow.go) on every change.
	changes notifier
	// roSums, in a read-only DB, keeps active segments' summaries across
	// reset (rosums.go).
	roSums roSumCache
}

// tenantBlocks are one tenant's summaries, by segment in key order.
type tenantBlocks struct {
	segs  []*segBlocks
	bySeg map[[16]byte]*segBlocks
	// faults are the entries that could not be decoded (at most
	// maxCatalogFaults kept): reads of the tenant go on without them and
	// report them, since a record may be in one of their blocks.
	faults  []error
	nFaults int
}

const maxCatalogFaults = 8

// fault records an index entry that could not be used.
func (tb *tenantBlocks) fault(err error) {
	tb.nFaults++
	if len(tb.faults) < maxCatalogFaults {
		tb.faults = append(tb.faults, err)
	}
}

// faultErr is what reads of the tenant report about its faults (nil: none).
func (tb *tenantBlocks) faultErr() error {
	if tb.nFaults == 0 {
		return nil
	}
	return fmt.Errorf("logstore/engine: %d of the tenant's block index entries or segments cannot be read, so the records they hold are missing from this answer: %w",
		tb.nFaults, errors.Join(tb.faults...))
}

// segBlocks are one segment's summaries in file order. blocks is only ever
// appended to, so a snapshot holding a shorter slice of it stays valid.
type segBlocks struct {
	id           [16]byte
	blocks       []*blockSummary
	minID, maxID ID // over every block of the segment
	// byID finds blocks by id, per kind (byID[kindLog], byID[kindPayload]).
	byID [3]idLookup
	// lazy, for a sealed segment entered by its rollup (catalogseg.go),
	// holds its summaries once loaded; blocks and byID stay empty.
	lazy *lazySegment
}

// idLookup finds the blocks whose id range holds an id: blocks sorted by
// min id, with the running maximum of their max ids, so a lookup is a
// binary search and a short walk back. Appends in id order (live traffic:
// engine-assigned ids start with the record time) keep it sorted in O(1);
// an append out of order marks it for a sort on the next lookup.
type idLookup struct {
	blocks []*blockSummary
	runMax []ID // runMax[i] = max(blocks[0..i].maxID)
	dirty  bool
}

func (l *idLookup) add(s *blockSummary) {
	n := len(l.blocks)
	if l.dirty || (n > 0 && string(s.minID[:]) < string(l.blocks[n-1].minID[:])) {
		l.dirty = true
		l.blocks = append(l.blocks, s)
		return
	}
	m := s.maxID
	if n > 0 && string(l.runMax[n-1][:]) > string(m[:]) {
		m = l.runMax[n-1]
	}
	l.blocks, l.runMax = append(l.blocks, s), append(l.runMax, m)
}

// find appends to out the blocks that may hold id.
func (l *idLookup) find(id ID, out []*blockSummary) []*blockSummary {
	if l.dirty {
		slices.SortStableFunc(l.blocks, func(a, b *blockSummary) int { return bytes.Compare(a.minID[:], b.minID[:]) })
		l.runMax = l.runMax[:0]
		for i, s := range l.blocks {
			m := s.maxID
			if i > 0 && string(l.runMax[i-1][:]) > string(m[:]) {
				m = l.runMax[i-1]
			}
			l.runMax = append(l.runMax, m)
		}
		l.dirty = false
	}
	// The last block whose min id is <= id, then back while some block
	// at or before it may still reach id.
	i := sort.Search(len(l.blocks), func(i int) bool { return string(l.blocks[i].minID[:]) > string(id[:]) }) - 1
	for ; i >= 0 && string(l.runMax[i][:]) >= string(id[:]); i-- {
		if s := l.blocks[i]; s.mayHoldID(id) {
			out = append(out, s)
		}
	}
	return out
}

// segView is a snapshot of one segment's summaries.
type segView struct {
	id           [16]byte
	blocks       []*blockSummary
	minID, maxID ID
	lazy         *lazySegment // see segBlocks.lazy
}

func newCatalog(load func(tenant string, tb *tenantBlocks) error) *catalog {
	return &catalog{load: load, tenants: map[string]*tenantBlocks{}, mems: map[string][]*blockSummary{}}
}

// snapshot returns tenant's summaries as of now, loading them from the index
// if needed, and the error to report about entries it could not use.
func (c *catalog) snapshot(tenant string) ([]segView, error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tb, err := c.loadLocked(tenant)
	if err != nil {
		return nil, nil, err
	}
	out := make([]segView, len(tb.segs))
	for i, s := range tb.segs {
		out[i] = segView{id: s.id, blocks: s.blocks[:len(s.blocks):len(s.blocks)], minID: s.minID, maxID: s.maxID, lazy: s.lazy}
	}
	return out, tb.faultErr(), nil
}

// holds reports whether tenant's summaries (reloaded if a change dropped
// them) still include segment seg: false once retention or DeleteTenant
// removed it.
func (c *catalog) holds(tenant string, seg [16]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tb, err := c.loadLocked(tenant)
	if err != nil {
		return true // cannot tell: not a deletion
	}
	_, ok := tb.bySeg[seg]
	return ok
}

// loadLocked returns tenant's entry, reading it from the index when absent.
func (c *catalog) loadLocked(tenant string) (*tenantBlocks, error) {
	if tb := c.tenants[tenant]; tb != nil {
		return tb, nil
	}
	tb := &tenantBlocks{bySeg: map[[16]byte]*segBlocks{}}
	if err := c.load(tenant, tb); err != nil {
		return nil, err
	}
	for _, s := range c.mems[tenant] {
		tb.add(s)
	}
	if transientErr(tb.faultErr()) {
		return tb, nil // a transient fault (a throttled bucket): the next read loads again
	}
	c.tenants[tenant] = tb
	return tb, nil
}

// loadFromIndex is the catalog source of a DB open for writing: the
// tenant's 'b' entries in the index, by segment. A sealed segment with a
// rollup enters as its rollup, its entries read on first need
// (catalogseg.go); the others are read now.
// An entry that does not decode is a fault of the tenant (reported by its
// reads), not a failure of them all. A sealed segment's entries are used
// only if they are the summaries its manifest anchors (anchoredSummaries).
func (db *DB) loadFromIndex(tenant string, tb *tenantBlocks) error {
	p := tenantPrefix(keyBlock, tenant)
	segs, err := db.index.segmentsIn(p, tb.fault)
	if err != nil {
		return db.index.typed(err)
	}
	for _, seg := range append(segs, db.unindexedSealed(tenant, segs)...) {
		if r, a := db.sealedRollup(tenant, seg, tb); r != nil {
			tb.addLazy(seg, r, func() ([]*blockSummary, error, error) { return db.indexedSegment(tenant, seg, a) })
			continue
		}
		sums, faults, err := db.indexedSegment(tenant, seg, db.anchorOf(tenant, seg))
		if faults != nil {
			tb.fault(faults)
		}
		if err != nil {
			tb.fault(err)
			continue
		}
		for _, s := range sums {
			tb.add(s)
		}
	}
	return nil
}

// unindexedSealed lists the sealed segments of tenant's manifest (with
// blocks and anchored summaries) that the index lists none of, indexed
// (the ones it lists): their entries were deleted, or the indexer has not
// committed them yet. They are loaded from their summary files or
// segments, so no record of theirs is hidden (counted in
// Stats.IndexMisses).
func (db *DB) unindexedSealed(tenant string, indexed [][16]byte) [][16]byte {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	listed := make(map[[16]byte]bool, len(indexed))
	for _, id := range indexed {
		listed[id] = true
	}
	var out [][16]byte
	for _, e := range tm.body.Segments {
		if e.State != segSealed || e.Blocks == 0 || len(e.Summaries) == 0 || tm.problems[e.ID] != nil {
			continue
		}
		if id, err := parseSegHex(e.ID); err == nil && !listed[id] {
			out = append(out, id)
		}
	}
	return out
}

// sealedRollup returns the rollup of tenant's segment seg as a summary, and
// the anchor its load must match, when the catalog may enter it lazily:
// sealed, its summaries anchored, no journal left beside it, no damage
// found by Open. A rollup that does not decode is a fault, and the segment
// is then loaded now.
func (db *DB) sealedRollup(tenant string, seg [16]byte, tb *tenantBlocks) (*blockSummary, *segAnchor) {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil, nil
	}
	e := tm.entry(segHex(seg))
	if e == nil || e.State != segSealed || len(e.Summaries) == 0 || e.Rollup == nil || e.JournalID != "" ||
		tm.problems[e.ID] != nil || tm.lost[e.ID] != nil {
		return nil, nil // loaded now, as before rollups: its damage is reported
	}
	r, err := e.Rollup.summary(seg)
	if err != nil {
		tb.fault(err)
		return nil, nil
	}
	return r, &segAnchor{digest: e.Summaries, blocks: e.Blocks}
}

// indexedSegment returns segment seg's summaries from the index, anchored
// by a when set (from the summary file or the segment when the index's do
// not match), and the index entries it could not use.
func (db *DB) indexedSegment(tenant string, seg [16]byte, a *segAnchor) ([]*blockSummary, error, error) {
	p := segmentBlocksPrefix(tenant, seg)
	n := len(tenantPrefix(keyBlock, tenant))
	var raws [][]byte
	var seqs []uint64
	var bad []error
	err := db.index.scanPrefix(p, func(k, v []byte) error {
		_, seq, err := parseBlockKey(k, n)
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: index key %x: %w (`logstore segments reindex` rebuilds it)", ErrIndexCorrupt, k, err))
			return nil
		}
		raws, seqs = append(raws, append([]byte(nil), v...)), append(seqs, seq)
		return nil
	})
	if err != nil {
		return nil, nil, db.index.typed(err)
	}
	if a == nil {
		return decodeIndexed(seg, raws, seqs, bad)
	}
	if sums := anchoredRaws(seg, raws, seqs, *a); sums != nil && len(bad) == 0 {
		return sums, nil, nil
	}
	db.stats.indexMisses.Add(1)
	have, faults, _ := decodeIndexed(seg, raws, seqs, bad)
	sums, err := db.anchoredSummariesAt(tenant, seg, have, *a)
	if err != nil {
		return nil, faults, fmt.Errorf("segment %s: %w", segHex(seg), err)
	}
	return sums, faults, nil
}

// decodeIndexed decodes index values raws (blocks seqs) of segment seg,
// reporting with bad those that do not decode.
func decodeIndexed(seg [16]byte, raws [][]byte, seqs []uint64, bad []error) ([]*blockSummary, error, error) {
	have := make([]*blockSummary, 0, len(raws))
	for i, v := range raws {
		s, err := decodeSummary(seg, seqs[i], v)
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: block summary of segment %s block %d: %w (`logstore segments reindex` rebuilds it)", ErrIndexCorrupt, segHex(seg), seqs[i], err))
			continue
		}
		have = append(have, s)
	}
	return have, errors.Join(bad...), nil
}

// anchoredRaws decodes the index values raws (blocks seqs) of sealed
// segment seg when they are exactly the summaries anchor a covers (the
// common case, checked without decoding or re-encoding them), and returns
// nil otherwise.
func anchoredRaws(seg [16]byte, raws [][]byte, seqs []uint64, a segAnchor) []*blockSummary {
	if len(raws) != a.blocks {
		return nil
	}
	for i, q := range seqs {
		if q != uint64(i) {
			return nil
		}
	}
	if d := summaryFileDigest(seg, raws); !bytes.Equal(d[:], a.digest) {
		return nil
	}
	sums := make([]*blockSummary, len(raws))
	for i, v := range raws {
		s, err := decodeAnchoredSummary(seg, uint64(i), v)
		if err != nil {
			return nil // bytes this engine did not write: the slow path says why
		}
		sums[i] = s
	}
	return sums
}

// sequential reports whether sums are blocks 0, 1, 2, ... in order: what a
// summary file lists (its block i is sequence number i).
func sequential(sums []*blockSummary) bool {
	for i, s := range sums {
		if s.seq != uint64(i) {
			return false
		}
	}
	return true
}

// parseBlockKey splits a 'b' key whose tenant prefix is n bytes long.
func parseBlockKey(k []byte, n int) (seg [16]byte, seq uint64, err error) {
	if len(k) != n+24 {
		return seg, 0, fmt.Errorf("%w: block key of %d bytes", ErrCorrupt, len(k))
	}
	copy(seg[:], k[n:])
	for _, b := range k[n+16:] {
		seq = seq<<8 | uint64(b)
	}
	return seg, seq, nil
}

func (tb *tenantBlocks) add(s *blockSummary) {
	sb := tb.bySeg[s.seg]
	if sb != nil && sb.lazy != nil {
		return // sealed: its load takes every block from the anchored summaries
	}
	if sb == nil {
		sb = &segBlocks{id: s.seg, minID: s.minID, maxID: s.maxID}
		tb.bySeg[s.seg] = sb
		tb.segs = append(tb.segs, sb)
	}
	if n := len(sb.blocks); n > 0 && sb.blocks[n-1].seq >= s.seq {
		return // loaded from the index already
	}
	sb.blocks = append(sb.blocks, s)
	sb.byID[s.kind].add(s)
	if string(s.minID[:]) < string(sb.minID[:]) {
		sb.minID = s.minID
	}
	if string(s.maxID[:]) > string(sb.maxID[:]) {
		sb.maxID = s.maxID
	}
}

// find returns the blocks of the given kind that may hold tenant's record
// id, by id range and bloom filter, and the error to report if none holds
// it (entries that could not be used). Lazy segments whose id range holds
// id are loaded, outside the catalog's lock.
func (c *catalog) find(tenant string, id ID, kind byte) ([]candidate, error, error) {
	var out []candidate
	var lazies []*segBlocks
	c.mu.Lock()
	tb, err := c.loadLocked(tenant)
	if err != nil {
		c.mu.Unlock()
		return nil, nil, err
	}
	var found []*blockSummary
	for _, sb := range tb.segs {
		if string(id[:]) < string(sb.minID[:]) || string(id[:]) > string(sb.maxID[:]) {
			continue
		}
		if sb.lazy != nil {
			lazies = append(lazies, sb)
			continue
		}
		found = sb.byID[kind].find(id, found[:0])
		for _, s := range found {
			out = append(out, candidate{seg: sb.id, sum: s})
		}
	}
	faults := []error{tb.faultErr()}
	c.mu.Unlock()
	for _, sb := range lazies {
		_, byID, f, err := sb.lazy.get()
		if err != nil {
			faults = append(faults, err)
			continue
		}
		faults = append(faults, f)
		found = byID[kind].find(id, found[:0])
		for _, s := range found {
			out = append(out, candidate{seg: sb.id, sum: s})
		}
	}
	return out, errors.Join(faults...), nil
}

// apply makes one index job's changes at once (so a scan never sees a
// flushed record twice, or not at all): the summaries the indexer committed,
// the journal blocks written, and the journal blocks a flush covered. A
// tenant not loaded gets the committed summaries from the index when it is.
func (c *catalog) apply(kvs []kv) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(kvs)
}

// commitAndApply runs commit (the index write of kvs), then apply. A job
// that drops journal blocks (a flush) commits with the catalog locked: a
// tenant loaded in between would take the flushed block from the index and
// the journal blocks still listed in mems, and serve those records twice.
func (c *catalog) commitAndApply(kvs []kv, commit func() error) error {
	if !slices.ContainsFunc(kvs, func(e kv) bool { return e.drop != nil }) {
		err := commit()
		if err == nil {
			c.apply(kvs)
		}
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := commit()
	if err == nil {
		c.applyLocked(kvs)
	}
	return err
}

func (c *catalog) applyLocked(kvs []kv) {
	defer c.changes.signal()
	for _, e := range kvs {
		tb := c.tenants[e.tenant]
		switch {
		case e.drop != nil:
			c.mems[e.tenant] = slices.DeleteFunc(c.mems[e.tenant], e.drop.covers)
			if len(c.mems[e.tenant]) == 0 {
				delete(c.mems, e.tenant)
			}
			if tb != nil {
				tb.dropMem(e.drop)
			}
		case e.sum == nil:
		case e.sum.mem != nil:
			c.mems[e.tenant] = append(c.mems[e.tenant], e.sum)
			if tb != nil {
				tb.add(e.sum)
			}
		case tb != nil:
			tb.add(e.sum)
		}
	}
}

// memCounts are the records and payloads tenant's journal blocks hold.
func (c *catalog) memCounts(tenant string) (records, payloads int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.mems[tenant] {
		if s.kind == kindPayload {
			payloads += s.count
		} else {
			records += s.count
		}
	}
	return records, payloads
}

// dropTenant forgets a deleted tenant, journal blocks included.
func (c *catalog) dropTenant(tenant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tenants, tenant)
	delete(c.mems, tenant)
}

// dropMem removes the journal blocks d covers: their segment's block list
// is rebuilt without them (snapshots keep the old list).
func (tb *tenantBlocks) dropMem(d *memDrop) {
	sb := tb.bySeg[d.journal]
	if sb == nil {
		return
	}
	delete(tb.bySeg, d.journal)
	tb.segs = slices.DeleteFunc(tb.segs, func(x *segBlocks) bool { return x == sb })
	for _, s := range sb.blocks {
		if !d.covers(s) {
			tb.add(s)
		}
	}
}

// reset drops every loaded tenant, after a change of the index's summaries
// other than the indexer's additions.
func (c *catalog) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tenants = map[string]*tenantBlocks{}
	c.changes.signal()
}
