package engine

// Rebuilding a tenant's index entries from its segment files: Reindex (every
// tenant, with the writer paused) and recovery (recover.go) when the index is
// ahead of the segments.

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/segment"
)

// Reindex rebuilds the whole index from the segments alone; no key is needed
// because it reads only the blocks' plaintext metadata sections. Tenant
// configuration (linked keys, retention) is kept.
func (db *DB) Reindex() (RecoveryReport, error) {
	var rep RecoveryReport
	err := db.withWriterPaused(func() error {
		tenants, err := db.listTenants()
		if err != nil {
			return err
		}
		for _, t := range tenants {
			if err := db.reindexTenant(t); err != nil {
				return err
			}
			rep.TenantsReindexed++
		}
		return nil
	})
	return rep, err
}

func (db *DB) reindexTenant(tenant string) error {
	if err := db.deleteTenantIndex(tenant, false); err != nil {
		return err
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	for _, id := range files {
		r, err := db.openForIndex(tenant, id)
		if err != nil {
			continue // refused: reported by Open and Verify, never indexed
		}
		st := &SegmentInfo{V: stateVersion, Tenant: tenant, ID: segHex(id)}
		if te := r.TailError(); te != nil {
			st.Damaged = te.Error()
		}
		_, err = db.indexBlocks(r, st, 0)
		_ = r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openForIndex opens a segment whose plaintext metadata is about to be
// indexed without a key: it must be allowed by the manifest and, when
// sealed, match the manifest's digest, so edited metadata never reaches the
// index.
func (db *DB) openForIndex(tenant string, id [16]byte) (*segment.Reader, error) {
	r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
	if err != nil {
		return nil, err
	}
	if err := db.segmentAllowed(tenant, r.Path(), r.Header()); err != nil {
		_ = r.Close()
		return nil, err
	}
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		if e := tm.entry(segHex(id)); e != nil && e.State == segSealed {
			if err := checkDigest(r, e); err != nil {
				_ = r.Close()
				return nil, err
			}
		}
	}
	return r, nil
}

// deleteTenantIndex removes a tenant's derived index entries (and its
// configuration too when all is set).
func (db *DB) deleteTenantIndex(tenant string, all bool) error {
	b := db.idx.NewBatch()
	defer b.Close()
	kinds := []byte{keySegment, keyRecord, keyTime, keyIndex, keyPayload}
	if all {
		kinds = append(kinds, keyConfig, keyManifestSeq)
	}
	for _, k := range kinds {
		p := tenantPrefix(k, tenant)
		if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return db.durableIndex()
}
