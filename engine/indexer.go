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
)

// kv is one staged index entry; a block summary's entry also carries the
// decoded summary, which the catalog gets once the entry is committed. An
// entry without a key changes only the catalog: a journal block's summary
// (sum.mem set), or the journal blocks a flush covered (drop).
type kv struct {
	k, v   []byte
	tenant string
	sum    *blockSummary
	drop   *memDrop
}

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
			job.kvs = slices.DeleteFunc(job.kvs, func(e kv) bool { return len(e.k) > 0 && e.k[0] == keySegment && stale[string(e.k)] })
		}
		if len(job.kvs) > 0 {
			err := db.catalog.commitAndApply(job.kvs, func() error { return db.commitStaged(job.kvs) })
			if err != nil {
				for _, e := range job.kvs {
					if len(e.k) > 0 && e.k[0] == keySegment {
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
func (db *DB) commitStaged(staged []kv) error {
	kvs := make([]kv, 0, len(staged)) // staged keeps its order for the catalog
	for _, e := range staged {
		if len(e.k) > 0 {
			kvs = append(kvs, e)
		}
	}
	if len(kvs) == 0 {
		return nil
	}
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
			db.stats.redactedValues.Add(uint64(r.redacted))
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

// stageBlock appends the index entry of one block (its summary) to kvs and
// counts its records in st. metas are the block's records in order.
func stageBlock(kvs []kv, tenant string, sum *blockSummary, metas []*Meta, st *SegmentInfo) []kv {
	if sum.kind == kindPayload {
		st.Payloads += len(metas)
	} else {
		st.Records += len(metas)
		for _, m := range metas {
			st.observe(m.Time)
		}
	}
	return append(kvs, kv{k: blockKey(tenant, sum.seg, sum.seq), v: appendSummary(nil, sum), tenant: tenant, sum: sum})
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
	var groups groupBuilder
	if err := groups.seed(r, from); err != nil {
		return 0, err
	}
	for i := from; i < len(blocks); i++ {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return replayed, err
		}
		if err := indexBlock(b, h.Tenant, h.ID, blk, st, &groups); err != nil {
			return replayed, fmt.Errorf("%s block %d: %w", r.Path(), i, err)
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
	defer db.catalog.reset()
	return db.index.commitDerived(b)
}

// indexBlock adds the summary of one block read from disk to b, built as
// the writer builds it (stageBlock), so replay and live writes agree.
func indexBlock(b *indexBatch, tenant string, seg [16]byte, blk *segment.Block, st *SegmentInfo, groups *groupBuilder) error {
	metas, kind, err := decodeBlockMetas(blk.Meta)
	if err != nil {
		return err
	}
	sum := summarize(seg, blk.Info.Seq, blk.Info.Offset, kind, metas, blk.Meta)
	groups.add(sum)
	for _, e := range stageBlock(nil, tenant, sum, metas, st) {
		if err := b.set(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// decodeBlockMetas decodes a block's metadata section: every entry of one
// kind.
func decodeBlockMetas(raw [][]byte) ([]*Meta, byte, error) {
	metas := make([]*Meta, len(raw))
	var kind byte
	for j, r := range raw {
		m := &Meta{}
		k, err := decodeMeta(r, m)
		if err != nil {
			return nil, 0, fmt.Errorf("record %d: %w", j, err)
		}
		if j > 0 && k != kind {
			return nil, 0, fmt.Errorf("%w: record %d is of kind %d in a block of kind %d", ErrCorrupt, j, k, kind)
		}
		kind, metas[j] = k, m
	}
	if len(raw) == 0 {
		return nil, 0, fmt.Errorf("%w: empty block", ErrCorrupt)
	}
	return metas, kind, nil
}

// unindexSegment adds to b the deletion of the summaries of every block of
// segment seg.
func (db *DB) unindexSegment(b *indexBatch, tenant string, seg [16]byte) error {
	p := segmentBlocksPrefix(tenant, seg)
	return b.deleteRange(p, prefixEnd(p))
}
