package engine

// Scans over block summaries: pick the blocks a scan may need from the
// catalog, read their metadata sections from the segments (no key needed),
// and merge their records into one (time, id)-ordered stream. A block is read
// only once the merge needs records from its time range, so a first page
// reads the few newest candidate blocks.

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// scanBounds are a scan's options in the units blocks are summarized in.
type scanBounds struct {
	ix *Index
	// valueHashes are the bloom keys of a scan by string values, computed
	// once (blockgroup.go).
	valueHashes []uint64
	ranges      []rangeField // ScanOptions.Ranges (ranges.go)
	from, to    int64        // [from, to) in unix ns; to exclusive
	hasTo       bool
	after       *Cursor
	afterNs     int64
	oldest      bool
}

func newScanBounds(o *ScanOptions) scanBounds {
	b := scanBounds{ix: &o.Index, from: minTime.UnixNano(), oldest: o.Oldest, after: o.After, ranges: o.ranges}
	if !o.From.IsZero() {
		b.from = o.From.UnixNano()
	}
	if !o.To.IsZero() {
		b.to, b.hasTo = o.To.UnixNano(), true
	}
	if o.After != nil {
		b.afterNs = o.After.Time.UnixNano()
	}
	if f := o.Index.field; f != nil && o.Index.statuses == nil {
		for _, v := range o.Index.values {
			if v != "" {
				b.valueHashes = append(b.valueHashes, bloomKey(f.index, v))
			}
		}
	}
	return b
}

// block reports whether a block may hold a record the scan selects.
func (b *scanBounds) block(s *blockSummary) bool {
	return b.inRange(s) && s.mayMatch(b.ix)
}

// inRange is block without the filters (bloom, value lists): the tests of
// the summary's ranges, which cost a few comparisons.
func (b *scanBounds) inRange(s *blockSummary) bool {
	if s.maxTime < b.from || (b.hasTo && s.minTime >= b.to) {
		return false
	}
	if b.after != nil && ((b.oldest && s.maxTime < b.afterNs) || (!b.oldest && s.minTime > b.afterNs)) {
		return false
	}
	for i := range b.ranges {
		if s.mem == nil && b.ranges[i].blockMisses(s) {
			return false
		}
	}
	return s.kind == kindLog
}

// wholeCount returns how many records of a block the scan selects when the
// summary alone answers it: the block lies wholly inside the time range,
// no cursor applies, and the index is the time index or a field the block
// has a value list for.
func (b *scanBounds) wholeCount(s *blockSummary) (int, bool) {
	if b.after != nil || s.kind != kindLog || s.minTime < b.from || (b.hasTo && s.maxTime >= b.to) {
		return 0, false
	}
	for i := range b.ranges {
		if s.mem != nil || !b.ranges[i].blockWithin(s) {
			return 0, false
		}
	}
	if b.ix.field == nil {
		return s.count, true
	}
	return s.exactCount(b.ix)
}

// record reports whether the scan selects m.
func (b *scanBounds) record(m *Meta) bool {
	t := m.Time.UnixNano()
	if t < b.from || (b.hasTo && t >= b.to) || !b.ix.match(m) {
		return false
	}
	for i := range b.ranges {
		if !b.ranges[i].holds(b.ranges[i].value(m)) {
			return false
		}
	}
	if b.after != nil {
		c := cmpPos(t, m.ID, b.afterNs, b.after.ID)
		if (b.oldest && c <= 0) || (!b.oldest && c >= 0) {
			return false
		}
	}
	return true
}

// cmpPos orders records by time, then id.
func cmpPos(t1 int64, id1 ID, t2 int64, id2 ID) int {
	if c := cmp.Compare(t1, t2); c != 0 {
		return c
	}
	return cmp.Compare(string(id1[:]), string(id2[:]))
}

// candidate is a block a scan may read.
type candidate struct {
	seg [16]byte
	sum *blockSummary
	// lazy is set for a sealed segment not loaded yet (catalogseg.go):
	// sum is then its rollup, which the scan replaces with its blocks.
	lazy *lazySegment
}

// candidates lists the blocks of segs that b may need, in no order (a scan
// queues them, candQueue; a count takes them as they come). A sealed
// segment entered by its rollup stands as one candidate, the rollup, until
// the scan reaches it (lazyBlocks), so a first page touches the newest
// segments' blocks, not every block.
func (b *scanBounds) candidates(segs []segView) []candidate {
	var out []candidate
	for _, sv := range segs {
		if sv.lazy != nil {
			if c, ok := b.lazyCandidate(sv); ok {
				out = append(out, c)
			}
			continue
		}
		out = b.appendBlocks(out, sv.id, sv.blocks)
	}
	return out
}

// scanMetas calls fn with the metadata of every record o selects, in scan
// order, until fn returns false or an error. It reads the catalog as of its
// start and the blocks' metadata sections; it needs no key. A segment it
// cannot read is skipped and reported in the error returned once the rest
// is done (a fault in one segment does not hide the others).
func (db *DB) scanMetas(ctx context.Context, tenant string, o ScanOptions, fn func(m *Meta) (bool, error)) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.clampTimes() {
		return nil
	}
	segs, faultErr, err := db.catalog.snapshot(tenant)
	if err != nil {
		return err
	}
	f := &scanFaults{db: db, tenant: tenant, first: faultErr}
	b := newScanBounds(&o)
	keep := b.keepFor()
	q := &candQueue{oldest: o.Oldest, c: b.candidates(segs)}
	heap.Init(q)
	h := &metaHeap{oldest: o.Oldest}
	for n := 0; ; n++ {
		if o.Limit > 0 && n >= o.Limit {
			return f.err()
		}
		// Read every block that may hold a record ahead of the heap's
		// head: blocks come in order of their newest (oldest) time.
		for q.Len() > 0 && (h.Len() == 0 || b.reaches(q.c[0].sum, h.ms[0])) {
			if err := ctx.Err(); err != nil {
				return err
			}
			c := heap.Pop(q).(candidate)
			if f.skip(c.seg) {
				continue
			}
			if c.lazy != nil {
				for _, x := range b.lazyBlocks(c, f) {
					heap.Push(q, x)
				}
				continue
			}
			for _, m := range f.selected(&b, c, keep) {
				heap.Push(h, m)
			}
		}
		if h.Len() == 0 {
			return f.err()
		}
		if more, err := fn(heap.Pop(h).(*Meta)); err != nil || !more {
			return err
		}
	}
}

// scanFaults are the segments a scan, count or lookup could not read: it
// goes on without them and reports them at the end.
type scanFaults struct {
	db     *DB
	tenant string
	first  error // the catalog's own faults
	bad    map[[16]byte]bool
	ok     map[[16]byte]bool // admitted
	errs   []error
}

func (f *scanFaults) skip(seg [16]byte) bool { return f.bad[seg] }

// note records what loading a segment's summaries tolerated (nil: nothing):
// the answer is whole, but the damage is reported.
func (f *scanFaults) note(err error) {
	if err != nil && len(f.errs) < maxCatalogFaults {
		f.errs = append(f.errs, err)
	}
}

// fault records why seg could not be read, and skips its other blocks. A
// segment that retention or DeleteTenant removed since the read began is
// no fault: its records are deleted, and the answer is as of the deletion.
func (f *scanFaults) fault(seg [16]byte, err error) {
	if f.bad == nil {
		f.bad = map[[16]byte]bool{}
	}
	f.bad[seg] = true
	if f.db.deletedSince(f.tenant, seg) {
		return
	}
	if len(f.errs) < maxCatalogFaults {
		f.errs = append(f.errs, err)
	}
}

// selected reads candidate c's block and returns the records b selects; a
// block that cannot be read is a fault (recorded, and nothing returned).
func (f *scanFaults) selected(b *scanBounds, c candidate, keep func([]byte) bool) []*Meta {
	metas, err := f.db.readBlockMetas(f.tenant, c.seg, c.sum, keep)
	if err != nil {
		f.fault(c.seg, err)
		return nil
	}
	out := metas[:0]
	for _, m := range metas {
		if b.record(m) {
			out = append(out, m)
		}
	}
	return out
}

// deletedSince reports whether segment seg of tenant was deleted (by
// retention or DeleteTenant) since this read's view of the tenant was
// taken. A writer's catalog knows at once; a read-only DB asks the
// tenant's manifest as it is now.
func (db *DB) deletedSince(tenant string, seg [16]byte) bool {
	if !db.opts.ReadOnly {
		return !db.catalog.holds(tenant, seg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	body, mk, err := db.readManifest(ctx, tenant)
	if errors.Is(err, vfs.ErrNotExist) {
		return true // the tenant was deleted
	}
	if err != nil {
		return false // cannot tell: report the loss
	}
	keys.Zero(mk)
	e := body.entry(segHex(seg))
	return e == nil || e.State == segDeleting || e.State == segErasing
}

// err is the report of every fault (nil: none).
func (f *scanFaults) err() error {
	if f.first == nil && len(f.errs) == 0 {
		return nil
	}
	return errors.Join(append([]error{f.first}, f.errs...)...)
}

// admitted reports whether segment seg may be read, checking it once per
// count (a count takes whole blocks from their summaries without reading
// them, so it asks what a read of the segment would).
func (f *scanFaults) admitted(seg [16]byte) bool {
	if f.skip(seg) {
		return false
	}
	if f.ok == nil {
		f.ok = map[[16]byte]bool{}
	}
	if f.ok[seg] {
		return true
	}
	path := f.db.segPath(f.tenant, seg)
	r, err := f.db.readers.acquire(path, f.tenant, true)
	if err != nil {
		f.fault(seg, blockReadErr(path, &blockSummary{}, err))
		return false
	}
	f.db.readers.release(path, r)
	f.ok[seg] = true
	return true
}

// keepIsExact reports whether keepFor's test of the encoded metadata is
// the whole selection (time, a status index, ranges; no cursor and no
// string values, which it only pre-filters), so a count needs no decoding.
func (b *scanBounds) keepIsExact() bool {
	return b.after == nil && (b.ix.field == nil || b.ix.statuses != nil)
}

// counted counts the entries of candidate c that keep accepts, decoding
// none (keepIsExact); a block that cannot be read is a fault.
func (f *scanFaults) counted(c candidate, keep func([]byte) bool) int {
	entries, err := f.db.readBlockEntries(f.tenant, c.seg, c.sum)
	if err != nil {
		f.fault(c.seg, err)
		return 0
	}
	n := 0
	for j, raw := range entries {
		if len(raw) < metaFixedLen+3 || raw[0] != encodingV1 {
			// Not an encoding keep can read: what decoding it would say.
			_, err := decodeMeta(raw, &Meta{})
			f.fault(c.seg, blockReadErr(f.db.segPath(f.tenant, c.seg), c.sum, fmt.Errorf("record %d: %w", j, errors.Join(err, ErrCorrupt))))
			return 0
		}
		if keep(raw) {
			n++
		}
	}
	return n
}

// reaches reports whether block s may hold a record that comes before m in
// scan order.
func (b *scanBounds) reaches(s *blockSummary, m *Meta) bool {
	if b.oldest {
		return s.minTime <= m.Time.UnixNano()
	}
	return s.maxTime >= m.Time.UnixNano()
}

// prefetchForCount fetches at once, on a bucket, what a count is about to
// read one segment after another: admitted opens each segment, lazyBlocks
// loads the summaries of those the rollup cannot count.
func (db *DB) prefetchForCount(tenant string, cands []candidate, b *scanBounds) {
	db.prefetchSegmentEnds(tenant, cands, func(c candidate) bool {
		_, whole := b.wholeCount(c.sum)
		return c.lazy != nil && !whole
	})
}

// countRecords counts the records o selects, taking whole blocks' counts
// from their summaries. Segments it cannot read are left out and reported
// in the error, returned with the count of the others.
func (db *DB) countRecords(ctx context.Context, tenant string, o ScanOptions) (int, error) {
	if err := o.check(); err != nil {
		return 0, err
	}
	if o.clampTimes() {
		return 0, nil
	}
	segs, faultErr, err := db.catalog.snapshot(tenant)
	if err != nil {
		return 0, err
	}
	f := &scanFaults{db: db, tenant: tenant, first: faultErr}
	b := newScanBounds(&o)
	keep := b.keepFor()
	n := 0
	cands := b.candidates(segs)
	if db.remote != nil && o.Limit == 0 {
		db.prefetchForCount(tenant, cands, &b)
	}
	for i := 0; i < len(cands); i++ {
		c := cands[i]
		if o.Limit > 0 && n >= o.Limit {
			return o.Limit, f.err()
		}
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if c.lazy != nil {
			// A segment inside the selection counts from its rollup;
			// else its blocks do, in any order: they go last.
			if k, ok := b.wholeCount(c.sum); !ok {
				cands = append(cands, b.lazyBlocks(c, f)...)
			} else if f.admitted(c.seg) {
				n += k
			}
			continue
		}
		if c.sum.mem == nil && !f.admitted(c.seg) {
			continue
		}
		if k, ok := b.wholeCount(c.sum); ok {
			n += k
			continue
		}
		if b.keepIsExact() {
			n += f.counted(c, keep)
			continue
		}
		n += len(f.selected(&b, c, keep))
	}
	if o.Limit > 0 && n > o.Limit {
		n = o.Limit
	}
	return n, f.err()
}

// readBlockMetas reads the metadata section of a block the catalog lists
// (not its body), checks it against the summary's hash, and decodes the
// entries keep accepts (nil: every entry); keep sees an entry's encoded
// bytes, so a scan skips decoding what cannot match.
func (db *DB) readBlockMetas(tenant string, seg [16]byte, s *blockSummary, keep func(raw []byte) bool) ([]*Meta, error) {
	if s.mem != nil {
		return decodeEntries("journal of "+tenant, s, s.mem.meta, keep)
	}
	entries, err := db.readBlockEntries(tenant, seg, s)
	if err != nil {
		return nil, err
	}
	return decodeEntries(db.segPath(tenant, seg), s, entries, keep)
}

// readBlockEntries reads the encoded metadata entries of a block the
// catalog lists, checked against its summary's hash and count.
func (db *DB) readBlockEntries(tenant string, seg [16]byte, s *blockSummary) ([][]byte, error) {
	if s.mem != nil {
		return s.mem.meta, nil
	}
	path := db.segPath(tenant, seg)
	r, err := db.readers.acquire(path, tenant, true)
	if err != nil {
		return nil, blockReadErr(path, s, err)
	}
	defer db.readers.release(path, r)
	blk, err := r.ReadMetaSectionAt(s.offset, s.seq)
	if err != nil {
		return nil, blockReadErr(path, s, err)
	}
	// The section carries no checksum of its own (the frame's covers the
	// body too): its hash must be the one the summary recorded (for a
	// sealed segment, anchored in its manifest entry: catalog load checks
	// that), or someone edited it.
	if metaHashOf(blk.Meta) != s.metaHash {
		return nil, fmt.Errorf("%w: %s block %d: its plaintext metadata is not what was indexed: the segment or the index was edited (`logstore segments verify` tells which)",
			ErrIndexMismatch, path, s.seq)
	}
	if len(blk.Meta) != s.count {
		return nil, fmt.Errorf("%w: %s block %d holds %d records, its index entry says %d; `logstore segments reindex` rebuilds the index",
			ErrIndexMismatch, path, s.seq, len(blk.Meta), s.count)
	}
	for j, raw := range blk.Meta {
		if len(raw) < 2 || raw[1] != s.kind {
			return nil, fmt.Errorf("%w: %s block %d record %d is not of the kind its index entry says", ErrIndexMismatch, path, s.seq, j)
		}
	}
	return blk.Meta, nil
}

// decodeEntries decodes the metadata entries of block s that keep accepts
// (nil: every entry).
func decodeEntries(path string, s *blockSummary, entries [][]byte, keep func(raw []byte) bool) ([]*Meta, error) {
	var metas []*Meta
	for j, raw := range entries {
		if len(raw) < 2 || raw[1] != s.kind {
			return nil, fmt.Errorf("%w: %s block %d record %d is not of the kind its index entry says", ErrIndexMismatch, path, s.seq, j)
		}
		if keep != nil && !keep(raw) {
			continue
		}
		m := &Meta{}
		if _, err := decodeMeta(raw, m); err != nil {
			return nil, blockReadErr(path, s, fmt.Errorf("record %d: %w", j, err))
		}
		metas = append(metas, m)
	}
	return metas, nil
}

// keepFor returns the cheap test of encoded metadata (format.go) that
// leaves out entries the scan cannot select: by time, status or the bytes
// of a string value (a test that may let through what b.record refuses,
// never the reverse). nil keeps everything.
func (b *scanBounds) keepFor() func(raw []byte) bool {
	var values [][]byte
	if b.ix.field != nil && b.ix.statuses == nil {
		for _, v := range b.ix.values {
			if v != "" {
				values = append(values, []byte(v))
			}
		}
	}
	return func(raw []byte) bool {
		if len(raw) < metaFixedLen+3 || raw[0] != encodingV1 {
			return true // decoded in full, and refused there if bad
		}
		t := int64(binary.LittleEndian.Uint64(raw[18:]))
		if t < b.from || (b.hasTo && t >= b.to) {
			return false
		}
		for i := range b.ranges {
			if v, ok := b.ranges[i].rawValue(raw); ok && !b.ranges[i].holds(v) {
				return false
			}
		}
		switch {
		case b.ix.field == nil:
			return true
		case b.ix.statuses != nil:
			st := int(binary.LittleEndian.Uint16(raw[27:]))
			return slices.Contains(b.ix.statuses, st)
		}
		for _, v := range values {
			if bytes.Contains(raw[metaFixedLen:], v) {
				return true
			}
		}
		return false
	}
}

// keepID keeps the entry of record id.
func keepID(id ID) func(raw []byte) bool {
	return func(raw []byte) bool { return len(raw) >= 18 && bytes.Equal(raw[2:18], id[:]) }
}

func blockReadErr(path string, s *blockSummary, err error) error {
	if errors.Is(err, vfs.ErrNotExist) {
		return fmt.Errorf("%w: %s (block %d is in the index): %w", ErrSegmentLoss, path, s.seq, err)
	}
	return fmt.Errorf("logstore/engine: %s block %d at offset %d: %w", path, s.seq, s.offset, err)
}

// metaHeap orders records for a merge: the head is the next in scan order.
type metaHeap struct {
	ms     []*Meta
	oldest bool
}

func (h *metaHeap) Len() int { return len(h.ms) }
func (h *metaHeap) Less(i, j int) bool {
	c := cmpPos(h.ms[i].Time.UnixNano(), h.ms[i].ID, h.ms[j].Time.UnixNano(), h.ms[j].ID)
	if h.oldest {
		return c < 0
	}
	return c > 0
}
func (h *metaHeap) Swap(i, j int) { h.ms[i], h.ms[j] = h.ms[j], h.ms[i] }
func (h *metaHeap) Push(x any)    { h.ms = append(h.ms, x.(*Meta)) }
func (h *metaHeap) Pop() any {
	x := h.ms[len(h.ms)-1]
	h.ms = h.ms[:len(h.ms)-1]
	return x
}

// findBlocks lists the blocks of the given kind that may hold tenant's
// record id, by their id ranges and bloom filters.
func (db *DB) findBlocks(tenant string, id ID, kind byte) ([]candidate, *scanFaults, error) {
	cands, faultErr, err := db.catalog.find(tenant, id, kind)
	return cands, &scanFaults{db: db, tenant: tenant, first: faultErr}, err
}

// inBlocks calls read on each candidate until one holds the record (read
// reports found). A block that fails to read does not hide the record in
// another; the faults (and the catalog's) are returned only when no block
// had the record.
func inBlocks(cands []candidate, f *scanFaults, read func(c candidate) (bool, error)) (found bool, err error) {
	for _, c := range cands {
		ok, err := read(c)
		if err != nil {
			f.fault(c.seg, err)
			continue
		}
		if ok {
			return true, nil
		}
	}
	return false, f.err()
}
