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
	db.remote = &remoteStore{b: db.opts.Bucket, fs: fs, seen: map[string]uint64{}, verified: map[string]verifiedManifest{}}
	db.fs = fs
	return nil
}

// nodeManifest is one writer node's authenticated manifest of a tenant.
type nodeManifest struct {
	node string
	body *manifestBody
	mk   []byte
}

// readRemoteManifest reads, authenticates and merges the node manifests of
// tenant. A node manifest that fails is reported in problems and left out;
// the others are served. It fails only when none can be read.
func (db *DB) readRemoteManifest(ctx context.Context, tenant string) (*manifestBody, []string, error) {
	r := db.remote
	r.fs.lists.Add(1)
	l, err := r.b.List(ctx, bucketTenantDir(tenant), "")
	if err != nil {
		return nil, nil, err
	}
	// What each node directory holds, by file name.
	byNode := map[string]map[string]objstore.ObjectInfo{}
	for _, o := range l.Objects {
		rest := strings.TrimPrefix(o.Key, bucketTenantDir(tenant))
		node, name, ok := strings.Cut(rest, "/")
		if !ok || !isNodeID(node) || strings.Contains(name, "/") {
			continue
		}
		if byNode[node] == nil {
			byNode[node] = map[string]objstore.ObjectInfo{}
		}
		byNode[node][name] = o
	}
	var nodes []nodeManifest
	var problems []string
	var firstErr error
	for node, objs := range byNode {
		mo, ok := objs[bucketManifestKey]
		if !ok {
			continue // segments uploaded, manifest not yet: not visible yet
		}
		if body := r.cached(tenant, node, mo.ETag); body != nil {
			nodes = append(nodes, nodeManifest{node: node, body: body})
			continue
		}
		nm, err := db.readNodeManifest(ctx, tenant, node)
		if err != nil {
			problems = append(problems, fmt.Sprintf("tenant %s node %s: %v", tenant, node, err))
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		nodes = append(nodes, nm)
	}
	defer func() {
		for _, nm := range nodes {
			keys.Zero(nm.mk)
		}
	}()
	if gone := r.vanished(tenant, byNode); len(gone) > 0 {
		err := fmt.Errorf("%w: %s: the manifest of node %s, read before by this reader, is gone from %s: its records would be missing from every answer",
			ErrManifestMissing, tenant, strings.Join(gone, ", "), r.b)
		return nil, append(problems, err.Error()), err
	}
	if len(nodes) == 0 {
		if firstErr != nil {
			return nil, problems, firstErr
		}
		return nil, problems, fmt.Errorf("%w: tenant %s has no node manifest in %s", errNoRemoteManifest, tenant, r.b)
	}
	db.headUnlisted(ctx, tenant, nodes, byNode)
	body, files, conflicts := mergeNodeManifests(tenant, nodes, byNode, db.opts.Now())
	problems = append(problems, conflicts...)
	r.fs.setTenant(tenant, files)
	return body, problems, nil
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
	raw, info, err := getSmall(ctx, r.b, bucketManifestOf(tenant, node), manifestHeaderLen+manifestMaxBody+manifestMACLen+4)
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
func mergeNodeManifests(tenant string, nodes []nodeManifest, byNode map[string]map[string]objstore.ObjectInfo, now time.Time) (*manifestBody, map[string]objstore.ObjectInfo, []string) {
	sort.Slice(nodes, func(i, j int) bool {
		if !nodes[i].body.Written.Equal(nodes[j].body.Written) {
			return nodes[i].body.Written.After(nodes[j].body.Written)
		}
		return nodes[i].node < nodes[j].node
	})
	merged := nodes[0].body.clone()
	merged.Segments = nil
	owner := map[string]string{}
	var problems []string
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
				problems = append(problems, fmt.Sprintf("tenant %s: %v", tenant,
					fmt.Errorf("%w: segment %s is listed by nodes %s and %s: served from neither", ErrSegmentTampered, e.ID, other, nm.node)))
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
		body, problems, err := db.readRemoteManifest(ctx, t)
		cancel()
		rep.Damaged = append(rep.Damaged, problems...)
		switch {
		case errors.Is(err, errNoRemoteManifest):
			continue // nothing visible yet
		case err == nil:
			db.manifests.set(t, &tenantManifest{body: body})
		case manifestDamage(err), errors.Is(err, ErrManifestMissing):
			db.manifests.set(t, &tenantManifest{damaged: err})
		default:
			db.manifests.set(t, &tenantManifest{unverified: err})
			rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", t, err))
		}
	}
}
