package engine

// Review 13b: the fixes of review 13 attacked (docs/scale-out.md,
// docs/format/bucket.md). Every test here fails on the code it was written
// against and passes once the finding it names is fixed.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/redact"
)

// r13bFailConfigBucket fails every Put of a CONFIG (as an outage) while
// fail is set.
type r13bFailConfigBucket struct {
	objstore.Bucket
	fail atomic.Bool
}

func (b *r13bFailConfigBucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum []byte, cond objstore.Cond) (objstore.ObjectInfo, error) {
	if b.fail.Load() && strings.HasSuffix(key, "/"+bucketConfigKey) {
		return objstore.ObjectInfo{}, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrUnavailable, Retryable: true, Err: io.ErrUnexpectedEOF}
	}
	return b.Bucket.Put(ctx, key, body, size, sum, cond)
}

// r13bConfig decodes the CONFIG in the bucket (not authenticated: the
// test only reads what it says).
func r13bConfig(t *testing.T, f *fleet, tenant string) *manifestBody {
	t.Helper()
	p, err := decodeManifest(f.getRaw(bucketConfigOf(tenant)), tenant)
	require.NoError(t, err)
	return &p.body
}

// TestReview13bReaderReplayedConfigHidesRecords: the writers refuse an
// older CONFIG put back (ErrManifestRollback), but a reader takes the
// retention of whatever authentic CONFIG it lists (remoteConfigKeys reads
// it with no trusted key and no sequence check, and mergeNodeManifests
// prefers cfg's retention over the node manifests that applied a newer
// config). Someone with write access to the bucket and no key at all puts
// back a CONFIG from when the retention was 24h (since lifted): every
// reader, fresh or running, silently drops every record older than a day,
// with no error (docs/scale-out.md's fault table: an older CONFIG is "not
// used" by readers).
func TestReview13bReaderReplayedConfigHidesRecords(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	a := f.writer(t.TempDir(), func(o *Options) { o.RetentionInterval = -1 })
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, a, "acme", 1, 2, 200) // older than a day
	a.flushJournals(t)
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 24*time.Hour))
	old := f.getRaw(bucketConfigOf("acme"))
	require.NoError(t, a.Admin().SetRetention(bg, "acme", 0)) // lifted: keep forever
	_, err = a.Admin().Upload(bg)
	require.NoError(t, err)

	running := f.r13OpenReader()
	require.Equal(t, len(want), countAll(t, running, "acme", ScanOptions{}))

	f.putRaw(bucketConfigOf("acme"), old) // the replay: no key needed

	require.NoError(t, running.Refresh(bg))
	n, err := running.tn("acme").Count(bg, ScanOptions{})
	require.True(t, err != nil || n == len(want), "running reader: the replayed CONFIG's 24h retention hid %d of %d records, no error", len(want)-n, len(want))

	fresh := f.r13OpenReader()
	n, err = fresh.tn("acme").Count(bg, ScanOptions{})
	require.True(t, err != nil || n == len(want), "fresh reader: the replayed CONFIG's 24h retention hid %d of %d records, no error (the node manifests applied config %d, the CONFIG is %d)",
		len(want)-n, len(want), a.manifests.get("acme").body.ConfigSeq, r13bConfig(t, f, "acme").Seq)
}

// TestReview13bDirtyPublishRevertsKeyRotation: a node whose change could
// not be published (ConfigDirty) publishes, on its next config poll, its
// whole configuration (publishLocal: key, retention, redaction) on top of
// the CONFIG, not the one change it made. Node B's SetRetention hits a
// bucket outage; meanwhile node A rotates acme to a new key (LinkKey, say
// after the old key was suspected compromised). B's next poll writes
// B's stale key binding back over A's rotation, with a config key wrapped
// under the new key too, so A (and every node) accepts it and moves back
// to the old key. Concurrent changes to different fields must both
// survive (docs/scale-out.md).
func TestReview13bDirtyPublishRevertsKeyRotation(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	quiet := func(o *Options) {
		o.ConfigPollInterval, o.UploadInterval, o.RetentionInterval = time.Hour, time.Hour, -1
	}
	a := f.writer(t.TempDir(), quiet)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fb := &r13bFailConfigBucket{Bucket: f.b}
	b := f.writer(t.TempDir(), func(o *Options) { quiet(o); o.Bucket = fb })
	defer b.Close()
	_, err = b.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)

	fb.fail.Store(true)
	require.Error(t, b.Admin().SetRetention(bg, "acme", 90*24*time.Hour), "the outage")
	fb.fail.Store(false)
	require.True(t, b.manifests.get("acme").body.ConfigDirty)

	k2 := f.kms.newKey(t)
	_, err = a.Admin().LinkKey(bg, "acme", k2) // the rotation, published
	require.NoError(t, err)
	require.Equal(t, k2, r13bConfig(t, f, "acme").Key.URI)

	_, _ = b.Admin().Upload(bg) // B's config poll publishes its pending change
	_, _ = a.Admin().Upload(bg) // A adopts the result
	require.Equal(t, 90*24*time.Hour, r13bConfig(t, f, "acme").Retention, "B's change was published")
	require.Equal(t, k2, r13bConfig(t, f, "acme").Key.URI, "B's retry of a retention change put its old key back into CONFIG")
	require.Equal(t, k2, a.manifests.get("acme").body.Key.URI, "A was moved back to the key it rotated away from")
}

// TestReview13bDirtyPublishRevertsOtherNodesRedaction: the same as
// TestReview13bDirtyPublishRevertsKeyRotation for a plain field: B's
// pending retention change, retried by the config poll, also writes B's
// old redaction policy over the one A set meanwhile.
func TestReview13bDirtyPublishRevertsOtherNodesRedaction(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	quiet := func(o *Options) {
		o.ConfigPollInterval, o.UploadInterval, o.RetentionInterval = time.Hour, time.Hour, -1
	}
	a := f.writer(t.TempDir(), quiet)
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	fb := &r13bFailConfigBucket{Bucket: f.b}
	b := f.writer(t.TempDir(), func(o *Options) { quiet(o); o.Bucket = fb })
	defer b.Close()
	_, err = b.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)

	fb.fail.Store(true)
	require.Error(t, b.Admin().SetRetention(bg, "acme", 90*24*time.Hour))
	fb.fail.Store(false)

	pol := &redact.Policy{Version: 1, Headers: []redact.Rule{{Name: "x-secret", Action: redact.Mask}}}
	require.NoError(t, a.Admin().SetRedaction(bg, "acme", pol))
	_, _ = b.Admin().Upload(bg)
	cfg := r13bConfig(t, f, "acme")
	require.Equal(t, 90*24*time.Hour, cfg.Retention)
	require.NotNil(t, cfg.Redaction, "A's redaction policy was reverted by B's retried retention change")
}

// TestReview13bErasePublishNotRetried: Erase erases this node's segments,
// then publishes the erase; when that publish fails (a bucket outage) the
// erase is not marked unpublished (only key, retention and redaction
// changes set ConfigDirty, and publishLocal carries no erase), so the
// config poll never retries it: the other nodes keep the session's
// records for good, while the doc says an operator's change is "retried by
// the config poll".
func TestReview13bErasePublishNotRetried(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	fb := &r13bFailConfigBucket{Bucket: f.b}
	a := f.writer(t.TempDir(), func(o *Options) { o.Bucket = fb; o.ConfigPollInterval, o.UploadInterval = time.Hour, time.Hour })
	defer a.Close()
	_, err := a.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)

	fb.fail.Store(true)
	_, err = a.Admin().Erase(bg, "acme", EraseFilter{SessionID: "sess-gdpr"})
	require.Error(t, err, "the outage")
	fb.fail.Store(false)

	_, err = a.Admin().Upload(bg) // config poll: retries what is unpublished
	require.NoError(t, err)
	require.NotEmpty(t, r13bConfig(t, f, "acme").Erasures, "the erase never reached the CONFIG: no other node will run it")
}

// TestReview13bTwoRotationsOrphanRetiredNode: a reader accepts a node
// manifest only when it is linked to the CONFIG's key or to a key the
// config key is wrapped under (the previous key). A node retired while
// the tenant was on K1 (its segments stay: "segments of a node that never
// comes back are expired by readers") is accepted after one rotation,
// but after a second one (K2 -> K3) its manifest is "linked to a key the
// tenant's shared config does not vouch for": every read of the tenant,
// on every reader, returns ErrManifestAuth from then on, with no way for
// an operator to clear it but deleting that node's objects by hand.
func TestReview13bTwoRotationsOrphanRetiredNode(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	want, _ := r13TwoNodes(t, f) // two nodes on f.key; both closed: one is retired
	b := f.writer(t.TempDir(), func(o *Options) { o.ConfigPollInterval, o.UploadInterval = time.Hour, time.Hour })
	defer b.Close()
	_, err := b.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	for i := 0; i < 2; i++ { // two routine rotations
		_, err = b.Admin().LinkKey(bg, "acme", f.kms.newKey(t))
		require.NoError(t, err)
	}
	_, err = b.Admin().Upload(bg)
	require.NoError(t, err)
	r := f.r13OpenReader()
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err, "the retired nodes' manifests (on the tenant's former key) fail every read after two rotations")
	require.Equal(t, len(want), n)
}

// TestReview13bDeleteLeavesOlderVersions: s3store's Delete removes "every
// version of the key and its delete markers" with one ListObjectVersions
// call and no pagination: S3 returns at most 1,000 versions a page, so an
// object rewritten more often than that (CONFIG changes on every operator
// change and erase, a node's MANIFEST on every seal) keeps its older
// versions in a versioned bucket after DeleteTenant or any Delete (CONFIG
// versions hold the sealed erase filters, manifests the tenant's metadata).
func TestReview13bDeleteLeavesOlderVersions(t *testing.T) {
	srv := s3test.StartGofakes3(t)
	f := newFleet(t, srv)
	o := srv.Options()
	client := s3.New(s3.Options{Region: o.Region, Credentials: o.Credentials, BaseEndpoint: aws.String(o.Endpoint), UsePathStyle: true})
	_, err := client.PutBucketVersioning(bg, &s3.PutBucketVersioningInput{Bucket: aws.String("logs"),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)
	key := bucketConfigOf("acme")
	for i := 0; i < 1010; i++ {
		f.putRaw(key, []byte{byte(i), byte(i >> 8)})
	}
	require.NoError(t, f.b.Delete(bg, key))
	left := 0
	p := s3.NewListObjectVersionsPaginator(client, &s3.ListObjectVersionsInput{Bucket: aws.String("logs"), Prefix: aws.String("fleet/" + key)})
	for p.HasMorePages() {
		out, err := p.NextPage(bg)
		require.NoError(t, err)
		left += len(out.Versions) + len(out.DeleteMarkers)
	}
	require.Zero(t, left, "versions of a deleted object are still in the bucket")
}

// r13bFlakyProvider fails the next fails unwraps of a config key under key
// with ErrThrottled (a key service hiccup).
type r13bFlakyProvider struct {
	keys.Provider
	key   string
	fails atomic.Int32
}

func (p *r13bFlakyProvider) Unwrap(ctx context.Context, keyURI string, wrapped []byte, ec keys.EncryptionContext) ([]byte, error) {
	if keyURI == p.key && ec[keys.CtxPurpose] == purposeConfigKey && p.fails.Add(-1) >= 0 {
		return nil, fmt.Errorf("%w: test", keys.ErrThrottled)
	}
	return p.Provider.Unwrap(ctx, keyURI, wrapped, ec)
}

// TestReview13bConfigCacheKeepsTransientFailure: a reader verifies which
// keys a CONFIG vouches for (remoteConfigKeys) and caches the result by the
// CONFIG's ETag. An unwrap of the previous key's wrap that fails for a
// transient reason (the key service throttled one call) is taken as "not
// vouched for" and cached: a node still linked to the previous key (one
// retired during the rotation, or not yet moved) is refused with
// ErrManifestAuth by this reader on every read and every Refresh, for as
// long as the CONFIG is unchanged, although the key service is back and a
// fresh reader serves it.
func TestReview13bConfigCacheKeepsTransientFailure(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	want, _ := r13TwoNodes(t, f) // retired, on f.key
	b := f.writer(t.TempDir(), func(o *Options) { o.ConfigPollInterval, o.UploadInterval = time.Hour, time.Hour })
	defer b.Close()
	_, err := b.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	_, err = b.Admin().LinkKey(bg, "acme", f.kms.newKey(t)) // one rotation: f.key is the previous key
	require.NoError(t, err)
	_, err = b.Admin().Upload(bg)
	require.NoError(t, err)
	require.Equal(t, len(want), countAll(t, f.r13OpenReader(), "acme", ScanOptions{}), "a fresh reader serves the retired nodes")

	flaky := &r13bFlakyProvider{Provider: kmsProviders(f.kms.kopts)[0], key: f.key}
	flaky.fails.Store(1)
	r, err := Open(t.TempDir(), &Options{ReadOnly: true, Bucket: f.b, KMS: []keys.Provider{flaky}, RetentionInterval: -1, BlockCacheBytes: -1})
	require.NoError(t, err)
	defer r.Close()
	require.LessOrEqual(t, flaky.fails.Load(), int32(0), "the hiccup happened")
	require.NoError(t, r.Refresh(bg))
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err, "a one-off key service hiccup is cached as 'the CONFIG does not vouch for the previous key'")
	require.Equal(t, len(want), n)
}

// TestReview13bJunkObjectFailsTenant: a reader reports a node directory
// that holds objects and no manifest for more than 5 minutes, and counts
// any object, not only segments and summaries: a 1-byte object of any
// name under tenants/acme/<32 hex digits>/ (no key needed) makes every
// read of acme on every reader fail from then on, and no writer ever
// removes it (it is in no node's directory).
func TestReview13bJunkObjectFailsTenant(t *testing.T) {
	f := newFleet(t, s3test.StartGofakes3(t))
	w := f.writer(t.TempDir(), nil)
	_, err := w.Admin().LinkKey(bg, "acme", f.key)
	require.NoError(t, err)
	want := fill(t, w, "acme", 1, 1, 50)
	require.NoError(t, w.Close())
	f.putRaw(bucketTenantDir("acme")+strings.Repeat("f", 32)+"/junk", []byte{0})
	later := func(o *Options) { o.Now = func() time.Time { return time.Now().Add(10 * time.Minute) } }
	r := f.reader(later)
	n, err := r.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err, "a junk object with no segment name fails every read of the tenant")
	require.Equal(t, len(want), n)
}
