package engine

// Erasure: the records of one debug session (or one consumer) are removed
// before retention would, by rewriting every sealed segment that holds one
// into a new segment, under a new DEK, without them; the old segment file,
// its summary file and its index entries are then removed and the index's
// key range compacted, so nothing of an erased record stays on disk in the
// store's files (TestEraseLeakScan scans them).
//
// Crash safety rests on the manifest. The new segment is first listed in
// state "erasing" (with the id of the segment it replaces); one manifest
// write then makes it sealed and marks the old one "deleting". An Open that
// finds an "erasing" entry removes its file and the entry (the erase is
// rolled back: RecoveryReport.ErasesRolledBack, run it again); one that
// finds "deleting" finishes the removal. At no point do both copies count.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// segErasing is the manifest state of a segment an erase is writing.
const segErasing = "erasing"

// EraseFilter selects the records Admin.Erase removes: exactly one field.
type EraseFilter struct {
	// SessionID: every record of this debug session (plaintext metadata).
	SessionID string
	// ConsumerID: every record of this consumer (a sealed field: every
	// segment of the tenant is decrypted to find them).
	ConsumerID string
}

func (f EraseFilter) validate() error {
	if (f.SessionID == "") == (f.ConsumerID == "") {
		return fmt.Errorf("%w: an erase names exactly one of SessionID and ConsumerID", ErrInvalidOptions)
	}
	return nil
}

// EraseReport says what Admin.Erase did.
type EraseReport struct {
	Erased    int   // records removed
	Kept      int   // records of the rewritten segments that were kept
	Rewritten int   // segments rewritten without the erased records
	Removed   int   // segments removed whole (every record erased)
	Bytes     int64 // bytes of the old segment files removed
	// IndexFilesPending counts index files holding deleted entries that
	// were still in use by readers when Erase returned (it waits up to
	// 10 s): Pebble deletes them once released. 0 normally.
	IndexFilesPending int
}

// erase implements Admin.Erase.
func (db *DB) erase(ctx context.Context, tenant string, f EraseFilter) (EraseReport, error) {
	var rep EraseReport
	if err := f.validate(); err != nil {
		return rep, err
	}
	if db.opts.Plaintext {
		return rep, fmt.Errorf("%w: erase needs the manifest of an encrypted store", ErrInvalidOptions)
	}
	// The active segment and its journal are sealed first, so every record
	// is in a sealed segment that can be rewritten.
	if err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; ts != nil {
			if err := db.sealActive(ts); err != nil {
				return err
			}
		}
		db.indexBarrier()
		return nil
	}); err != nil {
		return rep, err
	}
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return rep, fmt.Errorf("%w: tenant %s has no authenticated manifest (%v)", ErrNotFound, tenant, tmErr(tm))
	}
	err := db.eraseSegments(ctx, tenant, tm, f, &rep)
	// Deleted index entries stay in Pebble's files until a compaction
	// rewrites them: the tenant's key ranges are compacted whatever
	// happened, also when this run found nothing left (a re-run after a
	// crash, whose Open finished the removal) or failed part-way; then the
	// files it made obsolete are waited for.
	err = errors.Join(err, db.compactTenant(context.WithoutCancel(ctx), tenant))
	rep.IndexFilesPending = int(db.index.awaitObsoleteRemoved(10 * time.Second))
	return rep, err
}

// eraseSegments erases f's records from each sealed segment of tm.
func (db *DB) eraseSegments(ctx context.Context, tenant string, tm *tenantManifest, f EraseFilter, rep *EraseReport) error {
	for _, e := range tm.body.Segments {
		if e.State != segSealed {
			continue
		}
		id, err := parseSegHex(e.ID)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := db.eraseSegment(ctx, tenant, id, e, f, rep); err != nil {
			return fmt.Errorf("logstore/engine: erase: segment %s: %w", e.ID, err)
		}
	}
	return nil
}

// compactTenant compacts tenant's index key ranges, so entries deleted
// from them leave Pebble's files.
func (db *DB) compactTenant(ctx context.Context, tenant string) error {
	return db.control(ctx, func() error {
		for _, k := range []byte{keySegment, keyBlock} {
			p := tenantPrefix(k, tenant)
			if err := db.index.compact(p, prefixEnd(p)); err != nil {
				return err
			}
		}
		return db.index.flush()
	})
}

func tmErr(tm *tenantManifest) error {
	switch {
	case tm == nil:
		return errors.New("none")
	case tm.damaged != nil:
		return tm.damaged
	}
	return tm.unverified
}

// survivors are the records of one segment an erase keeps, as the raw
// entries the segment holds (re-sealed under the new DEK, never decoded
// and re-encoded), per kind.
type survivors struct {
	entries [kindPayload + 1][]segment.Entry
	metas   [kindPayload + 1][]*Meta
	erased  int
	kept    int
}

// eraseSegment rewrites (or removes) one sealed segment if it holds a
// record f selects.
func (db *DB) eraseSegment(ctx context.Context, tenant string, id [16]byte, e manifestEntry, f EraseFilter, rep *EraseReport) error {
	sv, err := db.readSurvivors(ctx, tenant, id, f)
	if err != nil || sv.erased == 0 {
		return err
	}
	return db.control(ctx, func() error {
		tm := db.manifests.get(tenant)
		if tm == nil || tm.entry(e.ID) == nil || tm.entry(e.ID).State != segSealed || string(tm.entry(e.ID).Digest) != string(e.Digest) {
			return fmt.Errorf("%w: the segment changed during the erase (rewrapped or deleted): run it again", ErrInvalidOptions)
		}
		if sv.kept > 0 {
			if err := db.writeReplacement(ctx, tenant, id, sv); err != nil {
				return err
			}
			rep.Rewritten++
		} else {
			if err := db.setSegmentState(ctx, tenant, id, segDeleting); err != nil {
				return err
			}
			rep.Removed++
		}
		rep.Erased += sv.erased
		rep.Kept += sv.kept
		rep.Bytes += e.Size
		return db.removeSegment(tenant, id)
	})
}

// readSurvivors decrypts segment id (authenticating every block) and
// sorts its records into those f erases and those it keeps.
func (db *DB) readSurvivors(ctx context.Context, tenant string, id [16]byte, f EraseFilter) (*survivors, error) {
	r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var c SegmentCheck
	if err := db.verifyAdmission(tenant, r, &c); err != nil {
		return nil, err
	}
	if c.KeyErr != nil {
		return nil, c.KeyErr
	}
	if err := db.unlockSegment(ctx, tenant, r); err != nil {
		return nil, err
	}
	sv := &survivors{}
	erasedIDs := map[ID]bool{}
	var payloads []segment.Entry // payload entries, sorted out once the logs say which go
	for i := range r.Blocks() {
		blk, err := r.ReadBlock(i)
		if err != nil {
			return nil, err
		}
		for j, raw := range blk.Meta {
			e := segment.Entry{Meta: append([]byte(nil), raw...), Data: append([]byte(nil), blk.Data[j]...)}
			m := new(Meta)
			kind, err := decodeMeta(raw, m)
			if err != nil {
				blk.Release()
				return nil, err
			}
			e.Time = m.Time.UnixNano()
			if kind == kindPayload {
				payloads = append(payloads, e)
				continue
			}
			erase, err := f.matches(m, e.Data)
			if err != nil {
				blk.Release()
				return nil, err
			}
			if erase {
				erasedIDs[m.ID] = true
				sv.erased++
				continue
			}
			sv.kept++
			sv.entries[kindLog] = append(sv.entries[kindLog], e)
			sv.metas[kindLog] = append(sv.metas[kindLog], m)
		}
		blk.Release()
	}
	for _, e := range payloads {
		m := new(Meta)
		if _, err := decodeMeta(e.Meta, m); err != nil {
			return nil, err
		}
		if !erasedIDs[m.ID] {
			sv.entries[kindPayload] = append(sv.entries[kindPayload], e)
			sv.metas[kindPayload] = append(sv.metas[kindPayload], m)
		}
	}
	return sv, nil
}

// matches reports whether a request log (its metadata, and its sealed
// bytes for a consumer) is one f erases.
func (f EraseFilter) matches(m *Meta, sealed []byte) (bool, error) {
	if f.SessionID != "" {
		return m.SessionID == f.SessionID, nil
	}
	var r Record
	if err := decodeSealedLog(sealed, &r); err != nil {
		return false, err
	}
	return r.ConsumerID == f.ConsumerID, nil
}

// writeReplacement writes sv to a new sealed segment that replaces old:
// listed "erasing" before it is written, made sealed (and old "deleting")
// by one manifest write. Runs on the writer goroutine.
func (db *DB) writeReplacement(ctx context.Context, tenant string, old [16]byte, sv *survivors) error {
	ts, err := db.tenant(tenant)
	if err != nil {
		return err
	}
	now := db.opts.Now()
	nts := &tenantState{name: tenant}
	uri, _, err := db.keyURIFor(ts)
	if err != nil {
		return err
	}
	if err := db.createErasing(nts, uri, old, now); err != nil {
		return err
	}
	var kvs []kv
	ok := false
	defer func() {
		if !ok && nts.w != nil {
			_ = nts.w.Close() // the entry stays "erasing": the next Open removes the file
		}
	}()
	for _, kind := range []byte{kindPayload, kindLog} {
		if len(sv.entries[kind]) == 0 {
			continue
		}
		if kvs, err = db.writeBlocks(nts, kind, sv.entries[kind], sv.metas[kind], kvs); err != nil {
			return err
		}
	}
	if err := nts.w.Seal(); err != nil {
		return err
	}
	st := nts.info
	st.Sealed, st.Size = true, nts.w.Size()
	path, sums := nts.w.Path(), nts.sums
	_ = nts.w.Close()
	nts.w = nil
	ok = true
	if err := db.commitReplacement(ctx, tenant, path, sums, old); err != nil {
		return err
	}
	k, v, err := stateKV(st)
	if err != nil {
		return err
	}
	return db.swapIndexed(tenant, old, append(kvs, kv{k: k, v: v}))
}

// swapIndexed indexes the replacement (kvs) and unindexes the segment it
// replaces in one batch, so no read of the index ever sees both (a scan
// would otherwise count a kept record twice), then resets the catalog.
// Runs on the writer goroutine, after the erase's commit.
func (db *DB) swapIndexed(tenant string, old [16]byte, kvs []kv) error {
	db.indexBarrier() // the appends queued before the erase are indexed first
	b := db.index.newBatch()
	defer b.close()
	for _, x := range kvs {
		if x.k == nil {
			continue
		}
		if err := b.set(x.k, x.v); err != nil {
			return err
		}
	}
	if err := db.unindexSegment(b, tenant, old); err != nil {
		return err
	}
	if err := b.delete(segmentKey(tenant, old)); err != nil {
		return err
	}
	err := db.index.commit(b)
	db.catalog.reset()
	return err
}

// createErasing creates the replacement segment under a fresh DEK from uri
// and lists it "erasing" in the manifest.
func (db *DB) createErasing(nts *tenantState, uri string, old [16]byte, now time.Time) error {
	id, err := segment.NewID()
	if err != nil {
		return err
	}
	ec := keys.SegmentContext(nts.name, segHex(id))
	kctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	dk, err := db.cache.GenerateDataKey(kctx, uri, ec)
	cancel()
	if err != nil {
		return err
	}
	defer keys.Zero(dk.Plaintext)
	p := segment.Params{ID: id, Tenant: nts.name, Codec: db.codec, FS: db.fs, Created: now, Cipher: segment.CipherAES256GCM,
		KeyURI: uri, Wrapped: dk.Wrapped, DEK: dk.Plaintext}
	w, err := segment.Create(db.segPath(nts.name, id), p)
	if err != nil {
		return err
	}
	h := w.Header()
	err = db.updateManifest(context.Background(), nts.name, false, func(b *manifestBody) error {
		b.Segments = append(b.Segments, manifestEntry{ID: segHex(id), State: segErasing, Version: h.Version,
			Size: w.Size(), KeyURI: uri, KeyGen: h.Slot.Generation, Replaces: segHex(old)})
		return nil
	})
	if err != nil {
		_ = w.Close()
		_ = db.fs.Remove(w.Path()) // a header without a block: Open removes it as debris otherwise
		return err
	}
	nts.w, nts.opened, nts.keyURI, nts.wrapped, nts.ec = w, now, uri, dk.Wrapped, ec
	nts.info = &SegmentInfo{V: stateVersion, Tenant: nts.name, ID: segHex(id), KeyURI: uri, KeyGen: h.Slot.Generation, Created: h.Created, Size: w.Size()}
	return nil
}

// commitReplacement is the erase's commit point: one manifest write makes
// the replacement at path sealed and the segment it replaces "deleting".
func (db *DB) commitReplacement(ctx context.Context, tenant, path string, sums []*blockSummary, old [16]byte) error {
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return err
	}
	defer r.Close()
	return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error {
		e := b.entry(segHex(r.Header().ID))
		o := b.entry(segHex(old))
		if e == nil || o == nil {
			return fmt.Errorf("%w: segment %s or %s left the manifest during the erase", ErrSegmentTampered, segHex(r.Header().ID), segHex(old))
		}
		if err := db.sealEntry(r, e, sums); err != nil {
			return err
		}
		o.State = segDeleting // e keeps Replaces: a follow skips its records, already seen in o
		return nil
	})
}
