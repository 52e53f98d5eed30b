package engine

// The uploader's view of its own node directories: listing them (after an
// Open, and again on each config poll and operator Upload, so objects
// deleted or replaced in the bucket are put back) and publishing its
// manifests with conditional puts, so a second writer of the same node
// directory (a copied data directory) is refused rather than allowed to
// overwrite, and delete, the first one's data.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/objstore"
)

// list learns what the node's directory of tenant holds. An object whose
// ETag changed since this process uploaded it is checked again (its MD5
// forgotten); one that vanished is uploaded again; a manifest that is not
// the one this process put is published again.
func (u *uploader) list(ctx context.Context, tenant string) error {
	dir := bucketNodeDir(tenant, u.node)
	l, err := u.b.List(ctx, dir, "")
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, o := range l.Objects {
		seen[o.Key] = true
		old, ok := u.objects[o.Key]
		if ok && old.etag == o.ETag && old.size == o.Size {
			continue
		}
		u.objects[o.Key] = bucketObject{size: o.Size, etag: o.ETag}
	}
	for key := range u.objects {
		if strings.HasPrefix(key, dir) && !seen[key] {
			delete(u.objects, key)
		}
	}
	man := bucketManifestOf(tenant, u.node)
	if o, ok := u.objects[man]; !ok || o.etag != u.manifestETag[tenant] {
		delete(u.published, tenant) // gone or replaced: publish it again
		delete(u.manifestETag, tenant)
	}
	u.listed[tenant] = true
	delete(u.relist, tenant)
	return nil
}

// publishManifest uploads the manifest raw (verbatim: readers authenticate
// it with the tenant's key) when its published view changed, replacing
// exactly the manifest this node put last. A manifest in the bucket that is
// not that one is checked first: an authentic one of this node that is
// newer than the local one (or as new and different) was written by another
// data directory with this node id, ErrNodeConflict; anything else (a
// replay, a forgery, a deletion) is replaced.
func (u *uploader) publishManifest(ctx context.Context, tenant string, raw []byte, body *manifestBody, rep *UploadReport) error {
	view := publishedView(body)
	if last, ok := u.published[tenant]; ok && last == view {
		return nil
	}
	key := bucketManifestOf(tenant, u.node)
	cond := objstore.Cond{IfNoneMatch: true}
	if etag, ok := u.manifestETag[tenant]; ok {
		cond = objstore.Cond{IfMatch: etag}
	} else if _, listed := u.objects[key]; listed {
		c, err := u.replaceableManifest(ctx, tenant, raw, body)
		if err != nil {
			return err
		}
		cond = c
	}
	sum := sha256.Sum256(raw)
	info, err := u.b.Put(ctx, key, bytes.NewReader(raw), int64(len(raw)), sum[:], cond)
	if errors.Is(err, objstore.ErrPrecondition) || (cond.IfMatch != "" && errors.Is(err, objstore.ErrNotFound)) {
		// Changed since this node put it: check it, then replace it.
		c, cerr := u.replaceableManifest(ctx, tenant, raw, body)
		if cerr != nil {
			return cerr
		}
		u.repaired.Add(1)
		info, err = u.b.Put(ctx, key, bytes.NewReader(raw), int64(len(raw)), sum[:], c)
	}
	if err != nil {
		return err
	}
	u.manifestETag[tenant] = info.ETag
	u.objects[key] = bucketObject{size: int64(len(raw)), etag: info.ETag}
	u.published[tenant] = view
	rep.Manifests++
	u.manifests.Add(1)
	return nil
}

// replaceableManifest reads the manifest now in the node's directory of
// tenant and returns the condition to replace exactly it, or
// ErrNodeConflict when another data directory with this node id wrote it.
func (u *uploader) replaceableManifest(ctx context.Context, tenant string, raw []byte, local *manifestBody) (objstore.Cond, error) {
	key := bucketManifestOf(tenant, u.node)
	there, info, err := getSmall(ctx, u.b, key, manifestFileMax)
	if errors.Is(err, objstore.ErrNotFound) {
		return objstore.Cond{IfNoneMatch: true}, nil
	}
	if err != nil && !errors.Is(err, ErrManifestCorrupt) {
		return objstore.Cond{}, err
	}
	replace := objstore.Cond{IfMatch: info.ETag}
	if err != nil || bytes.Equal(there, raw) {
		return replace, nil // oversized junk, or ours already
	}
	p, err := decodeManifest(there, tenant)
	if err != nil || p.body.Node != u.node {
		return replace, nil // damaged, or not this node's: not a competitor
	}
	mk, err := u.db.unwrapManifestKey(ctx, tenant, &p.body, p.body.Key.URI)
	if err != nil {
		if errors.Is(err, ErrManifestAuth) {
			return replace, nil // a forgery
		}
		return objstore.Cond{}, err // cannot tell now (the key service): try again later
	}
	verr := p.verify(mk)
	keys.Zero(mk)
	if verr != nil {
		return replace, nil // a forgery
	}
	if p.body.Seq > local.Seq || p.body.Seq == local.Seq {
		return objstore.Cond{}, fmt.Errorf("%w: %s in %s holds manifest sequence %d of tenant %s, this data directory is at %d: two data directories (a copy?) use node id %s; give one a new DIR/NODE",
			ErrNodeConflict, key, u.b, p.body.Seq, tenant, local.Seq, u.node)
	}
	return replace, nil // an older one of ours (a replay): put back the current one
}
