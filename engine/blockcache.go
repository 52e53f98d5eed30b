package engine

// The block cache: decrypted, decompressed blocks kept for Get, so that the
// neighbouring records a debugger UI opens one after the other cost one
// decrypt and decompress per block instead of one per record.
//
// It caches plaintext, so it is held to the rules of the DEK cache it sits
// behind: readSealed asks the DEK cache (keys.Cache.Unwrap, fail-closed at
// its max age) before every lookup, so a revoked key stops Gets exactly as
// without this cache; an entry is never served once it is older than that
// max age either, so even a DEK cache that answered longer would not extend
// the life of plaintext; and every dropped entry is zeroed.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// cachedBlockKey names one block of one opened segment file: tenant, seg,
// seq and off say which block, reader which opening of the file it was
// decrypted through (readerEntry.gen, new each time the reader cache opens
// the file).
//
// Why the reader too: seg alone would almost do, since segment ids are
// random 128 bits and a segment created after retention or DeleteTenant
// removed one never reuses its id. But a file is also rewrapped, truncated
// by recovery, or replaced on disk by someone who can write the directory.
// It is read again only through a new reader (after an invalidation or an
// eviction), which is admitted against the manifest again and misses here,
// so a replaced file never serves the old file's plaintext, nor the old
// file the new one's. An entry is only ever served to reads through the
// reader it was decrypted through, and it holds bytes that were
// authenticated when they were decrypted: a file overwritten in place
// behind an open reader is detected at the next block that is not cached
// (or by Admin.Verify), not by a Get the cache answers.
type cachedBlockKey struct {
	tenant string
	seg    segment.ID
	seq    uint64
	off    int64
	reader uint64
}

// cachedBlock is a private copy of a block's records: meta and data alias
// buf, which nothing else references (segment.Block's buffers are recycled
// by Release, so they are never kept).
type cachedBlock struct {
	key   cachedBlockKey
	path  string
	meta  [][]byte
	data  [][]byte
	buf   []byte
	size  int64     // what it counts against the bound
	added time.Time // when it was decrypted (the DEK cache's clock)

	// Guarded by blockCache.mu:
	refs       int  // readers of meta/data in progress
	dead       bool // dropped from the cache: zero when refs reaches 0
	prev, next *cachedBlock
}

// blockEntryOverhead approximates the bookkeeping of one entry beyond its
// bytes (struct, map entry, slice headers are added per record).
const blockEntryOverhead = 256

// blockCache is a byte-bounded LRU of decrypted blocks.
type blockCache struct {
	max    int64         // bytes; <= 0: disabled
	maxAge time.Duration // the DEK cache's max age; 0: nothing is served
	now    func() time.Time

	// mu guards entries, byPath, the LRU list (head is the most recently
	// used), used, and every entry's refs, dead, prev and next. The bytes
	// of an entry are immutable while it is referenced and zeroed by
	// whoever drops the last reference.
	mu      sync.Mutex
	entries map[cachedBlockKey]*cachedBlock
	byPath  map[string]map[*cachedBlock]struct{}
	head    *cachedBlock
	tail    *cachedBlock
	used    int64
	sweep   *time.Timer // drops expired entries of an idle cache; nil when none is scheduled
	closed  bool

	hits, misses atomic.Uint64
}

func newBlockCache(max int64, maxAge time.Duration, now func() time.Time) *blockCache {
	if now == nil {
		now = time.Now
	}
	return &blockCache{max: max, maxAge: maxAge, now: now,
		entries: map[cachedBlockKey]*cachedBlock{}, byPath: map[string]map[*cachedBlock]struct{}{}}
}

// enabled reports whether lookups can ever hit. With a DEK cache max age
// of 0 every Get re-validates its key with the provider and no plaintext
// may outlive the call, so nothing is cached.
func (c *blockCache) enabled() bool { return c != nil && c.max > 0 && c.maxAge > 0 }

// get returns the cached block for k, referenced: the caller must call
// release. Expired entries are dropped, never served.
func (c *blockCache) get(k cachedBlockKey) *cachedBlock {
	if !c.enabled() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.entries[k]
	if b == nil {
		c.misses.Add(1)
		return nil
	}
	if c.expired(b) {
		c.dropLocked(b)
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	c.unlinkLocked(b)
	c.pushFrontLocked(b)
	b.refs++
	return b
}

func (c *blockCache) expired(b *cachedBlock) bool {
	return c.now().Sub(b.added) >= c.maxAge
}

// release ends what get began.
func (c *blockCache) release(b *cachedBlock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.refs--
	if b.dead && b.refs == 0 {
		keys.Zero(b.buf)
	}
}

// copyBlock returns a private copy of blk, decrypted at time added from the
// file at path, or nil when it is not to be cached: a block larger than a
// quarter of the bound would evict most of the cache for one entry.
func (c *blockCache) copyBlock(k cachedBlockKey, path string, blk *segment.Block, added time.Time) *cachedBlock {
	if !c.enabled() || len(blk.Data) != len(blk.Meta) {
		return nil
	}
	n := 0
	for i := range blk.Meta {
		n += len(blk.Meta[i]) + len(blk.Data[i])
	}
	size := int64(n) + int64(len(blk.Meta))*48 + blockEntryOverhead
	if size > c.max/4 {
		return nil
	}
	b := &cachedBlock{key: k, path: path, buf: make([]byte, n), size: size, added: added,
		meta: make([][]byte, len(blk.Meta)), data: make([][]byte, len(blk.Data))}
	o := 0
	for i := range blk.Meta {
		o += copy(b.buf[o:], blk.Meta[i])
		b.meta[i] = b.buf[o-len(blk.Meta[i]) : o : o]
		o += copy(b.buf[o:], blk.Data[i])
		b.data[i] = b.buf[o-len(blk.Data[i]) : o : o]
	}
	return b
}

// put adds b (from copyBlock), evicting the least recently used entries
// beyond the bound. The caller runs it under readerCache.whileCurrent.
func (c *blockCache) put(b *cachedBlock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		keys.Zero(b.buf)
		return
	}
	if old := c.entries[b.key]; old != nil { // a concurrent miss of the same block
		c.dropLocked(old)
	}
	for c.used+b.size > c.max && c.tail != nil {
		c.dropLocked(c.tail)
	}
	c.entries[b.key] = b
	if c.byPath[b.path] == nil {
		c.byPath[b.path] = map[*cachedBlock]struct{}{}
	}
	c.byPath[b.path][b] = struct{}{}
	c.pushFrontLocked(b)
	c.used += b.size
	c.scheduleSweepLocked()
}

// discard zeroes a copy that was not put.
func (c *blockCache) discard(b *cachedBlock) { keys.Zero(b.buf) }

// invalidate drops every entry of the file at path: it was deleted
// (retention, DeleteTenant), rewrapped, truncated by recovery, or its
// reader was closed.
func (c *blockCache) invalidate(path string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := range c.byPath[path] {
		c.dropLocked(b)
	}
}

// purge drops every entry; after close it caches nothing more.
func (c *blockCache) purge(close bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.tail != nil {
		c.dropLocked(c.tail)
	}
	if close {
		c.closed = true
		if c.sweep != nil {
			c.sweep.Stop()
			c.sweep = nil
		}
	}
}

// dropLocked removes b from the cache and zeroes it unless a reader holds
// it (release then does).
func (c *blockCache) dropLocked(b *cachedBlock) {
	if b.dead {
		return
	}
	b.dead = true
	if c.entries[b.key] == b {
		delete(c.entries, b.key)
	}
	if m := c.byPath[b.path]; m != nil {
		delete(m, b)
		if len(m) == 0 {
			delete(c.byPath, b.path)
		}
	}
	c.unlinkLocked(b)
	c.used -= b.size
	if b.refs == 0 {
		keys.Zero(b.buf)
	}
}

// scheduleSweepLocked makes sure expired plaintext does not stay in memory
// because no Get came to notice it: a timer drops expired entries every
// max age while the cache holds any. (The timer runs on the real clock;
// expiry is judged on the DEK cache's.)
func (c *blockCache) scheduleSweepLocked() {
	if c.sweep != nil || c.closed {
		return
	}
	c.sweep = time.AfterFunc(c.maxAge, c.sweepExpired)
}

func (c *blockCache) sweepExpired() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep = nil
	for b := c.tail; b != nil; {
		prev := b.prev
		if c.expired(b) {
			c.dropLocked(b)
		}
		b = prev
	}
	if c.head != nil {
		c.scheduleSweepLocked()
	}
}

func (c *blockCache) pushFrontLocked(b *cachedBlock) {
	b.prev, b.next = nil, c.head
	if c.head != nil {
		c.head.prev = b
	}
	c.head = b
	if c.tail == nil {
		c.tail = b
	}
}

func (c *blockCache) unlinkLocked(b *cachedBlock) {
	if b.prev != nil {
		b.prev.next = b.next
	} else if c.head == b {
		c.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else if c.tail == b {
		c.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

// blockCacheStats are the figures Stats reports.
func (c *blockCache) stats() (hits, misses uint64, entries int, bytes int64) {
	if c == nil {
		return 0, 0, 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits.Load(), c.misses.Load(), len(c.entries), c.used
}
