package engine

// Group filters: a lookup by a high-cardinality value (a trace id, a
// session) must not test every block's bloom filter and read every block
// that filter lets through by chance: that grows with the store. Every
// groupBlocks consecutive blocks of a segment (by sequence number) form a
// group, and the summary of the group's last block carries a bloom filter
// of the indexed string values of all the group's request logs
// (blockSummary.group). A scan for such values skips the whole group when
// that filter says none is there (scanBounds.candidates), so it tests about
// one filter per group and reads the few blocks of the groups that match.
//
// The group filter is derived from the blocks alone, in file order, by
// every path that summarizes a segment (the writer, replay, a read-only
// open, the summary of a segment sealed by recovery), so they all encode
// the same summaries: a sealed segment's are anchored in its manifest.

import (
	"fmt"

	"github.com/logstore/logstore/segment"
)

// groupBlocks is the number of consecutive blocks (by sequence) a group
// filter covers.
const groupBlocks = 64

// groupBuilder gathers the string-value hashes of a segment's blocks in
// file order and puts the group filter on the summary of each group's last
// block. A group it has not seen whole (it started after the group's first
// block, or a block is missing) gets no filter.
type groupBuilder struct {
	group  uint64 // seq / groupBlocks of the blocks gathered
	next   uint64 // the sequence number expected next
	whole  bool   // every block of the group so far was seen
	hashes map[uint64]struct{}
}

// add takes the next block's summary (summarize fills values); on the
// group's last block it sets s.group. It drops s.values either way.
func (g *groupBuilder) add(s *blockSummary) {
	values := s.values
	s.values = nil
	if g.hashes == nil || s.seq/groupBlocks != g.group || s.seq != g.next {
		g.group, g.whole = s.seq/groupBlocks, s.seq%groupBlocks == 0
		g.hashes = map[uint64]struct{}{}
	}
	g.next = s.seq + 1
	for _, h := range values {
		g.hashes[h] = struct{}{}
	}
	if s.seq%groupBlocks != groupBlocks-1 {
		return
	}
	if g.whole && len(g.hashes) > 0 {
		f := newBloom(len(g.hashes))
		for h := range g.hashes {
			f.addHash(h)
		}
		s.group = &f
	}
	g.hashes = nil
}

// seed makes g ready for block from of r (a replay that starts mid-group):
// it gathers the blocks of from's group before it, read from r.
func (g *groupBuilder) seed(r *segment.Reader, from int) error {
	start := from - from%groupBlocks
	for i := start; i < from; i++ {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return err
		}
		metas, kind, err := decodeBlockMetas(blk.Meta)
		if err == nil {
			g.add(summarize(r.Header().ID, blk.Info.Seq, blk.Info.Offset, kind, metas, blk.Meta))
		}
		blk.Release()
		if err != nil {
			return fmt.Errorf("%s block %d: %w", r.Path(), i, err)
		}
	}
	return nil
}

// groupMayMatch reports whether the group the filter of s covers may hold
// a request log with one of the values hashed in b.valueHashes.
func (s *blockSummary) groupMayMatch(valueHashes []uint64) bool {
	for _, h := range valueHashes {
		if s.group.hasHash(h) {
			return true
		}
	}
	return false
}

// skippedGroups lists, for a scan by string values, the groups of blocks
// whose filter rules every value out (by group number); nil when none is
// or the scan is not by string values.
func (b *scanBounds) skippedGroups(blocks []*blockSummary) map[uint64]bool {
	if len(b.valueHashes) == 0 {
		return nil
	}
	var skip map[uint64]bool
	for _, s := range blocks {
		if s.group != nil && !s.groupMayMatch(b.valueHashes) {
			if skip == nil {
				skip = map[uint64]bool{}
			}
			skip[s.seq/groupBlocks] = true
		}
	}
	return skip
}
