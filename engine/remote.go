package engine

// A stateless reader of a bucket (Options.ReadOnly with Options.Bucket;
// docs/scale-out.md). It keeps nothing but a bounded cache: on Open and on
// every Refresh it lists each tenant's directory in the bucket, reads and
// authenticates every writer node's manifest with the tenant's key, and
// serves the union of the segments they list as sealed, read from the
// bucket through bucketFS. The rest of the read-only engine (readonly.go)
// is unchanged: it sees one merged manifest per tenant, and reads and
// authenticates segments and summary files as it would on a local disk.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/objstore"
)

type remoteStore struct {
	b  objstore.Bucket
	fs *bucketFS

	mu sync.Mutex // guards seen and verified
	// seen is the highest manifest sequence read per tenant/node: a node
	// manifest put back to an older copy while this process runs is
	// ErrManifestRollback.
	seen map[string]uint64
	// verified holds, per tenant/node, the last manifest authenticated and
	// the ETag it had: a Refresh that lists the same ETag reuses it (no GET,
	// no key call).
	verified map[string]verifiedManifest
	// problems are, per tenant, the node manifests (or CONFIG) the last
	// read could not serve: every read of the tenant reports them.
	problems map[string][]error
	// configs caches each tenant's verified CONFIG by ETag (as verified
	// does the node manifests).
	configs map[string]verifiedConfig
}

type verifiedManifest struct {
	etag string
	body *manifestBody
}

// openRemote prepares db to read the bucket: its file system and the
// format marker.
func openRemote(db *DB) error {
	root := segmentsDirOf(db.dir)
	fs := newBucketFS(db.fs, root, db.opts.Bucket, db.opts.BucketCacheBytes)
	ctx, cancel := context.WithTimeout(context.Background(), bucketReadTimeout)
	defer cancel()
	if err := checkBucketMarker(ctx, db.opts.Bucket, false); err != nil {
		return err
	}
	db.remote = &remoteStore{b: db.opts.Bucket, fs: fs, seen: map[string]uint64{}, verified: map[string]verifiedManifest{},
		problems: map[string][]error{}, configs: map[string]verifiedConfig{}}
	db.fs = fs
	return nil
}

// nodeManifest is one writer node's authenticated manifest of a tenant.
type nodeManifest struct {
	node string
	body *manifestBody
	mk   []byte
}

// unpublishedGrace is how long a node directory may hold segments without
// a manifest before a reader reports it: a node uploads its manifest right
// after the segments it lists, so only a deleted manifest is older.
const unpublishedGrace = 5 * time.Minute

// readRemoteManifest reads, authenticates and merges the node manifests of
// tenant. Every node manifest must be authentic, name its own directory's
// node, and be linked to a key the tenant's CONFIG vouches for (its key or
// the previous one it is wrapped under; without a CONFIG, every node must
// agree on one key). A node that fails any of that, or that holds segments
// and no manifest, is a problem: reads of the tenant report it (the other
// nodes' records are served with the error), retried on the next read when
// it is transient. It fails only when no node can be served.
func (db *DB) readRemoteManifest(ctx context.Context, tenant string) (*manifestBody, []string, error) {
	r := db.remote
	r.fs.lists.Add(1)
	l, err := r.b.List(ctx, bucketTenantDir(tenant), "")
	if err != nil {
		return nil, nil, err
	}
	byNode, configObj := groupByNode(tenant, l.Objects)
	var problems []error
	accept, cfg, err := db.remoteConfigKeys(ctx, tenant, configObj)
	if err != nil {
		problems = append(problems, fmt.Errorf("shared config: %w", err))
	}
	var nodes []nodeManifest
	for node, objs := range byNode {
		mo, ok := objs[bucketManifestKey]
		if !ok {
			if oldest := oldestSegment(objs); !oldest.IsZero() && db.opts.Now().Sub(oldest) > unpublishedGrace {
				problems = append(problems, fmt.Errorf("%w: node %s holds segments of %s and no manifest (deleted?): its records are not served",
					ErrManifestMissing, node, tenant))
			}
			continue // a node's first upload in flight: not visible yet
		}
		nm, err := db.nodeManifestOf(ctx, tenant, node, mo.ETag)
		if err == nil {
			err = checkNodeManifest(nm, node, accept)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("node %s: %w", node, err))
			continue
		}
		nodes = append(nodes, nm)
	}
	read := nodes
	defer func() {
		for _, nm := range read {
			keys.Zero(nm.mk)
		}
	}()
	if accept == nil { // no CONFIG: the nodes must agree on one key
		if err := agreeOnKey(nodes); err != nil {
			problems, nodes = append(problems, err), nil
		}
	}
	if gone := r.vanished(tenant, byNode); len(gone) > 0 {
		problems = append(problems, fmt.Errorf("%w: %s: the manifest of node %s, read before by this reader, is gone from %s: its records would be missing from every answer",
			ErrManifestMissing, tenant, strings.Join(gone, ", "), r.b))
	}
	r.setProblems(tenant, problems)
	texts := make([]string, len(problems))
	for i, p := range problems {
		texts[i] = fmt.Sprintf("tenant %s: %v", tenant, p)
	}
	if len(nodes) == 0 {
		if len(problems) > 0 {
			return nil, texts, errors.Join(problems...)
		}
		return nil, texts, fmt.Errorf("%w: tenant %s has no node manifest in %s", errNoRemoteManifest, tenant, r.b)
	}
	db.headUnlisted(ctx, tenant, nodes, byNode)
	body, files, conflicts := mergeNodeManifests(tenant, nodes, byNode, cfg, db.opts.Now())
	for _, c := range conflicts {
		r.addProblem(tenant, c)
		texts = append(texts, fmt.Sprintf("tenant %s: %v", tenant, c))
	}
	r.fs.setTenant(tenant, files)
	return body, texts, nil
}

// groupByNode sorts a tenant directory's listing by node directory and file
// name, and picks out its CONFIG.
func groupByNode(tenant string, objs []objstore.ObjectInfo) (map[string]map[string]objstore.ObjectInfo, *objstore.ObjectInfo) {
	byNode := map[string]map[string]objstore.ObjectInfo{}
	var config *objstore.ObjectInfo
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, bucketTenantDir(tenant))
		if rest == bucketConfigKey {
			c := o
			config = &c
			continue
		}
		node, name, ok := strings.Cut(rest, "/")
		if !ok || !isNodeID(node) || strings.Contains(name, "/") {
			continue
		}
		if byNode[node] == nil {
			byNode[node] = map[string]objstore.ObjectInfo{}
		}
		byNode[node][name] = o
	}
	return byNode, config
}

// oldestSegment is the time of the oldest segment object (HEXID.lss) of a
// node directory; other names are not a node's and are ignored.
func oldestSegment(objs map[string]objstore.ObjectInfo) time.Time {
	var t time.Time
	for name, o := range objs {
		if _, ok := segmentIDOfPath(name); !ok {
			continue
		}
		if t.IsZero() || o.Modified.Before(t) {
			t = o.Modified
		}
	}
	return t
}

// remoteConfigKeys reads tenant's CONFIG and returns the keys a node
// manifest may be linked to: the CONFIG's key and every key its config key
// is proven wrapped under (the previous key, during a rotation). nil means
// no CONFIG (or none readable: err says why, and then no key is accepted).
func (db *DB) remoteConfigKeys(ctx context.Context, tenant string, obj *objstore.ObjectInfo) (map[string]bool, *manifestBody, error) {
	if obj == nil {
		return nil, nil, nil
	}
	r := db.remote
	r.mu.Lock()
	c, ok := r.configs[tenant]
	r.mu.Unlock()
	if ok && obj.ETag != "" && c.etag == obj.ETag {
		return c.accept, c.body, nil // unchanged since it was verified
	}
	r.fs.gets.Add(2) // a HEAD, then the GET
	cfg, err := db.readSharedConfig(ctx, r.b, tenant, "")
	if err != nil || cfg == nil {
		return map[string]bool{}, nil, err
	}
	defer keys.Zero(cfg.ck)
	accept := map[string]bool{cfg.body.Key.URI: true}
	for _, uri := range cfg.body.KeyHistory {
		accept[uri] = true // MAC'd with the rest: a key the tenant was linked to
	}
	var transient error
	for _, w := range cfg.body.Wraps {
		if w.URI == cfg.body.Key.URI {
			continue
		}
		other, err := db.unwrapConfigKey(ctx, tenant, cfg.body, w.URI)
		if err == nil && bytes.Equal(other, cfg.ck) {
			accept[w.URI] = true
		}
		if transientErr(err) {
			transient = err // not known now: neither cached nor taken as a refusal
		}
		keys.Zero(other)
	}
	if transient != nil {
		return accept, cfg.body, fmt.Errorf("the previous key cannot be checked now: %w", transient)
	}
	r.mu.Lock()
	r.configs[tenant] = verifiedConfig{etag: cfg.etag, accept: accept, body: cfg.body}
	r.mu.Unlock()
	return accept, cfg.body, nil
}

// verifiedConfig is a tenant's CONFIG as a reader verified it, by ETag.
type verifiedConfig struct {
	etag   string
	accept map[string]bool
	body   *manifestBody
}

// checkNodeManifest applies the reader's rules to an authentic node manifest.
func checkNodeManifest(nm nodeManifest, node string, accept map[string]bool) error {
	if nm.body.Node != node {
		return fmt.Errorf("%w: the manifest in node %s's directory was written by node %q", ErrManifestAuth, node, nm.body.Node)
	}
	if accept != nil && !accept[nm.body.Key.URI] {
		return fmt.Errorf("%w: the manifest is linked to %s, a key the tenant's shared config does not vouch for", ErrManifestAuth, nm.body.Key.URI)
	}
	return nil
}

// agreeOnKey is the rule without a CONFIG: every node linked to one key.
func agreeOnKey(nodes []nodeManifest) error {
	for _, nm := range nodes[min(1, len(nodes)):] {
		if nm.body.Key.URI != nodes[0].body.Key.URI {
			return fmt.Errorf("%w: nodes %s and %s are linked to different keys (%s, %s) and no shared config says which is the tenant's",
				ErrManifestAuth, nodes[0].node, nm.node, nodes[0].body.Key.URI, nm.body.Key.URI)
		}
	}
	return nil
}

// nodeManifestOf returns node's manifest of tenant, authenticated: the one
// this reader verified before when the object still has that ETag.
func (db *DB) nodeManifestOf(ctx context.Context, tenant, node, etag string) (nodeManifest, error) {
	if body := db.remote.cached(tenant, node, etag); body != nil {
		return nodeManifest{node: node, body: body}, nil
	}
	return db.readNodeManifest(ctx, tenant, node)
}

// setProblems records tenant's node problems: reads report them.
func (r *remoteStore) setProblems(tenant string, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems[tenant] = errs
}

func (r *remoteStore) addProblem(tenant string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems[tenant] = append(r.problems[tenant], err)
}

// problemsOf returns tenant's node problems and whether one is transient.
func (r *remoteStore) problemsOf(tenant string) ([]error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := r.problems[tenant]
	transient := false
	for _, e := range errs {
		transient = transient || transientErr(e)
	}
	return errs, transient
}

// remoteFaults prepares a stateless reader's load of tenant: a transient
// problem of the last read (a throttled GET) is retried now, and the
// problems that remain are faults of the load, which its reads report.
func (db *DB) remoteFaults(tenant string, tb *tenantBlocks) {
	tm := db.manifests.get(tenant)
	if _, transient := db.remote.problemsOf(tenant); transient || (tm != nil && transientErr(tm.unverified)) {
		db.refreshTenant(tenant)
	}
	errs, _ := db.remote.problemsOf(tenant)
	for _, e := range errs {
		tb.fault(e)
	}
}

// refreshTenant reads tenant's node manifests again (a transient problem
// of the last read), for a read about to load the tenant.
func (db *DB) refreshTenant(tenant string) {
	ctx, cancel := context.WithTimeout(context.Background(), bucketReadTimeout)
	defer cancel()
	var rep RecoveryReport
	db.loadRemoteTenant(ctx, tenant, &rep)
}

// headUnlisted looks up the objects of sealed segments that a node manifest
// lists but the listing did not show: uploaded between the LIST and the
// manifest's GET (a node uploads a segment before the manifest that lists
// it). One that is really missing stays out, and reads report it lost.
func (db *DB) headUnlisted(ctx context.Context, tenant string, nodes []nodeManifest, byNode map[string]map[string]objstore.ObjectInfo) {
	for _, nm := range nodes {
		for _, e := range nm.body.Segments {
			if e.State != segSealed {
				continue
			}
			for _, name := range []string{segmentFileName(e.ID), e.ID + summaryExt} {
				if _, ok := byNode[nm.node][name]; ok {
					continue
				}
				db.remote.fs.gets.Add(1)
				o, err := db.remote.b.Head(ctx, bucketNodeDir(tenant, nm.node)+name)
				if err == nil {
					byNode[nm.node][name] = o
				}
			}
		}
	}
}

var errNoRemoteManifest = errors.New("logstore/engine: no manifest yet")

// readNodeManifest reads and authenticates node's manifest of tenant.
func (db *DB) readNodeManifest(ctx context.Context, tenant, node string) (nodeManifest, error) {
	r := db.remote
	r.fs.gets.Add(2) // a HEAD, then the GET
	raw, info, err := getSmall(ctx, r.b, bucketManifestOf(tenant, node), manifestFileMax)
	etag := info.ETag
	if err != nil {
		return nodeManifest{}, err
	}
	p, err := decodeManifest(raw, tenant)
	if err != nil {
		return nodeManifest{}, err
	}
	mk, err := db.unwrapManifestKey(ctx, tenant, &p.body, p.body.Key.URI)
	if err != nil {
		return nodeManifest{}, err
	}
	if err := p.verify(mk); err != nil {
		keys.Zero(mk)
		return nodeManifest{}, err
	}
	if err := db.checkExpectedKey(tenant, p.body.Key); err != nil {
		keys.Zero(mk)
		return nodeManifest{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if seen := r.seen[tenant+"/"+node]; p.body.Seq < seen {
		keys.Zero(mk)
		return nodeManifest{}, fmt.Errorf("%w: %s: node %s's manifest has sequence %d, this reader saw %d (an older copy was put back)",
			ErrManifestRollback, tenant, node, p.body.Seq, seen)
	}
	r.seen[tenant+"/"+node] = p.body.Seq
	r.verified[tenant+"/"+node] = verifiedManifest{etag: etag, body: p.body.clone()}
	return nodeManifest{node: node, body: &p.body, mk: mk}, nil
}

// vanished lists the nodes of tenant whose manifest this reader read before
// and that the listing no longer shows. A node never deletes its manifest
// (DeleteTenant removes the whole tenant), so a vanished one was deleted by
// someone else: fail closed rather than answer without its records.
func (r *remoteStore) vanished(tenant string, byNode map[string]map[string]objstore.ObjectInfo) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []string
	for k := range r.seen {
		t, node, _ := strings.Cut(k, "/")
		if t != tenant {
			continue
		}
		if _, ok := byNode[node][bucketManifestKey]; !ok {
			gone = append(gone, node)
		}
	}
	sort.Strings(gone)
	return gone
}

// cached returns the manifest of tenant/node authenticated before, if the
// object still has that ETag (nil otherwise).
func (r *remoteStore) cached(tenant, node, etag string) *manifestBody {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.verified[tenant+"/"+node]
	if !ok || etag == "" || v.etag != etag {
		return nil
	}
	return v.body.clone()
}

// mergeNodeManifests builds the one manifest a reader serves: the newest
// node manifest's configuration (key binding, retention, redaction) and the
// sealed segments of every node, less those past the retention, each
// mapped to its node's objects. A segment id that two nodes list is served
// from neither (ids are random: it is a copy, reported).
func mergeNodeManifests(tenant string, nodes []nodeManifest, byNode map[string]map[string]objstore.ObjectInfo, cfg *manifestBody, now time.Time) (*manifestBody, map[string]objstore.ObjectInfo, []error) {
	// The configuration: the shared config's, else the node that applied
	// the newest one (ConfigSeq), then the latest written.
	sort.Slice(nodes, func(i, j int) bool {
		a, b := nodes[i].body, nodes[j].body
		if a.ConfigSeq != b.ConfigSeq {
			return a.ConfigSeq > b.ConfigSeq
		}
		if !a.Written.Equal(b.Written) {
			return a.Written.After(b.Written)
		}
		return nodes[i].node < nodes[j].node
	})
	merged := nodes[0].body.clone()
	var problems []error
	switch {
	case cfg == nil:
	case cfg.Seq >= merged.ConfigSeq:
		merged.Retention, merged.Redaction = cfg.Retention, cfg.Redaction
	default:
		// A node applied a newer config than the one in the bucket: it was
		// put back. The node's configuration is served, and the rollback
		// reported.
		problems = append(problems, fmt.Errorf("%w: %s: the shared config has sequence %d, node %s applied %d (an older copy was put back)",
			ErrManifestRollback, tenant, cfg.Seq, nodes[0].node, merged.ConfigSeq))
	}
	merged.Segments = nil
	owner := map[string]string{}
	files := map[string]objstore.ObjectInfo{}
	for _, nm := range nodes {
		for _, e := range nm.body.Segments {
			if e.State != segSealed {
				continue // active, deleting, erasing: not in the bucket
			}
			if merged.Retention > 0 && e.Records > 0 && time.Unix(0, e.MaxTime).Before(now.Add(-merged.Retention)) {
				continue // expired: its node removes it when it runs next
			}
			if other, dup := owner[e.ID]; dup {
				problems = append(problems, fmt.Errorf("%w: segment %s is listed by nodes %s and %s: served from neither", ErrSegmentTampered, e.ID, other, nm.node))
				owner[e.ID] = "" // poisoned
				continue
			}
			owner[e.ID] = nm.node
			merged.Segments = append(merged.Segments, e)
			for _, name := range []string{segmentFileName(e.ID), e.ID + summaryExt} {
				if o, ok := byNode[nm.node][name]; ok {
					files[name] = o
				}
			}
		}
	}
	kept := merged.Segments[:0]
	for _, e := range merged.Segments {
		if owner[e.ID] != "" {
			kept = append(kept, e)
		} else {
			delete(files, segmentFileName(e.ID))
			delete(files, e.ID+summaryExt)
		}
	}
	merged.Segments = kept
	return merged, files, problems
}

// loadRemoteManifests is loadManifests for a stateless reader.
func (db *DB) loadRemoteManifests(tenants []string, rep *RecoveryReport) {
	for _, t := range tenants {
		ctx, cancel := context.WithTimeout(context.Background(), bucketReadTimeout)
		db.loadRemoteTenant(ctx, t, rep)
		cancel()
	}
}

// loadRemoteTenant reads tenant's node manifests and publishes the merged
// one (or why there is none).
func (db *DB) loadRemoteTenant(ctx context.Context, t string, rep *RecoveryReport) {
	body, problems, err := db.readRemoteManifest(ctx, t)
	rep.Damaged = append(rep.Damaged, problems...)
	switch {
	case errors.Is(err, errNoRemoteManifest):
	case err == nil:
		db.manifests.set(t, &tenantManifest{body: body})
	case objstore.IsRetryable(err):
		db.manifests.set(t, &tenantManifest{unverified: err})
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", t, err))
	case manifestDamage(err), errors.Is(err, ErrManifestMissing):
		db.manifests.set(t, &tenantManifest{damaged: err})
	default:
		db.manifests.set(t, &tenantManifest{unverified: err})
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", t, err))
	}
}

// transientErr: the bucket or the key service did not answer (throttled,
// unreachable); the same request later may succeed.
func transientErr(err error) bool {
	return err != nil && (objstore.IsRetryable(err) || keys.IsRetryable(err) ||
		errors.Is(err, keys.ErrThrottled) || errors.Is(err, keys.ErrUnavailable))
}
