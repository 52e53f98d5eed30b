package engine

// Checking the index: VerifyIndex reads every block of it (Pebble's
// checksums); indexVerifier compares one tenant's entries, in a snapshot,
// with the records its segments hold (Verify).

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/logstore/logstore/segment"
)

// verifyIndex implements Admin.VerifyIndex (documented there).
func (db *DB) verifyIndex(ctx context.Context) error {
	n := 0
	err := guardIndex(func() error {
		return db.index.scan(nil, nil, func(_, _ []byte) error {
			if n++; n%4096 == 0 {
				return ctx.Err()
			}
			return nil
		})
	})
	if err != nil && isCorruption(err) {
		return db.index.typed(err)
	}
	return err
}

// indexVerifier compares one tenant's block summaries in the index with
// the blocks its segments hold.
type indexVerifier struct {
	db           *DB
	tenant       string
	active       [16]byte // the active segment, whose first activeBlocks blocks were indexed
	activeBlocks int
	checks       []SegmentCheck
	segs         map[[16]byte]int // segment -> its check
	// entries are the tenant's block summaries as the index held them at
	// the start (encoded), by block; seen marks the ones a block matched
	// or was compared with.
	entries map[blockRef][]byte
	seen    map[blockRef]bool
	// known are the segment files present at the snapshot: one created
	// after it (the tenant's first, or after a roll) is not compared.
	known map[[16]byte]bool
	// damaged holds the unreadable blocks (by offset) of each segment, nil
	// for a segment that could not be opened at all.
	damaged map[[16]byte]map[int64]bool
	// tails holds, for a damaged segment, the end of its last readable
	// block: what lies beyond (a torn or truncated tail) is its problem.
	tails map[[16]byte]int64
	ends  map[[16]byte]int64 // the end of each segment's last readable block
}

// blockRef names a block: its segment and sequence number.
type blockRef struct {
	seg [16]byte
	seq uint64
}

// newIndexVerifier reads tenant's block summaries from the index on the
// writer goroutine: the index as of a moment when every block written so
// far is indexed; blocks the active segment gets later are not compared.
func (db *DB) newIndexVerifier(ctx context.Context, tenant string) (*indexVerifier, error) {
	iv := &indexVerifier{db: db, tenant: tenant, entries: map[blockRef][]byte{}, seen: map[blockRef]bool{},
		damaged: map[[16]byte]map[int64]bool{}, tails: map[[16]byte]int64{}, ends: map[[16]byte]int64{}, segs: map[[16]byte]int{}, activeBlocks: -1}
	err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; ts != nil && ts.info != nil {
			if id, err := ts.info.segID(); err == nil {
				iv.active, iv.activeBlocks = id, ts.info.Blocks
			}
		}
		files, err := db.listSegmentFiles(tenant)
		if err != nil {
			return err
		}
		iv.known = make(map[[16]byte]bool, len(files))
		for _, id := range files {
			iv.known[id] = true
		}
		p := tenantPrefix(keyBlock, tenant)
		return db.index.scanPrefix(p, func(k, v []byte) error {
			seg, seq, err := parseBlockKey(k, len(p))
			if err != nil {
				return err
			}
			iv.entries[blockRef{seg, seq}] = append([]byte(nil), v...)
			return nil
		})
	})
	return iv, db.indexErr(err)
}

// addCheck adds the check of segment id and returns it.
func (iv *indexVerifier) addCheck(id [16]byte, c SegmentCheck) *SegmentCheck {
	iv.segs[id] = len(iv.checks)
	iv.checks = append(iv.checks, c)
	return &iv.checks[len(iv.checks)-1]
}

// manifestGaps adds the checks of what the manifest lists but no file holds
// (gone segments, lost blocks, the manifest itself): index entries pointing
// into a gone segment are covered by its report.
func (iv *indexVerifier) manifestGaps(gaps []SegmentCheck) {
	for _, g := range gaps {
		// Blocks a crash cut off an active segment: their records are
		// reported lost here, not one by one.
		if id, ok := segmentIDOfLostBlocks(g.Path); ok {
			if end, ok := iv.ends[id]; ok {
				iv.tails[id] = end
			}
		}
		if id, ok := segmentIDOfPath(g.Path); ok {
			if _, dup := iv.segs[id]; !dup {
				iv.addCheck(id, g)
				iv.damaged[id] = nil
				continue
			}
		}
		iv.checks = append(iv.checks, g)
	}
}

func (iv *indexVerifier) problem(c *SegmentCheck, block int, format string, args ...any) {
	c.IndexProblems = append(c.IndexProblems, IndexProblem{Block: block,
		Err: fmt.Errorf("%w: %s", ErrIndexMismatch, fmt.Sprintf(format, args...))})
}

// segment compares every readable block of r with its index entry.
func (iv *indexVerifier) segment(id [16]byte, r *segment.Reader, c *SegmentCheck) error {
	bad := map[int64]bool{}
	iv.damaged[id] = bad
	for _, p := range c.Result.Problems {
		if p.Block >= 0 {
			bad[p.Offset] = true
		}
	}
	end := int64(segment.HeaderSize)
	for _, b := range r.Blocks() {
		end = max(end, b.Offset+b.Length)
	}
	iv.ends[id] = end
	if len(c.Result.Problems) > 0 {
		iv.tails[id] = end
	}
	var groups groupBuilder
	for i, b := range r.Blocks() {
		if bad[b.Offset] {
			continue
		}
		if id == iv.active && i >= iv.activeBlocks {
			break // written after the snapshot
		}
		var blk *segment.Block
		var err error
		if r.Unlocked() {
			blk, err = r.ReadBlock(i) // the metadata authenticated with the body
		} else {
			blk, err = r.ReadMeta(i) // checksums only: KeyErr says so
		}
		if err != nil {
			bad[b.Offset] = true
			continue
		}
		iv.block(c, id, blk, &groups)
		blk.Release()
	}
	return nil
}

// block compares one block with its index entry.
func (iv *indexVerifier) block(c *SegmentCheck, seg [16]byte, blk *segment.Block, groups *groupBuilder) {
	ref := blockRef{seg, blk.Info.Seq}
	iv.seen[ref] = true
	c.IndexChecked += len(blk.Meta)
	metas, kind, err := decodeBlockMetas(blk.Meta)
	if err != nil {
		iv.problem(c, int(ref.seq), "block %d: its metadata does not decode: %v", ref.seq, err)
		return
	}
	sum := summarize(seg, ref.seq, blk.Info.Offset, kind, metas, blk.Meta)
	groups.add(sum)
	have, ok := iv.entries[ref]
	if ok && len(have) > 0 && have[0] == summaryVersion1 {
		sum = asVersion1([]*blockSummary{sum})[0] // indexed before group filters
	}
	want := appendSummary(nil, sum)
	switch {
	case !ok:
		iv.problem(c, int(ref.seq), "block %d (%d records) has no index entry: queries do not see its records", ref.seq, len(metas))
	case !bytes.Equal(have, want):
		iv.problem(c, int(ref.seq), "block %d: %s", ref.seq, summaryDiff(seg, ref.seq, have, want))
	}
}

// summaryDiff says how an index entry differs from the summary its block
// yields.
func summaryDiff(seg [16]byte, seq uint64, have, want []byte) string {
	h, err := decodeSummary(seg, seq, have)
	if err != nil {
		return fmt.Sprintf("its index entry does not decode (%v)", err)
	}
	w, _ := decodeSummary(seg, seq, want) // just encoded
	var out []string
	add := func(name string, a, b any) {
		if a != b {
			out = append(out, fmt.Sprintf("%s is %v in the index, %v in the block", name, a, b))
		}
	}
	add("offset", h.offset, w.offset)
	add("kind", h.kind, w.kind)
	add("record count", h.count, w.count)
	add("min time", h.minTime, w.minTime)
	add("max time", h.maxTime, w.maxTime)
	add("min id", h.minID, w.minID)
	add("max id", h.maxID, w.maxID)
	add("min status", h.minStatus, w.minStatus)
	add("max status", h.maxStatus, w.maxStatus)
	add("min latency", h.minLatency, w.minLatency)
	add("max latency", h.maxLatency, w.maxLatency)
	if len(out) == 0 {
		out = append(out, "its filter differs (a query may miss or wrongly consider its records)")
	}
	return "the index entry differs from the block: " + strings.Join(out, ", ")
}

// checkFor returns the check of segment id, adding one for a segment file
// that does not exist.
func (iv *indexVerifier) checkFor(id [16]byte) *SegmentCheck {
	if i, ok := iv.segs[id]; ok {
		return &iv.checks[i]
	}
	c := SegmentCheck{Tenant: iv.tenant, Path: iv.db.segPath(iv.tenant, id),
		OpenErr: fmt.Errorf("%w: the index lists blocks of segment %s, which does not exist", ErrIndexMismatch, iv.db.segPath(iv.tenant, id))}
	iv.damaged[id] = nil
	return iv.addCheck(id, c)
}

// unverifiable reports whether a block is in a segment or at an offset that
// could not be read (its problem is reported already).
func (iv *indexVerifier) unverifiable(seg [16]byte, offset int64) bool {
	bad, ok := iv.damaged[seg]
	if !ok {
		return false
	}
	if tail, ok := iv.tails[seg]; ok && offset >= tail {
		return true
	}
	return bad == nil || bad[offset]
}

// orphans reports the index entries that no readable block matched.
func (iv *indexVerifier) orphans() {
	for ref, v := range iv.entries {
		if iv.seen[ref] {
			continue
		}
		s, err := decodeSummary(ref.seg, ref.seq, v)
		if err == nil && iv.unverifiable(ref.seg, s.offset) {
			continue
		}
		if _, ok := iv.segs[ref.seg]; !ok {
			iv.checkFor(ref.seg)
			continue // the missing segment is the report
		}
		iv.problem(iv.checkFor(ref.seg), int(ref.seq), "the index lists block %d, which the segment does not hold", ref.seq)
	}
}
