package engine

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

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

// ErrStopScan, returned by a Scan callback, ends the scan without error.
var ErrStopScan = errors.New("logstore/engine: stop scan")

// GetMeta returns a record's plaintext metadata and locator from the index;
// it never needs a key. The index is not authenticated: this is the copy
// queries filter on, and someone who can write the index can change it. Get
// returns the authenticated copy.
func (db *DB) GetMeta(tenant string, id ID) (*Meta, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	v, closer, err := db.idx.Get(recordKey(tenant, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: tenant %s has no record %s", ErrNotFound, tenant, id)
	}
	if err != nil {
		return nil, db.indexErr(err)
	}
	defer closer.Close()
	m := &Meta{}
	if err := decodeRecordValue(v, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Get returns a record with the parts asked for decrypted, decrypting only
// the blocks that hold them. Key errors are the keys package's typed errors
// (errors.Is(err, keys.ErrKeyUnusable) when the key is revoked); the
// metadata stays readable through GetMeta and Scan.
//
// The metadata Get returns (status, method, host, latencies, ...) is the
// copy stored in the request log's block, whose metadata section AES-GCM
// authenticates, never the index's plaintext copy. So every Get reads the
// request log's block, a payload-only Get too (it decodes none of the sealed
// log fields). When the index copy disagrees with the authenticated one, Get
// returns nothing but an error matching ErrIndexMismatch that names the
// fields: the index was edited or is stale (`segments verify` lists every
// such record, `segments reindex` rebuilds the index from the segments).
func (db *DB) Get(ctx context.Context, tenant string, id ID, parts Part) (*Record, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	loc, indexed, err := db.recordValue(tenant, id)
	if err != nil {
		return nil, err
	}
	rec := &Record{}
	var m Meta
	if err := db.readSealed(ctx, tenant, loc, id, func(meta, data []byte) error {
		if !bytes.Equal(meta, indexed) {
			return indexMismatch(id, indexed, meta)
		}
		kind, err := decodeMeta(meta, &m)
		if err != nil {
			return err
		}
		if kind != kindLog {
			return fmt.Errorf("%w: %w: the index entry of %s points at its payload, not its request log", ErrIndexMismatch, ErrCorrupt, id)
		}
		rec.fill(&m)
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
		v, closer, err := db.idx.Get(payloadKey(tenant, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w: payload of %s is missing from the index", ErrIndexMismatch, ErrCorrupt, id)
		}
		if err != nil {
			return nil, db.indexErr(err)
		}
		loc, _, err := decodeLocator(v)
		closer.Close()
		if err != nil {
			return nil, err
		}
		if err := db.readSealed(ctx, tenant, loc, id, func(meta, data []byte) (err error) {
			var pm Meta
			kind, err := decodeMeta(meta, &pm)
			if err != nil {
				return err
			}
			if kind != kindPayload || !pm.Time.Equal(m.Time) {
				return fmt.Errorf("%w: %w: the payload entry of %s points at another record", ErrIndexMismatch, ErrCorrupt, id)
			}
			rec.Payload, err = decodeSealedPayload(data)
			return err
		}); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// recordValue returns the locator and a copy of the encoded metadata of a
// record's index entry.
func (db *DB) recordValue(tenant string, id ID) (Locator, []byte, error) {
	v, closer, err := db.idx.Get(recordKey(tenant, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return Locator{}, nil, fmt.Errorf("%w: tenant %s has no record %s", ErrNotFound, tenant, id)
	}
	if err != nil {
		return Locator{}, nil, db.indexErr(err)
	}
	defer closer.Close()
	loc, rest, err := decodeLocator(v)
	if err != nil {
		return loc, nil, err
	}
	return loc, append([]byte(nil), rest...), nil
}

// indexMismatch describes how the index copy of a record's metadata
// differs from the authenticated copy in its block.
func indexMismatch(id ID, indexed, authenticated []byte) error {
	const fix = "the block's copy is authenticated, the index's is not: `logstore segments verify` lists every mismatch, `logstore segments reindex` rebuilds the index from the segments"
	var im, am Meta
	if _, err := decodeMeta(indexed, &im); err != nil {
		return fmt.Errorf("%w: record %s: the index copy of its metadata does not decode (%v); %s", ErrIndexMismatch, id, err, fix)
	}
	if _, err := decodeMeta(authenticated, &am); err != nil {
		return fmt.Errorf("%w: %w: record %s: the block's metadata does not decode: %v", ErrIndexMismatch, ErrCorrupt, id, err)
	}
	return fmt.Errorf("%w: record %s: %s; %s", ErrIndexMismatch, id, strings.Join(metaDiff(&im, &am), ", "), fix)
}

// metaDiff lists the fields in which the index copy a differs from the
// authenticated copy b.
func metaDiff(a, b *Meta) []string {
	fields := []struct {
		name string
		a, b any
	}{
		{"id", a.ID.String(), b.ID.String()}, {"time", a.Time.Format(time.RFC3339Nano), b.Time.Format(time.RFC3339Nano)},
		{"session_id", a.SessionID, b.SessionID}, {"trace_id", a.TraceID, b.TraceID}, {"span_id", a.SpanID, b.SpanID},
		{"method", a.Method, b.Method}, {"host", a.Host, b.Host}, {"status", a.Status, b.Status},
		{"upstream_status", a.UpstreamStatus, b.UpstreamStatus}, {"response_source", a.ResponseSource, b.ResponseSource},
		{"latency_ms", a.LatencyMs, b.LatencyMs}, {"upstream_latency_ms", a.UpstreamLatencyMs, b.UpstreamLatencyMs},
		{"gateway_latency_ms", a.GatewayLatencyMs, b.GatewayLatencyMs}, {"route_id", a.RouteID, b.RouteID},
		{"service_id", a.ServiceID, b.ServiceID}, {"request_size", a.RequestSize, b.RequestSize},
		{"response_size", a.ResponseSize, b.ResponseSize}, {"has_payload", a.HasPayload, b.HasPayload},
	}
	var out []string
	for _, f := range fields {
		if f.a != f.b {
			out = append(out, fmt.Sprintf("%s is %#v in the index, %#v in the block", f.name, f.a, f.b))
		}
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
func (db *DB) readSealed(ctx context.Context, tenant string, loc Locator, id ID, decode func(meta, data []byte) error) error {
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

// Cursor is a position in a scan: the (time, id) of the last record seen.
type Cursor struct {
	Time time.Time
	ID   ID
}

// ScanOptions select records by the index. Within the selection, records
// come newest first unless Oldest is set.
type ScanOptions struct {
	// From and To bound the record time to [From, To); zero means unbounded.
	From, To time.Time
	// Field picks a secondary index (FieldSessionID...); 0 scans the time index.
	Field byte
	// Values are the wanted values of a string field (IN semantics).
	Values []string
	// Statuses are the wanted statuses when Field is FieldStatus.
	Statuses []int
	// Oldest returns the oldest records first.
	Oldest bool
	// After resumes strictly after this position in scan order.
	After *Cursor
	// Limit stops after this many records (0: no limit).
	Limit int
}

// Scan calls fn with the metadata of every selected record, in order, until
// fn returns an error (ErrStopScan ends it cleanly). No key is needed.
func (db *DB) Scan(ctx context.Context, tenant string, o ScanOptions, fn func(*Meta) error) error {
	return db.scan(ctx, tenant, o, func(_ []byte, id ID) error {
		m, err := db.GetMeta(tenant, id)
		if err != nil {
			return err
		}
		return fn(m)
	})
}

// Count returns how many records the index selects, without reading them.
func (db *DB) Count(ctx context.Context, tenant string, o ScanOptions) (int, error) {
	n := 0
	err := db.scan(ctx, tenant, o, func([]byte, ID) error { n++; return nil })
	return n, err
}

func (db *DB) scan(ctx context.Context, tenant string, o ScanOptions, fn func(key []byte, id ID) error) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	var prefixes [][]byte
	switch {
	case o.Field == 0:
		prefixes = [][]byte{tenantPrefix(keyTime, tenant)}
	case o.Field == FieldStatus:
		for _, s := range o.Statuses {
			prefixes = append(prefixes, statusPrefix(tenant, s))
		}
	case o.Field >= FieldSessionID && o.Field <= FieldHost:
		for _, v := range o.Values {
			prefixes = append(prefixes, fieldPrefix(tenant, o.Field, v))
		}
	default:
		return fmt.Errorf("%w: unknown index field %d", ErrInvalidOptions, o.Field)
	}
	h := &mergeHeap{oldest: o.Oldest}
	defer func() {
		for _, s := range h.its {
			_ = s.it.Close()
		}
	}()
	for _, p := range prefixes {
		lo, hi := append([]byte(nil), p...), prefixEnd(p)
		if !o.From.IsZero() {
			lo = appendTime(append([]byte(nil), p...), o.From)
		}
		if !o.To.IsZero() {
			hi = appendTime(append([]byte(nil), p...), o.To)
		}
		if c := o.After; c != nil {
			pos := append(appendTime(append([]byte(nil), p...), c.Time), c.ID[:]...)
			if o.Oldest {
				pos = append(pos, 0) // strictly after
				if bytes.Compare(pos, lo) > 0 {
					lo = pos
				}
			} else if bytes.Compare(pos, hi) < 0 {
				hi = pos
			}
		}
		if bytes.Compare(lo, hi) >= 0 {
			continue
		}
		it, err := db.idx.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return db.indexErr(err)
		}
		var valid bool
		if o.Oldest {
			valid = it.First()
		} else {
			valid = it.Last()
		}
		if !valid {
			if err := it.Error(); err != nil {
				_ = it.Close()
				return db.indexErr(err)
			}
			_ = it.Close()
			continue
		}
		h.its = append(h.its, &scanIter{it: it})
	}
	heap.Init(h)
	for n := 0; h.Len() > 0; n++ {
		if o.Limit > 0 && n >= o.Limit {
			return nil
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		s := h.its[0]
		key := s.it.Key()
		if len(key) < 24 {
			return fmt.Errorf("%w: index key of %d bytes", ErrCorrupt, len(key))
		}
		var id ID
		copy(id[:], key[len(key)-16:])
		if err := fn(key, id); err != nil {
			if errors.Is(err, ErrStopScan) {
				return nil
			}
			return err
		}
		var valid bool
		if o.Oldest {
			valid = s.it.Next()
		} else {
			valid = s.it.Prev()
		}
		if valid {
			heap.Fix(h, 0)
			continue
		}
		if err := s.it.Error(); err != nil {
			return db.indexErr(err)
		}
		heap.Pop(h)
		_ = s.it.Close()
	}
	return nil
}

type scanIter struct{ it *pebble.Iterator }

// mergeHeap merges per-value iterators by the (time, id) suffix of their keys.
type mergeHeap struct {
	its    []*scanIter
	oldest bool
}

func (h *mergeHeap) Len() int { return len(h.its) }
func (h *mergeHeap) Less(i, j int) bool {
	a, b := h.its[i].it.Key(), h.its[j].it.Key()
	c := bytes.Compare(a[len(a)-24:], b[len(b)-24:])
	if h.oldest {
		return c < 0
	}
	return c > 0
}
func (h *mergeHeap) Swap(i, j int) { h.its[i], h.its[j] = h.its[j], h.its[i] }
func (h *mergeHeap) Push(x any)    { h.its = append(h.its, x.(*scanIter)) }
func (h *mergeHeap) Pop() any {
	x := h.its[len(h.its)-1]
	h.its = h.its[:len(h.its)-1]
	return x
}
