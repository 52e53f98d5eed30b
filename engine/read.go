package engine

import (
	"bytes"
	"context"
	"fmt"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// Part selects what Get decrypts.
type Part int

const (
	PartLog     Part = 1 << iota // the request log (sealed fields)
	PartPayload                  // the bodies
	PartAll     = PartLog | PartPayload
)

// getMeta returns a record's plaintext metadata from its block's metadata
// section (checksummed; authenticated only by Get).
func (db *DB) getMeta(tenant string, id ID) (*Meta, error) {
	cands, faults, err := db.findBlocks(tenant, id, kindLog)
	if err != nil {
		return nil, err
	}
	var out *Meta
	found, err := inBlocks(cands, faults, func(c candidate) (bool, error) {
		metas, err := db.readBlockMetas(tenant, c.seg, c.sum, keepID(id))
		if err != nil {
			return false, err
		}
		for _, m := range metas {
			if m.ID == id {
				out = m
				return true, nil
			}
		}
		return false, nil
	})
	return out, notFound(found, err, tenant, id)
}

// notFound turns the outcome of a search for a record into the error a
// caller sees.
func notFound(found bool, err error, tenant string, id ID) error {
	switch {
	case found:
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: tenant %s has no record %s", ErrNotFound, tenant, id)
}

// get returns a record with the parts asked for decrypted (Tenant.Get).
func (db *DB) get(ctx context.Context, tenant string, id ID, parts Part) (*Record, error) {
	cands, faults, err := db.findBlocks(tenant, id, kindLog)
	if err != nil {
		return nil, err
	}
	rec := &Record{}
	m := &rec.Meta
	found, err := inBlocks(cands, faults, func(c candidate) (bool, error) {
		return db.readSealed(ctx, tenant, c, id, func(meta, data []byte) error {
			kind, err := decodeMeta(meta, m)
			if err != nil {
				return err
			}
			if kind != kindLog {
				return fmt.Errorf("%w: %w: the index entry of %s points at a payload block", ErrIndexMismatch, ErrCorrupt, id)
			}
			if parts&PartLog != 0 {
				return decodeSealedLog(data, rec)
			}
			return nil
		})
	})
	if err := notFound(found, err, tenant, id); err != nil {
		return nil, err
	}
	if parts&PartPayload != 0 {
		if !m.HasPayload {
			if parts == PartPayload {
				return nil, fmt.Errorf("%w: %s", ErrNoPayload, id)
			}
			return rec, nil
		}
		if rec.Payload, err = db.getPayload(ctx, tenant, id, m); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// getPayload decrypts the payload of the record whose authenticated
// metadata is m.
func (db *DB) getPayload(ctx context.Context, tenant string, id ID, m *Meta) (*Payload, error) {
	cands, faults, err := db.findBlocks(tenant, id, kindPayload)
	if err != nil {
		return nil, err
	}
	var p *Payload
	found, err := inBlocks(cands, faults, func(c candidate) (bool, error) {
		return db.readSealed(ctx, tenant, c, id, func(meta, data []byte) (err error) {
			var pm Meta
			kind, err := decodeMeta(meta, &pm)
			if err != nil {
				return err
			}
			if kind != kindPayload || !pm.Time.Equal(m.Time) {
				return fmt.Errorf("%w: %w: the payload entry of %s is not its record's", ErrIndexMismatch, ErrCorrupt, id)
			}
			p, err = decodeSealedPayload(data)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: %w: the payload of %s is in no indexed block", ErrIndexMismatch, ErrCorrupt, id)
	}
	return p, nil
}

// readSealed decrypts block c and, if it holds record id, passes decode
// the record's metadata and sealed bytes and reports found. The metadata is
// authenticated with the block (it is in the AAD). decode must copy what it
// keeps: the block's plaintext is zeroed and recycled.
//
// The key is asked for on every call, before the block cache is consulted:
// the DEK cache decides whether this Get may see plaintext at all (a
// revoked key fails it past the DEK cache's max age), the block cache only
// saves the decrypt and decompress of a block already seen.
func (db *DB) readSealed(ctx context.Context, tenant string, c candidate, id ID, decode func(meta, data []byte) error) (bool, error) {
	if mb := c.sum.mem; mb != nil {
		// A journaled record: in memory, but served only while its
		// segment's DEK is, like a block read from disk.
		if mb.keyURI != "" {
			dek, err := db.cache.Unwrap(ctx, mb.keyURI, mb.wrapped, mb.ec)
			if err != nil {
				return false, err
			}
			keys.Zero(dek)
		}
		return findRecord(mb.meta, mb.data, id, decode)
	}
	path := db.segPath(tenant, c.seg)
	r, gen, err := db.readers.acquireGen(path, tenant, false)
	if err != nil {
		return false, blockReadErr(path, c.sum, err)
	}
	defer db.readers.release(path, r)
	h := r.Header()
	var dek []byte
	if h.Cipher != segment.CipherNone {
		ec := keys.SegmentContext(tenant, segHex(h.ID))
		if dek, err = db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, ec); err != nil {
			return false, err
		}
		defer keys.Zero(dek)
	}
	k := cachedBlockKey{tenant: tenant, seg: h.ID, seq: c.sum.seq, off: c.sum.offset, reader: gen}
	if cb := db.blocks.get(k); cb != nil {
		defer db.blocks.release(cb)
		return findRecord(cb.meta, cb.data, id, decode)
	}
	decrypted := db.blocks.now() // before the read: an entry's age never understates it
	blk, err := r.ReadBlockWith(dek, c.sum.offset, c.sum.seq)
	if err != nil {
		return false, err
	}
	defer blk.Release()
	if cb := db.blocks.copyBlock(k, path, blk, decrypted); cb != nil {
		if !db.readers.whileCurrent(path, gen, func() { db.blocks.put(cb) }) {
			db.blocks.discard(cb) // the reader was invalidated meanwhile
		}
	}
	return findRecord(blk.Meta, blk.Data, id, decode)
}

// findRecord passes decode the metadata and sealed bytes of record id in a
// decrypted block and reports whether the block holds it.
func findRecord(metas, data [][]byte, id ID, decode func(meta, data []byte) error) (bool, error) {
	for i, meta := range metas {
		if len(meta) >= 18 && bytes.Equal(meta[2:18], id[:]) && i < len(data) {
			return true, decode(meta, data[i])
		}
	}
	return false, nil
}
