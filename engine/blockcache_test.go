package engine

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// blockCacheStats reads the block cache's counters through Stats.
func blockCacheStats(t *testing.T, db *testDB) (hits, misses uint64, entries int) {
	t.Helper()
	st, err := db.Stats(bg)
	require.NoError(t, err)
	return st.BlockCacheHits, st.BlockCacheMisses, st.BlockCacheEntries
}

// cachedBufs returns the buffers of every cached block, to check later that
// they were zeroed.
func cachedBufs(db *testDB) [][]byte {
	db.blocks.mu.Lock()
	defer db.blocks.mu.Unlock()
	var out [][]byte
	for _, b := range db.blocks.entries {
		out = append(out, b.buf)
	}
	return out
}

func requireZeroed(t *testing.T, bufs [][]byte) {
	t.Helper()
	require.NotEmpty(t, bufs)
	for _, b := range bufs {
		require.NotEmpty(t, b)
		for _, c := range b {
			if c != 0 {
				require.Fail(t, "a dropped block still holds plaintext")
			}
		}
	}
}

// appendSealed appends recs in batches of per, sealing the segment after
// each batch so that they land in distinct segment files.
func appendSealed(t testing.TB, db *testDB, tenant string, recs []Record, per int) []ID {
	t.Helper()
	var ids []ID
	for i := 0; i < len(recs); i += per {
		got, err := db.tn(tenant).Append(bg, recs[i:min(i+per, len(recs))])
		require.NoError(t, err)
		ids = append(ids, got...)
		require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants[tenant]); return nil }))
	}
	return ids
}

func TestBlockCacheServesNeighbours(t *testing.T) {
	for _, size := range []int{8 << 20, -1} {
		db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockCacheBytes = size })
		recs := genRecords(rand.New(rand.NewSource(11)), 200, t0)
		ids, err := db.tn("acme").Append(bg, recs)
		require.NoError(t, err)
		for round := 0; round < 2; round++ {
			for i, id := range ids {
				got, err := db.tn("acme").Get(bg, id, PartAll)
				require.NoError(t, err)
				requireSameRecord(t, recs[i], id, got)
			}
		}
		hits, misses, entries := blockCacheStats(t, db)
		if size < 0 {
			require.Zero(t, hits+misses, "disabled")
			require.Zero(t, entries)
		} else {
			require.Positive(t, entries)
			require.Greater(t, hits, 10*misses, "neighbours come from the cache")
			require.LessOrEqual(t, misses, uint64(entries), "every block decrypted once")
		}
		require.NoError(t, db.Close())
	}
}

// TestBlockCacheRevocation: the block cache never extends what a key
// allows. Every Get asks the DEK cache first, so a revoked key stops Gets
// once the DEK cache's max age has passed, however fresh the cached block.
func TestBlockCacheRevocation(t *testing.T) {
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: 5 * time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now; o.DEKCache = &cache; o.NoJournal = true })
	defer db.Close()
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(3)), 20, t0)) // the DEK is cached at t0
	require.NoError(t, err)
	clk.Add(4 * time.Minute)
	for _, id := range ids {
		_, err := db.tn("acme").Get(bg, id, PartAll) // the blocks are cached at t0+4m
		require.NoError(t, err)
	}
	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), false))
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.NoError(t, err, "within the DEK cache's max age, as without the block cache")

	clk.Add(time.Minute + time.Second) // the DEK is 5m1s old, the blocks 1m1s
	hits, _, entries := blockCacheStats(t, db)
	require.Positive(t, entries, "the blocks are still cached")
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.ErrorIs(t, err, keys.ErrKeyUnusable)
	hits2, _, _ := blockCacheStats(t, db)
	require.Equal(t, hits, hits2, "the cache was not even consulted")

	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), true))
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.NoError(t, err)
}

// TestBlockCacheExpiry: an entry is never served once older than the DEK
// cache's max age, even while the key is fine, and is zeroed; with a max
// age of 0 nothing is cached.
func TestBlockCacheExpiry(t *testing.T) {
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now; o.DEKCache = &cache; o.NoJournal = true })
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 10, t0))
	require.NoError(t, err)
	_, err = db.tn("acme").Get(bg, ids[0], PartLog)
	require.NoError(t, err)
	bufs := cachedBufs(db)
	clk.Add(time.Minute)
	hits, misses, _ := blockCacheStats(t, db)
	_, err = db.tn("acme").Get(bg, ids[0], PartLog)
	require.NoError(t, err)
	hits2, misses2, _ := blockCacheStats(t, db)
	require.Equal(t, hits, hits2)
	require.Equal(t, misses+1, misses2, "expired: decrypted again")
	requireZeroed(t, bufs)

	// The sweep drops expired plaintext nobody asks for.
	bufs = cachedBufs(db)
	clk.Add(time.Minute)
	db.blocks.sweepExpired()
	_, _, entries := blockCacheStats(t, db)
	require.Zero(t, entries)
	requireZeroed(t, bufs)
	require.NoError(t, db.Close())

	off := keys.CacheOptions{MaxAge: 0}
	db = openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.DEKCache = &off; o.NoJournal = true })
	defer db.Close()
	ids, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 10, t0))
	require.NoError(t, err)
	for range 2 {
		_, err = db.tn("acme").Get(bg, ids[0], PartLog)
		require.NoError(t, err)
	}
	_, _, entries = blockCacheStats(t, db)
	require.Zero(t, entries, "no DEK caching, no plaintext caching")
}

// TestBlockCacheInvalidation: deleting, rewrapping or reopening a segment
// drops (and zeroes) its cached blocks; Close zeroes everything.
func TestBlockCacheInvalidation(t *testing.T) {
	fill := func(t *testing.T, db *testDB, tenant string, ids []ID) [][]byte {
		for _, id := range ids {
			_, err := db.tn(tenant).Get(bg, id, PartAll)
			require.NoError(t, err)
		}
		bufs := cachedBufs(db)
		require.NotEmpty(t, bufs)
		return bufs
	}
	t.Run("op=DeleteTenant", func(t *testing.T) {
		db := openTest(t, vfs.Default, t.TempDir(), nil)
		defer db.Close()
		ids := appendSealed(t, db, "acme", genRecords(rand.New(rand.NewSource(5)), 60, t0), 20)
		bufs := fill(t, db, "acme", ids)
		_, err := db.Admin().DeleteTenant(bg, "acme")
		require.NoError(t, err)
		_, _, entries := blockCacheStats(t, db)
		require.Zero(t, entries)
		requireZeroed(t, bufs)
	})
	t.Run("op=retention", func(t *testing.T) {
		clk := &fakeClock{now: t0}
		db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now })
		defer db.Close()
		require.NoError(t, db.Admin().SetRetention(bg, "acme", 72*time.Hour))
		old := appendSealed(t, db, "acme", genRecords(rand.New(rand.NewSource(5)), 20, t0.Add(-100*time.Hour)), 20)
		recent := appendSealed(t, db, "acme", genRecords(rand.New(rand.NewSource(6)), 20, t0.Add(-time.Hour)), 20)
		bufs := fill(t, db, "acme", old)
		fill(t, db, "acme", recent)
		_, _, before := blockCacheStats(t, db)
		rep, err := db.Admin().ApplyRetention(bg)
		require.NoError(t, err)
		require.Equal(t, 1, rep.Segments)
		_, _, after := blockCacheStats(t, db)
		require.Equal(t, before-len(bufs), after, "only the deleted segment's blocks")
		requireZeroed(t, bufs)
	})
	t.Run("op=Rewrap", func(t *testing.T) {
		db := openTest(t, vfs.Default, t.TempDir(), nil)
		defer db.Close()
		recs := genRecords(rand.New(rand.NewSource(7)), 40, t0)
		ids := appendSealed(t, db, "acme", recs, 20)
		bufs := fill(t, db, "acme", ids)
		_, err := db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2027"), nil)
		require.NoError(t, err)
		requireZeroed(t, bufs)
		require.NoError(t, db.local.Destroy(keys.LocalURI("acme")))
		db.cache.Purge()
		for i, id := range ids {
			got, err := db.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err)
			requireSameRecord(t, recs[i], id, got)
		}
	})
	t.Run("op=reopen", func(t *testing.T) {
		// A file is read again only through a new reader, which is a new
		// identity in the cache's key: what the old one decrypted is
		// neither served nor kept.
		db := openTest(t, vfs.Default, t.TempDir(), nil)
		defer db.Close()
		ids := appendSealed(t, db, "acme", genRecords(rand.New(rand.NewSource(8)), 20, t0), 20)
		bufs := fill(t, db, "acme", ids)
		path := db.segPath("acme", segmentOf(t, db, "acme"))
		db.readers.invalidate(path)
		requireZeroed(t, bufs)
		_, misses, _ := blockCacheStats(t, db)
		_, err := db.tn("acme").Get(bg, ids[0], PartLog)
		require.NoError(t, err)
		_, misses2, _ := blockCacheStats(t, db)
		require.Equal(t, misses+1, misses2)
	})
	t.Run("op=Close", func(t *testing.T) {
		db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.NoJournal = true })
		ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(9)), 20, t0))
		require.NoError(t, err)
		bufs := fill(t, db, "acme", ids)
		require.NoError(t, db.Close())
		requireZeroed(t, bufs)
	})
}

// segmentOf returns the id of tenant's only segment.
func segmentOf(t *testing.T, db *testDB, tenant string) [16]byte {
	t.Helper()
	files, err := db.listSegmentFiles(tenant)
	require.NoError(t, err)
	require.Len(t, files, 1)
	return files[0]
}

// TestBlockCacheBoundAndCopy: the cache stays within its bytes, evicts the
// least recently used block and zeroes it, and its blocks are private
// copies: the recycled buffers of later reads never show through.
func TestBlockCacheBoundAndCopy(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockCacheBytes = 256 << 10; o.BlockSize = 16 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(10)), 600, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	_, err = db.tn("acme").Get(bg, ids[0], PartLog)
	require.NoError(t, err)
	first := cachedBufs(db)
	require.Len(t, first, 1)
	for i := len(ids) - 1; i > 0; i-- { // every other block, through the block buffer pool
		_, err := db.tn("acme").Get(bg, ids[i], PartAll)
		require.NoError(t, err)
		db.blocks.mu.Lock()
		require.LessOrEqual(t, db.blocks.used, int64(256<<10))
		db.blocks.mu.Unlock()
	}
	requireZeroed(t, first) // evicted: the least recently used
	for round := 0; round < 2; round++ {
		for i := 0; i < len(ids); i += 7 {
			got, err := db.tn("acme").Get(bg, ids[i], PartAll)
			require.NoError(t, err)
			requireSameRecord(t, recs[i], ids[i], got)
		}
	}
}

func TestBlockCacheConcurrentGets(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockCacheBytes = 256 << 10; o.BlockSize = 8 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(12)), 400, t0)
	ids := appendSealed(t, db, "acme", recs, 100)
	segs, err := db.listSegmentFiles("acme")
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for n := 0; n < 300; n++ {
				if g == 0 && n%50 == 0 { // invalidations race with reads
					db.readers.invalidate(db.segPath("acme", segs[rng.Intn(len(segs))]))
				}
				i := rng.Intn(len(ids))
				got, err := db.tn("acme").Get(bg, ids[i], PartAll)
				if !assert.NoError(t, err) {
					return
				}
				want := recs[i]
				want.ID, want.Time, want.HasPayload = ids[i], want.Time.UTC(), want.Payload != nil
				assert.Equal(t, want, *got)
			}
		}(g)
	}
	wg.Wait()
	hits, _, _ := blockCacheStats(t, db)
	require.Positive(t, hits)
}

func TestBlockCacheOptions(t *testing.T) {
	_, err := Open(t.TempDir(), &Options{BlockCacheBytes: 1000})
	require.ErrorIs(t, err, ErrInvalidOptions)
	o, err := (&Options{}).withDefaults()
	require.NoError(t, err)
	require.Equal(t, 8<<20, o.BlockCacheBytes)
}
