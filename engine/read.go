package engine

import (
	"bytes"
	"context"
	"fmt"
	"strings"

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

// getMeta returns a record's plaintext metadata from the index (or from a
// snapshot of it: a scan's).
func (db *DB) getMeta(from indexView, tenant string, id ID) (*Meta, error) {
	m := &Meta{}
	found, err := from.view(recordKey(tenant, id), func(v []byte) error {
		_, err := decodeRecordValue(v, m)
		return err
	})
	if err := db.indexRead(found, err, tenant, id); err != nil {
		return nil, err
	}
	return m, nil
}

// indexRead turns the outcome of reading a record's index entry into the
// error a caller sees.
func (db *DB) indexRead(found bool, err error, tenant string, id ID) error {
	switch {
	case err != nil:
		return db.indexErr(err)
	case !found:
		return fmt.Errorf("%w: tenant %s has no record %s", ErrNotFound, tenant, id)
	}
	return nil
}

// get returns a record with the parts asked for decrypted (Tenant.Get).
func (db *DB) get(ctx context.Context, tenant string, id ID, parts Part) (*Record, error) {
	loc, indexed, err := db.recordValue(tenant, id)
	if err != nil {
		return nil, err
	}
	rec := &Record{}
	m := &rec.Meta
	if err := db.readSealed(ctx, tenant, loc, id, func(meta, data []byte) error {
		if !bytes.Equal(meta, indexed) {
			return indexMismatch(id, indexed, meta)
		}
		kind, err := decodeMeta(meta, m)
		if err != nil {
			return err
		}
		if kind != kindLog {
			return fmt.Errorf("%w: %w: the index entry of %s points at its payload, not its request log", ErrIndexMismatch, ErrCorrupt, id)
		}
		if parts&PartLog != 0 {
			return decodeSealedLog(data, rec)
		}
		return nil
	}); err != nil {
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
	var loc locator
	found, err := db.index.view(payloadKey(tenant, id), func(v []byte) (err error) {
		loc, _, err = decodeLocator(v)
		return err
	})
	if err != nil {
		return nil, db.indexErr(err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %w: payload of %s is missing from the index", ErrIndexMismatch, ErrCorrupt, id)
	}
	var p *Payload
	err = db.readSealed(ctx, tenant, loc, id, func(meta, data []byte) (err error) {
		var pm Meta
		kind, err := decodeMeta(meta, &pm)
		if err != nil {
			return err
		}
		if kind != kindPayload || !pm.Time.Equal(m.Time) {
			return fmt.Errorf("%w: %w: the payload entry of %s points at another record", ErrIndexMismatch, ErrCorrupt, id)
		}
		p, err = decodeSealedPayload(data)
		return err
	})
	return p, err
}

// recordValue returns the locator and a copy of the encoded metadata of a
// record's index entry.
func (db *DB) recordValue(tenant string, id ID) (loc locator, meta []byte, err error) {
	found, err := db.index.view(recordKey(tenant, id), func(v []byte) error {
		var rest []byte
		loc, rest, err = decodeLocator(v)
		meta = append([]byte(nil), rest...)
		return err
	})
	if err := db.indexRead(found, err, tenant, id); err != nil {
		return locator{}, nil, err
	}
	return loc, meta, nil
}

// indexMismatch describes how the index copy of a record's metadata
// differs from the authenticated copy in its block.
func indexMismatch(id ID, indexed, authenticated []byte) error {
	const fix = "the block's copy is authenticated, the index's is not: `logstore segments verify` lists every mismatch, `logstore segments reindex` rebuilds the index from the segments"
	var am Meta
	if _, err := decodeMeta(authenticated, &am); err != nil {
		return fmt.Errorf("%w: %w: record %s: the block's metadata does not decode: %v", ErrIndexMismatch, ErrCorrupt, id, err)
	}
	return fmt.Errorf("%w: record %s: %s; %s", ErrIndexMismatch, id, strings.Join(metaDiffRaw(indexed, authenticated), ", "), fix)
}

// metaDiffRaw lists how the encoded index copy differs from the encoded
// authenticated copy, which the caller has decoded once already (a block's
// metadata that does not decode is a corrupt block, reported as such).
func metaDiffRaw(indexed, authenticated []byte) []string {
	var im, am Meta
	if _, err := decodeMeta(indexed, &im); err != nil {
		return []string{fmt.Sprintf("the index copy of its metadata does not decode (%v)", err)}
	}
	_, _ = decodeMeta(authenticated, &am) // decodable: checked by the caller
	return metaDiff(&im, &am)
}

// metaDiff lists the fields in which the index copy a differs from the
// authenticated copy b.
func metaDiff(a, b *Meta) []string {
	var out []string
	for _, f := range fields {
		if va, vb := f.value(a), f.value(b); va != vb {
			out = append(out, fmt.Sprintf("%s is %#v in the index, %#v in the block", f.name, va, vb))
		}
	}
	if a.HasPayload != b.HasPayload {
		out = append(out, fmt.Sprintf("has_payload is %#v in the index, %#v in the block", a.HasPayload, b.HasPayload))
	}
	if len(out) == 0 {
		out = append(out, "the encodings differ")
	}
	return out
}

// readSealed decrypts the block at loc and passes decode the metadata and
// sealed bytes of the record at loc.Index, checking that it is the record
// asked for. The metadata is authenticated with the block (it is in the
// AAD). decode must copy what it keeps: the block's plaintext is zeroed and
// recycled.
func (db *DB) readSealed(ctx context.Context, tenant string, loc locator, id ID, decode func(meta, data []byte) error) error {
	path := db.segPath(tenant, loc.Segment)
	r, err := db.readers.acquire(path, tenant)
	if err != nil {
		return err
	}
	defer db.readers.release(path, r)
	h := r.Header()
	var dek []byte
	if h.Cipher != segment.CipherNone {
		ec := keys.SegmentContext(tenant, segHex(h.ID))
		if dek, err = db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, ec); err != nil {
			return err
		}
		defer keys.Zero(dek)
	}
	blk, err := r.ReadBlockWith(dek, loc.Offset, loc.Seq)
	if err != nil {
		return err
	}
	defer blk.Release()
	if loc.Index >= len(blk.Data) {
		return fmt.Errorf("%w: %w: locator index %d beyond block of %d records", ErrIndexMismatch, ErrCorrupt, loc.Index, len(blk.Data))
	}
	if len(blk.Meta[loc.Index]) < 18 || !bytes.Equal(blk.Meta[loc.Index][2:18], id[:]) {
		return fmt.Errorf("%w: %w: locator of %s points at another record", ErrIndexMismatch, ErrCorrupt, id)
	}
	return decode(blk.Meta[loc.Index], blk.Data[loc.Index])
}
