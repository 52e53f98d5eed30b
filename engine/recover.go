package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// recover runs on Open. Per tenant it authenticates the manifest, checks
// every segment file against it (sealed ones must be exactly as recorded;
// only a crashed writer's active segment may lose its torn tail), seals what
// a crash left open, and brings the index up to date with the segments that
// passed. A fault in one tenant is recorded for that tenant (its writes are
// refused, its reads stay authenticated) and never stops the others.
func (db *DB) recover() (RecoveryReport, error) {
	var rep RecoveryReport
	tenants, err := db.listTenants()
	if err != nil {
		return rep, err
	}
	for _, t := range tenants {
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		err := db.recoverTenant(ctx, t, &rep)
		cancel()
		if err != nil {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", t, err))
		}
	}
	db.stats.recovered.Add(uint64(rep.SegmentsSealed))
	db.stats.replayedBlocks.Add(uint64(rep.BlocksReplayed))
	return rep, nil
}

func (db *DB) readOpts(tenant string) *segment.ReadOptions {
	return &segment.ReadOptions{FS: db.fs, Tenant: tenant, AllowPlaintext: db.opts.Plaintext}
}

// manifestDamage reports whether err means the manifest itself is bad
// (forged, corrupt, rolled back, unknown) rather than its key unusable.
func manifestDamage(err error) bool {
	for _, e := range []error{ErrManifestAuth, ErrManifestCorrupt, ErrManifestRollback, ErrUnknownVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (db *DB) recoverTenant(ctx context.Context, tenant string, rep *RecoveryReport) error {
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	if db.opts.Plaintext {
		// The benchmark baseline: nothing is authenticated, so there is no
		// manifest; every file is recovered and indexed.
		return db.syncIndex(tenant, files, true, rep, nil)
	}
	body, mk, err := db.readManifest(ctx, tenant)
	switch {
	case errors.Is(err, vfs.ErrNotExist):
		return db.recoverUnmanifested(ctx, tenant, files, rep)
	case manifestDamage(err):
		db.manifests.set(tenant, &tenantManifest{damaged: err})
		return err
	case err != nil:
		// The key is unusable or unreachable: nothing can be authenticated
		// now, so nothing is changed; the writer retries when it needs the
		// tenant, and reads fail with this key error.
		db.manifests.set(tenant, &tenantManifest{unverified: err, retryAt: db.opts.Now().Add(unverifiedRetry)})
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", tenant, err))
		return nil
	}
	defer keys.Zero(mk)
	return db.reconcile(ctx, tenant, body, mk, files, rep)
}

// syncIndex brings the index up to date with the given segment files, which
// passed the manifest checks (or, with recoverFirst, are recovered here: a
// store without manifests). Blocks the index lacks are replayed; if the index
// is ahead of the segments (a file shorter than indexed, or indexed segments
// gone), the tenant is reindexed from its segments. The index entries of
// refused segments are kept: their records stay visible to queries (and a
// Get says why it cannot serve them) rather than vanish without a word.
func (db *DB) syncIndex(tenant string, files [][16]byte, recoverFirst bool, rep *RecoveryReport, refused map[string]error) error {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	ahead := false
	seen := map[[16]byte]bool{}
	for _, id := range files {
		seen[id] = true
		path := db.segPath(tenant, id)
		st := states[id]
		if st == nil {
			st = &SegmentInfo{V: stateVersion, Tenant: tenant, ID: segHex(id)}
		}
		if recoverFirst {
			res, rerr := segment.Recover(path, db.readOpts(tenant))
			if rerr != nil && !errors.Is(rerr, segment.ErrCorrupt) {
				rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), rerr))
				continue
			}
			if res.Sealed {
				rep.SegmentsSealed++
				rep.TruncatedBytes += res.TruncatedBytes
			}
			if rerr != nil {
				st.Damaged = rerr.Error()
				rep.Damaged = append(rep.Damaged, rerr.Error())
			}
		}
		r, err := segment.Open(path, db.readOpts(tenant))
		if err != nil {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), err))
			continue
		}
		n := len(r.Blocks())
		switch {
		case st.Blocks > n:
			ahead = true
		case st.Blocks < n || !st.Sealed && r.Sealed():
			// Metadata about to be indexed without a key: a sealed segment
			// must match its manifest digest first.
			if tm := db.manifests.get(tenant); tm != nil {
				if e := tm.entry(segHex(id)); e != nil && e.State == segSealed {
					if err := checkDigest(r, e); err != nil {
						rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), err))
						_ = r.Close()
						continue
					}
				}
			}
			replayed, err := db.indexBlocks(r, st, st.Blocks)
			rep.BlocksReplayed += replayed
			if err != nil {
				_ = r.Close()
				return err
			}
		}
		_ = r.Close()
	}
	for id := range states {
		if !seen[id] && refused[segHex(id)] == nil {
			ahead = true // the index names a segment that is gone
		}
	}
	if ahead {
		rep.TenantsReindexed++
		return db.reindexTenant(tenant)
	}
	return nil
}

// indexBlocks indexes blocks [from, n) of r into the index, updating st and
// storing it in the same batch, so the index never claims a block it lacks.
func (db *DB) indexBlocks(r *segment.Reader, st *SegmentInfo, from int) (int, error) {
	h := r.Header()
	st.Sealed = r.Sealed()
	st.KeyURI, st.KeyGen, st.Created, st.Size = h.Slot.KeyURI, h.Slot.Generation, h.Created, r.Size()
	b := db.idx.NewBatch()
	defer b.Close()
	replayed := 0
	blocks := r.Blocks()
	for i := from; i < len(blocks); i++ {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return replayed, err
		}
		for j, raw := range blk.Meta {
			loc := Locator{Segment: h.ID, Offset: blk.Info.Offset, Seq: blk.Info.Seq, Index: j}
			if err := indexOne(b, h.Tenant, raw, loc, st); err != nil {
				return replayed, fmt.Errorf("%s block %d record %d: %w", r.Path(), i, j, err)
			}
		}
		st.RawBytes += int64(blk.Info.RawLen)
		st.Blocks = i + 1
		replayed++
		if b.Len() > 4<<20 {
			if err := db.commitState(b, st); err != nil {
				return replayed, err
			}
			b.Reset()
		}
	}
	return replayed, db.commitState(b, st)
}

func (db *DB) commitState(b *pebble.Batch, st *SegmentInfo) error {
	if err := putState(b, st); err != nil {
		return err
	}
	// On a full disk a replay commit could wait inside Pebble until space
	// returns: refuse it instead (the blocks are replayed on a later Open).
	if err := db.indexWritable(); err != nil && !db.indexRoom(b.Len()) {
		return err
	}
	return db.indexErr(b.Commit(pebble.NoSync))
}

// indexOne adds the index entries of one record's metadata to b, built as
// the writer builds them (stageIndex), so replay and live writes agree.
func indexOne(b *pebble.Batch, tenant string, raw []byte, loc Locator, st *SegmentInfo) error {
	var m Meta
	kind, err := decodeMeta(raw, &m)
	if err != nil {
		return err
	}
	for _, e := range stageIndex(nil, tenant, &m, raw, loc, kind == kindPayload, st) {
		if err := b.Set(e.k, e.v, nil); err != nil {
			return err
		}
	}
	return nil
}

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

func checkDigest(r *segment.Reader, e *manifestEntry) error {
	d, err := r.Digest()
	if err != nil {
		return err
	}
	if !bytes.Equal(d[:], e.Digest) {
		return fmt.Errorf("%w: segment %s's content differs from the digest the manifest recorded", ErrSegmentTampered, e.ID)
	}
	return nil
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
