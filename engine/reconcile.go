package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// Reconciliation of a tenant's segment files with its manifest, run by Open
// (recoverTenant) and by the writer when a tenant's key becomes usable again.
// docs/format/manifest.md has the rules as a table.

// reconciliation is one tenant's reconcile in progress.
type reconciliation struct {
	tenant   string
	next     *manifestBody         // the manifest to publish
	problems map[string]error      // segment id -> why it is refused
	lost     map[string]error      // segment id -> acknowledged blocks it lost (what remains is served)
	used     map[string][][16]byte // slot key URI on disk -> the files naming it
	present  map[string]bool       // segment ids with a file
	good     [][16]byte            // the files to index
	changed  bool                  // next differs from the manifest on disk
}

// reconcile checks the segment files against the verified manifest body,
// records per-segment problems, finishes what a crash interrupted, and
// writes the manifest back if anything changed.
func (db *DB) reconcile(ctx context.Context, tenant string, body *manifestBody, mk []byte, files [][16]byte, rep *RecoveryReport) error {
	rc := &reconciliation{tenant: tenant, next: body.clone(), problems: map[string]error{}, lost: map[string]error{},
		used: map[string][][16]byte{}, present: map[string]bool{}}
	for _, id := range files {
		db.reconcileFile(ctx, rc, id, rep)
	}
	rc.dropGone()
	indexKeys, err := db.forgottenSegments(tenant, rc.present, rc.next, rc.problems)
	if err != nil {
		return err
	}
	for _, m := range []map[string]error{rc.problems, rc.lost} {
		for id, err := range m {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, id, err))
		}
	}
	if err := db.checkKeys(ctx, rc, mk, indexKeys); err != nil {
		db.manifests.set(tenant, &tenantManifest{damaged: err})
		return err
	}
	db.manifests.set(tenant, &tenantManifest{body: rc.next.clone(), problems: rc.problems, lost: rc.lost})
	if rc.changed {
		if err := db.commitManifest(ctx, tenant, rc.next); err != nil {
			rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: manifest update deferred: %v", tenant, err))
		}
	}
	return db.syncIndex(tenant, rc.good, false, rep, rc.problems)
}

// reconcileFile checks one segment file against its manifest entry (or
// its absence) and files the result in rc.
func (db *DB) reconcileFile(ctx context.Context, rc *reconciliation, id [16]byte, rep *RecoveryReport) {
	hexID := segHex(id)
	rc.present[hexID] = true
	e := rc.next.entry(hexID)
	if e == nil {
		uri, err := db.unlistedSegment(rc.tenant, id, rep)
		if err != nil {
			rc.problems[hexID] = err
		}
		// Its key counts too: a manifest forged to list none of the
		// tenant's real segments must still prove it holds their keys.
		rc.use(uri, id)
		return
	}
	c, keyURI, err := db.reconcileSegment(ctx, rc.tenant, id, e, rep)
	rc.changed = rc.changed || c
	rc.use(keyURI, id)
	switch {
	case e.State == segDeleting, e.State == segErasing:
	case err != nil && c && errors.Is(err, ErrSegmentLoss):
		// A crashed writer's segment kept fewer blocks than recorded:
		// what remains is authentic and served; the loss is reported.
		rc.lost[hexID] = err
		rc.good = append(rc.good, id)
	case err != nil:
		rc.problems[hexID] = err
	default:
		rc.good = append(rc.good, id)
	}
}

func (rc *reconciliation) use(uri string, id [16]byte) {
	if uri != "" {
		rc.used[uri] = append(rc.used[uri], id)
	}
}

// dropGone drops the entries retention finished deleting and reports the
// listed segments whose file is gone (they stay listed).
func (rc *reconciliation) dropGone() {
	kept := rc.next.Segments[:0]
	for _, e := range rc.next.Segments {
		switch {
		case rc.present[e.ID] && e.State != segDeleting && e.State != segErasing:
		case e.State == segDeleting, e.State == segErasing:
			rc.changed = true // retention finished removing it
			continue
		default:
			rc.problems[e.ID] = fmt.Errorf("%w: segment %s (%s, %d blocks, %d bytes) is gone", ErrSegmentLoss, e.ID, e.State, e.Blocks, e.Size)
		}
		kept = append(kept, e)
	}
	rc.next.Segments = kept
}

// checkKeys checks that every key proven to wrap the tenant's data, and
// every key the index recorded for a segment that vanished (indexKeys),
// wraps the manifest key (checkWraps).
func (db *DB) checkKeys(ctx context.Context, rc *reconciliation, mk []byte, indexKeys map[string]bool) error {
	proven, err := db.provenKeys(ctx, rc.tenant, rc.used, rc.problems)
	if err != nil {
		return err
	}
	for uri := range indexKeys {
		proven[uri] = true // must wrap the manifest key too (tolerated if unusable)
	}
	return db.checkWraps(ctx, rc.tenant, rc.next, mk, proven)
}

// reconcileSegment checks one listed segment file. A sealed segment must
// match its entry exactly; an active one (a crashed writer's) is truncated
// to its last valid block and sealed, and the entry updated. It returns
// whether the entry changed and the key URI of the file's active slot.
func (db *DB) reconcileSegment(ctx context.Context, tenant string, id [16]byte, e *manifestEntry, rep *RecoveryReport) (bool, string, error) {
	path := db.segPath(tenant, id)
	switch e.State {
	case segErasing:
		// An erase that did not reach its commit: its copy goes, the
		// segment it was to replace stays (erase.go).
		e.State = segDeleting
		rep.ErasesRolledBack++
		fallthrough
	case segDeleting:
		db.readers.invalidate(path)
		if err := removeIfExists(db.fs, summaryPathOf(path)); err != nil {
			return false, "", err
		}
		if err := removeIfExists(db.fs, path); err != nil {
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
	if err := db.authenticateBlocks(ctx, tenant, r); err != nil {
		return false, "", err
	}
	var loss error
	if n := len(r.Blocks()); n < e.Blocks {
		loss = fmt.Errorf("%w: segment %s holds %d blocks, %d were recorded", ErrSegmentLoss, e.ID, n, e.Blocks)
	}
	if err := db.sealEntry(r, e, nil); err != nil { // authenticated above
		return false, "", err
	}
	return true, r.Header().Slot.KeyURI, loss
}

// resealed handles a sealed segment whose footer did not reach the disk
// (the manifest was written after the footer's fsync, so only a file system
// that lost a synced write gets here): the footer is a function of the
// blocks, so the digest the resealed file would have is computed first and
// only if it is byte for byte what the manifest recorded does Recover write
// the footer again. Anything else stays refused and the file untouched.
func (db *DB) resealed(tenant string, id [16]byte, e *manifestEntry) bool {
	path := db.segPath(tenant, id)
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return false
	}
	unsealed := !r.Sealed() && len(r.Blocks()) == e.Blocks
	var d [32]byte
	if unsealed {
		d, err = r.SealedDigest()
	}
	_ = r.Close()
	if !unsealed || err != nil || !bytes.Equal(d[:], e.Digest) {
		return false // never touch a file that would not match: it is evidence
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
		return fmt.Errorf("%w: file %s holds segment %s", ErrSegmentTampered, segmentFileName(e.ID), segHex(h.ID))
	case h.Version != e.Version:
		return fmt.Errorf("%w: segment %s has format version %d, the manifest recorded %d", ErrSegmentTampered, e.ID, h.Version, e.Version)
	case h.Cipher != segment.CipherAES256GCM:
		return fmt.Errorf("%w: segment %s has cipher suite %s", ErrSegmentTampered, e.ID, h.Cipher)
	case h.Slot.Generation < e.KeyGen || (h.Version < segment.Version2 && h.Slot.Generation != e.KeyGen):
		return fmt.Errorf("%w: segment %s has key slot generation %d, the manifest recorded %d", ErrKeySlotRollback, e.ID, h.Slot.Generation, e.KeyGen)
	case e.KeyURI != "" && h.Slot.Generation == e.KeyGen && h.Slot.KeyURI != e.KeyURI:
		return fmt.Errorf("%w: segment %s's key slot names %s, the manifest recorded %s", ErrSegmentTampered, e.ID, h.Slot.KeyURI, e.KeyURI)
	}
	return nil
}

// sealEntry records a sealed segment's final shape in its manifest entry,
// and writes its block-summary file (whose digest the entry anchors). The
// summaries come from the file; written, when set, are the ones this
// process computed as it wrote the blocks, and the file's must be the same
// (an edit of the active segment's metadata is never anchored). Without
// written, the caller authenticated every block first (recovery), or an
// operator vouches for the file (LinkKey's attestation).
func (db *DB) sealEntry(r *segment.Reader, e *manifestEntry, written []*blockSummary) error {
	if err := sealShape(r, e); err != nil {
		return err
	}
	var sums []*blockSummary
	var err error
	if written != nil {
		sums, err = sameBlocks(r, written)
	} else {
		sums, err = summarizeSegment(r)
	}
	if err != nil {
		return err
	}
	// A file that cannot be written is rebuilt on a later Open.
	d := db.writeSummaryFile(r.Path(), r.Header().ID, sums)
	e.Summaries, e.Rollup = d[:], rollupOf(sums)
	return nil
}

// sameBlocks checks that the blocks of segment r (its file) are the ones
// this process wrote, a torn tail aside, and returns the summaries written
// of those it holds. A summary is a function of its block's place and
// metadata section, so matching each block's offset, record count and
// section hash (SHA-256) is matching its summary, group filter included,
// at the cost of a read of the sections, not a decoding of every record.
func sameBlocks(r *segment.Reader, written []*blockSummary) ([]*blockSummary, error) {
	seg, blocks := r.Header().ID, r.Blocks()
	if len(blocks) > len(written) {
		return nil, fmt.Errorf("%w: segment %s holds %d blocks, this process wrote %d", ErrSegmentTampered, segHex(seg), len(blocks), len(written))
	}
	for i, bi := range blocks {
		w := written[i]
		blk, err := r.ReadMetaSectionAt(bi.Offset, bi.Seq)
		if err != nil {
			return nil, err
		}
		same := w.offset == bi.Offset && w.seq == bi.Seq && w.count == len(blk.Meta) && metaHashOf(blk.Meta) == w.metaHash
		blk.Release()
		if !same {
			return nil, fmt.Errorf("%w: segment %s block %d: its metadata changed after it was written", ErrSegmentTampered, segHex(seg), i)
		}
	}
	return written[:len(blocks)], nil
}

// sealShape records a sealed segment's size, blocks, digest and times in
// its manifest entry.
func sealShape(r *segment.Reader, e *manifestEntry) error {
	if !r.Sealed() {
		return fmt.Errorf("%w: segment %s has no footer on disk", ErrSegmentTampered, segHex(r.Header().ID))
	}
	d, err := r.Digest()
	if err != nil {
		return err
	}
	// The key URI and generation are never taken from the file here: they
	// come from the writer's memory (listActive), a rewrap's own result
	// (recordSlot) or a slot authenticated with its DEK (attest). Copying
	// an unauthenticated slot's URI would let whoever edits it have the
	// manifest key wrapped under a key of their own.
	e.State, e.Size, e.Blocks, e.Records, e.Digest = segSealed, r.Size(), len(r.Blocks()), 0, d[:]
	e.Version = r.Header().Version
	e.MaxTime = 0
	for _, b := range r.Blocks() {
		e.Records += b.Records
		e.MaxTime = max(e.MaxTime, b.MaxTime)
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
		if _, ok := db.indexedManifestSeq(tenant, nil); ok {
			// No segment yet, but a manifest was written (a key linked, a
			// redaction policy set) and is gone: refused, never taken for
			// a new tenant whose defaults would replace what it said.
			err := fmt.Errorf("%w: %s had a manifest (the index saw it) and it is gone; run `logstore keys link --tenant %s --key URI` to re-attest",
				ErrManifestMissing, tenant, tenant)
			db.manifests.set(tenant, &tenantManifest{damaged: err})
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", tenant, err))
			return nil
		}
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
	if _, ok := db.indexedManifestSeq(tenant, nil); ok {
		// The index saw a manifest: version-1-looking segments and no
		// manifest is a deleted manifest (and relabelled segments), not an
		// old store.
		return fmt.Errorf("%w: %s had a manifest (the index saw it); run `logstore keys link` to re-attest", ErrManifestMissing, tenant)
	}
	cfg, _ := db.loadLegacyConfig(tenant)
	// The binding must be proven by the segments: a key that unwraps one of
	// them to a DEK matching its commitment. The index's configuration is
	// taken only when a segment proves it; else the newest proven key.
	var newest segment.Header
	configured := false
	for _, id := range files {
		path := db.segPath(tenant, id)
		r, err := segment.Open(path, db.readOpts(tenant))
		if err != nil {
			continue
		}
		h := r.Header()
		_ = r.Close()
		if db.authenticSlot(ctx, tenant, path, h) != nil {
			continue
		}
		configured = configured || h.Slot.KeyURI == cfg.KeyURI
		if h.Created.After(newest.Created) {
			newest = h
		}
	}
	uri := newest.Slot.KeyURI
	if configured {
		uri = cfg.KeyURI
	}
	if uri == "" {
		return fmt.Errorf("%w: no segment of %s proves a key to bind it to", ErrNoKey, tenant)
	}
	b := keyBinding{URI: uri, LinkedAt: db.opts.Now().UTC()}
	if err := db.checkExpectedKey(tenant, b); err != nil {
		return err
	}
	body, err := db.newManifestBody(ctx, tenant, b)
	if err != nil {
		return err
	}
	body.Retention = cfg.Retention
	if _, err := db.attest(ctx, tenant, files, body); err != nil {
		return err
	}
	return db.commitManifest(ctx, tenant, body)
}

// segmentDEK unwraps the DEK of the segment with header h from its active
// key slot (zero it).
func (db *DB) segmentDEK(ctx context.Context, tenant string, h segment.Header) ([]byte, error) {
	return db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, keys.SegmentContext(tenant, segHex(h.ID)))
}

// authenticSlot proves that the segment's active key slot was written by a
// holder of its DEK: the slot's key unwraps a DEK that matches the key
// commitment (and, version 2, the slot MAC). Only then may its key URI be
// trusted (recorded in a manifest, or bound).
func (db *DB) authenticSlot(ctx context.Context, tenant, path string, h segment.Header) error {
	if id, ok := segmentIDOfPath(path); !ok || id != h.ID {
		return fmt.Errorf("%w: %s holds segment %s", ErrSegmentTampered, path, segHex(h.ID))
	}
	dek, err := db.segmentDEK(ctx, tenant, h)
	if err != nil {
		return err
	}
	defer keys.Zero(dek)
	return h.CheckKey(dek)
}

// authenticateBlocks decrypts every block of r with its DEK: what recovery
// is about to record for a crashed writer's segment (block count, times,
// digest) is then known to be what the writer wrote, not a forged tail or
// back-dated frame headers.
func (db *DB) authenticateBlocks(ctx context.Context, tenant string, r *segment.Reader) error {
	h := r.Header()
	dek, err := db.segmentDEK(ctx, tenant, h)
	if err != nil {
		return err
	}
	defer keys.Zero(dek)
	for _, b := range r.Blocks() {
		blk, err := r.ReadBlockWith(dek, b.Offset, b.Seq)
		if err != nil {
			return fmt.Errorf("%w: segment %s block %d: %w", ErrSegmentTampered, segHex(h.ID), b.Seq, err)
		}
		blk.Release()
	}
	return nil
}

// attest lists every segment file of tenant in body as sealed, recovering
// (sealing) unsealed ones first. It is how a store from before manifests is
// adopted and how an operator re-attests a tenant whose manifest was lost
// (LinkKey); files that cannot be read are skipped and returned.
func (db *DB) attest(ctx context.Context, tenant string, files [][16]byte, body *manifestBody) ([]string, error) {
	var skipped []string
	body.Segments = body.Segments[:0]
	for _, id := range files {
		path := db.segPath(tenant, id)
		r, err := segment.Open(path, db.readOpts(tenant))
		if err == nil {
			err = db.authenticSlot(ctx, tenant, path, r.Header())
			_ = r.Close()
		}
		if err == nil {
			_, err = segment.Recover(path, db.readOpts(tenant))
		}
		if err == nil {
			r, err = segment.Open(path, db.readOpts(tenant))
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", segHex(id), err))
			continue
		}
		h := r.Header()
		e := manifestEntry{ID: segHex(id), KeyURI: h.Slot.KeyURI, KeyGen: h.Slot.Generation}
		err = db.sealEntry(r, &e, nil)
		_ = r.Close()
		if err != nil {
			return skipped, err
		}
		body.Segments = append(body.Segments, e)
		db.readers.invalidate(path)
	}
	return skipped, nil
}

// provenKeys establishes, from the segment files themselves, which keys wrap
// this tenant's data: for each key URI named by a slot on disk, one segment
// (of at most three tried) must unwrap to a DEK matching its commitment and
// slot MAC. A URI no segment proves was written by someone without the DEK:
// those segments are refused, not the tenant. If the tenant has segments and
// none proves any usable key, nothing vouches for the manifest's binding, so
// the tenant is refused. A revoked or unreachable key proves nothing either
// way and is tolerated (its segments are unreadable anyway).
func (db *DB) provenKeys(ctx context.Context, tenant string, used map[string][][16]byte, problems map[string]error) (map[string]bool, error) {
	proven := map[string]bool{}
	unusable := 0
	for uri, ids := range used {
		var lastErr error
		for i := len(ids) - 1; i >= 0 && i >= len(ids)-3; i-- {
			path := db.segPath(tenant, ids[i])
			r, err := segment.Open(path, db.readOpts(tenant))
			if err == nil {
				err = db.authenticSlot(ctx, tenant, path, r.Header())
				_ = r.Close()
			}
			if lastErr = err; err == nil {
				proven[uri] = true
				break
			}
			if errors.Is(err, keys.ErrKeyUnusable) || keys.IsRetryable(err) {
				break
			}
		}
		switch {
		case proven[uri]:
		case errors.Is(lastErr, keys.ErrKeyUnusable) || keys.IsRetryable(lastErr):
			unusable++
		default:
			for _, id := range ids {
				problems[segHex(id)] = fmt.Errorf("%w: segment %s's key slot names %s, which does not hold its data key: %v",
					ErrSegmentTampered, segHex(id), uri, lastErr)
			}
		}
	}
	if len(used) > 0 && len(proven) == 0 && unusable == 0 {
		return nil, fmt.Errorf("%w: %s: no segment proves the key of any of its segments (slots forged)", ErrManifestAuth, tenant)
	}
	return proven, nil
}

// forgottenSegments uses the index's memory: a segment the index knew that
// is neither on disk nor in the manifest vanished together with its manifest
// entry (a file hidden or deleted and the manifest replaced). It is reported
// as loss, its index entries kept, and the keys the index recorded for such
// segments are returned: the manifest must hold them too (checkWraps), so a
// manifest forged to forget them cannot switch the tenant's key.
func (db *DB) forgottenSegments(tenant string, present map[string]bool, body *manifestBody, problems map[string]error) (map[string]bool, error) {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for id, st := range states {
		hexID := segHex(id)
		if present[hexID] || body.entry(hexID) != nil {
			continue
		}
		problems[hexID] = fmt.Errorf("%w: the index knew segment %s (%d records), which is neither on disk nor in the manifest", ErrSegmentLoss, hexID, st.Records)
		if st.KeyURI != "" {
			known[st.KeyURI] = true
		}
	}
	return known, nil
}
