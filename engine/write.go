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
	"errors"
	"fmt"
	"strings"
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
	// redacted is how many values the redaction policy replaced in recs.
	redacted int
}

// appendRecords implements Tenant.Append (documented there).
func (db *DB) appendRecords(ctx context.Context, tenant string, recs []Record) ([]ID, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if db.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	if len(recs) == 0 {
		return nil, nil
	}
	if ctx == nil {
		return nil, errNilContext
	}
	rd, err := db.redactorFor(tenant)
	if err != nil {
		return nil, err
	}
	req := &appendReq{tenant: tenant, recs: make([]prepared, len(recs)), done: make(chan error, 1)}
	ids := make([]ID, len(recs))
	redacted := 0
	for i := range recs {
		r, n := RedactRecord(rd, &recs[i])
		redacted += n
		if err := db.prepare(&r, &req.recs[i]); err != nil {
			return nil, recordErr(i, len(recs), err)
		}
		ids[i] = req.recs[i].m.ID
	}
	if err := db.checkNewIDs(tenant, recs, ids); err != nil {
		return nil, err
	}
	req.redacted = redacted
	if err := db.enqueue(ctx, req); err != nil {
		return nil, err
	}
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

// enqueue hands req to the writer goroutine unless the store is closed or
// ctx ends first.
func (db *DB) enqueue(ctx context.Context, req *appendReq) error {
	return db.whileOpen(func() error {
		select {
		case db.reqs <- req:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// recordErr places a record's error in its batch, keeping the package
// prefix first: "logstore/engine: invalid record: record 3 of 10: ...".
func recordErr(i, n int, err error) error {
	for _, s := range []error{ErrInvalidRecord, ErrRecordTooLarge} {
		if errors.Is(err, s) {
			detail := strings.TrimPrefix(strings.TrimPrefix(err.Error(), s.Error()), ": ")
			return fmt.Errorf("%w: record %d of %d: %s", s, i, n, detail)
		}
	}
	return fmt.Errorf("logstore/engine: record %d of %d: %w", i, n, err)
}

// checkNewIDs refuses ids given by the caller that the tenant already has,
// or that repeat within the batch: one id names one record (ErrExists). An
// id the engine assigned is new by construction.
func (db *DB) checkNewIDs(tenant string, recs []Record, ids []ID) error {
	var seen map[ID]bool
	for i := range recs {
		if recs[i].ID.IsZero() {
			continue
		}
		if seen == nil {
			seen = map[ID]bool{}
		}
		if seen[ids[i]] {
			return fmt.Errorf("%w: record %d of %d repeats id %s", ErrExists, i, len(recs), ids[i])
		}
		seen[ids[i]] = true
		_, err := db.getMeta(tenant, ids[i])
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil {
			return fmt.Errorf("%w: record %d of %d: tenant %s already has record %s", ErrExists, i, len(recs), tenant, ids[i])
		}
	}
	return nil
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
