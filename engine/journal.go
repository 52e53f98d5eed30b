package engine

// The journal: full blocks whatever the callers do. Appends too small to
// fill a block are written to the active segment's journal (HEXID.lsj, a
// file in the segment format under the segment's own DEK, docs/format/
// journal.md) and acknowledged from there, under the same durability as a
// segment block (SyncAlways: after its fsync). Their records wait in memory
// (tenantState.pend) until a block's worth has gathered; then they are
// written to the segment as one full block (a flush), and the journal's
// copy is obsolete. The seal flushes what is left and removes the journal.
//
// Between its journal write and its flush, a record is served from memory:
// each journal block is a catalog entry (blockSummary.mem) that scans and
// Gets read like a block, and a flush swaps those entries for the new
// block's in one catalog change. A read-only process reads the journal file
// (readonly.go), and a writer's Open re-appends what a crash left in one
// (journalreplay.go). A record's id tells whether a copy exists elsewhere.
//
// On disk (docs/format/journal.md), a journal is a segment file that is
// never sealed:
//
//	segments/TENANT/SEGID-JOURNALID.lsj
//	+---------------------------------------------------------------+
//	| preamble: id JOURNALID, the tenant              (segment v3)  |
//	| key slot 0: the segment's key URI and wrapped DEK             |
//	| key slot 1: empty                                             |
//	| block 0: one group's records of one kind, s2, AES-256-GCM     |
//	|   under HKDF(segment DEK, salt JOURNALID): never a nonce of   |
//	|   the segment's                                               |
//	| block 1 ...                                   (no footer)     |
//	+---------------------------------------------------------------+
//
// The DEK unwraps only under the segment's encryption context, so a journal
// beside another segment or tenant does not decrypt. The manifest's entry of
// the segment checkpoints (journal_id, journal_size), so a cut or removed
// journal is reported.

import (
	"context"
	"runtime"
	"sync"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// memBlock is a journal block's records as a decrypted block has them: the
// encoded metadata and sealed bytes of each. Nothing mutates them.
type memBlock struct {
	meta, data [][]byte
	// keyURI, wrapped and ec name the segment's DEK: a Get of a record held
	// here asks the DEK cache for it, as a read of the block on disk
	// would, so revocation applies alike. keyURI is empty in a plaintext
	// store.
	keyURI  string
	wrapped []byte
	ec      keys.EncryptionContext
}

// memDrop names the journal blocks of one kind a flush covered.
type memDrop struct {
	journal [16]byte
	kind    byte
}

func (d *memDrop) covers(s *blockSummary) bool {
	return s.mem != nil && s.seg == d.journal && s.kind == d.kind
}

// pending are the records of one kind in the active segment's journal that
// no block of the segment holds yet, in journal order.
type pending struct {
	entries []segment.Entry
	metas   []*Meta
	bytes   int // sum of entrySize
	// journals are the ids of the journals whose catalog entries serve
	// these records: the active one, and one a failed segment left behind
	// (abandonTo carries its records over to the next segment).
	journals [][16]byte
}

func entrySize(e segment.Entry) int { return len(e.Data) + len(e.Meta) }

// journalCodec compresses journal blocks: they are small and short-lived,
// so the fast codec, unless the store compresses nothing.
func (db *DB) journalCodec() segment.Codec {
	if db.codec == segment.CodecNone {
		return segment.CodecNone
	}
	return segment.CodecS2
}

// ensureJournal opens ts's journal beside its active segment on first use:
// a new file id (so its block keys differ from the segment's) under the
// segment's DEK, wrapped as in the segment's key slot.
func (db *DB) ensureJournal(ts *tenantState) error {
	if ts.j != nil {
		return nil
	}
	h := ts.w.Header()
	jid, err := segment.NewID()
	if err != nil {
		return err
	}
	p := segment.Params{ID: jid, Tenant: ts.name, Codec: db.journalCodec(), FS: db.fs, Created: db.opts.Now(), Cipher: h.Cipher}
	if h.Cipher != segment.CipherNone {
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		dek, err := db.cache.Unwrap(ctx, ts.keyURI, ts.wrapped, ts.ec)
		cancel()
		if err != nil {
			return err
		}
		defer keys.Zero(dek)
		p.KeyURI, p.Wrapped, p.DEK = ts.keyURI, ts.wrapped, dek
	}
	j, err := segment.Create(journalPathOf(ts.w.Path(), jid), p)
	if err != nil {
		return err
	}
	ts.j = j
	return nil
}

// journalBlock writes one group's records of one kind to ts's journal and
// stages the catalog entry that serves them until a flush.
func (db *DB) journalBlock(ts *tenantState, kind byte, entries []segment.Entry, metas []*Meta, kvs []kv) ([]kv, error) {
	if err := db.ensureJournal(ts); err != nil {
		return kvs, err
	}
	info, err := ts.j.AppendCodec(entries, db.journalCodec())
	if err != nil {
		return kvs, err
	}
	db.stats.journalBlocks.Add(1)
	mb := &memBlock{meta: make([][]byte, len(entries)), data: make([][]byte, len(entries)), keyURI: ts.keyURI, wrapped: ts.wrapped, ec: ts.ec}
	for i, e := range entries {
		mb.meta[i], mb.data[i] = e.Meta, e.Data
	}
	sum := summarizeMem(ts.j.Header().ID, info.Seq, info.Offset, kind, metas, mb)
	pd := &ts.pend[kind]
	if n := len(pd.journals); n == 0 || pd.journals[n-1] != sum.seg {
		pd.journals = append(pd.journals, sum.seg)
	}
	pd.entries = append(pd.entries, entries...)
	pd.metas = append(pd.metas, metas...)
	for _, e := range entries {
		pd.bytes += entrySize(e)
	}
	return append(kvs, kv{tenant: ts.name, sum: sum}), nil
}

// flushPending writes ts's pending records of kind, then entries, to the
// active segment as full blocks, and stages the drop of the journal blocks
// they came from.
func (db *DB) flushPending(ts *tenantState, kind byte, entries []segment.Entry, metas []*Meta, kvs []kv) ([]kv, error) {
	pd := &ts.pend[kind]
	hadPending := len(pd.entries) > 0
	all, allMetas := entries, metas
	if hadPending {
		all = append(append([]segment.Entry(nil), pd.entries...), entries...)
		allMetas = append(append([]*Meta(nil), pd.metas...), metas...)
	}
	kvs, err := db.writeBlocks(ts, kind, all, allMetas, kvs)
	if err != nil {
		return kvs, err
	}
	if hadPending {
		db.stats.journalFlushes.Add(1)
	}
	for _, j := range pd.journals {
		kvs = append(kvs, kv{tenant: ts.name, drop: &memDrop{journal: j, kind: kind}})
	}
	*pd = pending{}
	return kvs, nil
}

// writeBlocks writes entries to ts's active segment in blocks of about
// Options.BlockSize each: n = round(total/BlockSize) blocks of equal size,
// so no block is left a small tail (every block holds about 2/3 of the
// target or more, a lone short batch excepted). The blocks are compressed
// and sealed in parallel, and summarized in parallel.
func (db *DB) writeBlocks(ts *tenantState, kind byte, entries []segment.Entry, metas []*Meta, kvs []kv) ([]kv, error) {
	total := 0
	for _, e := range entries {
		total += entrySize(e)
	}
	n := max(1, (total+db.opts.BlockSize/2)/db.opts.BlockSize)
	var blocks [][]segment.Entry
	var blockMetas [][]*Meta
	start, acc, k := 0, 0, 1
	for i, e := range entries {
		// Cut after entry i once the running size reaches k/n of the total.
		if acc += entrySize(e); i < len(entries)-1 && acc*n < total*k {
			continue
		}
		blocks, blockMetas = append(blocks, entries[start:i+1]), append(blockMetas, metas[start:i+1])
		start, k = i+1, k+1
	}
	infos, err := ts.w.AppendBlocks(blocks, db.codec)
	sums := make([]*blockSummary, len(infos))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, info := range infos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			raw := make([][]byte, len(blocks[i]))
			for j := range blocks[i] {
				raw[j] = blocks[i][j].Meta
			}
			sums[i] = summarize(ts.w.Header().ID, info.Seq, info.Offset, kind, blockMetas[i], raw)
		}()
	}
	wg.Wait()
	st := ts.info
	for i, sum := range sums {
		db.stats.blocksWritten.Add(1)
		ts.groups.add(sum)
		ts.sums = append(ts.sums, sum)
		st.RawBytes += int64(infos[i].RawLen)
		st.Blocks++
		kvs = stageBlock(kvs, ts.name, sum, blockMetas[i], st)
	}
	return kvs, err
}

// flushAll writes every pending record to the active segment, whatever the
// blocks' size (the seal).
func (db *DB) flushAll(ts *tenantState, kvs []kv) ([]kv, error) {
	for _, kind := range []byte{kindPayload, kindLog} {
		if len(ts.pend[kind].entries) == 0 {
			continue
		}
		var err error
		if kvs, err = db.flushPending(ts, kind, nil, nil, kvs); err != nil {
			return kvs, err
		}
	}
	return kvs, nil
}

// closeJournal closes ts's journal and, when remove is set (its records are
// all in the sealed segment), deletes it. A journal that cannot be removed
// is counted: the next Open finds every record of it in the segment.
func (db *DB) closeJournal(ts *tenantState, remove bool) {
	if ts.j == nil {
		return
	}
	path := ts.j.Path()
	_ = ts.j.Close()
	ts.j, ts.jdirty = nil, false
	if remove {
		if err := db.fs.Remove(path); err != nil {
			db.stats.cleanupFailures.Add(1)
		}
	}
}

// journalRetireBytes is the size past which a journal whose records are all
// in blocks is retired, so a journal stays small (what a read-only refresh
// decrypts and a crash leaves to replay) whatever the segment's size.
func (db *DB) journalRetireBytes() int64 { return 16 * int64(db.opts.BlockSize) }

// maybeRetireJournal retires ts's journal once it has grown past
// journalRetireBytes and every record it holds is in a block. Past twice
// that with records still pending (one kind's appends too rare to fill a
// block), they are flushed first, in a shorter block.
func (db *DB) maybeRetireJournal(ts *tenantState, kvs []kv) ([]kv, error) {
	if ts.j == nil || ts.j.Size() < db.journalRetireBytes() {
		return kvs, nil
	}
	if ts.pending() {
		if ts.j.Size() < 2*db.journalRetireBytes() {
			return kvs, nil
		}
		var err error
		if kvs, err = db.flushAll(ts, kvs); err != nil {
			return kvs, err
		}
		if kvs, err = db.stageState(ts, kvs); err != nil {
			return kvs, err
		}
	}
	return kvs, db.retireJournal(ts)
}

// pending reports whether ts holds journaled records that no block does.
func (ts *tenantState) pending() bool {
	return len(ts.pend[kindLog].entries)+len(ts.pend[kindPayload].entries) > 0
}

// retireIfDue retires ts's journal after a group was written and synced
// (maybeRetireJournal). A failure there cuts back only what the retirement
// wrote: the group is stored and its callers acknowledged.
func (db *DB) retireIfDue(ts *tenantState, job *indexJob) {
	m := ts.mark()
	n := len(job.kvs)
	kvs, err := db.maybeRetireJournal(ts, job.kvs)
	if err != nil {
		job.kvs = job.kvs[:n]
		db.abandonTo(ts, m)
		return
	}
	job.kvs = kvs
}

// cutJournal takes back from the journal at path what a failed group
// wrote after m, so a record whose Append failed is not replayed later
// (nor served by a read-only DB): cut to m's size, or removed if the group
// created it. A journal that cannot be cut is counted
// (Stats.CleanupFailures); its extra records may come back.
func (db *DB) cutJournal(path string, m writeMark) {
	if path != m.journalPath {
		if err := db.fs.Remove(path); err != nil {
			db.stats.cleanupFailures.Add(1)
		}
		return
	}
	f, err := db.fs.OpenReadWrite(path)
	if err != nil {
		db.stats.cleanupFailures.Add(1)
		return
	}
	defer f.Close()
	if size, err := f.Size(); err == nil && size <= m.journalSize {
		return
	}
	if f.Truncate(m.journalSize) != nil || f.Sync() != nil {
		db.stats.cleanupFailures.Add(1)
	}
}

// retireJournal closes ts's journal, all of whose records are in blocks,
// and removes it: the blocks are fsynced first, and the manifest stops
// expecting the journal before it goes. A journal the manifest still
// expects is kept (counted as a checkpoint failure); the next Open finds
// its records stored and removes it.
func (db *DB) retireJournal(ts *tenantState) error {
	if err := ts.w.Sync(); err != nil {
		return err
	}
	ts.dirty = false
	path := ts.j.Path()
	_ = ts.j.Close() // its records are durable in the segment
	ts.j, ts.jdirty = nil, false
	db.stats.journalsRetired.Add(1)
	if err := db.checkpointNow(ts); err != nil {
		db.stats.checkpointFailures.Add(1)
		return nil
	}
	if err := db.fs.Remove(path); err != nil {
		db.stats.cleanupFailures.Add(1)
	}
	return nil
}
