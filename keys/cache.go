package keys

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheMaxAge is how long an unwrapped DEK is served without asking
// the key provider again. It is also the longest time a customer's revocation
// (DisableKey, a key-policy change, ScheduleKeyDeletion) takes to bite: after
// it, every read and write re-validates with the provider and fails closed.
const DefaultCacheMaxAge = 5 * time.Minute

// CacheOptions configure a Cache.
type CacheOptions struct {
	// MaxEntries bounds the cached DEKs (default 10,000 when zero); the
	// oldest entry is evicted first.
	MaxEntries int
	// MaxAge is how long a DEK is served from the cache; 0 disables caching
	// (every unwrap goes to the provider). DefaultCacheOptions sets 5 minutes.
	MaxAge time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

// DefaultCacheOptions returns 10,000 entries with a 5-minute max age.
func DefaultCacheOptions() CacheOptions {
	return CacheOptions{MaxEntries: 10_000, MaxAge: DefaultCacheMaxAge}
}

// CacheStats are the cache's counters.
type CacheStats struct {
	Hits, Misses    uint64
	ProviderCalls   uint64 // calls that reached the provider (generate, unwrap, wrap, rewrap, describe)
	Entries         int
	RevocationPurge uint64 // times a revocation error purged a key's entries
}

// Cache is a Provider that keeps unwrapped DEKs in memory for MaxAge in front
// of another Provider. It is fail-closed: an entry older than MaxAge is never
// served (not even when the provider is unreachable), and a revocation error
// from the provider purges every entry of that key at once.
type Cache struct {
	p    Provider
	opts CacheOptions

	mu      sync.Mutex // guards entries and order
	entries map[cacheKey]*cacheEntry
	order   []cacheKey // insertion order, for eviction

	hits, misses, calls, purges atomic.Uint64
}

type cacheKey struct {
	uri     string
	wrapped [32]byte // SHA-256 of the wrapped DEK
	ctx     [32]byte // SHA-256 of the canonical context
}

type cacheEntry struct {
	dek     []byte
	fetched time.Time
}

// NewCache wraps p.
func NewCache(p Provider, opts CacheOptions) *Cache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{p: p, opts: opts, entries: map[cacheKey]*cacheEntry{}}
}

// MaxAge is the configured max age (0: caching disabled).
func (c *Cache) MaxAge() time.Duration { return c.opts.MaxAge }

// Provider returns the wrapped provider.
func (c *Cache) Provider() Provider { return c.p }

func keyFor(uri string, wrapped []byte, ec EncryptionContext) cacheKey {
	return cacheKey{uri: uri, wrapped: sha256.Sum256(wrapped), ctx: sha256.Sum256(ec.Canonical())}
}

func (c *Cache) Scheme() string { return c.p.Scheme() }

// GenerateDataKey always asks the provider (a new segment must prove the key
// is usable now) and caches the new DEK for reads of that segment.
func (c *Cache) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	c.calls.Add(1)
	dk, err := c.p.GenerateDataKey(ctx, uri, ec)
	if err != nil {
		c.onError(uri, err)
		return DataKey{}, err
	}
	c.put(keyFor(uri, dk.Wrapped, ec), dk.Plaintext)
	return dk, nil
}

// Unwrap serves a DEK younger than MaxAge from memory, else asks the provider.
// The caller owns (and should zero) the returned copy.
func (c *Cache) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	k := keyFor(uri, wrapped, ec)
	if dek, ok := c.get(k); ok {
		c.hits.Add(1)
		return dek, nil
	}
	c.misses.Add(1)
	c.calls.Add(1)
	dek, err := c.p.Unwrap(ctx, uri, wrapped, ec)
	if err != nil {
		c.onError(uri, err)
		return nil, err
	}
	c.put(k, dek)
	return dek, nil
}

// Fresh reports whether the DEK of (uri, wrapped, ec) is cached and younger
// than MaxAge; the engine rolls its active segment when it is not, so that
// writes re-validate the key as often as reads do.
func (c *Cache) Fresh(uri string, wrapped []byte, ec EncryptionContext) bool {
	dek, ok := c.get(keyFor(uri, wrapped, ec))
	Zero(dek)
	return ok
}

func (c *Cache) Wrap(ctx context.Context, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	c.calls.Add(1)
	w, err := c.p.Wrap(ctx, uri, dek, ec)
	if err != nil {
		c.onError(uri, err)
	}
	return w, err
}

func (c *Cache) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec EncryptionContext) ([]byte, error) {
	c.calls.Add(1)
	w, err := c.p.Rewrap(ctx, from, wrapped, to, ec)
	if err != nil {
		var ke *Error
		if errors.As(err, &ke) {
			c.onError(ke.KeyURI, err)
		}
	}
	return w, err
}

func (c *Cache) Describe(ctx context.Context, uri string) (KeyState, error) {
	c.calls.Add(1)
	st, err := c.p.Describe(ctx, uri)
	if err != nil {
		c.onError(uri, err)
	}
	return st, err
}

// onError purges a key's entries when the provider says it is revoked: once
// revocation is known, no cached DEK of that key is served again.
func (c *Cache) onError(uri string, err error) {
	if errors.Is(err, ErrKeyUnusable) {
		c.PurgeKey(uri)
		c.purges.Add(1)
	}
}

func (c *Cache) get(k cacheKey) ([]byte, bool) {
	if c.opts.MaxAge <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	if c.opts.Now().Sub(e.fetched) >= c.opts.MaxAge {
		Zero(e.dek)
		delete(c.entries, k)
		return nil, false
	}
	return append([]byte(nil), e.dek...), true
}

func (c *Cache) put(k cacheKey, dek []byte) {
	if c.opts.MaxAge <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		Zero(e.dek)
		e.dek = append([]byte(nil), dek...)
		e.fetched = c.opts.Now()
		return
	}
	for len(c.entries) >= c.opts.MaxEntries && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.entries[old]; ok {
			Zero(e.dek)
			delete(c.entries, old)
		}
	}
	c.entries[k] = &cacheEntry{dek: append([]byte(nil), dek...), fetched: c.opts.Now()}
	c.order = append(c.order, k)
	if len(c.order) > 2*c.opts.MaxEntries {
		c.compactOrder()
	}
}

// compactOrder drops order entries whose cache entry is gone. Caller holds mu.
func (c *Cache) compactOrder() {
	kept := c.order[:0]
	for _, k := range c.order {
		if _, ok := c.entries[k]; ok {
			kept = append(kept, k)
		}
	}
	c.order = kept
}

// PurgeKey drops every cached DEK wrapped under uri.
func (c *Cache) PurgeKey(uri string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if k.uri == uri {
			Zero(e.dek)
			delete(c.entries, k)
		}
	}
	c.compactOrder()
}

// Purge drops every cached DEK.
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		Zero(e.dek)
		delete(c.entries, k)
	}
	c.order = nil
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), ProviderCalls: c.calls.Load(), Entries: n, RevocationPurge: c.purges.Load()}
}
