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

	mu      sync.Mutex // guards entries and tick
	entries map[string]*readerEntry
	tick    uint64
}

type readerEntry struct {
	r    *segment.Reader
	refs int
	used uint64
	dead bool // invalidated while in use: close on release
	// admitted is set once the segment passed the checks sealed reads
	// need; a reader opened for metadata while the tenant's manifest
	// could not be authenticated (its key unavailable) has it unset.
	admitted bool
}

func newReaderCache(db *DB, max int) *readerCache {
	return &readerCache{db: db, max: max, entries: map[string]*readerEntry{}}
}

// acquire returns an open reader for path, admitted for sealed reads, or
// only for metadata reads when forMeta is set (see DB.admitMeta); release
// it with release.
func (c *readerCache) acquire(path, tenant string, forMeta bool) (*segment.Reader, error) {
	c.mu.Lock()
	c.tick++
	if e, ok := c.entries[path]; ok {
		e.refs++
		e.used = c.tick
		admitted := e.admitted
		c.mu.Unlock()
		if !admitted && !forMeta {
			if err := c.db.admit(tenant, path, e.r, false); err != nil {
				c.release(path, e.r)
				return nil, err
			}
			c.mu.Lock()
			e.admitted = true
			c.mu.Unlock()
		}
		return e.r, nil
	}
	c.mu.Unlock()
	r, err := segment.Open(path, c.db.readOpts(tenant))
	if err != nil {
		return nil, err
	}
	admitted := true
	if err := c.db.admit(tenant, path, r, false); err != nil {
		if !forMeta || c.db.admit(tenant, path, r, true) != nil {
			_ = r.Close()
			return nil, err
		}
		admitted = false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[path]; ok && (e.admitted || !admitted) { // lost a race: use the winner's
		_ = r.Close()
		e.refs++
		return e.r, nil
	}
	c.evictLocked()
	if e, ok := c.entries[path]; ok { // a less admitted winner: replace it
		delete(c.entries, path)
		if e.refs == 0 {
			_ = e.r.Close()
		} // else release closes it

	}
	c.entries[path] = &readerEntry{r: r, refs: 1, used: c.tick, admitted: admitted}
	return r, nil
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

// invalidateAll drops every reader; those in use close on release (a
// read-only DB's Refresh: active segments have grown since they opened).
func (c *readerCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.entries {
		delete(c.entries, p)
		if e.refs == 0 {
			_ = e.r.Close()
		}
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
