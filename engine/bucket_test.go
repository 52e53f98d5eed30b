package engine

import (
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/vfs"
)

// fleet is writers and readers sharing one bucket and one KMS key.
type fleet struct {
	t   *testing.T
	kms *kmsEnv
	key string
	srv *s3test.Server
	b   objstore.Bucket
}

func newFleet(t *testing.T, srv *s3test.Server) *fleet {
	k := newKMS(t)
	return &fleet{t: t, kms: k, key: k.newKey(t), srv: srv, b: srv.Bucket(t, "logs", "fleet")}
}

func (f *fleet) writer(dir string, mod func(*Options)) *testDB {
	return openTest(f.t, vfs.Default, dir, func(o *Options) {
		o.KMS = kmsProviders(f.kms.kopts)
		o.RequireLinkedKey = true
		o.Bucket = f.b
		o.SegmentSize = 1 << 20
		o.UploadInterval = 50 * time.Millisecond
		if mod != nil {
			mod(o)
		}
	})
}

func (f *fleet) reader(mod func(*Options)) *DB {
	o := &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts), RetentionInterval: -1}
	if mod != nil {
		mod(o)
	}
	db, err := Open(f.t.TempDir(), o)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { db.Close() })
	return db
}

// TestBucketTwoWritersOneReader: two writer nodes append to the same
// tenant; a reader that never wrote sees every record of both, with the same
// metadata, and decrypts each byte for byte.
func TestBucketTwoWritersOneReader(t *testing.T) {
	for _, srv := range []struct {
		name  string
		start func(testing.TB) *s3test.Server
	}{{"gofakes3", s3test.StartGofakes3}, {"moto", s3test.StartMoto}} {
		t.Run("server="+srv.name, func(t *testing.T) {
			f := newFleet(t, srv.start(t))
			w1, w2 := f.writer(t.TempDir(), nil), f.writer(t.TempDir(), nil)
			for _, w := range []*testDB{w1, w2} {
				_, err := w.Admin().LinkKey(bg, "acme", f.key)
				require.NoError(t, err)
			}
			rng := rand.New(rand.NewSource(7))
			want := map[ID]Record{}
			for round := 0; round < 6; round++ {
				for i, w := range []*testDB{w1, w2} {
					recs := genRecords(rng, 400, t0.Add(time.Duration(round*2+i)*time.Minute))
					ids, err := w.tn("acme").Append(bg, recs)
					require.NoError(t, err)
					for j, id := range ids {
						want[id] = recs[j]
					}
				}
			}
			// Sealed and uploaded: Close seals the active segments and
			// uploads them.
			require.NoError(t, w1.Close())
			require.NoError(t, w2.Close())

			r := f.reader(nil)
			require.Empty(t, r.Recovery().Damaged)
			require.Equal(t, len(want), countAll(t, r, "acme", ScanOptions{}))
			seen := 0
			for m, err := range r.tn("acme").Scan(bg, ScanOptions{}) {
				require.NoError(t, err)
				rec, ok := want[m.ID]
				require.True(t, ok, "a record nobody wrote: %s", m.ID)
				require.Equal(t, rec.Time.UTC(), m.Time)
				require.Equal(t, rec.TraceID, m.TraceID)
				require.Equal(t, rec.Status, m.Status)
				seen++
			}
			require.Equal(t, len(want), seen)
			n := 0
			for id, rec := range want {
				if n++; n > 60 {
					break
				}
				got, err := r.tn("acme").Get(bg, id, PartAll)
				require.NoError(t, err)
				requireSameRecord(t, rec, id, got)
			}
			st, err := r.Stats(bg)
			require.NoError(t, err)
			require.NotNil(t, st.Bucket)
			require.Positive(t, st.Bucket.Gets)
			t.Logf("reader: %d GETs, %d LISTs, %d bytes fetched, %d cache hits", st.Bucket.Gets, st.Bucket.Lists, st.Bucket.BytesFetched, st.Bucket.CacheHits)
			// A refresh of an unchanged bucket lists it and reuses the node
			// manifests it authenticated (same ETags): no GET, no key call.
			require.NoError(t, r.Refresh(bg))
			st2, err := r.Stats(bg)
			require.NoError(t, err)
			require.Equal(t, st.Bucket.Gets, st2.Bucket.Gets)
			require.Equal(t, len(want), countAll(t, r, "acme", ScanOptions{}))
		})
	}
}
