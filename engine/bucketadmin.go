package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/logstore/logstore/objstore"
)

// SegmentLocation says where a segment is (Admin.Locations).
type SegmentLocation struct {
	Tenant, ID string
	// Node is the writer node whose directory in the bucket holds it ("" for
	// a segment of this node not uploaded yet).
	Node string
	// State is the manifest state ("active", "sealed"...) where this DB
	// knows it; on a writer, "other-node" for another node's object; else
	// "unlisted" for an object no manifest read lists (an upload whose
	// manifest is not written yet, or debris), "duplicate" for an id two
	// nodes hold.
	State  string
	Size   int64
	Local  bool // on this data directory's disk
	Remote bool // in the bucket
}

// Upload runs an upload pass now and waits for it: every sealed segment not
// yet in the bucket, its summary file, then the tenant manifests, then the
// removal of objects of segments no longer sealed (retention, erase). The
// uploader's own passes run in the background anyway; this is for
// operators (`logstore segments upload`) and tests. ErrInvalidOptions
// without a bucket; the errors of the tenants that failed otherwise, typed
// (objstore.ErrUnavailable, ErrAccessDenied...), with the report of what
// did succeed.
func (a *Admin) Upload(ctx context.Context) (UploadReport, error) {
	return call(a, ctx, func() (UploadReport, error) { return a.db.upload(ctx) })
}

// Locations lists the segments of tenant (every tenant when empty) with
// where each is: on local disk, in the bucket, or both. A writer lists its
// manifest's segments and every object in the bucket's tenant directories
// (other nodes' too); a stateless reader what the node manifests list.
func (a *Admin) Locations(ctx context.Context, tenant string) ([]SegmentLocation, error) {
	return readCall(a, ctx, func() ([]SegmentLocation, error) { return a.db.locations(ctx, tenant) })
}

func (db *DB) locations(ctx context.Context, tenant string) ([]SegmentLocation, error) {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = db.listTenants(); err != nil {
			return nil, err
		}
	} else if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	var out []SegmentLocation
	for _, t := range tenants {
		locs, err := db.tenantLocations(ctx, t)
		if err != nil {
			return out, err
		}
		out = append(out, locs...)
	}
	return out, nil
}

// locationSet collects one tenant's segment locations in listing order.
type locationSet struct {
	tenant string
	byID   map[string]*SegmentLocation
	order  []string
}

func (ls *locationSet) at(id string) *SegmentLocation {
	if l := ls.byID[id]; l != nil {
		return l
	}
	ls.byID[id] = &SegmentLocation{Tenant: ls.tenant, ID: id, State: "unlisted"}
	ls.order = append(ls.order, id)
	return ls.byID[id]
}

func (db *DB) tenantLocations(ctx context.Context, tenant string) ([]SegmentLocation, error) {
	ls := &locationSet{tenant: tenant, byID: map[string]*SegmentLocation{}}
	node := ""
	if db.uploader != nil {
		node = db.uploader.node
	}
	if err := db.manifestLocations(tenant, ls); err != nil {
		return nil, err
	}
	if err := db.bucketLocations(ctx, tenant, node, ls); err != nil {
		return nil, err
	}
	out := make([]SegmentLocation, 0, len(ls.order))
	for _, id := range ls.order {
		l := ls.byID[id]
		if l.Node == "" && l.Local {
			l.Node = node
		}
		out = append(out, *l)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// manifestLocations adds the segments tenant's manifest lists (the merged
// one on a stateless reader), and whether each is on local disk.
func (db *DB) manifestLocations(tenant string, ls *locationSet) error {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	for _, e := range tm.body.Segments {
		l := ls.at(e.ID)
		l.State, l.Size = e.State, e.Size
		if db.remote != nil {
			continue
		}
		id, err := parseSegHex(e.ID)
		if err != nil {
			return err
		}
		_, err = db.fs.Stat(db.segPath(tenant, id))
		l.Local = err == nil
	}
	return nil
}

// bucketLocations adds every node's segment objects of tenant.
func (db *DB) bucketLocations(ctx context.Context, tenant, node string, ls *locationSet) error {
	if db.opts.Bucket == nil {
		return nil
	}
	return listBucketLocations(ctx, db.opts.Bucket, tenant, node, db.uploader != nil, ls)
}

// BucketLocations lists the segment objects in bucket b of tenant (every
// tenant when empty), by node, without opening a store and without writing
// anything: `logstore segments list --bucket` beside a local store it must
// not publish. State is "in-bucket" (no manifest was read).
func BucketLocations(ctx context.Context, b objstore.Bucket, tenant string) ([]SegmentLocation, error) {
	tenants := []string{tenant}
	if tenant == "" {
		l, err := b.List(ctx, bucketTenantsDir, "/")
		if err != nil {
			return nil, err
		}
		tenants = nil
		for _, p := range l.Prefixes {
			if t := strings.TrimSuffix(strings.TrimPrefix(p, bucketTenantsDir), "/"); ValidateTenant(t) == nil {
				tenants = append(tenants, t)
			}
		}
	} else if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	var out []SegmentLocation
	for _, t := range tenants {
		ls := &locationSet{tenant: t, byID: map[string]*SegmentLocation{}}
		if err := listBucketLocations(ctx, b, t, "", false, ls); err != nil {
			return out, err
		}
		for _, id := range ls.order {
			l := ls.byID[id]
			if l.State == "unlisted" {
				l.State = "in-bucket"
			}
			out = append(out, *l)
		}
	}
	return out, nil
}

func listBucketLocations(ctx context.Context, b objstore.Bucket, tenant, node string, writer bool, ls *locationSet) error {
	l, err := b.List(ctx, bucketTenantDir(tenant), "")
	if err != nil {
		return fmt.Errorf("logstore/engine: list %s in %s: %w", tenant, b, err)
	}
	for _, o := range l.Objects {
		rest := strings.TrimPrefix(o.Key, bucketTenantDir(tenant))
		n, name, ok := strings.Cut(rest, "/")
		hexID, isSeg := strings.CutSuffix(name, segmentExt)
		if !ok || !isSeg || !isNodeID(n) {
			continue
		}
		loc := ls.at(hexID)
		if loc.State == "unlisted" && writer && n != node {
			loc.State = "other-node" // a writer does not read the other nodes' manifests
		}
		if loc.Remote && loc.Node != n {
			loc.State = "duplicate" // two nodes hold the id: readers serve neither
		}
		loc.Remote, loc.Node = true, n
		if loc.Size == 0 {
			loc.Size = o.Size
		}
	}
	return nil
}
