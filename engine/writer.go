package engine

// The write path, stage 2: the writer goroutine. It alone owns the active
// segments and the manifests' writes; appends reach it through db.reqs and
// every other change through control.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// writeLoop is the single writer: it owns every active segment and turns
// queued requests into group commits.
func (db *DB) writeLoop() {
	defer db.wg.Done()
	var tick <-chan time.Time
	if db.opts.Sync.kind == syncInterval {
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
	if err := db.index.writable(); err != nil {
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
		if err = db.commitTenant(ts, reqs, job); err != nil {
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

// commitTenant writes one tenant's part of a group into job and, with
// SyncAlways, fsyncs what it wrote. A failed write or fsync cuts the active
// segment back to where it stood before (abandonTo), so no block of a failed
// group is kept beside the journal copies of the records it flushed.
func (db *DB) commitTenant(ts *tenantState, reqs []*appendReq, job *indexJob) error {
	if err := db.ensureSegment(ts); err != nil {
		return err
	}
	m := ts.mark()
	var w groupWrites
	var err error
	job.kvs, w, err = db.packBlocks(ts, reqs, job.kvs)
	if err == nil && db.opts.Sync.kind == syncAlways {
		if err = db.syncWrites(ts, w); err == nil {
			db.countFsync(reqs, w)
			db.checkpoint(ts)
		}
	}
	if err != nil {
		db.abandonTo(ts, m)
		return err
	}
	db.retireIfDue(ts, job)
	return nil
}

// countFsync counts a segment fsync of SyncAlways and the records it made
// durable: their ratio is how well group commit amortises the fsync.
func (db *DB) countFsync(reqs []*appendReq, w groupWrites) {
	n := 0
	for _, r := range reqs {
		n += len(r.recs)
	}
	if w.segment && w.journal {
		db.stats.appendFsyncs.Add(1) // two files
	}
	db.stats.appendFsyncs.Add(1)
	db.stats.appendFsyncRecords.Add(uint64(n))
}

// withWriterPaused seals every active segment and runs f on the writer
// goroutine, so no append runs concurrently.
func (db *DB) withWriterPaused(f func() error) error {
	return db.control(context.Background(), func() error {
		db.sealAll()
		db.indexBarrier() // the seals above
		return f()
	})
}

// control runs f on the writer goroutine, which owns the active segments
// and the manifests' writes, waits for it and returns its error. If ctx
// ends (or the store closes) before the writer takes f, f never runs.
func (db *DB) control(ctx context.Context, f func() error) error {
	if ctx == nil {
		return errNilContext
	}
	if db.opts.ReadOnly {
		return ErrReadOnly // no writer goroutine
	}
	done := make(chan error, 1)
	if err := db.sendControl(ctx, func() { done <- f() }); err != nil {
		return err
	}
	return <-done
}

// sendControl hands f to the writer goroutine unless the store is closed
// or ctx ends first.
func (db *DB) sendControl(ctx context.Context, f func()) error {
	return db.whileOpen(func() error {
		select {
		case db.ctl <- f:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}
