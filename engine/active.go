package engine

// The write path, stage 3: the life of a tenant's active segment, owned by
// the writer goroutine: created (ensureSegment) under a fresh DEK and listed
// in the manifest, fsynced (syncDirty), sealed (sealActive, sealAll) or,
// after an I/O error, abandoned to recovery (abandon).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// tenantState is the writer goroutine's view of one tenant; only that
// goroutine touches it (control runs admin changes there).
type tenantState struct {
	name string
	w    *segment.Writer // the active segment; nil between segments
	info *SegmentInfo    // w's index state, staged with every group
	// keyURI, wrapped and ec are w's key slot, kept to re-validate the key
	// (rollDue) without rereading the header.
	keyURI  string
	wrapped []byte
	ec      keys.EncryptionContext
	opened  time.Time // when w was created (SegmentAge)
	dirty   bool      // written since the last fsync
	// sums are the summaries of w's blocks as this process wrote them: the
	// seal anchors these in the manifest, never what the file says (which
	// someone may have edited while the segment was active).
	sums []*blockSummary
	// checkpointed is when the manifest last recorded the active segment's
	// synced size (checkpoint).
	checkpointed time.Time
	// j is w's journal (journal.go), opened by the first small append;
	// jdirty: written since its last fsync.
	j      *segment.Writer
	jdirty bool
	// pend are the journaled records, by kind, that no block holds yet.
	pend [kindPayload + 1]pending
	// groups builds the group filters of w's blocks (blockgroup.go).
	groups groupBuilder
	// stateStaged: w's segment state is in the index (a group that only
	// writes the journal need not stage it again).
	stateStaged bool
	// orphans are the journals of segments given up (abandonTo), kept
	// until the next Open replays them: after a failed write or fsync no
	// block of that segment is trusted to be durable, so the journal may
	// hold the only durable copy of records. Retention waits meanwhile.
	orphans []string
}

// writeMark is where a tenant's writes stood before a group: a failed
// write or fsync cuts the active segment back to it (abandonTo).
type writeMark struct {
	blocks int
	pend   [kindPayload + 1]pending
	// journalPath and journalSize are ts's journal then ("": none).
	journalPath string
	journalSize int64
}

func (ts *tenantState) mark() writeMark {
	m := writeMark{pend: ts.pend}
	if ts.w != nil {
		m.blocks = ts.w.BlockCount()
	}
	if ts.j != nil {
		m.journalPath, m.journalSize = ts.j.Path(), ts.j.Size()
	}
	return m
}

// keyURIFor is the key a tenant's next segment is wrapped under: the key
// its manifest binds. Only a tenant with no manifest and no segment at all
// (a new tenant) may get the embedded default, an auto-created
// local://TENANT, and only when Options allow it; a tenant that had any key
// never falls back to it (ensureManifest refuses such a tenant first).
func (db *DB) keyURIFor(ts *tenantState) (uri string, auto bool, err error) {
	if tm := db.manifests.get(ts.name); tm != nil && tm.body != nil {
		return tm.body.Key.URI, false, nil
	}
	files, err := db.listSegmentFiles(ts.name)
	if err != nil {
		return "", false, err
	}
	if len(files) > 0 {
		return "", false, fmt.Errorf("%w: %s has segments but no manifest", ErrManifestMissing, ts.name)
	}
	if db.opts.ExpectedKey != nil {
		if want := db.opts.ExpectedKey(ts.name); want != "" {
			return want, false, nil
		}
	}
	if db.opts.RequireLinkedKey || db.local == nil {
		return "", false, fmt.Errorf("%w: tenant %s has no key: run `logstore keys link --tenant %s --key URI`", ErrNoKey, ts.name, ts.name)
	}
	def := keys.LocalURI(ts.name)
	if err := db.checkKeyNotShared(ts.name, def); err != nil {
		// Another tenant linked a key of this name: never share it.
		return "", false, fmt.Errorf("%w: tenant %s has no key and its default %s is another tenant's: %w", ErrNoKey, ts.name, def, err)
	}
	return def, true, nil
}

// ensureSegment makes sure ts has an active segment that may take writes,
// rolling it when rollDue says so.
func (db *DB) ensureSegment(ts *tenantState) error {
	now := db.opts.Now()
	if ts.w != nil {
		roll, err := db.rollDue(ts, now)
		if err != nil {
			db.sealTolerated(ts) // the key failed, not the segment: seal what it holds
			return err
		}
		if !roll {
			return nil
		}
		if err := db.sealActive(ts); err != nil {
			return err
		}
	}
	return db.createSegment(ts, now)
}

// rollDue reports whether ts's active segment must be rolled: at
// SegmentSize, at SegmentAge, and when the DEK cache's max age means the key
// must be re-validated (so a revoked key stops writes within the max age).
// With caching disabled, the key is re-validated on every group: an error
// is why it cannot be used.
func (db *DB) rollDue(ts *tenantState, now time.Time) (bool, error) {
	if ts.w.Size() >= db.opts.SegmentSize || now.Sub(ts.opened) >= db.opts.SegmentAge {
		return true, nil
	}
	if db.opts.Plaintext {
		return false, nil
	}
	if db.cache.MaxAge() > 0 {
		return !db.cache.Fresh(ts.keyURI, ts.wrapped, ts.ec), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	dek, err := db.cache.Unwrap(ctx, ts.keyURI, ts.wrapped, ts.ec)
	keys.Zero(dek)
	return false, err
}

// createSegment starts ts's next active segment under a fresh DEK from the
// tenant's key (keyURIFor) and lists it in the manifest.
func (db *DB) createSegment(ts *tenantState, now time.Time) error {
	id, err := segment.NewID()
	if err != nil {
		return err
	}
	p := segment.Params{ID: id, Tenant: ts.name, Codec: db.codec, FS: db.fs, Created: now, Cipher: segment.CipherAES256GCM}
	var uri string
	var autoLocal bool
	var ec keys.EncryptionContext
	if db.opts.Plaintext {
		p.Cipher = segment.CipherNone
	} else {
		if uri, autoLocal, err = db.keyURIFor(ts); err != nil {
			return err
		}
		ec = keys.SegmentContext(ts.name, segHex(id))
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		dk, err := db.cache.GenerateDataKey(ctx, uri, ec)
		cancel()
		if err != nil {
			return err // fail closed: no segment without a usable key
		}
		defer keys.Zero(dk.Plaintext)
		p.KeyURI, p.Wrapped, p.DEK = uri, dk.Wrapped, dk.Plaintext
	}
	if err := db.fs.MkdirAll(db.segDir(ts.name)); err != nil {
		return err
	}
	w, err := segment.Create(db.segPath(ts.name, id), p)
	if err != nil {
		return err
	}
	if err := db.listActive(ts.name, w, autoLocal); err != nil {
		_ = w.Close() // removed next: nothing was written to it
		if rerr := db.fs.Remove(w.Path()); rerr != nil {
			db.stats.cleanupFailures.Add(1) // a header without a block: Open removes it as debris
		}
		return err
	}
	db.stats.segmentsCreated.Add(1)
	h := w.Header()
	ts.w, ts.opened, ts.keyURI, ts.wrapped, ts.ec, ts.sums = w, now, uri, p.Wrapped, ec, nil
	ts.groups, ts.stateStaged = groupBuilder{}, false
	ts.info = &SegmentInfo{V: stateVersion, Tenant: ts.name, ID: segHex(id), KeyURI: uri, KeyGen: h.Slot.Generation, Created: h.Created, Size: w.Size()}
	return nil
}

// sealActive seals ts's active segment and records that in the index and
// the manifest.
func (db *DB) sealActive(ts *tenantState) error {
	if ts.w == nil {
		if !ts.pending() {
			return nil
		}
		// Records carried over from a segment given up (abandonTo): a
		// segment takes them before the seal.
		if err := db.ensureSegment(ts); err != nil {
			return err
		}
	}
	m := ts.mark()
	kvs, err := db.flushAll(ts, nil)
	if err == nil {
		err = ts.w.Seal()
	}
	if err != nil {
		db.abandonTo(ts, m)
		return err
	}
	st := ts.info
	st.Sealed, st.Size = true, ts.w.Size()
	path, sums := ts.w.Path(), ts.sums
	_ = ts.w.Close() // sealed and fsynced: closing loses nothing
	ts.w, ts.info, ts.dirty, ts.sums = nil, nil, false, nil
	k, v, err := stateKV(st)
	if err != nil {
		db.closeJournal(ts, false)
		return err
	}
	db.indexQ <- &indexJob{kvs: append(kvs, kv{k: k, v: v})}
	// A failure here leaves the entry "active" with the file sealed: the
	// next Open accepts it as a finished crash recovery (which
	// authenticates every block before it anchors their summaries).
	err = db.recordSealed(ts.name, path, sums, true)
	// The seal made the flushed blocks durable, and the manifest no longer
	// expects a journal: it is obsolete (kept, and replayed by the next
	// Open, if the manifest could not say so).
	db.closeJournal(ts, err == nil)
	return err
}

// sealTolerated seals ts's active segment where a failure must not stop the
// caller (Close, a pause, a failed key check, retention, DeleteTenant): it
// is counted (Stats.SealFailures) and the next Open finishes the seal.
func (db *DB) sealTolerated(ts *tenantState) {
	if err := db.sealActive(ts); err != nil {
		db.stats.sealFailures.Add(1)
	}
}

// abandon gives up on ts's active segment after an fsync error, keeping
// every block written (abandonTo).
func (db *DB) abandon(ts *tenantState) { db.abandonTo(ts, ts.mark()) }

// abandonTo gives up on ts's active segment after a write or fsync error:
// the writer never appends to it again (its nonces must not repeat);
// recovery cuts it back to m (what a torn or failed write left after the
// blocks before it) and seals it, and the blocks kept are indexed so the
// index keeps matching the segments. The journal is closed and kept: its
// records that no kept block holds stay pending (m.pend) for the next
// segment, and the next Open finds the rest stored. When the repair fails
// here it is counted (Stats.AbandonRepairsDeferred): the next Open does it.
func (db *DB) abandonTo(ts *tenantState, m writeMark) {
	if ts.w == nil {
		return
	}
	db.stats.segmentsAbandoned.Add(1)
	path, st, sums := ts.w.Path(), ts.info, ts.sums
	if m.blocks < len(sums) {
		sums = sums[:m.blocks]
	}
	db.indexBarrier() // the persisted state must include every queued group
	_ = ts.w.Close()  // after an I/O error; recovery reopens the file
	ts.w, ts.info, ts.dirty, ts.sums = nil, nil, false, nil
	if ts.j != nil {
		jpath := ts.j.Path()
		db.closeJournal(ts, false)
		db.cutJournal(jpath, m)
		if jpath == m.journalPath {
			ts.orphans = append(ts.orphans, jpath)
		}
	}
	ts.pend = m.pend
	db.readers.invalidate(path)
	if err := db.repairAbandoned(ts.name, path, st, sums, m.blocks); err != nil {
		db.stats.abandonRepairsDeferred.Add(1)
	}
}

// repairAbandoned cuts an abandoned segment back to its first keep blocks
// and seals it, records it in the manifest and indexes the blocks the
// index lacks.
func (db *DB) repairAbandoned(tenant, path string, st *SegmentInfo, sums []*blockSummary, keep int) error {
	if _, err := segment.RecoverBlocks(path, db.readOpts(tenant), keep); err != nil {
		return err
	}
	serr := db.recordSealed(tenant, path, sums, false)
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return errors.Join(serr, err)
	}
	defer r.Close()
	persisted, err := db.segmentStates(tenant)
	if err != nil {
		return errors.Join(serr, err)
	}
	id, _ := st.segID()
	cur := persisted[id]
	if cur == nil {
		cur = &SegmentInfo{V: stateVersion, Tenant: tenant, ID: st.ID}
	}
	_, err = db.indexBlocks(r, cur, cur.Blocks)
	return errors.Join(serr, err)
}

// syncDirty fsyncs every segment written since its last fsync
// (SyncInterval's tick, and Close).
func (db *DB) syncDirty() {
	for _, ts := range db.tenants {
		if ts.w != nil && (ts.dirty || ts.jdirty) {
			if err := db.syncWrites(ts, groupWrites{segment: ts.dirty, journal: ts.jdirty}); err != nil {
				db.abandon(ts)
				continue
			}
			db.checkpoint(ts)
		}
	}
}

// syncWrites fsyncs the files of ts that w says were written.
func (db *DB) syncWrites(ts *tenantState, w groupWrites) error {
	if w.journal && ts.j != nil {
		if err := ts.j.Sync(); err != nil {
			return err
		}
		ts.jdirty = false
	}
	if w.segment {
		if err := ts.w.Sync(); err != nil {
			return err
		}
		ts.dirty = false
	}
	return nil
}

// sealAll seals every active segment (Close, withWriterPaused).
func (db *DB) sealAll() {
	for _, ts := range db.tenants {
		db.sealTolerated(ts)
	}
}
