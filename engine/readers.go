package engine

import (
	"fmt"
	"sync"

	"github.com/logstore/logstore/segment"
)

// readerCache keeps segment readers open for Get. Readers hold no key: every
// read asks the DEK cache, so revocation applies within its max age.
type readerCache struct {
	db  *DB
	max int

	mu      sync.Mutex // guards entries, dropped, tick and gen
	entries map[string]*readerEntry
	// dropped are readers removed from entries (invalidated, replaced)
	// while in use: the last release closes them.
	dropped map[*segment.Reader]*readerEntry
	tick    uint64
	gen     uint64 // the last readerEntry.gen handed out
}

type readerEntry struct {
	r    *segment.Reader
	refs int
	used uint64
	// gen identifies this opening of the file, unique for the DB's life:
	// the block cache keys plaintext by it (blockcache.go cachedBlockKey).
	gen uint64
	// admitted is set once the segment passed the checks sealed reads
	// need; a reader opened for metadata while the tenant's manifest
	// could not be authenticated (its key unavailable) has it unset.
	admitted bool
}

func newReaderCache(db *DB, max int) *readerCache {
	return &readerCache{db: db, max: max, entries: map[string]*readerEntry{}, dropped: map[*segment.Reader]*readerEntry{}}
}

// acquire returns an open reader for path, admitted for sealed reads, or
// only for metadata reads when forMeta is set (see DB.admitMeta); release
// it with release.
func (c *readerCache) acquire(path, tenant string, forMeta bool) (*segment.Reader, error) {
	r, _, err := c.acquireGen(path, tenant, forMeta)
	return r, err
}

// acquireGen is acquire that also returns the reader's generation
// (readerEntry.gen).
func (c *readerCache) acquireGen(path, tenant string, forMeta bool) (*segment.Reader, uint64, error) {
	c.mu.Lock()
	c.tick++
	if e, ok := c.entries[path]; ok {
		e.refs++
		e.used = c.tick
		admitted, gen := e.admitted, e.gen
		c.mu.Unlock()
		if !admitted && !forMeta {
			if err := c.db.admit(tenant, path, e.r, false); err != nil {
				c.release(path, e.r)
				return nil, 0, err
			}
			c.mu.Lock()
			e.admitted = true
			c.mu.Unlock()
		}
		return e.r, gen, nil
	}
	c.mu.Unlock()
	r, err := segment.Open(path, c.db.readOpts(tenant))
	if err != nil {
		return nil, 0, err
	}
	admitted := true
	if err := c.db.admit(tenant, path, r, false); err != nil {
		if !forMeta || c.db.admit(tenant, path, r, true) != nil {
			_ = r.Close()
			return nil, 0, err
		}
		admitted = false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[path]; ok && (e.admitted || !admitted) { // lost a race: use the winner's
		_ = r.Close()
		e.refs++
		return e.r, e.gen, nil
	}
	c.evictLocked()
	if _, ok := c.entries[path]; ok { // a less admitted winner: replace it
		c.dropLocked(path)
	}
	c.gen++
	c.entries[path] = &readerEntry{r: r, refs: 1, used: c.tick, admitted: admitted, gen: c.gen}
	return r, c.gen, nil
}

// admit checks that reads may use segment r at path: the checks of
// segmentAllowed and checkSlotGeneration. With metaOnly, a tenant whose
// manifest could not be authenticated because its key is unavailable is
// let through: its plaintext metadata answers queries (as it did from the
// per-record index before), its sealed data needs the key anyway, and the
// reader is re-admitted before any sealed read.
func (db *DB) admit(tenant, path string, r *segment.Reader, metaOnly bool) error {
	if metaOnly {
		if tm := db.manifests.get(tenant); tm != nil && tm.body == nil && tm.unverified != nil {
			if id, ok := segmentIDOfPath(path); !ok || id != r.Header().ID {
				return fmt.Errorf("%w: %s holds segment %s", ErrSegmentTampered, path, segHex(r.Header().ID))
			}
			return db.checkSlotGeneration(tenant, r)
		}
	}
	if err := db.segmentAllowed(tenant, path, r.Header()); err != nil {
		return err
	}
	return db.checkSlotGeneration(tenant, r)
}

func (c *readerCache) release(path string, r *segment.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[path]; ok && e.r == r {
		e.refs--
		return
	}
	if e, ok := c.dropped[r]; ok { // dropped while in use
		if e.refs--; e.refs == 0 {
			delete(c.dropped, r)
			_ = r.Close()
		}
	}
}

// dropLocked removes path's reader and the plaintext the block cache holds
// from it; a reader in use is closed by its last release.
func (c *readerCache) dropLocked(path string) {
	c.db.blocks.invalidate(path)
	e, ok := c.entries[path]
	if !ok {
		return
	}
	delete(c.entries, path)
	if e.refs == 0 {
		_ = e.r.Close()
	} else {
		c.dropped[e.r] = e
	}
}

// evictLocked closes the least recently used idle readers beyond max.
func (c *readerCache) evictLocked() {
	for len(c.entries) >= c.max {
		var victim string
		var best uint64 = ^uint64(0)
		for p, e := range c.entries {
			if e.refs == 0 && e.used < best {
				victim, best = p, e.used
			}
		}
		if victim == "" {
			return // all busy: allow going over briefly
		}
		_ = c.entries[victim].r.Close()
		delete(c.entries, victim)
		c.db.blocks.invalidate(victim) // unreachable now: its generation is gone
	}
}

// invalidate drops path's reader (after recovery truncated it, a rewrap
// changed its key slot, or retention or DeleteTenant deleted it), and the
// plaintext the block cache holds from it: every place that must stop
// serving a file calls this, so the block cache is hooked here once.
func (c *readerCache) invalidate(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(path)
}

// invalidateAll drops every reader (and their cached blocks); those in use
// close on release (a read-only DB's Refresh: active segments have grown
// since they opened).
func (c *readerCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.entries {
		c.dropLocked(p)
	}
}

// whileCurrent runs f under the cache's lock if gen is still path's open
// reader, and reports whether it did. The block cache adds plaintext
// through it: invalidate and eviction drop a path's blocks under the same
// lock, so a read racing with them cannot cache plaintext after they ran
// (it would be unreachable, but stay in memory until evicted or expired).
func (c *readerCache) whileCurrent(path string, gen uint64, f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[path]; !ok || e.gen != gen {
		return false
	}
	f()
	return true
}

func (c *readerCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.entries {
		_ = e.r.Close()
		delete(c.entries, p)
	}
	for r := range c.dropped { // Close waited for the reads: none is in use
		_ = r.Close()
		delete(c.dropped, r)
	}
}
