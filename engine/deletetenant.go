package engine

// DeleteTenant: crypto-shredding one tenant (its segments, index entries,
// manifest and the local keys its data was ever wrapped under).

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// DeleteReport says what DeleteTenant removed.
type DeleteReport struct {
	Segments      int
	Records       int
	Bytes         int64
	KeysDestroyed []string
	// KeysKept are keys the tenant's data was wrapped under that were not
	// destroyed, with the reason: a local key another tenant uses, or a
	// customer-managed KMS key.
	KeysKept []KeptKey
	// BucketObjects and BucketBytes are what was removed from the bucket
	// (Options.Bucket): every node's segments, summaries and manifests of
	// the tenant.
	BucketObjects int
	BucketBytes   int64
}

// KeptKey is a key DeleteTenant did not destroy, and why.
type KeptKey struct {
	URI    string
	Reason string
}

// deleteTenant implements Admin.DeleteTenant (documented there).
func (db *DB) deleteTenant(ctx context.Context, tenant string) (DeleteReport, error) {
	var rep DeleteReport
	if err := ValidateTenant(tenant); err != nil {
		return rep, err
	}
	err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; ts != nil {
			db.sealTolerated(ts)
			delete(db.tenants, tenant)
			db.indexBarrier()
		}
		defer db.catalog.dropTenant(tenant) // its journal blocks too
		return db.deleteTenantLocked(tenant, &rep)
	})
	if err == nil && db.uploader != nil {
		// After the local files and keys: the shredded keys make any copy
		// left behind by a failure here unreadable; a re-run removes it.
		rep.BucketObjects, rep.BucketBytes, err = db.uploader.deleteTenant(ctx, tenant)
		if err != nil {
			err = fmt.Errorf("logstore/engine: delete %s from %s (its keys are destroyed; run again to remove the objects): %w", tenant, db.uploader.b, err)
		}
	}
	return rep, err
}

// deleteTenantLocked deletes tenant on the writer goroutine: its index
// entries, then its files, then the keys that wrapped its data. The keys
// are collected first, while the index and the segments still name them.
func (db *DB) deleteTenantLocked(tenant string, rep *DeleteReport) error {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	uris, err := db.tenantKeyURIs(tenant, states)
	if err != nil {
		return err
	}
	users, err := db.localKeyUsers(tenant)
	if err != nil {
		return err
	}
	for _, st := range states {
		rep.Segments++
		rep.Records += st.Records
		rep.Bytes += st.Size
	}
	if err := db.deleteTenantEntries(tenant); err != nil {
		return err
	}
	if err := db.deleteTenantFiles(tenant, rep); err != nil {
		return err
	}
	return db.shredKeys(uris, users, rep)
}

// deleteTenantEntries removes every index entry of tenant and compacts
// their ranges, so its plaintext metadata leaves the index's files too.
func (db *DB) deleteTenantEntries(tenant string) error {
	if err := db.deleteTenantIndex(tenant, true); err != nil {
		return err
	}
	for _, k := range append([]byte{keyConfig, keySegment, keyBlock}, legacyKinds...) {
		p := tenantPrefix(k, tenant)
		if err := db.index.compact(p, prefixEnd(p)); err != nil {
			return err
		}
	}
	return nil
}

// deleteTenantFiles removes tenant's segment files, then its manifest and
// directory.
func (db *DB) deleteTenantFiles(tenant string, rep *DeleteReport) error {
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	rep.Segments = max(rep.Segments, len(files))
	for _, id := range files {
		p := db.segPath(tenant, id)
		db.readers.invalidate(p)
		if err := removeIfExists(db.fs, p); err != nil {
			return err
		}
	}
	// Block-summary files hold plaintext metadata summaries (filters of
	// session and trace ids) and journals hold records: they go with their
	// segments, orphans too.
	if names, err := db.fs.List(db.segDir(tenant)); err == nil {
		for _, n := range names {
			if strings.HasSuffix(n, summaryExt) || strings.HasSuffix(n, journalExt) {
				if err := removeIfExists(db.fs, filepath.Join(db.segDir(tenant), n)); err != nil {
					return err
				}
			}
		}
	}
	// The manifest goes last: a crash before this leaves it naming gone
	// segments (reported as loss) until the delete is run again.
	if err := removeIfExists(db.fs, db.manifestPath(tenant)); err != nil {
		return err
	}
	db.manifests.set(tenant, nil)
	if err := db.fs.SyncDir(db.segDir(tenant)); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	if err := db.removeTenantDir(tenant); err != nil {
		db.stats.cleanupFailures.Add(1) // an empty directory left: the tenant's data is gone
	}
	return nil
}

// shredKeys destroys the local keys among uris that no other tenant uses
// (users), and reports the others as kept, with why.
func (db *DB) shredKeys(uris []string, users map[string][]string, rep *DeleteReport) error {
	for _, uri := range uris {
		db.cache.PurgeKey(uri)
		switch {
		case !isLocal(uri):
			rep.KeysKept = append(rep.KeysKept, KeptKey{URI: uri,
				Reason: "customer-managed key: logstore forgets it; revoke or schedule its deletion in the key service"})
		case len(users[uri]) > 0:
			rep.KeysKept = append(rep.KeysKept, KeptKey{URI: uri,
				Reason: "also used by tenant " + strings.Join(users[uri], ", ") + "; it goes with the last tenant using it"})
		case db.local != nil:
			_, err := db.local.Describe(context.Background(), uri)
			if errors.Is(err, keys.ErrKeyNotFound) || errors.Is(err, keys.ErrBadURI) {
				continue // never created (or nothing a local key could be)
			}
			if err := db.local.Destroy(uri); err != nil {
				return err
			}
			rep.KeysDestroyed = append(rep.KeysDestroyed, uri)
		}
	}
	return nil
}

// removeIfExists removes name; one already gone is no error.
func removeIfExists(fs vfs.FS, name string) error {
	if err := fs.Remove(name); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	return nil
}

// removeTenantDir removes a deleted tenant's directory, empty by now. A
// file system without directories (vfs.MemFS) has none to remove.
func (db *DB) removeTenantDir(tenant string) error {
	var err error
	if rm, ok := db.fs.(interface{ RemoveDir(string) error }); ok {
		err = rm.RemoveDir(db.segDir(tenant))
	} else {
		err = db.fs.Remove(db.segDir(tenant))
	}
	if errors.Is(err, vfs.ErrNotExist) {
		return nil
	}
	return err
}

// tenantKeyURIs lists every key tenant's data was wrapped under, its default
// local key first: the linked key, the key slot of every segment (the file
// is the source of truth, the index state is read too), and the keys of its
// successful key operations in the audit trail, which remembers rotations
// no segment names any more.
func (db *DB) tenantKeyURIs(tenant string, states map[[16]byte]*SegmentInfo) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(uri string) {
		if uri != "" && !seen[uri] {
			seen[uri] = true
			out = append(out, uri)
		}
	}
	add(keys.LocalURI(tenant))
	configured, err := db.configuredKeyURIs(tenant)
	if err != nil {
		return nil, err
	}
	for _, uri := range configured {
		add(uri)
	}
	for _, st := range states {
		add(st.KeyURI)
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return nil, err
	}
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			continue // unreadable: deleted all the same
		}
		add(r.Header().Slot.KeyURI)
		_ = r.Close()
	}
	if db.audit != nil {
		evs, err := db.auditEvents(tenant, time.Time{})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.Outcome == "ok" {
				add(e.KeyURI)
				add(e.ToKeyURI)
			}
		}
	}
	return out, nil
}
