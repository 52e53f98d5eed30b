package engine

// Uploading sealed segments to the bucket (Options.Bucket; docs/scale-out.md).
// A record is acknowledged by the local write as without a bucket; the
// uploader then copies every sealed segment, its block-summary file and
// then the tenant's manifest to the node's own directory in the bucket
// (filenames.go), verified by checksum. It runs on its own goroutine, woken
// by every manifest commit and by a ticker that retries failures, so an
// unreachable bucket never slows appends: what is not uploaded yet is
// uploaded by a later pass, or by the next Open after a crash.

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/vfs"
)

// UploadReport says what an upload pass did.
type UploadReport struct {
	Uploaded int   // objects written (segments, summary files)
	Bytes    int64 // their bytes
	Verified int   // objects found in the bucket already and verified
	// Manifests counts the tenant manifests written to the bucket.
	Manifests int
	// Deleted counts the objects of segments no longer sealed here
	// (retention, erase) removed from the node's directory.
	Deleted int
	// Pending counts the sealed segments not in the bucket after the pass.
	Pending int
	// Lost lists the sealed segments that are neither on local disk nor in
	// the bucket (the manifest still lists them; readers report them).
	Lost []string
	// Errors lists, per tenant, what failed; those tenants are retried.
	Errors []string
}

// UploadStats are the uploader's counters (Stats.Upload).
type UploadStats struct {
	Node                      string // this node's id in the bucket
	Bucket                    string
	Uploaded, Bytes, Verified uint64
	Deleted, Manifests        uint64
	// Repaired counts this node's manifests found replaced or deleted in
	// the bucket and put back.
	Repaired uint64
	// Failures counts failed tenant passes; LastError is the latest.
	Failures  uint64
	Pending   int64
	LastError string
}

// uploader copies sealed segments to the bucket (see the file comment).
type uploader struct {
	db   *DB
	b    objstore.Bucket
	node string
	wake chan struct{}
	// ctx is cancelled by Close, so a pass in flight stops promptly.
	ctx    context.Context
	cancel context.CancelFunc

	// passLock (a one-slot semaphore, so waiting honours a context)
	// serializes passes and guards the fields below it.
	passLock  chan struct{}
	marker    bool                    // the bucket's format marker was checked
	objects   map[string]bucketObject // object key -> what the bucket holds
	listed    map[string]bool         // tenants whose node directory was listed since Open
	published map[string][32]byte     // tenant -> fingerprint of the manifest view last uploaded
	// manifestETag is, per tenant, the ETag of the manifest this process
	// put last: the next put replaces exactly it (If-Match), so another
	// writer of the same node directory (a copied data directory) or a
	// replay is noticed (uploadmanifest.go).
	manifestETag map[string]string
	// relist: tenants whose node directory is listed again by the next
	// pass (an operator's Upload, the config poll), so objects deleted or
	// replaced in the bucket are put back.
	relist map[string]bool
	// lastConfigPoll is when the shared tenant configs were last read.
	lastConfigPoll time.Time

	forgetMu  sync.Mutex      // guards forgotten and dirty
	forgotten map[string]bool // object keys to upload again (forget), taken by the next pass
	dirty     map[string]bool // tenants notified since the last woken pass ("": all)

	uploaded, bytes, verified, deleted, manifests, failures atomic.Uint64
	repaired                                                atomic.Uint64 // manifests found replaced in the bucket and put back
	pending                                                 atomic.Int64
	forceConfigPoll                                         atomic.Bool
	lastErr                                                 atomic.Value // string
}

// bucketObject is what the uploader knows of an object of its own.
type bucketObject struct {
	size int64
	etag string
	// md5 is the local file's MD5 when the object was uploaded or verified
	// in this process; nil for an object only seen in a listing.
	md5 []byte
}

// uploadDebounce batches the manifest commits of a burst into one pass.
const uploadDebounce = 50 * time.Millisecond

func newUploader(db *DB, b objstore.Bucket, node string) *uploader {
	u := &uploader{db: db, b: b, node: node, wake: make(chan struct{}, 1), passLock: make(chan struct{}, 1),
		forgotten: map[string]bool{}, dirty: map[string]bool{},
		objects: map[string]bucketObject{}, listed: map[string]bool{}, published: map[string][32]byte{},
		manifestETag: map[string]string{}, relist: map[string]bool{}}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.lastErr.Store("")
	return u
}

// notify asks for a pass over tenant soon ("" : every tenant); it never
// blocks. A pass so woken visits only the tenants notified since the last:
// a manifest commit (an active segment's checkpoint included) costs one
// tenant's manifest read, not every tenant's.
func (u *uploader) notify(tenant string) {
	u.forgetMu.Lock()
	u.dirty[tenant] = true
	u.forgetMu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// loop runs passes until Close; failures are retried every interval.
func (u *uploader) loop(interval time.Duration) {
	defer u.db.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	u.notify("") // what a crash left unuploaded goes first
	for {
		select {
		case <-u.db.quit:
			return
		case <-u.wake:
			select {
			case <-time.After(uploadDebounce):
			case <-u.db.quit:
				return
			}
			_, _ = u.run(u.ctx, u.takeDirty()) // counted in the stats; retried on the next tick
			continue
		case <-t.C:
		}
		_, _ = u.pass(u.ctx)
	}
}

// takeDirty returns the tenants notified since the last call (nil: every
// tenant).
func (u *uploader) takeDirty() map[string]bool {
	u.forgetMu.Lock()
	defer u.forgetMu.Unlock()
	d := u.dirty
	u.dirty = map[string]bool{}
	if d[""] {
		return nil
	}
	return d
}

// pass uploads what every tenant's manifest lists as sealed and is not in
// the bucket yet, then the manifests, then removes the objects of segments
// no longer sealed. A failure in one tenant does not stop the others.
func (u *uploader) pass(ctx context.Context) (UploadReport, error) { return u.run(ctx, nil) }

// run is a pass over the tenants in only (nil: every tenant).
func (u *uploader) run(ctx context.Context, only map[string]bool) (UploadReport, error) {
	var rep UploadReport
	if err := u.lock(ctx); err != nil {
		return rep, err
	}
	defer u.unlock()
	u.takeForgotten()
	var errs []error
	fail := func(what string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
		rep.Errors = append(rep.Errors, what+": "+err.Error())
		u.failures.Add(1)
		u.lastErr.Store(what + ": " + err.Error())
	}
	if !u.marker {
		if err := checkBucketMarker(ctx, u.b, true); err != nil {
			fail("bucket", err)
			return rep, errors.Join(errs...)
		}
		u.marker = true
	}
	if u.forceConfigPoll.Swap(false) || time.Since(u.lastConfigPoll) >= u.db.opts.ConfigPollInterval {
		for t := range u.listed {
			u.relist[t] = true // and check that the bucket still holds what this node put
		}
		for _, err := range u.adoptConfigs(ctx) {
			fail("config", err)
		}
		u.lastConfigPoll = time.Now()
	}
	tenants, err := u.db.listTenants()
	if err != nil {
		fail("tenants", err)
		return rep, errors.Join(errs...)
	}
	for _, t := range tenants {
		if only != nil && !only[t] {
			continue
		}
		if err := u.tenantPass(ctx, t, &rep); err != nil {
			fail("tenant "+t, err)
		}
	}
	if only == nil {
		u.pending.Store(int64(rep.Pending))
	}
	return rep, errors.Join(errs...)
}

// tenantPass runs a pass for one tenant.
func (u *uploader) tenantPass(ctx context.Context, tenant string, rep *UploadReport) error {
	raw, err := vfs.ReadFileLimit(u.db.fs, u.db.manifestPath(tenant), manifestFileMax)
	if errors.Is(err, vfs.ErrNotExist) {
		return nil // nothing written yet, or deleted
	}
	if err != nil {
		return err
	}
	p, err := decodeManifest(raw, tenant)
	if err != nil {
		return err // never publish a manifest this node cannot read itself
	}
	if p.body.Node != u.node {
		// Written before this node had a bucket: write it again, naming the
		// node, before readers see it.
		err := u.db.control(ctx, func() error {
			return u.db.updateManifest(ctx, tenant, false, func(*manifestBody) error { return nil })
		})
		if err != nil {
			return err
		}
		if raw, err = vfs.ReadFileLimit(u.db.fs, u.db.manifestPath(tenant), manifestFileMax); err != nil {
			return err
		}
		if p, err = decodeManifest(raw, tenant); err != nil {
			return err
		}
		if p.body.Node != u.node {
			return fmt.Errorf("%w: %s: the manifest names node %q, this node is %s", ErrManifestAuth, tenant, p.body.Node, u.node)
		}
	}
	if !u.listed[tenant] || u.relist[tenant] {
		if err := u.list(ctx, tenant); err != nil {
			return err
		}
	}
	sealed := map[string]bool{}
	var firstErr error
	for _, e := range p.body.Segments {
		if e.State != segSealed {
			continue
		}
		sealed[e.ID] = true
		if err := u.ensureSegment(ctx, tenant, e, rep); err != nil {
			rep.Pending++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return firstErr // the manifest waits until every segment it lists is there
	}
	if err := u.publishManifest(ctx, tenant, raw, &p.body, rep); err != nil {
		return err
	}
	return u.removeUnlisted(ctx, tenant, sealed, rep)
}

// adoptConfigs applies every tenant's shared configuration that is newer
// than what this node applied (tenantconfig.go), tenants this node has not
// written yet included.
func (u *uploader) adoptConfigs(ctx context.Context) []error {
	l, err := u.b.List(ctx, bucketTenantsDir, "/")
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, p := range l.Prefixes {
		tenant := strings.TrimSuffix(strings.TrimPrefix(p, bucketTenantsDir), "/")
		if ValidateTenant(tenant) != nil {
			continue
		}
		if err := u.db.adoptConfig(ctx, u.b, tenant); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", tenant, err))
		}
	}
	return errs
}

// ensureSegment puts sealed segment e and its summary file in the bucket.
func (u *uploader) ensureSegment(ctx context.Context, tenant string, e manifestEntry, rep *UploadReport) error {
	id, err := parseSegHex(e.ID)
	if err != nil {
		return err
	}
	path := u.db.segPath(tenant, id)
	key := bucketSegmentKey(tenant, u.node, e.ID)
	err = u.ensureFile(ctx, path, key, rep)
	if errors.Is(err, vfs.ErrNotExist) {
		if o, ok := u.objects[key]; ok && o.size == e.Size {
			return nil // gone from local disk, kept in the bucket
		}
		rep.Lost = append(rep.Lost, tenant+"/"+e.ID)
		return nil // lost: the manifest says so, and readers report it
	}
	if err != nil {
		return err
	}
	err = u.ensureFile(ctx, summaryPathOf(path), bucketSummaryKey(tenant, u.node, e.ID), rep)
	if errors.Is(err, vfs.ErrNotExist) {
		return nil // derived: readers summarize the segment instead
	}
	return err
}

// ensureFile makes object key hold the bytes of the local file at path:
// skipped when this process uploaded or verified them already, verified
// against a listed object's MD5 ETag, else put (create-only, or replacing
// exactly the version seen) with the SHA-256 checked by the bucket.
func (u *uploader) ensureFile(ctx context.Context, path, key string, rep *UploadReport) error {
	have, known := u.objects[key]
	if known && have.md5 != nil {
		return nil
	}
	f, err := u.db.fs.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	sum, md, err := hashFile(f, size)
	if err != nil {
		return err
	}
	if known && have.size == size && have.etag == hex.EncodeToString(md) {
		u.objects[key] = bucketObject{size: size, etag: have.etag, md5: md}
		rep.Verified++
		u.verified.Add(1)
		return nil
	}
	cond := objstore.Cond{IfNoneMatch: true}
	if known {
		cond = objstore.Cond{IfMatch: have.etag}
	}
	info, err := u.b.Put(ctx, key, io.NewSectionReader(f, 0, size), size, sum, cond)
	if errors.Is(err, objstore.ErrPrecondition) {
		// Someone else's bytes under our key (a planted or stale copy): ours
		// replace exactly the version now there.
		head, herr := u.b.Head(ctx, key)
		if herr != nil {
			return herr
		}
		if head.Size == size && head.ETag == hex.EncodeToString(md) {
			info, err = head, nil
		} else {
			info, err = u.b.Put(ctx, key, io.NewSectionReader(f, 0, size), size, sum, objstore.Cond{IfMatch: head.ETag})
		}
	}
	if err != nil {
		return err
	}
	u.objects[key] = bucketObject{size: size, etag: info.ETag, md5: md}
	rep.Uploaded++
	rep.Bytes += size
	u.uploaded.Add(1)
	u.bytes.Add(uint64(size))
	return nil
}

func hashFile(f io.ReaderAt, size int64) (sum, md []byte, err error) {
	hs, hm := sha256.New(), md5.New()
	if _, err := io.Copy(io.MultiWriter(hs, hm), io.NewSectionReader(f, 0, size)); err != nil {
		return nil, nil, err
	}
	return hs.Sum(nil), hm.Sum(nil), nil
}

// publishedView is what readers take from a manifest: a new one is uploaded
// only when it changes (not on every checkpoint of an active segment).
func publishedView(b *manifestBody) [32]byte {
	v := struct {
		Key       keyBinding
		Wraps     []keyWrap
		Retention time.Duration
		Redaction any
		Sealed    []manifestEntry
	}{Key: b.Key, Wraps: b.Wraps, Retention: b.Retention, Redaction: b.Redaction}
	for _, e := range b.Segments {
		if e.State == segSealed {
			v.Sealed = append(v.Sealed, e)
		}
	}
	raw, _ := json.Marshal(v)
	return sha256.Sum256(raw)
}

// removeUnlisted deletes the node's objects of tenant whose segment the
// manifest just published no longer lists as sealed: expired, erased, or
// left by a crash between an upload and its manifest.
func (u *uploader) removeUnlisted(ctx context.Context, tenant string, sealed map[string]bool, rep *UploadReport) error {
	dir := bucketNodeDir(tenant, u.node)
	var doomed []string
	for key := range u.objects {
		name, ok := strings.CutPrefix(key, dir)
		if !ok || name == bucketManifestKey {
			continue
		}
		hexID := strings.TrimSuffix(strings.TrimSuffix(name, segmentExt), summaryExt)
		if !sealed[hexID] {
			doomed = append(doomed, key)
		}
	}
	sort.Strings(doomed)
	for _, key := range doomed {
		if err := u.b.Delete(ctx, key); err != nil {
			return err
		}
		delete(u.objects, key)
		rep.Deleted++
		u.deleted.Add(1)
	}
	return nil
}

// lock takes the pass lock, or gives up with ctx.
func (u *uploader) lock(ctx context.Context) error {
	select {
	case u.passLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("logstore/engine: waiting for the upload pass in progress: %w", ctx.Err())
	}
}

func (u *uploader) unlock() { <-u.passLock }

// forget makes the next pass upload segment hexID of tenant again (its key
// slot was rewritten: same size, other bytes). It never waits for a pass.
func (u *uploader) forget(tenant, hexID string) {
	u.forgetMu.Lock()
	u.forgotten[bucketSegmentKey(tenant, u.node, hexID)] = true
	u.forgotten[bucketSummaryKey(tenant, u.node, hexID)] = true
	u.forgetMu.Unlock()
	u.notify(tenant)
}

// takeForgotten marks the objects forget named as to be checked again.
// The caller holds the pass lock.
func (u *uploader) takeForgotten() {
	u.forgetMu.Lock()
	keys := u.forgotten
	u.forgotten = map[string]bool{}
	u.forgetMu.Unlock()
	for key := range keys {
		if o, ok := u.objects[key]; ok {
			o.md5 = nil // re-hash; an ETag that is not the new MD5 is replaced (If-Match)
			u.objects[key] = o
		}
	}
}

// deleteTenant removes every object of tenant from the bucket, every
// node's: the tenant's keys are shredded, so other nodes' copies are
// unreadable anyway, and the report says what went.
func (u *uploader) deleteTenant(ctx context.Context, tenant string) (objects int, bytes int64, err error) {
	if err := u.lock(ctx); err != nil {
		return 0, 0, err
	}
	defer u.unlock()
	l, err := u.b.List(ctx, bucketTenantDir(tenant), "")
	if err != nil {
		return 0, 0, err
	}
	for _, o := range l.Objects {
		if err := u.b.Delete(ctx, o.Key); err != nil {
			return objects, bytes, err
		}
		delete(u.objects, o.Key)
		objects++
		bytes += o.Size
	}
	delete(u.listed, tenant)
	delete(u.published, tenant)
	delete(u.manifestETag, tenant)
	return objects, bytes, nil
}

func (u *uploader) stats() UploadStats {
	return UploadStats{Node: u.node, Bucket: u.b.String(), Uploaded: u.uploaded.Load(), Bytes: u.bytes.Load(),
		Verified: u.verified.Load(), Deleted: u.deleted.Load(), Manifests: u.manifests.Load(), Repaired: u.repaired.Load(),
		Failures: u.failures.Load(), Pending: u.pending.Load(), LastError: u.lastErr.Load().(string)}
}

// upload implements Admin.Upload (documented there).
func (db *DB) upload(ctx context.Context) (UploadReport, error) {
	if db.uploader == nil {
		return UploadReport{}, fmt.Errorf("%w: no bucket (Options.Bucket)", ErrInvalidOptions)
	}
	db.uploader.forceConfigPoll.Store(true) // an operator's pass reads the shared configs and relists too
	rep, err := db.uploader.pass(ctx)
	if err != nil {
		return rep, fmt.Errorf("logstore/engine: upload to %s: %w", db.uploader.b, err)
	}
	return rep, nil
}

// finalUpload runs one last pass at Close, after every active segment was
// sealed, bounded by Options.UploadOnClose: what it cannot upload, the next
// Open does.
func (db *DB) finalUpload() {
	if db.uploader == nil || db.opts.UploadOnClose < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.UploadOnClose)
	defer cancel()
	_, _ = db.uploader.pass(ctx) // counted; the next Open retries
}
