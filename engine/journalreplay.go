package engine

// Journal replay on a writer's Open: a journal left beside a segment (the
// writer crashed, or gave the segment up after an I/O error) may hold
// acknowledged records that no block holds. Recovery has sealed and indexed
// the segments by then; replay re-appends each journaled record that no
// block of the tenant holds (by id: one id names one record), fsyncs them,
// and only then removes the journal. A crash during replay leaves the
// journal, and the next Open finds the records already re-appended.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// replayBatch bounds the records of one re-append.
const replayBatch = 1024

// replayJournals replays every tenant's journals, recording in rep what it
// re-appended and what it could not replay (the journal is then kept).
func (db *DB) replayJournals(rep *RecoveryReport) {
	tenants, err := db.listTenants()
	if err != nil {
		rep.Damaged = append(rep.Damaged, fmt.Sprintf("journals: %v", err))
		return
	}
	for _, t := range tenants {
		names, err := db.fs.List(db.segDir(t))
		if err != nil {
			continue // no directory: nothing to replay
		}
		db.missingJournals(t, names, rep)
		for _, n := range names {
			if !strings.HasSuffix(n, journalExt) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*keyCallTimeout)
			k, err := db.replayJournal(ctx, t, n)
			cancel()
			rep.JournalRecords += k
			db.stats.journalReplayed.Add(uint64(k))
			if err == nil {
				continue
			}
			msg := fmt.Sprintf("tenant %s: %v", t, err)
			if ke := (*keys.Error)(nil); errors.As(err, &ke) {
				rep.Unverified = append(rep.Unverified, msg)
			} else {
				rep.Damaged = append(rep.Damaged, msg)
			}
		}
	}
}

// replayJournal replays the journal file name of tenant and returns how
// many records it re-appended.
func (db *DB) replayJournal(ctx context.Context, tenant, name string) (int, error) {
	seg, jid, ok := idsOfJournal(name)
	if !ok {
		return 0, fmt.Errorf("%w: %s is not a journal name the engine writes: not replayed", ErrSegmentTampered, name)
	}
	checkpointed, err := db.journalListed(tenant, seg, jid)
	if err != nil {
		return 0, err
	}
	path := journalPathOf(db.segPath(tenant, seg), jid)
	jd, err := db.readJournal(ctx, tenant, seg, jid)
	if jd == nil {
		switch {
		case err != nil:
			return 0, err
		case checkpointed > 0:
			return 0, fmt.Errorf("%w: journal %s is shorter than a header; the manifest's checkpoint recorded %d bytes of acknowledged records in it; the file is kept",
				ErrSegmentLoss, name, checkpointed)
		}
		_ = db.fs.Remove(path) // a header a crash cut: no record
		return 0, nil
	}
	var damage error
	switch {
	case jd.midCorrupt:
		damage = fmt.Errorf("%w: journal %s is damaged before its end (%v): its blocks before the damage were replayed; the file is kept", ErrCorrupt, name, jd.tailErr)
	case jd.validEnd < checkpointed:
		// Synced journal bytes survive a crash: these were cut.
		damage = fmt.Errorf("%w: journal %s holds %d bytes of blocks, the manifest's checkpoint recorded %d: acknowledged records were cut off; what remains was replayed and the file is kept",
			ErrSegmentLoss, name, jd.validEnd, checkpointed)
	}
	have, err := db.storedRecords(tenant, seg)
	if err != nil {
		return 0, err
	}
	todo, err := jd.unstored(have, func(id ID, kind byte) (bool, error) { return db.storedIn(tenant, id, kind) })
	if err != nil {
		return 0, err
	}
	n, err := db.reappend(ctx, tenant, todo)
	if err == nil && damage == nil && checkpointed > 0 {
		err = db.journalReplayed(ctx, tenant, seg, jid)
	}
	if err != nil || damage != nil {
		return n, errors.Join(err, damage)
	}
	if err := db.fs.Remove(path); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		db.stats.cleanupFailures.Add(1) // replayed: the next Open finds it all stored
	}
	return n, nil
}

// journalListed refuses the journal of a segment the tenant's manifest does
// not list (or is deleting): put back after retention removed its segment,
// it would bring deleted records back. It returns the size the manifest's
// checkpoint recorded of journal jid (0: it recorded another, or none).
func (db *DB) journalListed(tenant string, seg, jid [16]byte) (int64, error) {
	tm := db.manifests.get(tenant)
	switch {
	case tm == nil:
		return 0, nil // a plaintext store, or one from before manifests
	case tm.body == nil && tm.damaged != nil:
		return 0, fmt.Errorf("journal of segment %s not replayed: %w", segHex(seg), tm.damaged)
	case tm.body == nil:
		return 0, fmt.Errorf("journal of segment %s not replayed: %w", segHex(seg), tm.unverified)
	}
	e := tm.body.entry(segHex(seg))
	if e == nil || e.State == segDeleting {
		return 0, fmt.Errorf("%w: the journal of segment %s, which the tenant manifest does not list: not replayed", ErrSegmentTampered, segHex(seg))
	}
	if e.JournalID != segHex(jid) {
		return 0, nil
	}
	return e.JournalSize, nil
}

// journalReplayed records in the manifest that seg's journal was replayed
// (its checkpoint no longer expects the file), before the file goes.
func (db *DB) journalReplayed(ctx context.Context, tenant string, seg, jid [16]byte) error {
	return db.control(ctx, func() error { return db.journalReplayedLocked(tenant, seg, jid) })
}

// journalReplayedLocked is journalReplayed on the writer goroutine.
func (db *DB) journalReplayedLocked(tenant string, seg, jid [16]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error {
		if e := b.entry(segHex(seg)); e != nil && e.JournalID == segHex(jid) {
			e.JournalID, e.JournalSize = "", 0
		}
		return nil
	})
}

// missingJournals reports the journals tenant's manifest recorded a
// checkpoint of that are gone (a journal is removed only after the
// manifest stopped expecting it).
func (db *DB) missingJournals(tenant string, names []string, rep *RecoveryReport) {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return
	}
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	for _, e := range tm.body.Segments {
		if e.JournalID != "" && e.JournalSize > 0 && e.State != segDeleting && !present[e.ID+journalSep+e.JournalID+journalExt] {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", tenant, fmt.Errorf(
				"%w: the journal of segment %s is gone; the manifest's checkpoint recorded %d bytes of acknowledged records in it", ErrSegmentLoss, e.ID, e.JournalSize)))
		}
	}
}

// storedIn reports whether a block of tenant holds record id of kind.
func (db *DB) storedIn(tenant string, id ID, kind byte) (bool, error) {
	cands, faults, err := db.findBlocks(tenant, id, kind)
	if err != nil {
		return false, err
	}
	return inBlocks(cands, faults, func(c candidate) (bool, error) {
		metas, err := db.readBlockMetas(tenant, c.seg, c.sum, keepID(id))
		return len(metas) > 0, err
	})
}

// reappend appends the journal's records again, with their ids, through the
// write path, then seals the segment they went to (whatever Options.Sync
// says, they are durable before the journal goes).
func (db *DB) reappend(ctx context.Context, tenant string, blocks []journalBlockData) (int, error) {
	byID := map[ID]*prepared{}
	var order []*prepared
	for _, b := range blocks {
		for i, m := range b.metas {
			p := byID[m.ID]
			if p == nil {
				p = &prepared{m: Meta{ID: m.ID, Time: m.Time}}
				byID[m.ID] = p
				order = append(order, p)
			}
			if b.kind == kindPayload {
				p.pmeta, p.psealed = b.meta[i], b.data[i]
			} else {
				p.m, p.meta, p.sealed = *m, b.meta[i], b.data[i]
			}
		}
	}
	for start := 0; start < len(order); start += replayBatch {
		req := &appendReq{tenant: tenant, done: make(chan error, 1)}
		for _, p := range order[start:min(start+replayBatch, len(order))] {
			req.recs = append(req.recs, *p)
		}
		if err := db.enqueue(ctx, req); err != nil {
			return start, err
		}
		if err := <-req.done; err != nil {
			return start, err
		}
	}
	if len(order) == 0 {
		return 0, nil
	}
	// The seal flushes them into full blocks and fsyncs them.
	err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; ts != nil {
			return db.sealActive(ts)
		}
		return nil
	})
	return len(order), err
}

// storedRecords are the records the blocks of tenant's segment seg hold, by
// the catalog.
func (db *DB) storedRecords(tenant string, seg [16]byte) (recordSet, error) {
	segs, _, err := db.catalog.snapshot(tenant)
	if err != nil {
		return recordSet{}, err
	}
	for _, sv := range segs {
		if sv.id == seg {
			blocks, _, err := sv.summaries()
			if err != nil {
				return recordSet{}, err
			}
			return db.idsOfBlocks(tenant, seg, blocks)
		}
	}
	return recordSet{}, nil
}
