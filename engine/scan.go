package engine

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Index selects the index a scan walks. The zero Index (ByTime) walks the
// time index; the others walk a secondary index over one or more values of
// a field, merged into one time-ordered stream.
type Index struct {
	field    *Field // nil: the time index
	values   []string
	statuses []int
}

// ByTime walks every record of the tenant in time order.
func ByTime() Index { return Index{} }

// ByStatus selects the records whose status is one of codes.
func ByStatus(codes ...int) Index { return Index{field: fieldStatus, statuses: codes} }

// BySession selects the records of the given debug sessions.
func BySession(ids ...string) Index { return byString("session_id", ids) }

// ByTrace selects the records of the given traces.
func ByTrace(ids ...string) Index { return byString("trace_id", ids) }

// ByMethod selects the records with one of the given HTTP methods, matched
// exactly as stored (methods are case-sensitive; ingest stores them as
// captured).
func ByMethod(methods ...string) Index { return byString("method", methods) }

// ByHost selects the records for the given hosts.
func ByHost(hosts ...string) Index { return byString("host", hosts) }

// ByRoute selects the records of the given gateway routes.
func ByRoute(ids ...string) Index { return byString("route_id", ids) }

// ByService selects the records of the given upstream services.
func ByService(ids ...string) Index { return byString("service_id", ids) }

func byString(name string, values []string) Index {
	return Index{field: fieldByName[name], values: values}
}

// ByField walks the secondary index of any indexed field, the generic form
// of the By functions for callers that pick the field at run time (the
// query planner). Values of a numeric field are decimal integers.
func ByField(f *Field, values ...string) (Index, error) {
	if !f.inSchema() || !f.indexed {
		return Index{}, fmt.Errorf("%w: no secondary index on that field (ByField takes an indexed row of Fields)", ErrInvalidOptions)
	}
	if f.str != nil {
		return Index{field: f, values: values}, nil
	}
	ix := Index{field: f}
	for _, v := range values {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Index{}, fmt.Errorf("%w: %s wants integers, got %q", ErrInvalidOptions, f.name, v)
		}
		ix.statuses = append(ix.statuses, n)
	}
	return ix, nil
}

// Field is the name of the indexed field, "time" for the time index.
func (ix Index) Field() string {
	if ix.field == nil {
		return "time"
	}
	return ix.field.name
}

// Values is how many values the index is walked for (1 for the time index).
func (ix Index) Values() int {
	if ix.field == nil {
		return 1
	}
	return len(ix.values) + len(ix.statuses)
}

// prefixes are the key prefixes the index is walked under, one per value.
func (ix Index) prefixes(tenant string) [][]byte {
	if ix.field == nil {
		return [][]byte{tenantPrefix(keyTime, tenant)}
	}
	var out [][]byte
	for _, s := range ix.statuses { // 0..999 (ScanOptions.check)
		out = append(out, statusPrefix(tenant, s))
	}
	for _, v := range ix.values {
		out = append(out, fieldPrefix(tenant, ix.field.index, v))
	}
	return out
}

// Cursor is a position in a scan: the (time, id) of the last record seen.
type Cursor struct {
	Time time.Time
	ID   ID
}

// ScanOptions select records by an index. Within the selection, records
// come newest first unless Oldest is set.
type ScanOptions struct {
	// Index is the index to walk (default ByTime()).
	Index Index
	// From and To bound the record time to [From, To); zero means unbounded.
	From, To time.Time
	// Oldest returns the oldest records first (default newest first).
	Oldest bool
	// After resumes strictly after this position in scan order (default:
	// from the start).
	After *Cursor
	// Limit stops after this many records (default 0: no limit).
	Limit int
}

// bounds returns the key range [lo, hi) of prefix p that o selects; ok is
// false when it is empty.
func (o *ScanOptions) bounds(p []byte) (lo, hi []byte, ok bool) {
	lo, hi = append([]byte(nil), p...), prefixEnd(p)
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
	return lo, hi, bytes.Compare(lo, hi) < 0
}

// check refuses options no scan can honour, rather than answering them
// with nothing.
func (o *ScanOptions) check() error {
	switch {
	case o.Limit < 0:
		return fmt.Errorf("%w: negative Limit %d", ErrInvalidOptions, o.Limit)
	case !o.From.IsZero() && !o.To.IsZero() && o.From.After(o.To):
		return fmt.Errorf("%w: From %s is after To %s", ErrInvalidOptions, o.From.Format(time.RFC3339Nano), o.To.Format(time.RFC3339Nano))
	case o.After != nil && !timeRepresentable(o.After.Time):
		return fmt.Errorf("%w: cursor time %s outside the stored range (a Cursor is the Time and ID of a scanned record)", ErrInvalidOptions, o.After.Time.Format(time.RFC3339))
	}
	for _, s := range o.Index.statuses {
		if s < 0 || s > 999 {
			return fmt.Errorf("%w: status %d outside 0..999", ErrInvalidOptions, s)
		}
	}
	return nil
}

// clampTimes makes bounds beyond the stored time range unbounded (or the
// scan empty, for a range wholly outside it).
func (o *ScanOptions) clampTimes() (empty bool) {
	if (!o.From.IsZero() && o.From.After(maxTime)) || (!o.To.IsZero() && !o.To.After(minTime)) {
		return true
	}
	if o.From.Before(minTime) {
		o.From = time.Time{}
	}
	if o.To.After(maxTime) {
		o.To = time.Time{}
	}
	return false
}

// scanIDs calls fn with the id of every record o selects, in scan order,
// until fn returns false or an error. It reads only index keys, from view
// (a snapshot, so that a scan over several index values is one moment's).
func (db *DB) scanIDs(ctx context.Context, view indexView, tenant string, o ScanOptions, fn func(id ID) (bool, error)) error {
	if err := o.check(); err != nil {
		return err
	}
	if o.clampTimes() {
		return nil
	}
	h := &mergeHeap{oldest: o.Oldest}
	defer h.close()
	for _, p := range o.Index.prefixes(tenant) {
		if err := h.open(db, view, p, &o); err != nil {
			return err
		}
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
		key := h.its[0].Key()
		if len(key) < 24 {
			return fmt.Errorf("%w: index key of %d bytes", ErrCorrupt, len(key))
		}
		var id ID
		copy(id[:], key[len(key)-16:])
		if more, err := fn(id); err != nil || !more {
			return err
		}
		if err := h.advance(); err != nil {
			return db.indexErr(err)
		}
	}
	return nil
}

// mergeHeap merges per-value iterators by the (time, id) suffix of their
// keys: the head is the next record in scan order.
type mergeHeap struct {
	its    []*pebble.Iterator
	oldest bool
}

// open adds an iterator over the part of prefix p that o selects.
func (h *mergeHeap) open(db *DB, view indexView, p []byte, o *ScanOptions) error {
	lo, hi, ok := o.bounds(p)
	if !ok {
		return nil
	}
	it, err := view.iter(lo, hi)
	if err != nil {
		return db.indexErr(err)
	}
	if h.step(it, true) {
		h.its = append(h.its, it)
		return nil
	}
	err = it.Error()
	_ = it.Close() // read-only iterator: nothing to lose
	if err != nil {
		return db.indexErr(err)
	}
	return nil
}

// advance moves the head iterator on, dropping it when exhausted.
func (h *mergeHeap) advance() error {
	it := h.its[0]
	if h.step(it, false) {
		heap.Fix(h, 0)
		return nil
	}
	heap.Pop(h)
	err := it.Error()
	_ = it.Close() // read-only iterator: nothing to lose
	return err
}

// step moves it to the first key in scan order (first) or on to the next.
func (h *mergeHeap) step(it *pebble.Iterator, first bool) bool {
	switch {
	case first && h.oldest:
		return it.First()
	case first:
		return it.Last()
	case h.oldest:
		return it.Next()
	}
	return it.Prev()
}

func (h *mergeHeap) close() {
	for _, it := range h.its {
		_ = it.Close() // read-only iterators: nothing to lose
	}
}

func (h *mergeHeap) Len() int { return len(h.its) }
func (h *mergeHeap) Less(i, j int) bool {
	c := bytes.Compare(timeIDSuffix(h.its[i].Key()), timeIDSuffix(h.its[j].Key()))
	if h.oldest {
		return c < 0
	}
	return c > 0
}
func (h *mergeHeap) Swap(i, j int) { h.its[i], h.its[j] = h.its[j], h.its[i] }
func (h *mergeHeap) Push(x any)    { h.its = append(h.its, x.(*pebble.Iterator)) }
func (h *mergeHeap) Pop() any {
	x := h.its[len(h.its)-1]
	h.its = h.its[:len(h.its)-1]
	return x
}

// timeIDSuffix is the (time, id) part of a time or secondary index key; a
// key too short to hold one (a damaged index) sorts by its whole bytes and
// is refused when it reaches the head.
func timeIDSuffix(k []byte) []byte {
	if len(k) < 24 {
		return k
	}
	return k[len(k)-24:]
}
