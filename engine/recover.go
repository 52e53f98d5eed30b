package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/internal/vfs"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
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
		db.manifests.set(tenant, &tenantManifest{unverified: err})
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", tenant, err))
		return nil
	}
	defer keys.Zero(mk)
	return db.reconcile(ctx, tenant, body, mk, files, rep)
}

// reconcile checks the segment files against the verified manifest body,
// records per-segment problems, finishes what a crash interrupted, and
// writes the manifest back if anything changed.
func (db *DB) reconcile(ctx context.Context, tenant string, body *manifestBody, mk []byte, files [][16]byte, rep *RecoveryReport) error {
	next := body.clone()
	problems, lost := map[string]error{}, map[string]error{}
	used := map[string]bool{}
	changed := false
	var good [][16]byte
	present := map[string]bool{}
	for _, id := range files {
		hexID := segHex(id)
		present[hexID] = true
		e := next.entry(hexID)
		if e == nil {
			uri, err := db.unlistedSegment(tenant, id, rep)
			if err != nil {
				problems[hexID] = err
			}
			if uri != "" {
				// Its key counts too: a manifest forged to list none of the
				// tenant's real segments must still prove it holds their keys.
				used[uri] = true
			}
			continue
		}
		c, keyURI, err := db.reconcileSegment(tenant, id, e, rep)
		changed = changed || c
		if keyURI != "" {
			used[keyURI] = true
		}
		if e.State == segDeleting {
			continue
		}
		if err != nil && c && errors.Is(err, ErrSegmentLoss) {
			// A crashed writer's segment kept fewer blocks than recorded:
			// what remains is authentic and served; the loss is reported.
			lost[hexID] = err
		} else if err != nil {
			problems[hexID] = err
			continue
		}
		good = append(good, id)
	}
	kept := next.Segments[:0]
	for _, e := range next.Segments {
		switch {
		case present[e.ID] && e.State != segDeleting:
		case e.State == segDeleting:
			changed = true // retention finished removing it
			continue
		default:
			problems[e.ID] = fmt.Errorf("%w: segment %s (%s, %d blocks, %d bytes) is gone", ErrSegmentLoss, e.ID, e.State, e.Blocks, e.Size)
		}
		kept = append(kept, e)
	}
	next.Segments = kept
	for _, m := range []map[string]error{problems, lost} {
		for id, err := range m {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, id, err))
		}
	}
	if err := db.checkWraps(ctx, tenant, next, mk, used); err != nil {
		db.manifests.set(tenant, &tenantManifest{damaged: err})
		return err
	}
	db.manifests.set(tenant, &tenantManifest{body: next.clone(), problems: problems, lost: lost})
	if changed {
		if err := db.commitManifest(ctx, tenant, next); err != nil {
			rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: manifest update deferred: %v", tenant, err))
		}
	}
	return db.syncIndex(tenant, good, false, rep, problems)
}

// reconcileSegment checks one listed segment file. A sealed segment must
// match its entry exactly; an active one (a crashed writer's) is truncated
// to its last valid block and sealed, and the entry updated. It returns
// whether the entry changed and the key URI of the file's active slot.
func (db *DB) reconcileSegment(tenant string, id [16]byte, e *manifestEntry, rep *RecoveryReport) (bool, string, error) {
	path := db.segPath(tenant, id)
	switch e.State {
	case segDeleting:
		db.readers.invalidate(path)
		if err := db.fs.Remove(path); err != nil && !errors.Is(err, vfs.ErrNotExist) {
			return false, "", err
		}
		return true, "", nil
	case segSealed:
		r, err := db.openListed(tenant, id, e)
		if err != nil && db.resealed(tenant, id, e) {
			r, err = db.openListed(tenant, id, e)
		}
		if err != nil {
			return false, "", err
		}
		uri := r.Header().Slot.KeyURI
		_ = r.Close()
		return false, uri, nil
	}
	res, rerr := segment.Recover(path, db.readOpts(tenant))
	if rerr != nil {
		return false, "", fmt.Errorf("%w: active segment %s cannot be recovered: %w", ErrSegmentTampered, segHex(id), rerr)
	}
	if res.Sealed {
		rep.SegmentsSealed++
		rep.TruncatedBytes += res.TruncatedBytes
	}
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return false, "", err
	}
	defer r.Close()
	if err := checkIdentity(r.Header(), id, e); err != nil {
		return false, "", err
	}
	var loss error
	if n := len(r.Blocks()); n < e.Blocks {
		loss = fmt.Errorf("%w: segment %s holds %d blocks, %d were recorded", ErrSegmentLoss, e.ID, n, e.Blocks)
	}
	if err := sealEntry(r, e); err != nil {
		return false, "", err
	}
	return true, r.Header().Slot.KeyURI, loss
}

// resealed handles a sealed segment whose footer did not reach the disk
// (the manifest was written after the footer's fsync, so only a file system
// that lost a synced write gets here): the footer is a function of the
// blocks, so Recover writes it again, and the digest proves the result is
// byte for byte what the manifest recorded. Anything else stays refused.
func (db *DB) resealed(tenant string, id [16]byte, e *manifestEntry) bool {
	path := db.segPath(tenant, id)
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return false
	}
	unsealed := !r.Sealed() && len(r.Blocks()) == e.Blocks
	_ = r.Close()
	if !unsealed {
		return false
	}
	if _, err := segment.Recover(path, db.readOpts(tenant)); err != nil {
		return false
	}
	if r, err = segment.Open(path, db.readOpts(tenant)); err != nil {
		return false
	}
	defer r.Close()
	return checkDigest(r, e) == nil
}

// openListed opens a sealed, listed segment and checks it against its entry:
// exact size (shorter is loss, anything else tampering), identity, version,
// cipher suite and key-slot generation. The digest is checked where the
// whole file is read anyway (Verify, reindex).
func (db *DB) openListed(tenant string, id [16]byte, e *manifestEntry) (*segment.Reader, error) {
	r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
	if err != nil {
		return nil, fmt.Errorf("%w: segment %s: %w", ErrSegmentTampered, e.ID, err)
	}
	fail := func(err error) (*segment.Reader, error) { _ = r.Close(); return nil, err }
	if err := checkIdentity(r.Header(), id, e); err != nil {
		return fail(err)
	}
	if size := r.Size(); size != e.Size {
		kind := ErrSegmentTampered
		if size < e.Size {
			kind = ErrSegmentLoss
		}
		return fail(fmt.Errorf("%w: segment %s is %d bytes, the manifest recorded %d", kind, e.ID, size, e.Size))
	}
	if !r.Sealed() || len(r.Blocks()) != e.Blocks {
		return fail(fmt.Errorf("%w: segment %s: sealed=%v with %d blocks, the manifest recorded a sealed segment of %d", ErrSegmentTampered,
			e.ID, r.Sealed(), len(r.Blocks()), e.Blocks))
	}
	return r, nil
}

func checkIdentity(h segment.Header, id [16]byte, e *manifestEntry) error {
	switch {
	case h.ID != id:
		return fmt.Errorf("%w: file %s.lss holds segment %s", ErrSegmentTampered, e.ID, segHex(h.ID))
	case h.Version != e.Version:
		return fmt.Errorf("%w: segment %s has format version %d, the manifest recorded %d", ErrSegmentTampered, e.ID, h.Version, e.Version)
	case h.Cipher != segment.CipherAES256GCM:
		return fmt.Errorf("%w: segment %s has cipher suite %s", ErrSegmentTampered, e.ID, h.Cipher)
	case h.Slot.Generation < e.KeyGen || (h.Version < segment.Version2 && h.Slot.Generation != e.KeyGen):
		return fmt.Errorf("%w: segment %s has key slot generation %d, the manifest recorded %d", ErrKeySlotRollback, e.ID, h.Slot.Generation, e.KeyGen)
	}
	return nil
}

// sealEntry records a sealed segment's final shape in its manifest entry.
func sealEntry(r *segment.Reader, e *manifestEntry) error {
	if !r.Sealed() {
		return fmt.Errorf("%w: segment %s has no footer on disk", ErrSegmentTampered, segHex(r.Header().ID))
	}
	d, err := r.Digest()
	if err != nil {
		return err
	}
	h := r.Header()
	e.State, e.Size, e.Blocks, e.Records, e.Digest = segSealed, r.Size(), len(r.Blocks()), 0, d[:]
	e.Version, e.KeyURI, e.KeyGen = h.Version, h.Slot.KeyURI, h.Slot.Generation
	for _, b := range r.Blocks() {
		e.Records += b.Records
	}
	return nil
}

// unlistedSegment handles a segment file the manifest does not list. A new
// segment's file is created before the manifest names it, so a crash in
// between leaves a header with no block: that debris is removed. Anything
// else was not written by this store (or the manifest was rolled back): it
// is refused, reported, and not indexed.
func (db *DB) unlistedSegment(tenant string, id [16]byte, rep *RecoveryReport) (string, error) {
	path := db.segPath(tenant, id)
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return "", fmt.Errorf("%w: segment %s is not in the manifest: %w", ErrSegmentTampered, segHex(id), err)
	}
	h, blocks, tail, sealed := r.Header(), len(r.Blocks()), r.TailError(), r.Sealed()
	_ = r.Close()
	if h.Version >= segment.Version2 && h.ID == id && blocks == 0 && tail == nil && !sealed {
		rep.DebrisRemoved++
		return "", db.fs.Remove(path)
	}
	return h.Slot.KeyURI, fmt.Errorf("%w: segment %s (%d blocks) is not in the tenant manifest", ErrSegmentTampered, segHex(id), blocks)
}

// recoverUnmanifested handles a tenant without a manifest. With no segment,
// it is a new tenant. With a version-2 segment, the manifest was deleted:
// the key binding is unknown, so the tenant refuses writes (never falling
// back to a new local key) until an operator links its key again. With only
// version-1 segments, it is a store from before manifests: it is recovered
// as before and adopted (a manifest is written) when its key is usable.
func (db *DB) recoverUnmanifested(ctx context.Context, tenant string, files [][16]byte, rep *RecoveryReport) error {
	if len(files) == 0 {
		return nil
	}
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			continue // reported by the legacy recovery below or by Verify
		}
		v := r.Header().Version
		_ = r.Close()
		if v >= segment.Version2 {
			err := fmt.Errorf("%w: %s has version-2 segments but no manifest; run `logstore keys link --tenant %s --key URI` to re-attest its segments",
				ErrManifestMissing, tenant, tenant)
			db.manifests.set(tenant, &tenantManifest{damaged: err})
			return err
		}
	}
	if err := db.syncIndex(tenant, files, true, rep, nil); err != nil {
		return err
	}
	if err := db.adoptLegacy(ctx, tenant, files); err != nil {
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: not adopted yet: %v", tenant, err))
		return nil
	}
	rep.TenantsAdopted++
	return nil
}

// adoptLegacy writes the first manifest of a tenant written before
// manifests: bound to the key its index configuration named, else to the key
// of its newest segment (never to a new local key).
func (db *DB) adoptLegacy(ctx context.Context, tenant string, files [][16]byte) error {
	uri := ""
	if cfg, err := db.loadLegacyConfig(tenant); err == nil {
		uri = cfg.KeyURI
	}
	var newest segment.Header
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			continue
		}
		if h := r.Header(); h.Created.After(newest.Created) {
			newest = h
		}
		_ = r.Close()
	}
	if uri == "" {
		uri = newest.Slot.KeyURI
	}
	if uri == "" {
		return fmt.Errorf("%w: no key to bind %s to", ErrNoKey, tenant)
	}
	body, err := db.newManifestBody(ctx, tenant, keyBinding{URI: uri, LinkedAt: db.opts.Now().UTC()})
	if err != nil {
		return err
	}
	if cfg, err := db.loadLegacyConfig(tenant); err == nil {
		body.Retention = cfg.Retention
	}
	if _, err := db.attest(tenant, files, body); err != nil {
		return err
	}
	return db.commitManifest(ctx, tenant, body)
}

// attest lists every segment file of tenant in body as sealed, recovering
// (sealing) unsealed ones first. It is how a store from before manifests is
// adopted and how an operator re-attests a tenant whose manifest was lost
// (LinkKey); files that cannot be read are skipped and returned.
func (db *DB) attest(tenant string, files [][16]byte, body *manifestBody) ([]string, error) {
	var skipped []string
	body.Segments = body.Segments[:0]
	for _, id := range files {
		path := db.segPath(tenant, id)
		if _, err := segment.Recover(path, db.readOpts(tenant)); err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", segHex(id), err))
			continue
		}
		r, err := segment.Open(path, db.readOpts(tenant))
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", segHex(id), err))
			continue
		}
		e := manifestEntry{ID: segHex(id)}
		err = sealEntry(r, &e)
		_ = r.Close()
		if err != nil {
			return skipped, err
		}
		body.Segments = append(body.Segments, e)
		db.readers.invalidate(path)
	}
	return skipped, nil
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
	if err := db.segmentAllowed(tenant, r.Header()); err != nil {
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
