package engine

// The write path, stage 1: request preparation. A record goes Append (here:
// validate, encode, queue) -> writer.go (the writer goroutine groups queued
// requests into one commit) -> active.go (the tenant's active segment, rolled
// and sealed) -> pack.go (records packed into compressed, sealed blocks) ->
// indexer.go (index entries staged, committed in order by the indexer
// goroutine, which acknowledges the callers). Recovery (recover.go,
// reconcile.go) replays blocks through the same indexer.go code.

import (
	"context"
	"fmt"
)

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

// appendRecords implements Tenant.Append (documented there).
func (db *DB) appendRecords(ctx context.Context, tenant string, recs []Record) ([]ID, error) {
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
