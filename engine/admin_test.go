package engine

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// fakeClock is a settable clock for retention and cache-age tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestRetentionRemovesExactlyExpiredSegments(t *testing.T) {
	clk := &fakeClock{now: t0}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now })
	defer db.Close()
	rng := rand.New(rand.NewSource(5))
	require.NoError(t, db.Admin().SetRetention(bg, "acme", 72*time.Hour))
	old, err := db.tn("acme").Append(bg, genRecords(rng, 20, t0.Add(-100*time.Hour)))
	require.NoError(t, err)
	// Force a new segment for the recent records.
	require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	recent, err := db.tn("acme").Append(bg, genRecords(rng, 20, t0.Add(-time.Hour)))
	require.NoError(t, err)
	_, err = db.tn("beta").Append(bg, genRecords(rng, 5, t0.Add(-500*time.Hour))) // no retention for beta
	require.NoError(t, err)

	rep, err := db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Segments)
	require.Equal(t, 20, rep.Records)
	for _, id := range old {
		_, err := db.tn("acme").GetMeta(bg, id)
		require.ErrorIs(t, err, ErrNotFound)
	}
	for _, id := range recent {
		_, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
	}
	n, err := db.tn("beta").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 5, n)
	db.flushJournals(t) // what Reindex does first: journaled records into blocks
	live := dumpIndex(t, db.DB)
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	requireSameIndex(t, live, dumpIndex(t, db.DB), true, "after retention")

	// Later, the recent records expire too (their segment is active: it is sealed and removed).
	clk.Add(80 * time.Hour)
	rep, err = db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Equal(t, 20, rep.Records)
	n, err = db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n)
}

const marker = "SEALED-MARKER-c0ffee"

func markedRecords(n int) []Record {
	recs := genRecords(rand.New(rand.NewSource(9)), n, t0)
	for i := range recs {
		r := &recs[i]
		r.Path = "/" + marker + "/path"
		r.Query = "q=" + marker
		r.ClientIP = marker + "-ip"
		r.ConsumerID = marker + "-consumer"
		r.RequestHeaders = []Header{{"authorization", "Bearer " + marker}}
		r.Attributes = map[string]string{"x": marker}
		r.Payload = &Payload{RequestBody: []byte("body " + marker), ResponseBody: []byte(marker + " response")}
	}
	return recs
}

// scanDir returns the files under dir containing needle.
func scanDir(t *testing.T, dir string, needles ...[]byte) []string {
	var hits []string
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // Pebble removed an obsolete file while we walked
		}
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				hits = append(hits, p)
			}
		}
		return nil
	}))
	return hits
}

func TestNoSealedFieldOnDiskAndDeleteTenant(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	ids, err := db.tn("acme").Append(bg, markedRecords(50))
	require.NoError(t, err)
	_, err = db.tn("beta").Append(bg, genRecords(rand.New(rand.NewSource(1)), 10, t0))
	require.NoError(t, err)
	got, err := db.tn("acme").Get(bg, ids[3], PartAll)
	require.NoError(t, err)
	require.Contains(t, got.Path, marker, "the test would prove nothing")
	require.NoError(t, db.Close())
	require.Empty(t, scanDir(t, dir, []byte(marker)), "a sealed field reached the disk in plaintext")

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	rep, err := db.Admin().DeleteTenant(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, 1, rep.Segments)
	require.Equal(t, 50, rep.Records)
	require.Equal(t, []string{keys.LocalURI("acme")}, rep.KeysDestroyed)
	_, err = db.tn("acme").GetMeta(bg, ids[0])
	require.ErrorIs(t, err, ErrNotFound)
	_, err = os.Stat(filepath.Join(dir, "keys", "acme.key"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, "segments", "acme"))
	require.ErrorIs(t, err, os.ErrNotExist)
	n, err := db.tn("beta").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 10, n, "other tenants untouched")
	// The tenant can start over with a fresh key.
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(2)), 2, t0))
	require.NoError(t, err)
}

func TestRevocationWithinCacheMaxAge(t *testing.T) {
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: 5 * time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now; o.DEKCache = &cache })
	defer db.Close()
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(3)), 5, t0))
	require.NoError(t, err)
	require.NoError(t, db.local.SetEnabled(keys.LocalURI("acme"), false))
	// Within the max age the cached DEK still serves reads (documented).
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err)
	clk.Add(5*time.Minute + time.Second)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, keys.ErrKeyDisabled)
	require.ErrorIs(t, err, keys.ErrKeyUnusable)
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 1, t0))
	require.ErrorIs(t, err, keys.ErrKeyUnusable, "writes fail closed")
	m, err := db.tn("acme").GetMeta(bg, ids[0])
	require.NoError(t, err, "metadata stays readable")
	require.Equal(t, ids[0], m.ID)
	require.NoError(t, db.local.SetEnabled(keys.LocalURI("acme"), true))
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err)
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 1, t0))
	require.NoError(t, err)
}

func TestRewrapLocalToLocalThenDeleteOldKey(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 1 << 20 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(6)), 300, t0)
	var ids []ID
	for i := 0; i < 300; i += 50 {
		got, err := db.tn("acme").Append(bg, recs[i:i+50])
		require.NoError(t, err)
		ids = append(ids, got...)
		require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	}
	var progress []RewrapProgress
	rep, err := db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2027"), func(p RewrapProgress) { progress = append(progress, p) })
	require.NoError(t, err)
	require.Equal(t, 6, rep.Rewrapped)
	require.Len(t, progress, 6)
	// Idempotent.
	rep, err = db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2027"), nil)
	require.NoError(t, err)
	require.Equal(t, 6, rep.Skipped)
	require.NoError(t, db.local.Destroy(keys.LocalURI("acme")))
	db.cache.Purge()
	for i, id := range ids {
		got, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], id, got)
	}
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, []string{keys.LocalURI("acme-2027")}, st.Tenants["acme"].KeysInUse)
}

func TestLinkKeyValidation(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	_, err := db.Admin().LinkKey(bg, "acme", "nonsense")
	require.ErrorIs(t, err, keys.ErrBadURI)
	_, err = db.Admin().LinkKey(bg, "acme", "aws-kms://arn:aws:kms:us-east-1:111122223333:key/x")
	require.ErrorIs(t, err, ErrKeyValidation)
	uri, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Empty(t, uri, "a failed validation changes nothing")
	_, err = db.Admin().LinkKey(bg, "acme", keys.LocalURI("acme-key"))
	require.NoError(t, err)
	uri, err = db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, keys.LocalURI("acme-key"), uri)
}

// TestReplayedKeySlotIsRejected puts an old copy of a segment's header (the
// key slot before a rewrap) back: reads of that segment are refused.
func TestReplayedKeySlotIsRejected(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(8)), 5, t0))
	require.NoError(t, err)
	require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	segs, err := db.Admin().Segments(bg, "acme")
	require.NoError(t, err)
	id, _ := segs[0].segID()
	path := db.segPath("acme", id)
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-new"), nil)
	require.NoError(t, err)
	cur, err := os.ReadFile(path)
	require.NoError(t, err)
	// Replay the old header (both key slots) over the rewrapped one.
	copy(cur[:3072], old[:3072])
	require.NoError(t, os.WriteFile(path, cur, 0o600))
	db.readers.invalidate(path)
	db.cache.Purge()
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, ErrKeySlotRollback)
	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	require.ErrorIs(t, checks[0].OpenErr, ErrKeySlotRollback)
}
