package engine

import (
	"context"
	"fmt"
	"iter"
)

// Tenant is the data plane of one tenant: what a request path needs
// (Append, Get, GetMeta, Scan, Count). A Tenant is a name checked once by
// DB.Tenant and the DB it came from: it is cheap, holds no resources, is safe
// for concurrent use, and stays valid until the DB is closed. A tenant that
// never appended has no records; its first Append creates it.
type Tenant struct {
	db   *DB
	name string
}

// Tenant returns the handle of the tenant called name, or ErrInvalidTenant
// when the name is not a valid tenant name (ValidateTenant).
func (db *DB) Tenant(name string) (*Tenant, error) {
	if err := ValidateTenant(name); err != nil {
		return nil, err
	}
	return &Tenant{db: db, name: name}, nil
}

// Name is the tenant's name.
func (t *Tenant) Name() string {
	if t == nil {
		return ""
	}
	return t.name
}

// Append stores recs and returns their ids, in order (assigned when a
// record has none).
//
// Durability: with SyncAlways (the default) the records are on stable
// storage when Append returns nil; see SyncMode for the others.
// Concurrency: safe for concurrent use; concurrent Appends, of any tenants,
// are coalesced into one group commit. Every record is validated before
// anything is written: one bad record (ErrInvalidRecord, ErrRecordTooLarge)
// fails the whole call and writes nothing. A key the tenant cannot use fails
// it closed (errors.Is(err, keys.ErrKeyUnusable)); nothing is ever written
// in plaintext instead. If ctx ends while the group commit is in flight,
// Append returns ctx.Err() and the records may or may not have been stored.
func (t *Tenant) Append(ctx context.Context, recs []Record) ([]ID, error) {
	if t == nil || t.db == nil {
		return nil, errNoHandle
	}
	return t.db.appendRecords(ctx, t.name, recs)
}

// Get returns a record with the parts asked for decrypted, decrypting only
// the blocks that hold them. Key errors are the keys package's typed errors
// (errors.Is(err, keys.ErrKeyUnusable) once the key is revoked and the DEK
// cache's max age has passed); the metadata stays readable through GetMeta
// and Scan. ErrNotFound when the tenant has no such record.
//
// The metadata Get returns is the copy stored in the request log's block,
// which AES-GCM authenticates, never the index's plaintext copy: every Get
// reads the request log's block, a payload-only Get too. When the index copy
// disagrees, Get returns an error matching ErrIndexMismatch that names the
// fields (`logstore segments verify` lists every such record, `logstore
// segments reindex` rebuilds the index).
func (t *Tenant) Get(ctx context.Context, id ID, parts Part) (*Record, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	defer t.db.leave()
	return t.db.get(ctx, t.name, id, parts)
}

// GetMeta returns a record's plaintext metadata from its block's metadata
// section; it never needs a key. That copy is checksummed but authenticated
// only when the block is decrypted: it is the copy queries filter on, and
// someone who can write the segment files can change it unnoticed until a
// Get (which returns the authenticated copy) or a verify reads the block.
func (t *Tenant) GetMeta(ctx context.Context, id ID) (*Meta, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	defer t.db.leave()
	return t.db.getMeta(t.name, id)
}

// Scan yields the metadata of every record o selects, in order, reading the
// index's block summaries and the metadata sections of the blocks that may
// match (no key is needed). Breaking out of the loop ends the scan; an
// error is yielded once, last:
//
//	for m, err := range t.Scan(ctx, engine.ScanOptions{Index: engine.BySession("s-1")}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(m.Time, m.Method, m.Status)
//	}
//
// Every yielded *Meta is the caller's to keep. A scan reads the list of
// blocks as of its start: it sees exactly the records acknowledged before
// that, whatever appends go on beside it, and it does not block writers. A
// segment that retention or DeleteTenant removes under a running scan ends
// it with an error rather than silently shortening it. Bad options fail it with ErrInvalidOptions. Close waits
// for a scan in progress: the loop body must not call Close, and a scan
// driven by iter.Pull2 must have its stop function called.
func (t *Tenant) Scan(ctx context.Context, o ScanOptions) iter.Seq2[*Meta, error] {
	return func(yield func(*Meta, error) bool) {
		if err := t.enter(ctx); err != nil {
			yield(nil, err)
			return
		}
		defer t.db.leave()
		err := t.db.scanMetas(ctx, t.name, o, func(m *Meta) (bool, error) {
			return yield(m, nil), nil
		})
		if err != nil {
			yield(nil, err)
		}
	}
}

// Count returns how many records o selects: blocks wholly inside the
// selection count from their summaries, the others are read.
func (t *Tenant) Count(ctx context.Context, o ScanOptions) (int, error) {
	if err := t.enter(ctx); err != nil {
		return 0, err
	}
	defer t.db.leave()
	return t.db.countRecords(ctx, t.name, o)
}

// errNoHandle is what a Tenant that did not come from DB.Tenant returns.
var errNoHandle = fmt.Errorf("%w: a Tenant comes from DB.Tenant", ErrInvalidTenant)

// enter registers a read of t's DB (DB.enter; the caller defers
// t.db.leave) after checking the handle and the context.
func (t *Tenant) enter(ctx context.Context) error {
	switch {
	case t == nil || t.db == nil:
		return errNoHandle
	case ctx == nil:
		return errNilContext
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.db.enter()
}
