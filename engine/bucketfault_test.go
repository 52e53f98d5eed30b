package engine

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/segment"
)

// putRaw writes data under key, bypassing the engine (an attacker with
// write access to the bucket, or a test's setup).
func (f *fleet) putRaw(key string, data []byte) {
	sum := sha256.Sum256(data)
	_, err := f.b.Put(bg, key, bytes.NewReader(data), int64(len(data)), sum[:], objstore.Cond{})
	require.NoError(f.t, err)
}

func (f *fleet) getRaw(key string) []byte {
	data, _, err := f.b.GetRange(bg, key, 0, -1, "")
	require.NoError(f.t, err)
	return data
}

// objects lists the keys under prefix that end in ext.
func (f *fleet) objects(prefix, ext string) []string {
	l, err := f.b.List(bg, prefix, "")
	require.NoError(f.t, err)
	var out []string
	for _, o := range l.Objects {
		if strings.HasSuffix(o.Key, ext) {
			out = append(out, o.Key)
		}
	}
	return out
}

// fill appends n records per round for rounds rounds and returns them by id.
func fill(t *testing.T, w *testDB, tenant string, seed int64, rounds, n int) map[ID]Record {
	rng := rand.New(rand.NewSource(seed))
	want := map[ID]Record{}
	for round := 0; round < rounds; round++ {
		recs := genRecords(rng, n, t0.Add(time.Duration(round)*time.Minute))
		ids, err := w.tn(tenant).Append(bg, recs)
		require.NoError(t, err)
		for j, id := range ids {
			want[id] = recs[j]
		}
	}
	return want
}

// readAll reads every record of tenant through r: Count, then Get of each.
func readAll(r *DB, tenant string, want map[ID]Record) error {
	n, err := r.tn(tenant).Count(bg, ScanOptions{})
	if err != nil {
		return err
	}
	if n != len(want) {
		return errors.New("count differs")
	}
	for id := range want {
		if _, err := r.tn(tenant).Get(bg, id, PartAll); err != nil {
			return err
		}
	}
	return nil
}

// TestBucketUnreachable: appends go on while the bucket is down; Upload
// and a reader's Open fail with a retryable ErrUnavailable; once the bucket
// is back the pending segments go up and a reader sees them. A reader whose
// bucket goes away mid-way fails reads of blocks it has not cached with the
// same retryable error, and serves them again when it comes back.
func TestBucketUnreachable(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), func(o *Options) { o.UploadOnClose = 2 * time.Second })
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)

	f.srv.Faults.SetDown(true)
	want := fill(t, w, "acme", 1, 4, 500)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.ErrorIs(t, err, objstore.ErrUnavailable)
	require.True(t, objstore.IsRetryable(err))
	st, err := w.Stats(bg)
	require.NoError(t, err)
	require.Positive(t, st.Upload.Failures)

	_, err = Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts)})
	require.ErrorIs(t, err, objstore.ErrUnavailable)
	require.True(t, objstore.IsRetryable(err))

	f.srv.Faults.SetDown(false)
	rep, err := w.Admin().Upload(bg) // the background pass may have done it already
	require.NoError(t, err)
	require.Zero(t, rep.Pending)
	require.NotEmpty(t, f.objects("tenants/acme/", segmentExt))
	require.NoError(t, w.Close())

	r := f.reader(func(o *Options) { o.BlockCacheBytes = -1; o.BucketCacheBytes = 256 << 10 })
	require.Equal(t, len(want), countAll(t, r, "acme", ScanOptions{}))
	f.srv.Faults.SetDown(true)
	var failed error
	for id := range want {
		if _, err := r.tn("acme").Get(bg, id, PartAll); err != nil {
			failed = err
			break
		}
	}
	require.ErrorIs(t, failed, objstore.ErrUnavailable, "a block the reader never fetched")
	require.True(t, objstore.IsRetryable(failed))
	f.srv.Faults.SetDown(false)
	require.NoError(t, readAll(r, "acme", want), "served again once the bucket is back")
}

// TestBucketRestartUploadsWhatACrashLeft: a node that went down with sealed
// segments not uploaded (the bucket was away; no upload at Close) uploads
// them when it opens again.
func TestBucketRestartUploadsWhatACrashLeft(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	dir := t.TempDir()
	w := f.writer(dir, func(o *Options) { o.UploadOnClose = -1 })
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	f.srv.Faults.SetDown(true)
	want := fill(t, w, "acme", 2, 3, 500)
	require.NoError(t, w.Close())
	f.srv.Faults.SetDown(false)
	require.Empty(t, f.objects("tenants/acme/", segmentExt))

	w = f.writer(dir, nil)
	require.Eventually(t, func() bool {
		st, err := w.Stats(bg)
		return err == nil && st.Upload.Manifests > 0 && st.Upload.Pending == 0
	}, 10*time.Second, 20*time.Millisecond, "the restarted node uploads on its own")
	r := f.reader(nil)
	require.NoError(t, readAll(r, "acme", want))

	// Another restart finds everything in the bucket already: verified by
	// MD5 ETag, nothing uploaded again.
	require.NoError(t, w.Close())
	w = f.writer(dir, nil)
	defer w.Close()
	rep, err := w.Admin().Upload(bg)
	require.NoError(t, err)
	require.Zero(t, rep.Uploaded)
	require.Positive(t, rep.Verified)
}

// TestBucketForgeries: with write access to the bucket and no key, swapping,
// truncating, deleting or rolling back objects, or forging a manifest, gets a
// reader an error, never a wrong record.
func TestBucketForgeries(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	for _, tn := range []string{"acme", "beta"} {
		_, err := w.Admin().LinkKey(bg, tn, f.key)
		require.NoError(t, err)
	}
	want := fill(t, w, "acme", 3, 2, 500)
	w.flushJournals(t) // a second segment
	for id, r := range fill(t, w, "acme", 5, 2, 500) {
		want[id] = r
	}
	fill(t, w, "beta", 4, 2, 500)
	require.NoError(t, w.Close())
	acmeSegs := f.objects("tenants/acme/", segmentExt)
	betaSegs := f.objects("tenants/beta/", segmentExt)
	require.Greater(t, len(acmeSegs), 1)
	require.NotEmpty(t, betaSegs)
	require.NoError(t, readAll(f.reader(nil), "acme", want))

	victim := acmeSegs[0]
	orig := f.getRaw(victim)
	attack := func(name string, do func(), kinds ...error) {
		t.Run(name, func(t *testing.T) {
			do()
			defer f.putRaw(victim, orig)
			r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts), BlockCacheBytes: -1})
			require.NoError(t, err)
			defer r.Close()
			err = readAll(r, "acme", want)
			require.Error(t, err, "the attack went unnoticed")
			matched := false
			for _, k := range kinds {
				matched = matched || errors.Is(err, k)
			}
			require.True(t, matched, "unexpected error: %v", err)
		})
	}
	// A segment of another size is first caught by its size (ErrSegmentLoss:
	// the bytes the manifest vouches for are not there).
	attack("swap-other-tenant", func() { f.putRaw(victim, f.getRaw(betaSegs[0])) }, ErrSegmentTampered, ErrSegmentLoss)
	attack("swap-same-tenant", func() { f.putRaw(victim, f.getRaw(acmeSegs[len(acmeSegs)-1])) }, ErrSegmentTampered, ErrCorrupt, ErrSegmentLoss)
	attack("truncate", func() { f.putRaw(victim, orig[:len(orig)/2]) }, ErrSegmentLoss, ErrSegmentTampered)
	attack("flip-a-byte", func() {
		bad := append([]byte(nil), orig...)
		bad[len(bad)/2] ^= 1
		f.putRaw(victim, bad)
	}, ErrSegmentTampered, segment.ErrCorrupt)
	attack("delete", func() { require.NoError(t, f.b.Delete(bg, victim)) }, ErrSegmentLoss, ErrSegmentTampered)

	// A forged node manifest: that node's segments are not served, and the
	// reader says why.
	man := f.objects("tenants/acme/", "/"+manifestFile)
	require.Len(t, man, 1)
	origMan := f.getRaw(man[0])
	bad := append([]byte(nil), origMan...)
	bad[manifestHeaderLen+10] ^= 1
	f.putRaw(man[0], bad)
	r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts)})
	require.NoError(t, err)
	require.NotEmpty(t, r.Recovery().Damaged)
	_, err = r.tn("acme").Count(bg, ScanOptions{})
	require.Error(t, err)
	require.NoError(t, r.Close())
	// Another tenant's manifest under acme's name.
	f.putRaw(man[0], f.getRaw(f.objects("tenants/beta/", "/"+manifestFile)[0]))
	r, err = Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts)})
	require.NoError(t, err)
	_, err = r.tn("acme").Count(bg, ScanOptions{})
	require.ErrorIs(t, err, ErrManifestAuth)
	require.NoError(t, r.Close())
	f.putRaw(man[0], origMan)
	require.NoError(t, readAll(f.reader(nil), "acme", want), "restored")
}

// TestBucketMarker: a prefix without the marker holds no logstore data; a
// marker of a newer layout is ErrUnknownVersion, anything else
// ErrBucketCorrupt, for readers and writers alike (a writer then uploads
// nothing and says why).
func TestBucketMarker(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	open := func() error {
		r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts)})
		if err == nil {
			r.Close()
		}
		return err
	}
	require.ErrorIs(t, open(), ErrNotFound)
	f.putRaw(bucketMarkerKey, []byte(`{"format":"logstore-bucket","version":2}`))
	require.ErrorIs(t, open(), ErrUnknownVersion)
	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err := w.Admin().Upload(bg)
	require.ErrorIs(t, err, ErrUnknownVersion)
	for _, bad := range []string{`{"format":"other","version":1}`, `not json`, ``} {
		f.putRaw(bucketMarkerKey, []byte(bad))
		require.ErrorIs(t, open(), ErrBucketCorrupt, bad)
	}
	require.NoError(t, f.b.Delete(bg, bucketMarkerKey))
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err, "a writer writes a missing marker")
	require.NoError(t, open())
}
