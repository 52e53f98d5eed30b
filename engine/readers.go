package engine

import (
	"sync"

	"github.com/logstore/logstore/segment"
)

// readerCache keeps segment readers open for Get. Readers hold no key: every
// read asks the DEK cache, so revocation applies within its max age.
type readerCache struct {
	db  *DB
	max int

	mu      sync.Mutex // guards entries and tick
	entries map[string]*readerEntry
	tick    uint64
}

type readerEntry struct {
	r    *segment.Reader
	refs int
	used uint64
	dead bool // invalidated while in use: close on release
}

func newReaderCache(db *DB, max int) *readerCache {
	return &readerCache{db: db, max: max, entries: map[string]*readerEntry{}}
}

// acquire returns an open reader for path; release it with release.
func (c *readerCache) acquire(path, tenant string) (*segment.Reader, error) {
	c.mu.Lock()
	c.tick++
	if e, ok := c.entries[path]; ok {
		e.refs++
		e.used = c.tick
		c.mu.Unlock()
		return e.r, nil
	}
	c.mu.Unlock()
	r, err := segment.Open(path, c.db.readOpts(tenant))
	if err != nil {
		return nil, err
	}
	if err := c.db.segmentAllowed(tenant, path, r.Header()); err != nil {
		_ = r.Close()
		return nil, err
	}
	if err := c.db.checkSlotGeneration(tenant, r); err != nil {
		_ = r.Close()
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[path]; ok { // lost a race: use the winner's
		_ = r.Close()
		e.refs++
		return e.r, nil
	}
	c.evictLocked()
	c.entries[path] = &readerEntry{r: r, refs: 1, used: c.tick}
	return r, nil
}

func (c *readerCache) release(path string, r *segment.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[path]
	if !ok || e.r != r {
		_ = r.Close() // invalidated and removed while in use
		return
	}
	e.refs--
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
	}
}

// invalidate drops path's reader (after recovery truncated it, a rewrap
// changed its key slot, or retention deleted it).
func (c *readerCache) invalidate(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[path]
	if !ok {
		return
	}
	delete(c.entries, path)
	if e.refs == 0 {
		_ = e.r.Close()
	}
}

func (c *readerCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.entries {
		_ = e.r.Close()
		delete(c.entries, p)
	}
}
