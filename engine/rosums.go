package engine

// The summaries a read-only DB derived from active segments (readonly.go,
// readOnlySummaries), kept across Refresh: a segment is append-only, so a
// block already authenticated and summarized at the same place (sequence,
// offset, frame length) need not be decrypted again. Without this every
// Refresh (every tick of a follow, follow.go) decrypted every active
// segment whole. Bounded by the active segments read lately.

import (
	"maps"
	"sync"

	"github.com/logstore/logstore/segment"
)

// maxROSums bounds the segments kept.
const maxROSums = 64

type roSumCache struct {
	mu  sync.Mutex // guards m and gen
	m   map[string]*roSums
	gen uint64
}

// roSums are the summaries of a segment's first blocks and the group
// builder's state after them.
type roSums struct {
	infos  []segment.BlockInfo
	sums   []*blockSummary
	groups groupBuilder
	used   uint64
}

// get returns the summaries kept for the segment at path when they are of
// a prefix of blocks, with the group builder to go on with (a copy);
// otherwise nothing.
func (c *roSumCache) get(path string, blocks []segment.BlockInfo) ([]*blockSummary, groupBuilder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[path]
	if e == nil || len(e.infos) > len(blocks) {
		return nil, groupBuilder{}
	}
	for i, bi := range e.infos {
		if b := blocks[i]; b.Seq != bi.Seq || b.Offset != bi.Offset || b.Length != bi.Length {
			delete(c.m, path)
			return nil, groupBuilder{}
		}
	}
	c.gen++
	e.used = c.gen
	g := e.groups
	g.hashes = maps.Clone(g.hashes)
	return e.sums[:len(e.sums):len(e.sums)], g
}

// put keeps sums (of blocks) and the group builder after them for path.
func (c *roSumCache) put(path string, blocks []segment.BlockInfo, sums []*blockSummary, g groupBuilder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*roSums{}
	}
	if _, ok := c.m[path]; !ok && len(c.m) >= maxROSums {
		var oldest string
		for p, e := range c.m {
			if oldest == "" || e.used < c.m[oldest].used {
				oldest = p
			}
		}
		delete(c.m, oldest)
	}
	c.gen++
	g.hashes = maps.Clone(g.hashes)
	c.m[path] = &roSums{infos: append([]segment.BlockInfo(nil), blocks...), sums: sums, groups: g, used: c.gen}
}
