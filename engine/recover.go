package engine

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/segment"
)

// recover runs on Open: it seals segments left unsealed by a crash (after
// truncating their torn tail) and brings the index up to date with the
// segments, which are the source of truth.
func (db *DB) recover() (RecoveryReport, error) {
	var rep RecoveryReport
	tenants, err := db.listTenants()
	if err != nil {
		return rep, err
	}
	for _, t := range tenants {
		if err := db.recoverTenant(t, &rep); err != nil {
			return rep, fmt.Errorf("logstore/engine: recover tenant %s: %w", t, err)
		}
	}
	db.stats.recovered.Add(uint64(rep.SegmentsSealed))
	db.stats.replayedBlocks.Add(uint64(rep.BlocksReplayed))
	return rep, nil
}

func (db *DB) recoverTenant(tenant string, rep *RecoveryReport) error {
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	ahead := false
	seen := map[[16]byte]bool{}
	for _, id := range files {
		seen[id] = true
		path := db.segPath(tenant, id)
		res, rerr := segment.Recover(path, db.fs)
		if rerr != nil && !errors.Is(rerr, segment.ErrCorrupt) {
			return rerr
		}
		if res.Sealed {
			rep.SegmentsSealed++
			rep.TruncatedBytes += res.TruncatedBytes
		}
		st := states[id]
		if st == nil {
			st = &SegmentInfo{V: stateVersion, Tenant: tenant, ID: segHex(id)}
		}
		if rerr != nil {
			st.Damaged = rerr.Error()
			rep.Damaged = append(rep.Damaged, rerr.Error())
		}
		r, err := segment.Open(path, &segment.ReadOptions{FS: db.fs, Tenant: tenant})
		if err != nil {
			return err
		}
		n := len(r.Blocks())
		switch {
		case st.Blocks > n:
			ahead = true
		case st.Blocks < n || !st.Sealed && r.Sealed():
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
		if !seen[id] {
			ahead = true // the index names a segment file that is gone
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
	return b.Commit(pebble.NoSync)
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
		r, err := segment.Open(db.segPath(tenant, id), &segment.ReadOptions{FS: db.fs, Tenant: tenant})
		if err != nil {
			return err
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

// deleteTenantIndex removes a tenant's derived index entries (and its
// configuration too when all is set).
func (db *DB) deleteTenantIndex(tenant string, all bool) error {
	b := db.idx.NewBatch()
	defer b.Close()
	kinds := []byte{keySegment, keyRecord, keyTime, keyIndex, keyPayload}
	if all {
		kinds = append(kinds, keyConfig)
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
