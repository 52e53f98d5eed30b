package engine

// Numeric ranges (ScanOptions.Ranges): a filter on the numeric fields
// (status codes, latencies, sizes) that a scan or count applies to the
// encoded metadata without decoding it. Those fields sit at fixed offsets
// of the encoding (u16 and f64 groups) or in the uvarint group right after
// (format.go, codec.go), so a test costs a few loads. Blocks whose summary
// ranges (status, latency) miss a range are skipped unread, and a count
// with only such filters counts the entries that pass, decoding none.

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Range selects the records whose numeric field lies in [Min, Max] (both
// inclusive; use ±Inf for an open end, math.Nextafter for a strict bound).
type Range struct {
	Field    string
	Min, Max float64
}

// rangeField is a Range resolved against the schema: where its value sits
// in the encoded metadata.
type rangeField struct {
	min, max float64
	field    *Field
	// off is the byte offset of a u16 or f64 field; for a uvarint field,
	// nth is its place in the uvarint group (after the fixed part).
	off, nth int
	wire     byte // 'u' u16, 'f' f64, 'v' uvarint
}

// resolveRanges checks rs against the schema.
func resolveRanges(rs []Range) ([]rangeField, error) {
	out := make([]rangeField, 0, len(rs))
	for _, r := range rs {
		f := fieldByName[r.Field]
		if f == nil || (f.int16 == nil && f.float == nil && f.int64 == nil) {
			return nil, fmt.Errorf("%w: Range on %q: not a numeric field (%s)", ErrInvalidOptions, r.Field, numericFieldNames())
		}
		if math.IsNaN(r.Min) || math.IsNaN(r.Max) || r.Min > r.Max {
			return nil, fmt.Errorf("%w: Range on %s: [%v, %v] is empty", ErrInvalidOptions, r.Field, r.Min, r.Max)
		}
		rf := rangeField{min: r.Min, max: r.Max, field: f}
		base := metaFixedLen + 1 // the flags byte follows the fixed part
		switch {
		case f.int16 != nil:
			rf.wire, rf.off = 'u', base+2*slices.Index(wireU16, f)
		case f.float != nil:
			rf.wire, rf.off = 'f', base+2*len(wireU16)+8*slices.Index(wireF64, f)
		default:
			rf.wire, rf.off = 'v', base+2*len(wireU16)+8*len(wireF64)
			rf.nth = slices.Index(wireUvarint, f)
		}
		out = append(out, rf)
	}
	return out, nil
}

func numericFieldNames() string {
	var names []string
	for _, f := range fields {
		if f.int16 != nil || f.float != nil || f.int64 != nil {
			names = append(names, f.name)
		}
	}
	return fmt.Sprint(names)
}

// value is the field's value in decoded metadata.
func (r *rangeField) value(m *Meta) float64 {
	switch {
	case r.field.int16 != nil:
		return float64(*r.field.int16(m))
	case r.field.float != nil:
		return *r.field.float(m)
	}
	return float64(*r.field.int64(m))
}

func (r *rangeField) holds(v float64) bool { return v >= r.min && v <= r.max }

// rawValue reads the field from encoded request-log metadata; ok is false
// when raw is too short (left to the decoder, which reports it).
func (r *rangeField) rawValue(raw []byte) (float64, bool) {
	switch r.wire {
	case 'u':
		if len(raw) < r.off+2 {
			return 0, false
		}
		return float64(binary.LittleEndian.Uint16(raw[r.off:])), true
	case 'f':
		if len(raw) < r.off+8 {
			return 0, false
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(raw[r.off:])), true
	}
	p := r.off
	for i := 0; ; i++ {
		if p >= len(raw) {
			return 0, false
		}
		v, n := binary.Uvarint(raw[p:])
		if n <= 0 {
			return 0, false
		}
		if i == r.nth {
			return float64(v), true
		}
		p += n
	}
}

// blockMisses reports whether a block's summary rules the range out: its
// status or latency range lies outside.
func (r *rangeField) blockMisses(s *blockSummary) bool {
	switch r.field.name {
	case "status":
		return float64(s.maxStatus) < r.min || float64(s.minStatus) > r.max
	case "latency_ms":
		return s.maxLatency < r.min || s.minLatency > r.max
	}
	return false
}

// blockWithin reports whether every record of the block lies in the range
// by its summary (status and latency only).
func (r *rangeField) blockWithin(s *blockSummary) bool {
	switch r.field.name {
	case "status":
		return float64(s.minStatus) >= r.min && float64(s.maxStatus) <= r.max
	case "latency_ms":
		return s.minLatency >= r.min && s.maxLatency <= r.max
	}
	return false
}
