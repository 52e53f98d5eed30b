package engine

// Review 13: the bucket (S3) layer attacked as someone with write access to
// the bucket (with no key, or with a KMS key of their own that the fleet
// can use), as a flaky S3, as a crashing or cloned writer, and as
// concurrent writers and readers. Every test here fails on the code it was
// written against and passes once the finding it names is fixed.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/redact"
)

// r13Nodes lists the node ids of tenant's node directories in the bucket,
// in key order.
func (f *fleet) r13Nodes(tenant string) []string {
	f.t.Helper()
	l, err := f.b.List(bg, bucketTenantDir(tenant), "")
	require.NoError(f.t, err)
	seen := map[string]bool{}
	var out []string
	for _, o := range l.Objects {
		rest := strings.TrimPrefix(o.Key, bucketTenantDir(tenant))
		node, _, ok := strings.Cut(rest, "/")
		if ok && isNodeID(node) && !seen[node] {
			seen[node] = true
			out = append(out, node)
		}
	}
	return out
}

// r13TwoNodes: two writer nodes of acme, each with its records sealed and
// uploaded (Close seals and uploads); returns every record by id and, per
// node id, the number of records it holds.
func r13TwoNodes(t *testing.T, f *fleet) (map[ID]Record, map[string]int) {
	t.Helper()
	want := map[ID]Record{}
	perNode := map[string]int{}
	for i := 0; i < 2; i++ {
		w := f.writer(t.TempDir(), nil)
		_, err := w.Admin().LinkKey(bg, "acme", f.key)
		require.NoError(t, err)
		recs := fill(t, w, "acme", int64(40+i), 2, 200)
		for id, r := range recs {
			want[id] = r
		}
		perNode[w.uploader.node] = len(recs)
		require.NoError(t, w.Close())
	}
	require.Len(t, f.r13Nodes("acme"), 2)
	return want, perNode
}

func (f *fleet) r13OpenReader() *DB {
	r, err := Open(f.t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts), RetentionInterval: -1, BlockCacheBytes: -1})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { r.Close() })
	return r
}

// r13ForgeNodeManifest writes, under a node id of the attacker's choice, a
// node manifest of tenant MAC'd under a manifest key wrapped by keyURI (a
// KMS key the attacker controls and the fleet can use).
func r13ForgeNodeManifest(t *testing.T, f *fleet, db *DB, tenant, node, keyURI string, body *manifestBody) {
	t.Helper()
	dk, err := db.cache.Provider().GenerateDataKey(bg, keyURI, manifestContext(tenant))
	require.NoError(t, err)
	body.Tenant = tenant
	body.Key = keyBinding{URI: keyURI}
	body.Wraps = []keyWrap{{URI: keyURI, Wrapped: dk.Wrapped}}
	raw, err := encodeManifest(body, dk.Plaintext)
	require.NoError(t, err)
	f.putRaw(bucketManifestOf(tenant, node), raw)
}

// r13ForgeConfig writes a CONFIG of tenant bound to keyURI (the attacker's
// key), with the attacker's retention.
func r13ForgeConfig(t *testing.T, f *fleet, db *DB, tenant, keyURI string, seq uint64, retention time.Duration) {
	t.Helper()
	body := &manifestBody{Tenant: tenant, Seq: seq, Written: time.Now(), Key: keyBinding{URI: keyURI}, Retention: retention}
	dk, err := db.cache.Provider().GenerateDataKey(bg, keyURI, configContext(tenant))
	require.NoError(t, err)
	body.Wraps = []keyWrap{{URI: keyURI, Wrapped: dk.Wrapped}}
	raw, err := encodeManifest(body, dk.Plaintext)
	require.NoError(t, err)
	f.putRaw(bucketConfigOf(tenant), raw)
}

// TestReview13PublishConfigSkipsKeyProof: an attacker with write access to
// the bucket and a KMS key of their own replaces acme's CONFIG with one
// bound to their key and a retention of 1ns. Adoption refuses it (the move
// is not proven under the trusted key), but the next routine operator
// change on any node (here SetRedaction) goes through publishConfig, which
// reads CONFIG with no trusted key and no rollback check, applies the change
// on top of the forged CONFIG and then applies the result locally: the node
// is re-bound to the attacker's key (new segments wrapped under it) and
// takes the attacker's 1ns retention, which deletes every record it holds,
// locally and in the bucket.
func TestReview13PublishConfigSkipsKeyProof(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), nil)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, a, "acme", 1, 2, 200)
	a.flushJournals(t)
	_, err = a.Admin().Upload(bg)
	require.NoError(t, err)

	evil := f.kms.newKey(t)
	r13ForgeConfig(t, f, a.DB, "acme", evil, 50, time.Nanosecond)
	_, err = a.Admin().Upload(bg)
	require.ErrorIs(t, err, ErrManifestAuth, "adoption refuses the forged CONFIG")

	// A routine change by the operator.
	err = a.Admin().SetRedaction(bg, "acme", &redact.Policy{Version: 1, Headers: []redact.Rule{{Name: "x-secret", Action: redact.Mask}}})
	if err == nil || !errors.Is(err, ErrManifestAuth) {
		t.Logf("SetRedaction on top of the forged CONFIG: %v", err)
	}
	uri, err := a.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	assert.Equal(t, f.key, uri, "the node was re-bound to the attacker's key by a redaction change")
	assert.NotEqual(t, time.Nanosecond, a.manifests.get("acme").body.Retention, "the attacker's retention was applied")
	_, err = a.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	assert.Equal(t, len(want), countAll(t, a.DB, "acme", ScanOptions{}), "records deleted by the attacker's retention")
}

// TestReview13FreshNodeAdoptsForgedConfig: a node that has no verified
// manifest of a tenant (a node added to the fleet, or a tenant it has not
// written yet) adopts whatever CONFIG verifies under the key the CONFIG
// itself names (trusted == ""): an attacker with bucket write access and a
// KMS key of their own binds acme on every new node to their key, though
// the tenant's existing node manifests in the bucket are all under the
// fleet's key; and they can create tenants of their own on every node.
func TestReview13FreshNodeAdoptsForgedConfig(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), nil)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, a, "acme", 1, 1, 100)
	a.flushJournals(t)
	_, err = a.Admin().Upload(bg)
	require.NoError(t, err)

	evil := f.kms.newKey(t)
	r13ForgeConfig(t, f, a.DB, "acme", evil, 50, 0)
	r13ForgeConfig(t, f, a.DB, "mallory", evil, 1, 0)

	b := f.writer(t.TempDir(), nil) // a new node
	defer b.Close()
	_, _ = b.Admin().Upload(bg)
	uri, _ := b.Admin().KeyURI(bg, "acme")
	require.NotEqual(t, evil, uri, "a new node bound acme to a key that no node manifest of acme uses (the attacker's)")
	tenants, err := b.listTenants()
	require.NoError(t, err)
	require.NotContains(t, tenants, "mallory", "a tenant created on the node by a forged CONFIG alone")
}

// TestReview13ReaderAcceptsForeignKeyNodeManifest: a stateless reader
// authenticates each node manifest with the key that manifest names, and
// nothing ties that key to the tenant's (no CONFIG check, no agreement
// between nodes). An attacker with bucket write access and a KMS key of
// their own plants a node directory in acme: (1) a manifest with a
// retention of 1ns and a Written time in the future hides every record of
// the real nodes (the newest node manifest's configuration is the merged
// one); (2) a manifest and segment of their own make the reader serve
// records nobody wrote to acme.
func TestReview13ReaderAcceptsForeignKeyNodeManifest(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, w, "acme", 1, 2, 200)
	require.NoError(t, w.Close())
	evil := f.kms.newKey(t)
	r := f.r13OpenReader()
	require.Equal(t, len(want), countAll(t, r, "acme", ScanOptions{}))

	t.Run("retention", func(t *testing.T) {
		node := strings.Repeat("e", 32)
		r13ForgeNodeManifest(t, f, r, "acme", node, evil, &manifestBody{Seq: 1, Written: time.Now().Add(10 * 365 * 24 * time.Hour), Retention: time.Nanosecond})
		defer func() { require.NoError(t, f.b.Delete(bg, bucketManifestOf("acme", node))) }()
		fresh := f.r13OpenReader()
		n, err := fresh.tn("acme").Count(bg, ScanOptions{})
		require.True(t, err != nil || n == len(want), "a forged node manifest under a foreign key hid %d of %d records, no error", len(want)-n, len(want))
	})

	t.Run("inject", func(t *testing.T) {
		// The attacker runs logstore against a bucket prefix of their own
		// with their key linked to acme, then copies the node directory.
		ab := f.srv.Bucket(t, "attacker", "x")
		af := &fleet{t: t, kms: f.kms, key: evil, srv: f.srv, b: ab}
		aw := af.writer(t.TempDir(), nil)
		_, err := aw.Admin().LinkKey(bg, "acme", evil)
		require.NoError(t, err)
		injected := fill(t, aw, "acme", 99, 1, 50)
		node := aw.uploader.node
		require.NoError(t, aw.Close())
		l, err := ab.List(bg, bucketNodeDir("acme", node), "")
		require.NoError(t, err)
		for _, o := range l.Objects {
			data, _, err := ab.GetRange(bg, o.Key, 0, -1, "")
			require.NoError(t, err)
			f.putRaw(o.Key, data)
		}
		fresh := f.r13OpenReader()
		for id := range injected {
			_, err := fresh.tn("acme").Get(bg, id, PartAll)
			require.Error(t, err, "a record the attacker wrote under their own key is served as acme's")
			break
		}
		n, err := fresh.tn("acme").Count(bg, ScanOptions{})
		require.True(t, err != nil || n == len(want), "count %d, %d written to acme", n, len(want))
	})
}

// TestReview13DeletedNodeManifestHidesRecords: deleting one node's
// MANIFEST from the bucket (a bucket writer, a bad lifecycle rule, a
// mistaken cleanup) makes every reader drop all of that node's records
// silently: a node directory with segment objects and no MANIFEST is
// skipped as "not visible yet", so the count is short, with no error and
// nothing in Recovery().Damaged.
func TestReview13DeletedNodeManifestHidesRecords(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	want, perNode := r13TwoNodes(t, f)
	victim := f.r13Nodes("acme")[1]
	require.NoError(t, f.b.Delete(bg, bucketManifestOf("acme", victim)))
	// A reader an hour later (a node directory may hold segments without a
	// manifest only for a moment: a node's first upload in flight).
	r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts), RetentionInterval: -1,
		Now: func() time.Time { return time.Now().Add(time.Hour) }})
	require.NoError(t, err)
	defer r.Close()
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	reported := err != nil || len(r.Recovery().Damaged) > 0
	require.True(t, n == len(want) || reported,
		"node %s's %d records vanished from the answer (count %d of %d), no error, nothing reported", victim, perNode[victim], n, len(want))
}

// TestReview13DamagedNodeManifestPartialAnswer: one node's MANIFEST that
// fails authentication (one byte flipped) is left out, and reads of the
// tenant answer from the other nodes with a nil error: a count short by
// that node's records. Recovery().Damaged mentions it only for Open; a
// Refresh drops the report (loadManifests' report is discarded), so a
// long-running reader has no trace of it at all. The single-node case
// fails reads (TestBucketForgeries); two nodes should too.
func TestReview13DamagedNodeManifestPartialAnswer(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	want, _ := r13TwoNodes(t, f)
	old := f.r13OpenReader() // opened before the attack, refreshed after
	require.Equal(t, len(want), countAll(t, old, "acme", ScanOptions{}))
	victim := bucketManifestOf("acme", f.r13Nodes("acme")[1])
	bad := f.getRaw(victim)
	bad[manifestHeaderLen+10] ^= 1
	f.putRaw(victim, bad)

	fresh := f.r13OpenReader()
	n, err := fresh.tn("acme").Count(bg, ScanOptions{})
	assert.True(t, err != nil || n == len(want), "fresh reader: count %d of %d with a nil error", n, len(want))

	require.NoError(t, old.Refresh(bg))
	n, err = old.tn("acme").Count(bg, ScanOptions{})
	assert.True(t, err != nil || n == len(want), "refreshed reader: count %d of %d with a nil error (and Recovery is clean: %v)", n, len(want), old.Recovery().Damaged)
}

// TestReview13NodeManifestCopiedToAnotherNodeDir: nothing in a node
// manifest names the node it belongs to, so a copy of node Y's MANIFEST
// verifies in any node directory: every segment Y lists is then "listed
// by two nodes" and served from neither. With no key, an attacker hides a
// node's records with one copy (into a made-up node directory), or two
// nodes' records at once (Y's MANIFEST and a segment of Y over node X's
// directory); reads of the tenant succeed, short, with a nil error.
func TestReview13NodeManifestCopiedToAnotherNodeDir(t *testing.T) {
	for _, attack := range []string{"into-new-node-dir", "over-other-node"} {
		t.Run(attack, func(t *testing.T) {
			f := newFleet(t, s3test.StartGofakes3(t))
			want, perNode := r13TwoNodes(t, f)
			nodes := f.r13Nodes("acme")
			y, x := nodes[0], nodes[1]
			if attack == "into-new-node-dir" {
				x = strings.Repeat("0", 32)
			} else {
				seg := f.objects(bucketNodeDir("acme", y), segmentExt)[0]
				f.putRaw(bucketNodeDir("acme", x)+strings.TrimPrefix(seg, bucketNodeDir("acme", y)), f.getRaw(seg))
			}
			f.putRaw(bucketManifestOf("acme", x), f.getRaw(bucketManifestOf("acme", y)))
			r := f.r13OpenReader()
			n, err := r.tn("acme").Count(bg, ScanOptions{})
			require.True(t, err != nil || n == len(want),
				"a copied MANIFEST hid records (node %s holds %d): count %d of %d, nil error", y, perNode[y], n, len(want))
		})
	}
}

// TestReview13TransientManifestErrorPartialAnswer: a throttled or failed
// GET of one node's MANIFEST while a reader opens (503 SlowDown past the
// SDK's retries) leaves that node out exactly like a forged one: reads
// answer from the other node with a nil error, and keep doing so after the
// bucket recovers, until someone calls Refresh. A transient fault becomes
// silent data omission.
func TestReview13TransientManifestErrorPartialAnswer(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	want, _ := r13TwoNodes(t, f)
	victim := bucketManifestOf("acme", f.r13Nodes("acme")[1])
	f.srv.Faults.Set(s3test.FaultConfig{SlowDown: 1, OnlyPaths: func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, victim)
	}})
	r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: kmsProviders(f.kms.kopts), RetentionInterval: -1})
	require.NoError(t, err)
	defer r.Close()
	require.Positive(t, f.srv.Faults.Count("503"))
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	assert.True(t, err != nil || n == len(want), "while throttled: count %d of %d with a nil error", n, len(want))
	if err != nil {
		assert.True(t, objstore.IsRetryable(err), "a throttled bucket is a retryable error: %v", err)
	}
	f.srv.Faults.Set(s3test.FaultConfig{})
	n, err = r.tn("acme").Count(bg, ScanOptions{})
	assert.NoError(t, err)
	assert.Equal(t, len(want), n, "the bucket is healthy again and the reader still answers without the node")
}

// TestReview13WriterNeverRepairsBucket: a writer trusts its in-memory view
// of what it uploaded forever: its own MANIFEST deleted or put back to an
// older copy, or one of its segment objects deleted, is never put right by
// later passes, Admin.Upload included ("every sealed segment not yet in the
// bucket"), while the node runs: readers hide or lose the records until the
// node restarts or its manifest's published view changes.
func TestReview13WriterNeverRepairsBucket(t *testing.T) {
	for _, attack := range []string{"replay-manifest", "delete-manifest", "delete-segment"} {
		t.Run(attack, func(t *testing.T) {
			f := newFleet(t, s3test.StartGofakes3(t))
			w := f.writer(t.TempDir(), nil)
			defer w.Close()
			_, err := w.Admin().LinkKey(bg, "acme", f.key)
			require.NoError(t, err)
			want := fill(t, w, "acme", 3, 1, 300)
			w.flushJournals(t)
			_, err = w.Admin().Upload(bg)
			require.NoError(t, err)
			man := bucketManifestOf("acme", w.uploader.node)
			old := f.getRaw(man)
			for id, r := range fill(t, w, "acme", 4, 1, 300) {
				want[id] = r
			}
			w.flushJournals(t)
			_, err = w.Admin().Upload(bg)
			require.NoError(t, err)
			switch attack {
			case "replay-manifest":
				f.putRaw(man, old)
			case "delete-manifest":
				require.NoError(t, f.b.Delete(bg, man))
			case "delete-segment":
				segs := f.objects(bucketNodeDir("acme", w.uploader.node), segmentExt)
				require.NotEmpty(t, segs)
				require.NoError(t, f.b.Delete(bg, segs[0]))
			}
			_, err = w.Admin().Upload(bg) // an operator's `segments upload`, or the next background pass
			require.NoError(t, err)
			r := f.r13OpenReader()
			require.NoError(t, readAll(r, "acme", want), "the node's pass did not put back what it holds locally")
		})
	}
}

// r13HugeBucket pretends the objects hugeKey matches are 10 GiB: listings
// and HEADs say so, and a GetRange of them that asks for more than
// r13ReadCap bytes (n < 0: to the end) is recorded instead of served, since
// serving it would have the engine hold 10 GiB in memory (s3store's
// GetRange reads the whole body into one slice).
type r13HugeBucket struct {
	objstore.Bucket
	hugeKey   func(key string) bool
	unbounded atomic.Int64
	lastKey   atomic.Value
}

const (
	r13HugeSize = 10 << 30
	r13ReadCap  = 128 << 20
)

func (b *r13HugeBucket) List(ctx context.Context, prefix, delim string) (objstore.Listing, error) {
	l, err := b.Bucket.List(ctx, prefix, delim)
	for i := range l.Objects {
		if b.hugeKey(l.Objects[i].Key) {
			l.Objects[i].Size = r13HugeSize
		}
	}
	return l, err
}

func (b *r13HugeBucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	o, err := b.Bucket.Head(ctx, key)
	if err == nil && b.hugeKey(key) {
		o.Size = r13HugeSize
	}
	return o, err
}

func (b *r13HugeBucket) GetRange(ctx context.Context, key string, off, n int64, etag string) ([]byte, objstore.ObjectInfo, error) {
	if !b.hugeKey(key) {
		return b.Bucket.GetRange(ctx, key, off, n, etag)
	}
	if n < 0 || n > r13ReadCap {
		b.unbounded.Add(1)
		b.lastKey.Store(key)
		return nil, objstore.ObjectInfo{}, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrUnavailable,
			Err: errors.New("test: a read of a 10 GiB object into memory")}
	}
	if off >= r13HugeSize {
		return nil, objstore.ObjectInfo{}, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrTruncated}
	}
	data := make([]byte, n) // zeros: whatever a bounded read gets, it is not a valid object
	return data, objstore.ObjectInfo{Key: key, Size: r13HugeSize, ETag: "huge"}, nil
}

// TestReview13UnboundedObjectReads: the LOGSTORE marker, a node MANIFEST
// and a tenant CONFIG are read with GetRange(key, 0, -1), the whole object
// into memory, and only then compared with their limits (4 KiB, 64 MiB).
// Someone who can write the bucket puts a 10 GB object at one of those
// keys: every reader that opens and every writer's upload pass (marker,
// config poll) allocates 10 GB and dies of OOM, fleet-wide. The size the
// listing gives (or a bounded range) must be checked before the read.
func TestReview13UnboundedObjectReads(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, w, "acme", 1, 1, 50)
	require.NoError(t, w.Close())
	node := f.r13Nodes("acme")[0]
	for _, c := range []struct {
		name string
		key  string
		run  func(b objstore.Bucket) error
	}{
		{"marker-reader", bucketMarkerKey, func(b objstore.Bucket) error {
			r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: b, KMS: kmsProviders(f.kms.kopts)})
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"manifest-reader", bucketManifestOf("acme", node), func(b objstore.Bucket) error {
			r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: b, KMS: kmsProviders(f.kms.kopts)})
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"config-writer", bucketConfigOf("acme"), func(b objstore.Bucket) error {
			hf := &fleet{t: t, kms: f.kms, key: f.key, srv: f.srv, b: b}
			w := hf.writer(t.TempDir(), nil)
			defer w.Close()
			_, err := w.Admin().Upload(bg)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			hb := &r13HugeBucket{Bucket: f.b, hugeKey: func(k string) bool { return k == c.key }}
			err := c.run(hb)
			t.Logf("error: %v", err)
			require.Zero(t, hb.unbounded.Load(), "the engine read %v whole (%d bytes by its listing) into memory", hb.lastKey.Load(), int64(r13HugeSize))
		})
	}
}

// TestReview13ClonedDataDirShareNodeID: a data directory copied to a
// second machine (a restored backup, a cloned VM, a new node bootstrapped
// from a snapshot) keeps DIR/NODE, so two live writers upload to the same
// node directory: each puts its MANIFEST unconditionally over the other's
// (readers see one node's new segments or the other's, never both), and a
// restart's listing removes the other writer's segment objects as "no
// longer sealed here". Nothing detects the second owner (a create-only
// claim, an If-Match on the node's own MANIFEST).
func TestReview13ClonedDataDirShareNodeID(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	dir1, dir2 := t.TempDir(), t.TempDir()
	w := f.writer(dir1, nil)
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, w, "acme", 1, 1, 100)
	require.NoError(t, w.Close())
	require.NoError(t, os.CopyFS(dir2, os.DirFS(dir1)))

	var uploadErrs []error
	a, b := f.writer(dir1, nil), f.writer(dir2, nil)
	for i, x := range []*testDB{a, b} {
		for id, r := range fill(t, x, "acme", int64(10+i), 1, 100) {
			want[id] = r
		}
		x.flushJournals(t)
		if _, err := x.Admin().Upload(bg); err != nil {
			uploadErrs = append(uploadErrs, err)
		}
	}
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	a = f.writer(dir1, nil) // a restart of the first
	if _, err := a.Admin().Upload(bg); err != nil {
		uploadErrs = append(uploadErrs, err)
	}
	require.NoError(t, a.Close())

	r := f.r13OpenReader()
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	require.True(t, len(uploadErrs) > 0 || (err == nil && n == len(want)),
		"two writers with one node id: the reader counts %d of %d records (err %v), and no upload reported the conflict", n, len(want), err)
}

// TestReview13RewrapWaitsForStalledPass: Rewrap calls uploader.forget for
// each segment, which takes passMu, held by an upload pass for as long as
// the bucket takes to answer (each request up to OpTimeout, 2 minutes by
// default, and a pass makes one per object): with the bucket stalled, the
// operator's Rewrap hangs, ignoring its context. (Admin.Upload and
// DeleteTenant take passMu the same way.)
func TestReview13RewrapWaitsForStalledPass(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	sb := &r13StallBucket{Bucket: f.b, entered: make(chan struct{}, 1)}
	f.b = sb
	w := f.writer(t.TempDir(), func(o *Options) { o.UploadOnClose = -1; o.UploadInterval = time.Hour })
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fill(t, w, "acme", 1, 1, 100)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	fill(t, w, "acme", 2, 1, 100)
	w.flushJournals(t) // a new sealed segment for the next pass to upload

	sb.stall.Store(true) // puts hang until their context ends (a blackholed endpoint)
	passDone := make(chan struct{})
	go func() { defer close(passDone); _, _ = w.uploader.pass(w.uploader.ctx) }()
	select {
	case <-sb.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the pass made no put")
	}

	key2 := f.kms.newKey(t)
	ctx, cancel := context.WithTimeout(bg, time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := w.Admin().Rewrap(ctx, "acme", key2, nil); done <- err }()
	returned := false
	select {
	case err := <-done:
		returned = true
		t.Logf("rewrap returned: %v", err)
	case <-time.After(4 * time.Second):
		t.Errorf("Rewrap with a 1s context still blocked after 4s behind an upload pass stalled on the bucket")
	}
	sb.stall.Store(false)
	w.uploader.cancel() // ends the stalled pass
	<-passDone
	if !returned {
		<-done
	}
	require.NoError(t, w.Close())
}

// r13StallBucket makes Puts hang until their context ends while stall is set.
type r13StallBucket struct {
	objstore.Bucket
	stall   atomic.Bool
	entered chan struct{}
}

func (b *r13StallBucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum []byte, cond objstore.Cond) (objstore.ObjectInfo, error) {
	if b.stall.Load() {
		select {
		case b.entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return objstore.ObjectInfo{}, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrUnavailable, Retryable: true, Err: ctx.Err()}
	}
	return b.Bucket.Put(ctx, key, body, size, sum, cond)
}

// TestReview13EraseReachesOneNodeOnly: in a fleet, a tenant's records
// are spread over the writer nodes, and readers serve the union of every
// node's manifest. Admin.Erase (and DeleteTenant's local part) act on the
// node they are called on only: nothing in the bucket (CONFIG, a
// tombstone) carries them to the other nodes, and Erase says nothing of
// the records it could not reach. An operator's GDPR erase reports success
// while every reader keeps serving the session's records written through
// the other nodes.
func TestReview13EraseReachesOneNodeOnly(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	var ws []*testDB
	for i := 0; i < 2; i++ {
		w := f.writer(t.TempDir(), nil)
		defer w.Close()
		_, err := w.Admin().LinkKey(bg, "acme", f.key)
		require.NoError(t, err)
		recs := genRecords(rand.New(rand.NewSource(int64(60+i))), 100, t0.Add(time.Duration(i)*time.Hour))
		for j := range recs {
			if j%10 == 0 {
				recs[j].SessionID = "gdpr-subject"
			}
		}
		_, err = w.tn("acme").Append(bg, recs)
		require.NoError(t, err)
		w.flushJournals(t)
		_, err = w.Admin().Upload(bg)
		require.NoError(t, err)
		ws = append(ws, w)
	}
	rep, eraseErr := ws[0].Admin().Erase(bg, "acme", EraseFilter{SessionID: "gdpr-subject"})
	t.Logf("erase on node 0: %+v, %v", rep, eraseErr)
	for _, w := range ws {
		_, err := w.Admin().Upload(bg) // every node's pass, config poll included
		require.NoError(t, err)
	}
	r := f.r13OpenReader()
	served := 0
	for m, err := range r.tn("acme").Scan(bg, ScanOptions{}) {
		require.NoError(t, err)
		if m.SessionID == "gdpr-subject" {
			served++
		}
	}
	require.True(t, eraseErr != nil || served == 0,
		"Erase returned success (%d erased) and readers still serve %d records of the erased session from the other node", rep.Erased, served)
}

// TestReview13ReaderTakesConfigOfLatestWrittenNode: mergeNodeManifests
// takes the tenant's configuration (retention above all, which it applies
// to every node's segments) from the node manifest with the latest Written
// time, not from the one that applied the latest shared CONFIG
// (ConfigSeq). A node that has not polled the CONFIG yet (or whose clock
// runs ahead) and uploads a manifest after a retention change elsewhere
// makes readers apply the stale retention to every node: here a retention
// lifted from 24h to "forever" on node A still hides all of A's records,
// because node B sealed a segment before its next config poll.
func TestReview13ReaderTakesConfigOfLatestWrittenNode(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), nil)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, a, "acme", 1, 1, 200)
	a.flushJournals(t)
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 24*time.Hour))
	b := f.writer(t.TempDir(), func(o *Options) {
		o.ConfigPollInterval, o.UploadInterval = time.Hour, time.Hour
		o.ExpectedKey = func(string) string { return f.key } // b learns acme from the bucket
	})
	defer b.Close()
	_, err = b.Admin().Upload(bg) // adopts acme: key, 24h retention
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, b.manifests.get("acme").body.Retention)

	require.NoError(t, a.Admin().SetRetention(bg, "acme", 0)) // keep forever (published: CONFIG seq up)
	_, err = a.Admin().Upload(bg)
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	for id, r := range fill(t, b, "acme", 2, 1, 50) {
		want[id] = r
	}
	b.flushJournals(t)
	_, err = b.uploader.pass(bg) // B's background pass: no config poll due yet
	require.NoError(t, err)

	r := f.r13OpenReader()
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(want), n, "the reader applies B's stale 24h retention (ConfigSeq %d) over A's newer config (ConfigSeq %d)",
		b.manifests.get("acme").body.ConfigSeq, a.manifests.get("acme").body.ConfigSeq)
}

// TestReview13ReplayedConfigRevertsRetention: the same hole as
// TestReview13PublishConfigSkipsKeyProof, with no key at all. Someone who
// kept an old copy of acme's CONFIG (retention 24h, since lifted) puts it
// back. Adoption refuses it as a rollback, but publishConfig builds each
// operator change on top of whatever CONFIG it reads: the first change
// after the replay is written with a sequence this node already applied
// (so it is neither applied here nor by the others, and the caller gets
// nil: the change silently did not propagate), the second one goes above
// it and is applied, carrying the replayed 24h retention with it: the
// next retention pass deletes every record older than a day.
func TestReview13ReplayedConfigRevertsRetention(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), nil)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, a, "acme", 1, 2, 200) // a month old
	a.flushJournals(t)
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 24*time.Hour))
	old := f.getRaw(bucketConfigOf("acme"))
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 0)) // lifted: keep forever
	_, err = a.Admin().Upload(bg)
	require.NoError(t, err)

	f.putRaw(bucketConfigOf("acme"), old) // the replay
	for i, name := range []string{"x-one", "x-two"} {
		err := a.Admin().SetRedaction(bg, "acme", &redact.Policy{Version: 1, Headers: []redact.Rule{{Name: name, Action: redact.Mask}}})
		t.Logf("routine change %d after the replay: %v", i+1, err)
	}
	assert.Zero(t, a.manifests.get("acme").body.Retention, "the replayed CONFIG's retention came back")
	_, err = a.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	assert.Equal(t, len(want), countAll(t, a.DB, "acme", ScanOptions{}), "records deleted by a retention an attacker replayed without any key")
}

// TestReview13EraseLeavesVersionsInVersionedBucket: on a bucket with
// versioning enabled (a common default, and a recommended defence against
// ransomware), Bucket.Delete adds a delete marker and the old bytes stay
// as a noncurrent version. After an Erase (and the upload pass that
// removes the replaced segment's objects), the segment with the erased
// records is still in the bucket, readable by GetObject?versionId= and
// decryptable with the tenant's live key: "nothing of an erased record
// stays in the store's files" does not hold for the bucket. Nothing checks
// the bucket's versioning or deletes the versions.
func TestReview13EraseLeavesVersionsInVersionedBucket(t *testing.T) {
	srv := s3test.StartGofakes3(t)
	f := newFleet(t, srv)
	o := srv.Options()
	client := s3.New(s3.Options{Region: o.Region, Credentials: o.Credentials, BaseEndpoint: aws.String(o.Endpoint), UsePathStyle: true})
	_, err := client.PutBucketVersioning(bg, &s3.PutBucketVersioningInput{Bucket: aws.String("logs"),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)

	w := f.writer(t.TempDir(), nil)
	defer w.Close()
	_, err = w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	recs := genRecords(rand.New(rand.NewSource(1)), 100, t0)
	for j := range recs {
		if j%10 == 0 {
			recs[j].SessionID = "gdpr-subject"
		}
	}
	_, err = w.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	w.flushJournals(t)
	_, err = w.Admin().Upload(bg)
	require.NoError(t, err)
	before := f.objects("tenants/acme/", segmentExt)
	require.Len(t, before, 1)

	_, err = w.Admin().Erase(bg, "acme", EraseFilter{SessionID: "gdpr-subject"})
	require.NoError(t, err)
	_, uploadErr := w.Admin().Upload(bg)
	require.NotContains(t, f.objects("tenants/acme/", segmentExt), before[0], "the replaced segment is gone from the listing")

	vs, err := client.ListObjectVersions(bg, &s3.ListObjectVersionsInput{Bucket: aws.String("logs"), Prefix: aws.String("fleet/" + before[0])})
	require.NoError(t, err)
	var kept []string
	for _, v := range vs.Versions {
		kept = append(kept, aws.ToString(v.VersionId))
	}
	require.True(t, uploadErr != nil || len(kept) == 0,
		"the erased segment %s is still stored as version(s) %v of a versioned bucket, and nothing said so", before[0], kept)
}

// r13BytesBucket serves one object from memory, and reports when the
// buffer of each GET it served is garbage collected.
type r13BytesBucket struct {
	objstore.Bucket
	data  []byte
	freed atomic.Int64
}

func (b *r13BytesBucket) GetRange(_ context.Context, key string, off, n int64, _ string) ([]byte, objstore.ObjectInfo, error) {
	out := make([]byte, n) // a fresh buffer per GET, as s3store returns
	copy(out, b.data[off:off+n])
	runtime.AddCleanup(&out[0], func(f *atomic.Int64) { f.Add(1) }, &b.freed)
	return out, objstore.ObjectInfo{Key: key, Size: int64(len(b.data)), ETag: "e"}, nil
}

// TestReview13PageCachePinsWholeFetch: bucketFile.fetch makes one GET for
// a run of missing pages and caches each page as a sub-slice of that one
// buffer. The cache counts len(page), but a page kept by the LRU keeps the
// whole GET's buffer alive: after the other pages are evicted, a cache
// bounded at 2 pages (256 KiB) keeps the 2 MiB buffer of a 16-page read.
// BucketCacheBytes is not a bound on memory.
func TestReview13PageCachePinsWholeFetch(t *testing.T) {
	const pages = 16
	bb := &r13BytesBucket{data: bytes.Repeat([]byte{7}, pages*bucketPageSize)}
	fs := newBucketFS(nil, "/x", bb, 2*bucketPageSize)
	f := &bucketFile{fs: fs, o: objstore.ObjectInfo{Key: "k", Size: int64(len(bb.data)), ETag: "e"}}
	buf := make([]byte, len(bb.data))
	n, err := f.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, len(bb.data), n)
	require.LessOrEqual(t, fs.cache.size(), int64(2*bucketPageSize))
	freed := false
	for i := 0; i < 20 && !freed; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		freed = bb.freed.Load() > 0
	}
	require.True(t, freed, "the cache reports %d bytes, and its 2 pages keep the whole %d-byte GET buffer alive", fs.cache.size(), len(bb.data))
	runtime.KeepAlive(fs)
}

// TestReview13AdoptRacesLinkKey: applyConfig re-links the key outside
// the sequence check (linkKey first, then the ConfigSeq-guarded manifest
// update), so a background adoption that read CONFIG seq N just before an
// operator's LinkKey committed, and applies it just after (before the
// LinkKey's own publish), links the OLD key back. The publish that follows
// shares the binding as it now is: the operator's key move is reverted on
// every node and LinkKey returned nil. (If the operator then rewraps and
// deletes the old key, new segments are written under a deleted key.) The
// interleaving of the uploader goroutine and the Admin call is replayed
// here step by step with the functions each runs.
func TestReview13AdoptRacesLinkKey(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a, b := f.writer(t.TempDir(), nil), f.writer(t.TempDir(), nil)
	defer a.Close()
	defer b.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	_, err = b.Admin().LinkKey(bg, "acme", f.key) // b links acme itself
	require.NoError(t, err)
	require.NoError(t, b.Admin().SetRetention(bg, "acme", 48*time.Hour)) // CONFIG seq 2, not adopted by a yet

	// a's uploader: adoptConfig reads CONFIG (seq 2, key 1)...
	cfg, err := a.readSharedConfig(bg, f.b, "acme", f.key)
	require.NoError(t, err)
	// ...the operator's LinkKey(key2) on a commits locally...
	key2 := f.kms.newKey(t)
	_, err = a.linkKey(bg, "acme", key2)
	require.NoError(t, err)
	// ...a's uploader applies what it read...
	require.NoError(t, a.applyConfig(bg, "acme", cfg.body, cfg.ck, false))
	// ...and LinkKey publishes the binding.
	require.NoError(t, a.publishBinding(bg, "acme"))

	uri, err := a.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, key2, uri, "the operator's LinkKey was reverted by a concurrent adoption of an older CONFIG")
}
