package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// keyCallTimeout bounds a key-provider call made by the writer goroutine.
const keyCallTimeout = 30 * time.Second

// prepared is a record encoded by its caller's goroutine, so encoding runs in
// parallel and the writer only compresses, seals and writes.
type prepared struct {
	m       Meta
	meta    []byte
	sealed  []byte
	pmeta   []byte // nil without payload
	psealed []byte
}

type appendReq struct {
	tenant string
	recs   []prepared
	done   chan error
}

// tenantState is the writer goroutine's view of one tenant.
type tenantState struct {
	name    string
	w       *segment.Writer
	info    *SegmentInfo
	keyURI  string
	wrapped []byte
	ec      keys.EncryptionContext
	opened  time.Time
	dirty   bool // written since the last fsync
	// checkpointed is when the manifest last recorded the active segment's
	// synced size (checkpoint).
	checkpointed time.Time
}

// Append stores records for tenant and returns their ids (assigned when a
// record has none). Concurrent callers are coalesced into one group commit.
// Every record is validated before anything is written: one bad record fails
// the whole call and writes nothing. With SyncAlways (the default) the
// records are on stable storage when Append returns nil.
//
// If ctx ends while the group commit is in flight, Append returns ctx.Err()
// and the records may or may not have been stored.
func (db *DB) Append(ctx context.Context, tenant string, recs []Record) ([]ID, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, nil
	}
	req := &appendReq{tenant: tenant, recs: make([]prepared, len(recs)), done: make(chan error, 1)}
	ids := make([]ID, len(recs))
	for i := range recs {
		if err := db.prepare(&recs[i], &req.recs[i]); err != nil {
			return nil, fmt.Errorf("record %d of %d: %w", i, len(recs), err)
		}
		ids[i] = req.recs[i].m.ID
	}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case db.reqs <- req:
	case <-ctx.Done():
		db.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	db.closeMu.RUnlock()
	select {
	case err := <-req.done:
		if err != nil {
			return nil, err
		}
		return ids, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (db *DB) prepare(r *Record, p *prepared) error {
	if err := r.validate(db.opts.Limits); err != nil {
		return err
	}
	p.m = r.meta()
	p.m.Time = r.Time.UTC()
	if p.m.ID.IsZero() {
		id, err := db.ids.next(r.Time)
		if err != nil {
			return err
		}
		p.m.ID = id
	}
	p.meta = appendMeta(make([]byte, 0, 128), &p.m, kindLog)
	p.sealed = appendSealedLog(make([]byte, 0, estimateSealed(r)), r)
	size := len(p.meta) + len(p.sealed)
	if r.Payload != nil {
		pm := Meta{ID: p.m.ID, Time: p.m.Time}
		p.pmeta = appendMeta(nil, &pm, kindPayload)
		p.psealed = appendSealedPayload(nil, r.Payload)
		size += len(p.pmeta) + len(p.psealed)
	}
	if size > db.opts.Limits.MaxRecordBytes {
		return fmt.Errorf("%w: record %s is %d bytes encoded, over MaxRecordBytes %d", ErrRecordTooLarge, p.m.ID, size, db.opts.Limits.MaxRecordBytes)
	}
	return nil
}

// writeLoop is the single writer: it owns every active segment and turns
// queued requests into group commits.
func (db *DB) writeLoop() {
	defer db.wg.Done()
	var tick <-chan time.Time
	if db.opts.Sync.kind == 1 {
		t := time.NewTicker(db.opts.Sync.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case r := <-db.reqs:
			db.commitGroup(db.drain(r))
		case f := <-db.ctl:
			db.indexBarrier() // control functions see every queued group's state
			f()
		case <-tick:
			db.syncDirty()
		case <-db.quit:
			for {
				select {
				case r := <-db.reqs:
					db.commitGroup(db.drain(r))
				default:
					db.syncDirty()
					db.sealAll()
					close(db.indexQ)
					<-db.indexDone
					return
				}
			}
		}
	}
}

// drain collects the requests already queued behind first.
func (db *DB) drain(first *appendReq) []*appendReq {
	group := []*appendReq{first}
	n := len(first.recs)
	for n < 16384 {
		select {
		case r := <-db.reqs:
			group = append(group, r)
			n += len(r.recs)
		default:
			return group
		}
	}
	return group
}

func (db *DB) tenant(name string) (*tenantState, error) {
	if err := db.ensureManifest(name); err != nil {
		return nil, err
	}
	ts := db.tenants[name]
	if ts == nil {
		ts = &tenantState{name: name}
		db.tenants[name] = ts
	}
	return ts, nil
}

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

// commitGroup writes one group: per tenant, blocks to the active segment,
// then (SyncAlways) fsync; then the group's index entries go to the indexer
// goroutine, which commits them and acknowledges the callers. The writer
// meanwhile compresses and seals the next group. The index is written after
// the blocks; a crash in between is repaired by replay on Open.
func (db *DB) commitGroup(group []*appendReq) {
	db.stats.groupCommits.Add(1)
	var order []string
	byTenant := map[string][]*appendReq{}
	for _, r := range group {
		if _, ok := byTenant[r.tenant]; !ok {
			order = append(order, r.tenant)
		}
		byTenant[r.tenant] = append(byTenant[r.tenant], r)
	}
	job := &indexJob{}
	fail := func(reqs []*appendReq, err error) {
		if isNoSpace(err) && !errors.Is(err, ErrDiskFull) {
			err = fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
		for _, r := range reqs {
			r.done <- err
		}
	}
	// An index that cannot write fails the group before anything is
	// written (Pebble would otherwise stall the commit until space returns).
	if err := db.indexWritable(); err != nil {
		fail(group, err)
		return
	}
	for _, name := range order {
		reqs := byTenant[name]
		ts, err := db.tenant(name)
		if err != nil {
			fail(reqs, err)
			continue
		}
		n := len(job.kvs)
		job.kvs, err = db.writeTenant(ts, reqs, job.kvs)
		if err == nil && db.opts.Sync.kind == 0 {
			if err = ts.w.Sync(); err != nil {
				db.abandon(ts)
			} else {
				ts.dirty = false
				db.checkpoint(ts)
			}
		}
		if err != nil {
			job.kvs = job.kvs[:n]
			fail(reqs, err)
			continue
		}
		job.acks = append(job.acks, reqs...)
	}
	if len(job.acks) > 0 {
		db.indexQ <- job
	}
}

// indexLoop commits index jobs in order. Sorted keys make Pebble's memtable
// inserts cheap (each insert starts from the previous one's position).
func (db *DB) indexLoop() {
	defer close(db.indexDone)
	// stale holds the state keys of segments with a refused job: their
	// state is never committed again by this process, so the persisted
	// state stays behind the refused blocks and the next Open replays them.
	var stale map[string]bool
	for job := range db.indexQ {
		if len(stale) > 0 {
			job.kvs = slices.DeleteFunc(job.kvs, func(e kv) bool { return e.k[0] == keySegment && stale[string(e.k)] })
		}
		if len(job.kvs) > 0 {
			// If the index learned it cannot flush after the writer checked,
			// the job's blocks are already in their segments: commit them
			// while the memtables have room (the next Open replays them if
			// they are never flushed); otherwise a commit could stall until
			// space returns, so the appends fail and the next Open indexes
			// their blocks.
			err := db.indexWritable()
			if err == nil || errors.Is(err, ErrDiskFull) {
				slices.SortFunc(job.kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
				b := db.idx.NewBatch()
				var serr error
				for _, e := range job.kvs {
					if serr = b.Set(e.k, e.v, nil); serr != nil {
						break
					}
				}
				switch {
				case serr != nil:
					err = serr
				case err == nil || db.indexRoom(b.Len()):
					err = guardIndex(func() error { return b.Commit(pebble.NoSync) })
				}
				_ = b.Close()
				if err != nil {
					err = db.indexErr(err)
					if !errors.Is(err, ErrDiskFull) && !errors.Is(err, ErrIndexCorrupt) && !errors.Is(err, ErrIndexFailed) {
						err = fmt.Errorf("logstore/engine: index write failed: %w", err)
					}
				}
			}
			if err != nil {
				if stale == nil {
					stale = map[string]bool{}
				}
				for _, e := range job.kvs {
					if e.k[0] == keySegment {
						stale[string(e.k)] = true
					}
				}
			}
			for _, r := range job.acks {
				if err == nil {
					for i := range r.recs {
						db.stats.appendedBytes.Add(uint64(len(r.recs[i].sealed) + len(r.recs[i].psealed)))
					}
					db.stats.appendedRecords.Add(uint64(len(r.recs)))
				}
				r.done <- err
			}
		}
		if job.done != nil {
			close(job.done)
		}
	}
}

// indexBarrier waits until every index job queued so far is committed.
func (db *DB) indexBarrier() {
	done := make(chan struct{})
	db.indexQ <- &indexJob{done: done}
	<-done
}

// writeTenant appends the group's payload blocks, then its request-log
// blocks, and stages their index entries and the segment state in kvs.
func (db *DB) writeTenant(ts *tenantState, reqs []*appendReq, kvs []kv) ([]kv, error) {
	if err := db.ensureSegment(ts); err != nil {
		return kvs, err
	}
	st := ts.info
	var entries []segment.Entry
	var metas []*Meta
	size := 0
	flush := func(payload bool) error {
		if len(entries) == 0 {
			return nil
		}
		info, err := ts.w.AppendCodec(entries, db.codec)
		if err != nil {
			db.abandon(ts)
			return err
		}
		db.stats.blocksWritten.Add(1)
		for j := range entries {
			loc := Locator{Segment: ts.w.Header().ID, Offset: info.Offset, Seq: info.Seq, Index: j}
			kvs = stageIndex(kvs, ts.name, metas[j], entries[j].Meta, loc, payload, st)
		}
		st.RawBytes += int64(info.RawLen)
		st.Blocks++
		entries, metas, size = entries[:0], metas[:0], 0
		return nil
	}
	for pass := 0; pass < 2; pass++ {
		payload := pass == 0
		for _, r := range reqs {
			for i := range r.recs {
				p := &r.recs[i]
				e := segment.Entry{Time: p.m.Time.UnixNano(), Meta: p.meta, Data: p.sealed}
				if payload {
					if p.pmeta == nil {
						continue
					}
					e.Meta, e.Data = p.pmeta, p.psealed
				}
				if size > 0 && size+len(e.Data) > db.opts.BlockSize {
					if err := flush(payload); err != nil {
						return kvs, err
					}
				}
				entries = append(entries, e)
				metas = append(metas, &p.m)
				size += len(e.Data) + len(e.Meta)
			}
		}
		if err := flush(payload); err != nil {
			return kvs, err
		}
	}
	ts.dirty = true
	st.Size = ts.w.Size()
	k, v, err := stateKV(st)
	if err != nil {
		return kvs, err
	}
	return append(kvs, kv{k, v}), nil
}

// stageIndex appends one record's index entries to kvs.
func stageIndex(kvs []kv, tenant string, m *Meta, raw []byte, loc Locator, payload bool, st *SegmentInfo) []kv {
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

// ensureSegment makes sure ts has an active segment that may take writes:
// it rolls at SegmentSize, at SegmentAge, and when the DEK cache's max age
// means the key must be re-validated (so a revoked key stops writes within
// the max age). With caching disabled, it re-validates on every group.
func (db *DB) ensureSegment(ts *tenantState) error {
	now := db.opts.Now()
	if ts.w != nil {
		roll := ts.w.Size() >= db.opts.SegmentSize || now.Sub(ts.opened) >= db.opts.SegmentAge
		if !roll && !db.opts.Plaintext {
			if db.cache.MaxAge() > 0 {
				roll = !db.cache.Fresh(ts.keyURI, ts.wrapped, ts.ec)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
				dek, err := db.cache.Unwrap(ctx, ts.keyURI, ts.wrapped, ts.ec)
				cancel()
				keys.Zero(dek)
				if err != nil {
					_ = db.sealActive(ts)
					return err
				}
			}
		}
		if !roll {
			return nil
		}
		if err := db.sealActive(ts); err != nil {
			return err
		}
	}
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
		var auto bool
		if uri, auto, err = db.keyURIFor(ts); err != nil {
			return err
		}
		autoLocal = auto
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
		_ = w.Close()
		_ = db.fs.Remove(w.Path()) // no block was written: nothing is lost
		return err
	}
	db.stats.segmentsCreated.Add(1)
	h := w.Header()
	ts.w, ts.opened, ts.keyURI, ts.wrapped, ts.ec = w, now, uri, p.Wrapped, ec
	ts.info = &SegmentInfo{V: stateVersion, Tenant: ts.name, ID: segHex(id), KeyURI: uri, KeyGen: h.Slot.Generation, Created: h.Created, Size: w.Size()}
	return nil
}

// sealActive seals ts's active segment and records that in the index.
func (db *DB) sealActive(ts *tenantState) error {
	if ts.w == nil {
		return nil
	}
	if err := ts.w.Seal(); err != nil {
		db.abandon(ts)
		return err
	}
	st := ts.info
	st.Sealed, st.Size = true, ts.w.Size()
	path := ts.w.Path()
	_ = ts.w.Close()
	ts.w, ts.info, ts.dirty = nil, nil, false
	k, v, err := stateKV(st)
	if err != nil {
		return err
	}
	db.indexQ <- &indexJob{kvs: []kv{{k, v}}}
	// A failure here leaves the entry "active" with the file sealed: the
	// next Open accepts it as a finished crash recovery.
	return db.recordSealed(ts.name, path)
}

// abandon gives up on ts's active segment after a write or fsync error: the
// writer never appends to it again (its nonces must not repeat); recovery
// truncates what was torn and seals it, and whatever valid blocks remain are
// indexed so the index keeps matching the segments.
func (db *DB) abandon(ts *tenantState) {
	if ts.w == nil {
		return
	}
	path, st := ts.w.Path(), ts.info
	db.indexBarrier() // the persisted state must include every queued group
	_ = ts.w.Close()
	ts.w, ts.info, ts.dirty = nil, nil, false
	db.readers.invalidate(path)
	if _, err := segment.Recover(path, db.readOpts(ts.name)); err != nil {
		return // Open will retry
	}
	_ = db.recordSealed(ts.name, path) // on failure, Open finishes it
	r, err := segment.Open(path, db.readOpts(ts.name))
	if err != nil {
		return
	}
	defer r.Close()
	persisted, err := db.segmentStates(ts.name)
	if err != nil {
		return
	}
	id, _ := st.segID()
	cur := persisted[id]
	if cur == nil {
		cur = &SegmentInfo{V: stateVersion, Tenant: ts.name, ID: st.ID}
	}
	_, _ = db.indexBlocks(r, cur, cur.Blocks)
}

func (db *DB) syncDirty() {
	for _, ts := range db.tenants {
		if ts.w != nil && ts.dirty {
			if err := ts.w.Sync(); err != nil {
				db.abandon(ts)
				continue
			}
			ts.dirty = false
			db.checkpoint(ts)
		}
	}
}

func (db *DB) sealAll() {
	for _, ts := range db.tenants {
		_ = db.sealActive(ts)
	}
}

// withWriterPaused seals every active segment and runs f on the writer
// goroutine, so no append runs concurrently.
func (db *DB) withWriterPaused(f func() error) error {
	var ferr error
	if err := db.control(context.Background(), func() {
		db.sealAll()
		db.indexBarrier() // the seals above
		ferr = f()
	}); err != nil {
		return err
	}
	return ferr
}
