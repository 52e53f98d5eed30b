package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// IndexRebuild says what Open did with Options.RebuildIndex. The index is
// derived from the segments and the tenant manifests except for two kinds of
// entry, which are copied from the old index when it can be read: the
// configuration of tenants from before manifests ('c', used to adopt them)
// and the newest manifest sequence seen per tenant ('m', the index's check
// against an older manifest copied back, docs/security.md).
type IndexRebuild struct {
	// OldIndex is why the old index could not be read in full (empty: it
	// could, and every such entry was kept).
	OldIndex string
	// Kept lists the tenants with entries copied from the old index.
	Kept []string
	// Lost lists tenants with segments and nothing copied while the old
	// index was unreadable: their rollback check restarts from the current
	// manifest.
	Lost []string
	// RemovedFiles counts the old index's files deleted (the old index
	// holds plaintext metadata, so it is not kept aside).
	RemovedFiles int

	kept map[string][]byte // key -> value
}

// clearIndex copies what it can of the entries a rebuild keeps from the
// index in indexDir and deletes the index's files.
func clearIndex(indexDir string, fs pvfs.FS) (*IndexRebuild, error) {
	rb := &IndexRebuild{kept: map[string][]byte{}}
	if _, err := os.Stat(indexDir); errors.Is(err, os.ErrNotExist) {
		return rb, nil
	}
	if err := salvageEntries(indexDir, fs, rb); err != nil {
		rb.OldIndex = pebbleMsg(err)
	}
	ents, err := os.ReadDir(indexDir)
	if err != nil {
		return nil, fmt.Errorf("logstore/engine: rebuild index: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !isPebbleFile(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(indexDir, e.Name())); err != nil {
			return nil, fmt.Errorf("logstore/engine: rebuild index: %w", err)
		}
		rb.RemovedFiles++
	}
	return rb, nil
}

// salvageEntries copies the 'c' and 'm' entries of the index in indexDir
// into rb, opening it read-only; it keeps what it read before an error.
func salvageEntries(indexDir string, fs pvfs.FS, rb *IndexRebuild) error {
	h := newIndexHealth(indexDir, fs, true)
	popts := indexOptions(fs, h)
	popts.ReadOnly = true
	var idx *pebble.DB
	if err := guardIndex(func() (err error) { idx, err = pebble.Open(indexDir, popts); return err }); err != nil {
		return err
	}
	old := newIndex(idx, h)
	defer old.close()
	var errs []error
	for _, kind := range []byte{keyConfig, keyManifestSeq} {
		errs = append(errs, guardIndex(func() error {
			return old.scan([]byte{kind}, []byte{kind + 1}, func(k, v []byte) error {
				if tenant, rest, err := readEscaped(k[1:]); err == nil && len(rest) == 0 && ValidateTenant(tenant) == nil {
					rb.kept[string(k)] = append([]byte(nil), v...)
				}
				return nil
			})
		}))
	}
	return errors.Join(errs...)
}

// restore writes the entries clearIndex salvaged into the new index.
func (x *index) restore(rb *IndexRebuild, fs vfs.FS, segDir string) error {
	b := x.newBatch()
	defer b.close()
	kept := map[string]bool{}
	for k, v := range rb.kept {
		if err := b.set([]byte(k), v); err != nil {
			return err
		}
		tenant, _, _ := readEscaped([]byte(k)[1:])
		kept[tenant] = true
	}
	for t := range kept {
		rb.Kept = append(rb.Kept, t)
	}
	if rb.OldIndex != "" {
		tenants, _ := fs.List(segDir) // unreadable: recovery's listTenants fails next, saying why
		for _, t := range tenants {
			if ValidateTenant(t) == nil && !kept[t] {
				rb.Lost = append(rb.Lost, t)
			}
		}
	}
	slices.Sort(rb.Kept)
	slices.Sort(rb.Lost)
	if err := x.commit(b); err != nil {
		return err
	}
	return x.flush()
}

// reindex implements Admin.Reindex (documented there).
func (db *DB) reindex() (RecoveryReport, error) {
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
		db.rewriteSummaryFile(tenant, id)
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
	if err := db.checkSealedDigest(tenant, id, r); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// deleteTenantIndex removes a tenant's derived index entries (and its
// configuration too when all is set).
func (db *DB) deleteTenantIndex(tenant string, all bool) error {
	b := db.index.newBatch()
	defer b.close()
	kinds := append([]byte{keySegment, keyBlock}, legacyKinds...)
	if all {
		kinds = append(kinds, keyConfig, keyManifestSeq)
	}
	for _, k := range kinds {
		p := tenantPrefix(k, tenant)
		if err := b.deleteRange(p, prefixEnd(p)); err != nil {
			return err
		}
	}
	err := db.index.commit(b)
	db.catalog.reset()
	if err != nil {
		return err
	}
	return db.index.flush() // the configuration is not derived from segments
}
