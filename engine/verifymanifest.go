package engine

import (
	"errors"
	"fmt"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// manifestCheck is Verify's comparison of one open segment with the tenant
// manifest: it must be listed and allowed (segmentAllowed), and a sealed one
// must still have the digest the manifest recorded.
func (db *DB) manifestCheck(tenant string, r *segment.Reader) error {
	h := r.Header()
	if err := db.segmentAllowed(tenant, r.Path(), h); err != nil {
		return err
	}
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	e := tm.entry(segHex(h.ID))
	if e == nil || e.State != segSealed {
		return nil
	}
	if r.Size() != e.Size {
		return fmt.Errorf("%w: segment %s is %d bytes, the manifest recorded %d", ErrSegmentTampered, e.ID, r.Size(), e.Size)
	}
	return checkDigest(r, e)
}

// manifestGaps reports, as checks of their own, what Verify cannot find by
// walking the segment files: a tenant manifest that is damaged or could not
// be authenticated, listed segments whose file is gone, and acknowledged
// blocks an active segment lost in a crash.
func (db *DB) manifestGaps(tenant string) []SegmentCheck {
	tm := db.manifests.get(tenant)
	if tm == nil {
		return nil
	}
	var out []SegmentCheck
	manifest := db.manifestPath(tenant)
	switch {
	case tm.damaged != nil:
		out = append(out, SegmentCheck{Tenant: tenant, Path: manifest, OpenErr: tm.damaged})
	case tm.unverified != nil:
		out = append(out, SegmentCheck{Tenant: tenant, Path: manifest, KeyErr: tm.unverified})
	}
	if tm.body == nil {
		return out
	}
	for _, e := range tm.body.Segments {
		if e.State == segDeleting {
			continue
		}
		id, err := (&SegmentInfo{ID: e.ID}).segID()
		if err != nil {
			continue
		}
		path := db.segPath(tenant, id)
		if _, err := db.fs.Stat(path); errors.Is(err, vfs.ErrNotExist) {
			out = append(out, SegmentCheck{Tenant: tenant, Path: path,
				OpenErr: fmt.Errorf("%w: segment %s (%s, %d blocks, %d bytes) is gone", ErrSegmentLoss, e.ID, e.State, e.Blocks, e.Size)})
		}
	}
	for id, err := range tm.lost {
		out = append(out, SegmentCheck{Tenant: tenant, Path: lostBlocksPath(db.manifestPath(tenant), id), OpenErr: err})
	}
	return out
}
