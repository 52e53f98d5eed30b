package engine

// The write path, stage 5: index entries. stageIndex derives a record's
// entries from its metadata; live writes hand them to the indexer goroutine
// (indexLoop), which commits them in order and then acknowledges the appends;
// replay (indexBlocks) derives the same entries from blocks on disk.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// kv is one staged index entry.
type kv struct{ k, v []byte }

// indexJob is a batch for the indexer goroutine, which commits batches in
// order and then acknowledges their appends; a job with only done set is a
// barrier.
type indexJob struct {
	kvs  []kv
	acks []*appendReq
	done chan struct{}
}

// indexLoop is the indexer goroutine: it commits index jobs in the order
// the writer queued them, then acknowledges their appends.
func (db *DB) indexLoop() {
	defer close(db.indexDone)
	// stale holds the state keys of segments with a refused job: their
	// state is never committed again by this process, so the persisted
	// state stays behind the refused blocks and the next Open replays them.
	stale := map[string]bool{}
	for job := range db.indexQ {
		if len(stale) > 0 {
			job.kvs = slices.DeleteFunc(job.kvs, func(e kv) bool { return e.k[0] == keySegment && stale[string(e.k)] })
		}
		if len(job.kvs) > 0 {
			err := db.commitStaged(job.kvs)
			if err != nil {
				for _, e := range job.kvs {
					if e.k[0] == keySegment {
						stale[string(e.k)] = true
					}
				}
			}
			db.acknowledge(job.acks, err)
		}
		if job.done != nil {
			close(job.done)
		}
	}
}

// commitStaged commits one job's entries. If the index learned it cannot
// flush after the writer checked, the job's blocks are already in their
// segments: they are committed while the memtables have room (the next Open
// replays them if they are never flushed); otherwise a commit could stall
// until space returns, so the appends fail and the next Open indexes their
// blocks. Sorted keys make Pebble's memtable inserts cheap (each insert
// starts from the previous one's position).
func (db *DB) commitStaged(kvs []kv) error {
	if err := db.index.writable(); err != nil && !errors.Is(err, ErrDiskFull) {
		return err
	}
	slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	b := db.index.newBatch()
	defer b.close()
	var err error
	for _, e := range kvs {
		if err = b.set(e.k, e.v); err != nil {
			break
		}
	}
	if err == nil {
		err = db.index.commitDerived(b)
	}
	if err = db.index.typed(err); err != nil && !isIndexSentinel(err) {
		err = fmt.Errorf("logstore/engine: index write failed: %w", err)
	}
	return err
}

// isIndexSentinel reports whether err already says what is wrong with the
// index as a whole.
func isIndexSentinel(err error) bool {
	return errors.Is(err, ErrDiskFull) || errors.Is(err, ErrIndexCorrupt) || errors.Is(err, ErrIndexFailed)
}

// acknowledge answers the appends of a committed (err nil) or refused job.
func (db *DB) acknowledge(acks []*appendReq, err error) {
	for _, r := range acks {
		if err == nil {
			for i := range r.recs {
				db.stats.appendedBytes.Add(uint64(len(r.recs[i].sealed) + len(r.recs[i].psealed)))
			}
			db.stats.appendedRecords.Add(uint64(len(r.recs)))
		}
		r.done <- err
	}
}

// indexBarrier waits until every index job queued so far is committed.
func (db *DB) indexBarrier() {
	done := make(chan struct{})
	db.indexQ <- &indexJob{done: done}
	<-done
}

// stageIndex appends one record's index entries to kvs.
func stageIndex(kvs []kv, tenant string, m *Meta, raw []byte, loc locator, payload bool, st *SegmentInfo) []kv {
	if payload {
		st.Payloads++
		return append(kvs, kv{payloadKey(tenant, m.ID), appendLocator(nil, loc)})
	}
	st.Records++
	st.observe(m.Time)
	// One allocation holds the value and every key of this record.
	arena := make([]byte, 0, locatorLen+len(raw)+10*(len(tenant)+64)+len(m.SessionID)+len(m.TraceID)+len(m.RouteID)+len(m.ServiceID)+len(m.Host)+len(m.Method))
	arena = appendLocator(arena, loc)
	arena = append(arena, raw...)
	val := arena[:len(arena):len(arena)]
	start := len(arena)
	arena = append(appendEscaped(append(arena, keyRecord), tenant), m.ID[:]...)
	kvs = append(kvs, kv{arena[start:len(arena):len(arena)], val})
	appendIndexKeys(arena[len(arena):], tenant, m, func(k []byte) { kvs = append(kvs, kv{k, nil}) })
	return kvs
}

// indexBlocks indexes blocks [from, n) of r into the index, updating st and
// storing it in the same batch, so the index never claims a block it lacks.
func (db *DB) indexBlocks(r *segment.Reader, st *SegmentInfo, from int) (int, error) {
	h := r.Header()
	st.Sealed = r.Sealed()
	st.KeyURI, st.KeyGen, st.Created, st.Size = h.Slot.KeyURI, h.Slot.Generation, h.Created, r.Size()
	b := db.index.newBatch()
	defer b.close()
	replayed := 0
	blocks := r.Blocks()
	for i := from; i < len(blocks); i++ {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return replayed, err
		}
		for j, raw := range blk.Meta {
			loc := locator{Segment: h.ID, Offset: blk.Info.Offset, Seq: blk.Info.Seq, Index: j}
			if err := indexOne(b, h.Tenant, raw, loc, st); err != nil {
				return replayed, fmt.Errorf("%s block %d record %d: %w", r.Path(), i, j, err)
			}
		}
		st.RawBytes += int64(blk.Info.RawLen)
		st.Blocks = i + 1
		replayed++
		if b.size() > 4<<20 {
			if err := db.commitState(b, st); err != nil {
				return replayed, err
			}
			b.reset()
		}
	}
	return replayed, db.commitState(b, st)
}

// commitState commits b with st, the segment state that claims its blocks.
// On a full disk a replay commit could wait inside Pebble until space
// returns: commitDerived refuses it instead (the blocks are replayed on a
// later Open).
func (db *DB) commitState(b *indexBatch, st *SegmentInfo) error {
	if err := putState(b, st); err != nil {
		return err
	}
	return db.index.commitDerived(b)
}

// indexOne adds the index entries of one record's metadata to b, built as
// the writer builds them (stageIndex), so replay and live writes agree.
func indexOne(b *indexBatch, tenant string, raw []byte, loc locator, st *SegmentInfo) error {
	var m Meta
	kind, err := decodeMeta(raw, &m)
	if err != nil {
		return err
	}
	for _, e := range stageIndex(nil, tenant, &m, raw, loc, kind == kindPayload, st) {
		if err := b.set(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// unindexSegment adds to b the deletion of the index entries of every
// record in the segment at path (none when the file is gone).
func (db *DB) unindexSegment(b *indexBatch, tenant, path string) error {
	r, err := segment.Open(path, db.readOpts(tenant))
	if errors.Is(err, vfs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	for i := range r.Blocks() {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return err
		}
		for _, raw := range blk.Meta {
			if err := unindexOne(b, tenant, raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// unindexOne adds to b the deletion of the entries stageIndex made for one
// record's metadata.
func unindexOne(b *indexBatch, tenant string, raw []byte) error {
	var m Meta
	kind, err := decodeMeta(raw, &m)
	if err != nil {
		return err
	}
	if kind == kindPayload {
		return b.delete(payloadKey(tenant, m.ID))
	}
	err = b.delete(recordKey(tenant, m.ID))
	indexEntries(tenant, &m, func(k []byte) { err = errors.Join(err, b.delete(k)) })
	return err
}
