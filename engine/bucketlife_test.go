package engine

import (
	"bytes"
	"math/rand"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
)

// TestBucketRetention: a node's retention removes its expired segments from
// the bucket too; a reader stops serving them even before (it applies the
// tenant's retention to what it reads).
func TestBucketRetention(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, w, "acme", 1, 3, 400)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	r := f.reader(nil)
	require.Equal(t, len(want), countAll(t, r, "acme", ScanOptions{}))
	require.NotEmpty(t, f.objects("tenants/acme/", segmentExt))

	// The records are from t0, a month before now: a day's retention expires them.
	require.NoError(t, w.Admin().SetRetention(bg, "acme", 24*time.Hour))
	rep, err := w.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Positive(t, rep.Segments)
	up, err := w.Admin().Upload(bg)
	require.NoError(t, err)
	require.Empty(t, f.objects("tenants/acme/", segmentExt), "deleted from the bucket: %+v", up)
	require.Empty(t, f.objects("tenants/acme/", summaryExt))
	require.NoError(t, r.Refresh(bg))
	require.Zero(t, countAll(t, r, "acme", ScanOptions{}))
}

// TestBucketRewrap: keys rewrap re-uploads the rewritten key slots (same
// size, new bytes, a conditional overwrite); readers read the segments
// under the new key, also with the old key disabled; a reader given the
// pre-rewrap object back refuses it as a rollback.
func TestBucketRewrap(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, w, "acme", 2, 3, 400)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	segs := f.objects("tenants/acme/", segmentExt)
	require.NotEmpty(t, segs)
	before := f.getRaw(segs[0])

	r := f.reader(nil) // opened before the rewrap: sees it after Refresh
	require.NoError(t, readAll(r, "acme", want))

	key2 := f.kms.newKey(t)
	_, err = w.Admin().LinkKey(bg, "acme", key2)
	require.NoError(t, err)
	rw, err := w.Admin().Rewrap(bg, "acme", key2, nil)
	require.NoError(t, err)
	require.Positive(t, rw.Rewrapped)
	_, err = w.Admin().Upload(bg) // the background pass may have done it already
	require.NoError(t, err)
	require.NotEqual(t, before, f.getRaw(segs[0]), "the rewrapped segment went up again")
	st, err := w.Stats(bg)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Upload.Uploaded, uint64(2*len(segs)))

	_, err = f.kms.admin.DisableKey(bg, &kms.DisableKeyInput{KeyId: keyID(f.key)})
	require.NoError(t, err)
	fresh := f.reader(nil)
	require.NoError(t, readAll(fresh, "acme", want), "readable under the new key alone")
	require.NoError(t, r.Refresh(bg))
	r.cache.Purge()
	require.NoError(t, readAll(r, "acme", want), "the older reader, refreshed")

	// The pre-rewrap copy put back: its slot generation is older than the
	// manifest's.
	f.putRaw(segs[0], before)
	_, err = f.kms.admin.EnableKey(bg, &kms.EnableKeyInput{KeyId: keyID(f.key)})
	require.NoError(t, err)
	old := f.reader(func(o *Options) { o.BlockCacheBytes = -1 })
	require.ErrorIs(t, readAll(old, "acme", want), ErrKeySlotRollback)
}

// TestBucketManifestReplay: a node manifest put back to an older copy
// while a reader runs is refused as a rollback.
func TestBucketManifestReplay(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, w, "acme", 3, 1, 300)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	man := f.objects("tenants/acme/", "/"+manifestFile)
	require.Len(t, man, 1)
	old := f.getRaw(man[0])
	fill(t, w, "acme", 4, 1, 300)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)

	r := f.reader(nil)
	require.Equal(t, 600, countAll(t, r, "acme", ScanOptions{}))
	f.putRaw(man[0], old)
	require.NoError(t, r.Refresh(bg))
	_, err = r.tn("acme").Count(bg, ScanOptions{})
	require.ErrorIs(t, err, ErrManifestRollback)
}

// TestBucketDeleteTenant: deleting a tenant crypto-shreds it and removes
// every node's objects of it from the bucket, and says how many.
func TestBucketDeleteTenant(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w1, w2 := f.writer(t.TempDir(), nil), f.writer(t.TempDir(), nil)
	defer w2.Close()
	defer w1.Close()
	for _, w := range []*testDB{w1, w2} {
		for _, tn := range []string{"acme", "beta"} {
			_, err := w.Admin().LinkKey(bg, tn, f.key)
			require.NoError(t, err)
			fill(t, w, tn, 5, 1, 300)
			w.flushJournals(t)
		}
		_, err := w.Admin().Upload(bg)
		require.NoError(t, err)
	}
	n := len(f.objects("tenants/acme/", ""))
	require.Equal(t, 7, n, "2 nodes x (segment, summary, manifest), and the shared CONFIG")
	rep, err := w1.Admin().DeleteTenant(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, n, rep.BucketObjects)
	require.Positive(t, rep.BucketBytes)
	require.Empty(t, f.objects("tenants/acme/", ""))
	require.Len(t, f.objects("tenants/beta/", ""), 7, "the other tenant is untouched")
	r := f.reader(nil)
	require.Equal(t, 600, countAll(t, r, "beta", ScanOptions{}))

	// The name can be used again: a new tenant, published afresh.
	_, err = w1.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, w1, "acme", 8, 1, 50)
	w1.flushJournals(t)
	_, err = w1.Admin().Upload(bg)
	require.NoError(t, err)
	require.Equal(t, 50, countAll(t, f.reader(nil), "acme", ScanOptions{}))
}

// TestBucketEraseLeavesNothing: after an erase, no object in the bucket
// holds the erased session's id (the scan can fail: before the erase, one
// does), and a reader no longer returns its records.
func TestBucketEraseLeavesNothing(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), func(o *Options) { o.Compression = "none" })
	defer w.Close()
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	recs := genRecords(rand.New(rand.NewSource(9)), 600, t0)
	const secret = "sess-ERASE-ME-4f1c"
	for i := range recs {
		if i%10 == 0 {
			recs[i].SessionID = secret
		}
	}
	_, err = w.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	holding := func() int {
		n := 0
		for _, k := range f.objects("tenants/", "") {
			if bytes.Contains(f.getRaw(k), []byte(secret)) {
				n++
			}
		}
		return n
	}
	require.Positive(t, holding(), "the session id is in the bucket before the erase")

	rep, err := w.Admin().Erase(bg, "acme", EraseFilter{SessionID: secret})
	require.NoError(t, err)
	require.Equal(t, 60, rep.Erased)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	require.Zero(t, holding(), "an object still holds the erased session")
	r := f.reader(nil)
	require.Equal(t, 540, countAll(t, r, "acme", ScanOptions{}))
}

// TestBucketNodeManifestDeleted: a node manifest deleted from the bucket
// under a running reader makes the tenant's reads fail, never answer
// without that node's records.
func TestBucketNodeManifestDeleted(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, w, "acme", 6, 1, 300)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	r := f.reader(nil)
	require.Equal(t, 300, countAll(t, r, "acme", ScanOptions{}))
	man := f.objects("tenants/acme/", "/"+manifestFile)
	require.Len(t, man, 1)
	require.NoError(t, f.b.Delete(bg, man[0]))
	require.NoError(t, r.Refresh(bg))
	_, err = r.tn("acme").Count(bg, ScanOptions{})
	require.ErrorIs(t, err, ErrManifestMissing)
}
