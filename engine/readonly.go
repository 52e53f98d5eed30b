package engine

// Read-only opens (Options.ReadOnly): a second process beside the writer
// (the CLI while an ingest runs, another backend replica on the same disk),
// or any process on a read-only copy. Such a DB takes no lock and writes
// nothing: no index (Pebble cannot be shared with a process that writes
// it), no audit records, no recovery. It reads what is immutable once
// published or only ever appended: the tenant manifests (replaced
// atomically), sealed segments and their block-summary files (sumfile.go),
// and the active segments' complete frames. It sees the records acknowledged
// as of Open or the last Refresh.

import (
	"context"
	"errors"
	"fmt"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// openReadOnly finishes Open for Options.ReadOnly.
func openReadOnly(db *DB) (*DB, error) {
	if db.opts.Bucket != nil {
		if err := openRemote(db); err != nil {
			return nil, err
		}
	}
	if _, err := db.fs.Stat(segmentsDirOf(db.dir)); err != nil {
		if errors.Is(err, vfs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no logstore data directory at %s", ErrNotFound, db.dir)
		}
		return nil, err
	}
	provider := db.opts.Keys
	if provider == nil {
		local, err := keys.NewLocal(keys.LocalOptions{Dir: keysDirOf(db.dir), FS: db.fs, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		db.local = local
		provider = keys.NewRouter(append([]keys.Provider{local}, db.opts.KMS...)...)
	}
	db.cache = keys.NewCache(provider, *db.opts.DEKCache)
	db.readers = newReaderCache(db, db.opts.MaxOpenSegments)
	db.blocks = newBlockCache(int64(db.opts.BlockCacheBytes), db.opts.DEKCache.MaxAge, db.opts.DEKCache.Now)
	db.catalog = newCatalog(db.loadFromSegments)
	if err := db.loadManifests(&db.recovery); err != nil {
		db.closeResources()
		return nil, err
	}
	return db, nil
}

// loadManifests reads and authenticates every tenant's manifest, recording
// for each what it found: a tenant whose manifest is damaged or cannot be
// authenticated now is served as the writer would serve it (its metadata,
// and sealed reads refused with the reason).
func (db *DB) loadManifests(rep *RecoveryReport) error {
	tenants, err := db.listTenants()
	if err != nil {
		return err
	}
	if db.remote != nil {
		db.loadRemoteManifests(tenants, rep)
		return nil
	}
	for _, t := range tenants {
		if db.opts.Plaintext {
			db.manifests.set(t, nil)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		body, mk, err := db.readManifest(ctx, t)
		cancel()
		switch {
		case errors.Is(err, vfs.ErrNotExist):
			db.manifests.set(t, nil) // a store from before manifests
		case manifestDamage(err):
			db.manifests.set(t, &tenantManifest{damaged: err})
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", t, err))
		case err != nil:
			db.manifests.set(t, &tenantManifest{unverified: err})
			rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", t, err))
		default:
			keys.Zero(mk)
			db.manifests.set(t, &tenantManifest{body: body})
			db.reportUnlisted(t, body, rep)
		}
	}
	return nil
}

// reportUnlisted reports the segment files of tenant with blocks that its
// manifest does not list: a read-only DB never serves them, and says so as
// a writer's Open would. A writer lists a new segment before its first
// block, so such a file that a fresh read of the manifest lists is not one.
func (db *DB) reportUnlisted(tenant string, body *manifestBody, rep *RecoveryReport) {
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", tenant, err))
		return
	}
	var suspects [][16]byte
	for _, id := range files {
		if body.entry(segHex(id)) == nil {
			suspects = append(suspects, id)
		}
	}
	if len(suspects) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	fresh, mk, err := db.readManifest(ctx, tenant)
	cancel()
	if err == nil {
		keys.Zero(mk)
		body = fresh
	}
	for _, id := range suspects {
		if body.entry(segHex(id)) != nil {
			continue
		}
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", tenant, fmt.Errorf("%w: segment %s is not in the manifest: %w", ErrSegmentTampered, segHex(id), err)))
			continue
		}
		blocks := len(r.Blocks())
		_ = r.Close() // read-only
		if blocks > 0 {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", tenant, fmt.Errorf("%w: segment %s (%d blocks) is not in the tenant manifest: not served", ErrSegmentTampered, segHex(id), blocks)))
		}
	}
}

// loadFromSegments is a read-only DB's catalog source: the block summaries
// of every segment the tenant's manifest lists (every segment file when it
// has no authenticated manifest), from the summary file of a sealed segment
// when it is usable, else from the segment's metadata sections.
func (db *DB) loadFromSegments(tenant string, tb *tenantBlocks) error {
	if db.remote != nil {
		db.remoteFaults(tenant, tb)
	}
	listed, err := db.readableSegments(tenant)
	if err != nil {
		return err
	}
	journalFiles := db.journalsOf(tenant)
	var journals []*journalData
	for _, ls := range listed {
		// A journal is read before its segment: a record the writer
		// flushed from the journal into a block since is then in the
		// block this load reads, and one acknowledged from the journal
		// before this load began is in what it read of the journal.
		journals = append(journals, db.readSegmentJournals(tenant, ls, journalFiles[ls.id], tb)...)
		if r := db.lazyReadOnly(tenant, ls, len(journalFiles[ls.id]) > 0, tb); r != nil {
			tb.addLazy(ls.id, r, func() ([]*blockSummary, error, error) {
				sums, err := db.readOnlySegment(tenant, ls)
				return sums, nil, err
			})
			continue
		}
		sums, err := db.readOnlySegment(tenant, ls)
		if err != nil {
			if !db.deletedSince(tenant, ls.id) { // retention removed it since the listing: no fault
				tb.fault(err)
			}
			continue
		}
		for _, s := range sums {
			tb.add(s)
		}
	}
	for _, jd := range journals {
		if err := db.addJournal(tenant, tb, jd); err != nil {
			tb.fault(err)
		}
	}
	return nil
}

// lazyReadOnly returns the rollup of listed segment ls as a summary when a
// read-only catalog may enter it lazily (catalogseg.go): sealed, anchored,
// with a rollup, no journal beside it. A rollup that does not decode is a
// fault, and the segment is then read now. So is one whose file is not
// the size the manifest recorded (a Stat), so the loss is reported even
// when the rollup alone would answer.
func (db *DB) lazyReadOnly(tenant string, ls listedSegment, journals bool, tb *tenantBlocks) *blockSummary {
	if ls.sealedBlocks == 0 || ls.rollup == nil || len(ls.summaries) == 0 || journals || ls.journalID != "" {
		return nil
	}
	if db.checkSealedSize(db.segPath(tenant, ls.id), ls) != nil {
		return nil
	}
	r, err := ls.rollup.summary(ls.id)
	if err != nil {
		tb.fault(err)
		return nil
	}
	return r
}

// readSegmentJournals reads the journals jids of segment ls, recording in
// tb the faults: a journal that does not read, and one the manifest's
// checkpoint vouches for that is missing or short.
func (db *DB) readSegmentJournals(tenant string, ls listedSegment, jids [][16]byte, tb *tenantBlocks) []*journalData {
	var out []*journalData
	checked := ls.journalID == ""
	for _, jid := range jids {
		jd, err := db.readJournalNow(tenant, ls.id, jid)
		if err != nil {
			tb.fault(err)
		} else if jd != nil { // nil: retired since the listing, its records in blocks
			out = append(out, jd)
			checked = checked || (segHex(jid) == ls.journalID && jd.validEnd >= ls.journalSize)
		}
	}
	if !checked {
		if err := db.journalCut(tenant, ls); err != nil {
			tb.fault(err)
		}
	}
	return out
}

// readOnlySegment returns the summaries of segment ls for a read-only DB:
// its anchored summary file when sealed, else its blocks' metadata. A nil
// error with no summaries: a segment removed by retention meanwhile, or a
// writer's new one.
func (db *DB) readOnlySegment(tenant string, ls listedSegment) ([]*blockSummary, error) {
	path := db.segPath(tenant, ls.id)
	if err := db.checkSealedSize(path, ls); err != nil {
		if errors.Is(err, ErrSegmentLoss) && db.deletedSince(tenant, ls.id) {
			return nil, nil
		}
		return nil, err
	}
	// Summaries are taken only as the listing's manifest anchored them (a
	// lazy load may run after a refresh saw retention mark the segment).
	// An unanchored summary file (a segment sealed before manifests
	// recorded digests) is not trusted: only its CRC vouches for it.
	if ls.sealedBlocks > 0 && len(ls.summaries) > 0 {
		sums, err := db.anchoredSummariesAt(tenant, ls.id, nil, segAnchor{digest: ls.summaries, blocks: ls.sealedBlocks})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return sums, nil
	}
	if ls.unlisted && db.beingCreated(path) {
		return nil, nil // a writer's new segment, before its header is complete
	}
	// A segment that cannot be read is a fault of the tenant, reported by
	// its reads, which go on without it.
	r, err := db.readers.acquire(path, tenant, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer db.readers.release(path, r)
	sums, err := db.readOnlySummaries(tenant, r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sums, nil
}

// journalCut reports a journal that ls's manifest checkpoint vouches for
// and that is missing or shorter, unless a fresh read of the manifest shows
// the writer retired it or sealed the segment meanwhile.
func (db *DB) journalCut(tenant string, ls listedSegment) error {
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	body, mk, err := db.readManifest(ctx, tenant)
	if err != nil {
		return nil // cannot tell now; the writer's Open checks it
	}
	keys.Zero(mk)
	e := body.entry(segHex(ls.id))
	if e == nil || e.JournalID != ls.journalID {
		return nil
	}
	return fmt.Errorf("%w: the journal %s of segment %s is missing or shorter than the %d bytes the manifest's checkpoint recorded: acknowledged records are missing from this answer",
		ErrSegmentLoss, ls.journalID, segHex(ls.id), ls.journalSize)
}

// journalsOf lists the journal files of tenant's segments, by segment.
func (db *DB) journalsOf(tenant string) map[[16]byte][][16]byte {
	names, err := db.fs.List(db.segDir(tenant))
	if err != nil {
		return nil
	}
	out := map[[16]byte][][16]byte{}
	for _, n := range names {
		if seg, jid, ok := idsOfJournal(n); ok {
			out[seg] = append(out[seg], jid)
		}
	}
	return out
}

func (db *DB) readJournalNow(tenant string, seg, jid [16]byte) (*journalData, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	return db.readJournal(ctx, tenant, seg, jid)
}

// addJournal adds to tb the records of journal jd that no block in tb
// holds, as catalog entries that serve them from memory.
func (db *DB) addJournal(tenant string, tb *tenantBlocks, jd *journalData) error {
	var have recordSet
	if sb := tb.bySeg[jd.seg]; sb != nil {
		sv := segView{blocks: sb.blocks, lazy: sb.lazy}
		blocks, _, err := sv.summaries()
		if err != nil {
			return err
		}
		if have, err = db.idsOfBlocks(tenant, jd.seg, blocks); err != nil {
			return err
		}
	}
	todo, err := jd.unstored(have, func(id ID, kind byte) (bool, error) {
		for _, sb := range tb.segs {
			// A segment retention removed since the listing holds
			// nothing any more: skipped, not a fault.
			byID := &sb.byID
			if sb.lazy != nil {
				if !sb.lazy.mayHoldID(id) {
					continue
				}
				var err error
				if _, byID, _, err = sb.lazy.get(); err != nil {
					if db.deletedSince(tenant, sb.id) {
						continue
					}
					return false, err
				}
			}
			for _, s := range byID[kind].find(id, nil) {
				metas, err := db.readBlockMetas(tenant, sb.id, s, keepID(id))
				if err != nil && db.deletedSince(tenant, sb.id) {
					break
				}
				if err != nil || len(metas) > 0 {
					return len(metas) > 0, err
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	for _, b := range todo {
		tb.add(jd.memSummary(b))
	}
	return nil
}

// checkSealedSize is the check a writer's Open makes of a sealed segment's
// file (reconcile.go), for a read-only DB: there, and as large as the
// manifest recorded.
func (db *DB) checkSealedSize(path string, ls listedSegment) error {
	if ls.sealedBlocks == 0 {
		return nil
	}
	fi, err := db.fs.Stat(path)
	switch {
	case errors.Is(err, vfs.ErrNotExist):
		return fmt.Errorf("%w: segment %s is gone", ErrSegmentLoss, segHex(ls.id))
	case err != nil:
		return err
	case fi.Size() < ls.size:
		return fmt.Errorf("%w: segment %s is %d bytes, the manifest recorded %d", ErrSegmentLoss, segHex(ls.id), fi.Size(), ls.size)
	case fi.Size() != ls.size:
		return fmt.Errorf("%w: segment %s is %d bytes, the manifest recorded %d", ErrSegmentTampered, segHex(ls.id), fi.Size(), ls.size)
	}
	return nil
}

// readOnlySummaries derives the summaries of a segment a read-only DB has
// no anchored summaries for (the active one, one sealed before manifests
// recorded digests). With the tenant's manifest authenticated, every block
// is authenticated first (AES-GCM covers its metadata), since nothing else
// vouches for what the file says; that costs a decryption of the segment
// per load. A tenant whose manifest cannot be authenticated (its key
// unusable: Recovery().Unverified, a warning on every CLI command) has its
// metadata summarized unauthenticated, as the writer's index serves it.
func (db *DB) readOnlySummaries(tenant string, r *segment.Reader) ([]*blockSummary, error) {
	tm := db.manifests.get(tenant)
	h := r.Header()
	if tm == nil || tm.body == nil || h.Cipher == segment.CipherNone {
		return summarizeSegment(r)
	}
	blocks := r.Blocks()
	kept, groups := db.catalog.roSums.get(r.Path(), blocks)
	if len(kept) == len(blocks) {
		return kept, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	dek, err := db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, keys.SegmentContext(tenant, segHex(h.ID)))
	if err != nil {
		return nil, err
	}
	defer keys.Zero(dek)
	sums := append(make([]*blockSummary, 0, len(blocks)), kept...)
	for _, bi := range blocks[len(kept):] {
		blk, err := r.ReadBlockWith(dek, bi.Offset, bi.Seq)
		if err != nil {
			return nil, err
		}
		metas, kind, err := decodeBlockMetas(blk.Meta)
		if err == nil {
			s := summarize(h.ID, bi.Seq, bi.Offset, kind, metas, blk.Meta)
			groups.add(s)
			sums = append(sums, s)
		}
		blk.Release()
		if err != nil {
			return nil, err
		}
	}
	db.catalog.roSums.put(r.Path(), blocks, sums, groups)
	return sums, nil
}

// listedSegment is a segment a read-only DB serves; sealedBlocks is its
// block count when the manifest lists it as sealed (0 otherwise).
type listedSegment struct {
	id           [16]byte
	sealedBlocks int
	size         int64 // sealed: the exact size the manifest recorded
	unlisted     bool  // a file found in the directory, no manifest vouching for it
	// journalID and journalSize are the manifest's checkpoint of the
	// segment's journal (hex id; "" none): an active segment's, or one a
	// crash or write error left beside a sealed segment until its replay.
	journalID   string
	journalSize int64
	// rollup and summaries: a sealed segment's rollup and the digest
	// anchoring its summaries (nil: sealed before digests).
	rollup    *segRollup
	summaries []byte
}

// readableSegments lists tenant's segments for a read-only DB.
func (db *DB) readableSegments(tenant string) ([]listedSegment, error) {
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		var out []listedSegment
		for _, e := range tm.body.Segments {
			id, err := parseSegHex(e.ID)
			if err != nil {
				return nil, err
			}
			switch e.State {
			case segSealed:
				out = append(out, listedSegment{id: id, sealedBlocks: e.Blocks, size: e.Size, journalID: e.JournalID, journalSize: e.JournalSize,
					rollup: e.Rollup, summaries: e.Summaries})
			case segActive:
				out = append(out, listedSegment{id: id, journalID: e.JournalID, journalSize: e.JournalSize})
			}
		}
		return out, nil
	}
	if tm := db.manifests.get(tenant); db.remote != nil && tm != nil {
		// A stateless reader knows a tenant's objects only from manifests
		// it authenticated: with none, it serves nothing, and says why.
		if tm.damaged != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrTenantDamaged, tenant, tm.damaged)
		}
		return nil, tm.unverified
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]listedSegment, len(files))
	for i, id := range files {
		out[i] = listedSegment{id: id, unlisted: true}
	}
	return out, nil
}

// beingCreated reports whether the segment file at path is shorter than a
// segment header: a writer creates the file, then writes the header. Such
// a file holds no record, so a read-only DB that lists files (a tenant
// with no manifest yet) skips it rather than reporting it. (A tenant with
// a manifest only ever has listed segments read, whose headers are
// complete.)
func (db *DB) beingCreated(path string) bool {
	fi, err := db.fs.Stat(path)
	return err == nil && fi.Size() < segment.HeaderSize
}

// Refresh makes a read-only DB see what the writer acknowledged since Open
// or the previous Refresh: it reads the manifests again and drops the block
// lists it holds. Scans already running keep their view. On a DB opened for
// writing it does nothing (that DB always sees its own writes).
func (db *DB) Refresh(ctx context.Context) error {
	if ctx == nil {
		return errNilContext
	}
	if !db.opts.ReadOnly {
		return nil
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	db.refreshMu.Lock()
	defer db.refreshMu.Unlock()
	var rep RecoveryReport // Recovery keeps what Open found
	if err := db.loadManifests(&rep); err != nil {
		return err
	}
	db.readers.invalidateAll()
	db.catalog.reset()
	return nil
}
