package engine

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/redact"
)

// TestBucketSharedConfig: a key linked, a retention and a redaction policy
// set on one node reach the others through the bucket's CONFIG, a node that
// never saw the tenant included; changes made at once on two nodes both
// survive (compare-and-swap).
func TestBucketSharedConfig(t *testing.T) {
	for _, srv := range []struct {
		name  string
		start func(testing.TB) *s3test.Server
	}{{"gofakes3", s3test.StartGofakes3}, {"moto", s3test.StartMoto}} {
		t.Run("server="+srv.name, func(t *testing.T) {
			f := newFleet(t, srv.start(t))
			// b learns acme from the bucket: its embedder vouches for the
			// key (ExpectedKey), as a fleet's control plane would.
			var expected atomic.Value
			expected.Store(f.key)
			a := f.writer(t.TempDir(), nil)
			b := f.writer(t.TempDir(), func(o *Options) {
				o.ExpectedKey = func(string) string { return expected.Load().(string) }
			})
			defer a.Close()
			defer b.Close()
			_, err := a.Admin().LinkKey(bg, "acme", f.key)
			require.NoError(t, err)
			// b has never seen acme: it adopts the binding, then can append.
			_, err = b.Admin().Upload(bg)
			require.NoError(t, err)
			uri, err := b.Admin().KeyURI(bg, "acme")
			require.NoError(t, err)
			require.Equal(t, f.key, uri)
			_, err = b.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 10, t0))
			require.NoError(t, err)

			// Concurrent changes on both nodes: none is lost.
			var wg sync.WaitGroup
			for i := 0; i < 5; i++ {
				wg.Add(2)
				go func(i int) {
					defer wg.Done()
					require.NoError(t, a.Admin().SetRetention(bg, "acme", time.Duration(100+i)*time.Hour))
				}(i)
				go func() {
					defer wg.Done()
					require.NoError(t, b.Admin().SetRedaction(bg, "acme", &redact.Policy{Version: 1, Headers: []redact.Rule{{Name: "x-secret", Action: redact.Mask}}}))
				}()
			}
			wg.Wait()
			cfg, err := a.readSharedConfig(bg, f.b, "acme", f.key)
			require.NoError(t, err)
			require.Equal(t, uint64(11), cfg.body.Seq, "1 link + 10 changes, none lost")
			require.NotNil(t, cfg.body.Redaction)
			require.GreaterOrEqual(t, cfg.body.Retention, 100*time.Hour)

			// Each node adopts the other's changes.
			for _, w := range []*testDB{a, b} {
				_, err := w.Admin().Upload(bg)
				require.NoError(t, err)
				p, err := w.Admin().Redaction(bg, "acme")
				require.NoError(t, err)
				require.True(t, p.Own)
				tm := w.manifests.get("acme")
				require.Equal(t, cfg.body.Retention, tm.body.Retention)
				require.Equal(t, uint64(11), tm.body.ConfigSeq)
			}

			// A new key linked on b: a follows (the CONFIG proves the old key).
			key2 := f.kms.newKey(t)
			expected.Store(key2)
			_, err = b.Admin().LinkKey(bg, "acme", key2)
			require.NoError(t, err)
			_, err = a.Admin().Upload(bg)
			require.NoError(t, err)
			uri, err = a.Admin().KeyURI(bg, "acme")
			require.NoError(t, err)
			require.Equal(t, key2, uri)
		})
	}
}

// TestBucketSharedConfigForgery: someone with write access to the bucket
// and a KMS key of their own writes a CONFIG binding the tenant to their
// key: the nodes refuse it and keep their key. A CONFIG put back to an
// older copy is refused as a rollback.
func TestBucketSharedConfigForgery(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), nil)
	b := f.writer(t.TempDir(), func(o *Options) { o.ExpectedKey = func(string) string { return f.key } })
	defer a.Close()
	defer b.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	_, err = b.Admin().Upload(bg)
	require.NoError(t, err)
	old := f.getRaw(bucketConfigOf("acme"))
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 48*time.Hour))
	_, err = b.Admin().Upload(bg)
	require.NoError(t, err)

	evil := f.kms.newKey(t)
	body := &manifestBody{Tenant: "acme", Seq: 99, Written: time.Now(), Key: keyBinding{URI: evil}}
	dk, err := a.cache.Provider().GenerateDataKey(bg, evil, configContext("acme"))
	require.NoError(t, err)
	body.Wraps = []keyWrap{{URI: evil, Wrapped: dk.Wrapped}}
	raw, err := encodeManifest(body, dk.Plaintext)
	require.NoError(t, err)
	f.putRaw(bucketConfigOf("acme"), raw)
	_, err = b.Admin().Upload(bg)
	require.ErrorIs(t, err, ErrManifestAuth)
	uri, err := b.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, f.key, uri, "the forged key was not adopted")

	f.putRaw(bucketConfigOf("acme"), old)
	_, err = b.Admin().Upload(bg)
	require.ErrorIs(t, err, ErrManifestRollback)
	require.Equal(t, 48*time.Hour, b.manifests.get("acme").body.Retention)
}

// TestBucketSharedConfigPublishAdoptsKey: a node that changes the retention
// while another node's key change is not adopted yet takes that key with
// its own publish (the config it writes holds it), not just its own change.
func TestBucketSharedConfigPublishAdoptsKey(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	var expected atomic.Value
	expected.Store(f.key)
	a := f.writer(t.TempDir(), nil)
	b := f.writer(t.TempDir(), func(o *Options) {
		o.ExpectedKey = func(string) string { return expected.Load().(string) }
		o.ConfigPollInterval = time.Hour // no adoption but through the publish
	})
	defer a.Close()
	defer b.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	_, err = b.Admin().Upload(bg)
	require.NoError(t, err)
	key2 := f.kms.newKey(t)
	expected.Store(key2)
	_, err = a.Admin().LinkKey(bg, "acme", key2)
	require.NoError(t, err)
	require.NoError(t, b.Admin().SetRetention(bg, "acme", 72*time.Hour))
	uri, err := b.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, key2, uri)
	require.Equal(t, 72*time.Hour, b.manifests.get("acme").body.Retention)
	require.False(t, b.manifests.get("acme").body.ConfigDirty)
}
