package engine

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldKind is the value type of a plaintext field.
type FieldKind uint8

const (
	KindString FieldKind = iota
	KindInt              // status codes (u16 on disk) and sizes (uvarint on disk)
	KindFloat            // latencies in milliseconds
	KindTime
	KindID
)

// Field describes one plaintext field of a record. Fields is the one table
// of the record's plaintext schema: the metadata codec, the secondary index
// keys, validation, the index-mismatch report and the query language's
// field list are all derived from it. Adding a plaintext field means adding
// a Meta struct field and one row here (and, because the metadata encoding
// is positional, a new encoding version).
type Field struct {
	// Name is the JSON and query-language name.
	Name string
	// Kind is the value type.
	Kind FieldKind
	// Indexed says the field has a secondary index (time has the time
	// index, which every scan can bound).
	Indexed bool

	index byte // the field byte of its 'i' keys (format.go), 0 if not indexed
	// Exactly one accessor is set, matching Kind (id and time have none:
	// they are the fixed part of the encoding).
	str   func(*Meta) *string
	int16 func(*Meta) *int   // a u16 on disk (status codes, 0..999)
	int64 func(*Meta) *int64 // a uvarint on disk (sizes, >= 0)
	float func(*Meta) *float64
	// check, when set, replaces the generic string check (method).
	check func(string) error
}

// Fields are the plaintext fields, in the README's order. Within each wire
// group (u16, f64, uvarint, string) the table order is the encoding order.
var Fields = []*Field{
	{Name: "id", Kind: KindID},
	{Name: "time", Kind: KindTime},
	{Name: "session_id", Indexed: true, index: idxSessionID, str: func(m *Meta) *string { return &m.SessionID }},
	{Name: "trace_id", Indexed: true, index: idxTraceID, str: func(m *Meta) *string { return &m.TraceID }},
	{Name: "span_id", str: func(m *Meta) *string { return &m.SpanID }},
	{Name: "method", Indexed: true, index: idxMethod, str: func(m *Meta) *string { return &m.Method }, check: checkMethod},
	{Name: "host", Indexed: true, index: idxHost, str: func(m *Meta) *string { return &m.Host }},
	{Name: "status", Kind: KindInt, Indexed: true, index: idxStatus, int16: func(m *Meta) *int { return &m.Status }},
	{Name: "upstream_status", Kind: KindInt, int16: func(m *Meta) *int { return &m.UpstreamStatus }},
	{Name: "response_source", str: func(m *Meta) *string { return &m.ResponseSource }},
	{Name: "latency_ms", Kind: KindFloat, float: func(m *Meta) *float64 { return &m.LatencyMs }},
	{Name: "upstream_latency_ms", Kind: KindFloat, float: func(m *Meta) *float64 { return &m.UpstreamLatencyMs }},
	{Name: "gateway_latency_ms", Kind: KindFloat, float: func(m *Meta) *float64 { return &m.GatewayLatencyMs }},
	{Name: "route_id", Indexed: true, index: idxRouteID, str: func(m *Meta) *string { return &m.RouteID }},
	{Name: "service_id", Indexed: true, index: idxServiceID, str: func(m *Meta) *string { return &m.ServiceID }},
	{Name: "request_size", Kind: KindInt, int64: func(m *Meta) *int64 { return &m.RequestSize }},
	{Name: "response_size", Kind: KindInt, int64: func(m *Meta) *int64 { return &m.ResponseSize }},
}

// The wire groups of the metadata encoding, derived from Fields once.
var (
	wireU16, wireF64, wireUvarint, wireString []*Field
	// indexedStrings are the indexed string fields; stringIndexes the same
	// by their key byte.
	indexedStrings []*Field
	stringIndexes  = map[byte]*Field{}
	// indexes are all indexed fields by their key byte.
	indexes     = map[byte]*Field{}
	fieldByName = map[string]*Field{}
	fieldStatus *Field
)

func init() {
	for _, f := range Fields {
		fieldByName[f.Name] = f
		if f.Indexed {
			indexes[f.index] = f
		}
		switch {
		case f.str != nil:
			wireString = append(wireString, f)
			if f.Indexed {
				indexedStrings = append(indexedStrings, f)
				stringIndexes[f.index] = f
			}
		case f.int16 != nil:
			wireU16 = append(wireU16, f)
		case f.int64 != nil:
			wireUvarint = append(wireUvarint, f)
		case f.float != nil:
			wireF64 = append(wireF64, f)
		}
	}
	fieldStatus = fieldByName["status"]
}

// LookupField returns the plaintext field called name, or nil.
func LookupField(name string) *Field { return fieldByName[name] }

// String returns a string field's value ("" for other kinds but id).
func (f *Field) String(m *Meta) string {
	switch {
	case f.str != nil:
		return *f.str(m)
	case f.Kind == KindID:
		return m.ID.String()
	}
	return ""
}

// Number returns a numeric field's value (0 for other kinds).
func (f *Field) Number(m *Meta) float64 {
	switch {
	case f.int16 != nil:
		return float64(*f.int16(m))
	case f.int64 != nil:
		return float64(*f.int64(m))
	case f.float != nil:
		return *f.float(m)
	}
	return 0
}

// value is the field's typed value, for messages (%#v prints it as Go does).
func (f *Field) value(m *Meta) any {
	switch {
	case f.Kind == KindID:
		return m.ID.String()
	case f.Kind == KindTime:
		return m.Time.Format(time.RFC3339Nano)
	case f.str != nil:
		return *f.str(m)
	case f.int16 != nil:
		return *f.int16(m)
	case f.int64 != nil:
		return *f.int64(m)
	}
	return *f.float(m)
}

// validateMeta checks the plaintext fields against the schema and limits.
func validateMeta(m *Meta, l Limits) error {
	if m.Time.IsZero() {
		return fmt.Errorf("%w: time is required", ErrInvalidRecord)
	}
	for _, f := range wireString {
		if err := f.checkString(*f.str(m), l); err != nil {
			return err
		}
	}
	for _, f := range wireU16 {
		if v := *f.int16(m); v < 0 || v > 999 {
			return fmt.Errorf("%w: %s %d out of 0..999", ErrInvalidRecord, f.Name, v)
		}
	}
	for _, f := range wireF64 {
		if v := *f.float(m); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s %v must be a finite number >= 0", ErrInvalidRecord, f.Name, v)
		}
	}
	for _, f := range wireUvarint {
		if *f.int64(m) < 0 {
			return fmt.Errorf("%w: sizes must be >= 0 (%s)", ErrInvalidRecord, f.Name)
		}
	}
	return nil
}

func (f *Field) checkString(v string, l Limits) error {
	if f.check != nil {
		return f.check(v)
	}
	if len(v) > l.MaxFieldBytes {
		return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrRecordTooLarge, f.Name, len(v), l.MaxFieldBytes)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRecord, f.Name)
	}
	return nil
}

func checkMethod(v string) error {
	if v == "" || len(v) > 32 || strings.ContainsAny(v, " \t\r\n") {
		return fmt.Errorf("%w: method %q must be 1..32 characters without spaces", ErrInvalidRecord, v)
	}
	return nil
}
