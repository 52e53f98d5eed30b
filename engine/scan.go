package engine

import (
	"fmt"
	"strconv"
	"time"
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

// match reports whether m is a request log the index selects.
func (ix *Index) match(m *Meta) bool {
	switch {
	case ix.field == nil:
		return true
	case ix.statuses != nil:
		for _, s := range ix.statuses {
			if m.Status == s {
				return true
			}
		}
		return false
	}
	v := *ix.field.str(m)
	if v == "" { // empty values are not indexed (docs/format/index.md)
		return false
	}
	for _, want := range ix.values {
		if v == want {
			return true
		}
	}
	return false
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
	// Ranges keep only the records whose numeric fields lie in every range
	// (default none). They are tested on the encoded metadata, so they cost
	// far less than a filter on the decoded records, and a Count with no
	// other filter than the time, a status index and Ranges decodes
	// nothing.
	Ranges []Range

	ranges []rangeField // Ranges, resolved by check
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
	var err error
	o.ranges, err = resolveRanges(o.Ranges)
	return err
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
