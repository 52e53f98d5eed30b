package engine

// The write path, stage 4: packing a group's records into blocks of the
// active segment, or into its journal when they are too few to fill one
// (journal.go).

import "github.com/logstore/logstore/segment"

// groupWrites says which of a tenant's files a group wrote, so SyncAlways
// fsyncs just those before the acknowledgement.
type groupWrites struct {
	segment, journal bool
}

// packBlocks writes the group's records of one tenant, per kind (payloads
// first, then request logs): when they and the kind's pending records make
// a block's worth, all of them go to the active segment as full blocks;
// otherwise the group's records go to the journal and wait. It stages the
// index entries, catalog changes and segment state in kvs. ts has an
// active segment (ensureSegment).
func (db *DB) packBlocks(ts *tenantState, reqs []*appendReq, kvs []kv) ([]kv, groupWrites, error) {
	var w groupWrites
	for _, kind := range []byte{kindPayload, kindLog} {
		entries, metas, size := groupEntries(reqs, kind)
		if len(entries) == 0 {
			continue
		}
		var err error
		if db.opts.NoJournal || ts.pend[kind].bytes+size >= db.opts.BlockSize {
			kvs, err = db.flushPending(ts, kind, entries, metas, kvs)
			w.segment = true
		} else {
			kvs, err = db.journalBlock(ts, kind, entries, metas, kvs)
			w.journal = true
		}
		if err != nil {
			return kvs, w, err
		}
	}
	ts.dirty = ts.dirty || w.segment
	ts.jdirty = ts.jdirty || w.journal
	if !w.segment && ts.stateStaged {
		return kvs, w, nil // the segment's state did not change
	}
	kvs, err := db.stageState(ts, kvs)
	return kvs, w, err
}

// stageState stages ts's segment state (its blocks, records and size).
func (db *DB) stageState(ts *tenantState, kvs []kv) ([]kv, error) {
	st := ts.info
	st.Size = ts.w.Size()
	k, v, err := stateKV(st)
	if err != nil {
		return kvs, err
	}
	ts.stateStaged = true
	return append(kvs, kv{k: k, v: v}), nil
}

// groupEntries lists the group's records of one kind as segment entries,
// with their metadata and total size.
func groupEntries(reqs []*appendReq, kind byte) ([]segment.Entry, []*Meta, int) {
	var entries []segment.Entry
	var metas []*Meta
	size := 0
	for _, r := range reqs {
		for i := range r.recs {
			p := &r.recs[i]
			e := segment.Entry{Time: p.m.Time.UnixNano(), Meta: p.meta, Data: p.sealed}
			if kind == kindPayload {
				e.Meta, e.Data = p.pmeta, p.psealed
			}
			if e.Meta == nil {
				continue // no payload; or a replayed payload whose log is stored
			}
			entries = append(entries, e)
			metas = append(metas, &p.m)
			size += entrySize(e)
		}
	}
	return entries, metas, size
}
