package engine

import (
	"fmt"
	"math"
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

// Field describes one plaintext field of a record. Fields returns the one
// table of the record's plaintext schema: the metadata codec, the secondary index
// keys, validation, the index-mismatch report and the query language's
// field list are all derived from it. Adding a plaintext field means adding
// a Meta struct field and one row here (and, because the metadata encoding
// is positional, a new encoding version).
type Field struct {
	name    string    // the JSON and query-language name
	kind    FieldKind // the value type
	indexed bool      // has a secondary index (time has the time index, which bounds every scan)

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

// fields are the plaintext fields, in the README's order. Within each wire
// group (u16, f64, uvarint, string) the table order is the encoding order.
var fields = []*Field{
	{name: "id", kind: KindID},
	{name: "time", kind: KindTime},
	{name: "session_id", indexed: true, index: idxSessionID, str: func(m *Meta) *string { return &m.SessionID }},
	{name: "trace_id", indexed: true, index: idxTraceID, str: func(m *Meta) *string { return &m.TraceID }},
	{name: "span_id", str: func(m *Meta) *string { return &m.SpanID }},
	{name: "method", indexed: true, index: idxMethod, str: func(m *Meta) *string { return &m.Method }, check: checkMethod},
	{name: "host", indexed: true, index: idxHost, str: func(m *Meta) *string { return &m.Host }},
	{name: "status", kind: KindInt, indexed: true, index: idxStatus, int16: func(m *Meta) *int { return &m.Status }},
	{name: "upstream_status", kind: KindInt, int16: func(m *Meta) *int { return &m.UpstreamStatus }},
	{name: "response_source", str: func(m *Meta) *string { return &m.ResponseSource }},
	{name: "latency_ms", kind: KindFloat, float: func(m *Meta) *float64 { return &m.LatencyMs }},
	{name: "upstream_latency_ms", kind: KindFloat, float: func(m *Meta) *float64 { return &m.UpstreamLatencyMs }},
	{name: "gateway_latency_ms", kind: KindFloat, float: func(m *Meta) *float64 { return &m.GatewayLatencyMs }},
	{name: "route_id", indexed: true, index: idxRouteID, str: func(m *Meta) *string { return &m.RouteID }},
	{name: "service_id", indexed: true, index: idxServiceID, str: func(m *Meta) *string { return &m.ServiceID }},
	{name: "request_size", kind: KindInt, int64: func(m *Meta) *int64 { return &m.RequestSize }},
	{name: "response_size", kind: KindInt, int64: func(m *Meta) *int64 { return &m.ResponseSize }},
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
	for _, f := range fields {
		fieldByName[f.name] = f
		if f.indexed {
			indexes[f.index] = f
		}
		switch {
		case f.str != nil:
			wireString = append(wireString, f)
			if f.indexed {
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

// Times are stored as int64 Unix nanoseconds: the representable range.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

func timeRepresentable(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// Fields returns the plaintext fields, in the README's order (a copy: the
// schema itself cannot be changed from outside).
func Fields() []*Field { return append([]*Field(nil), fields...) }

// LookupField returns the plaintext field called name, or nil.
func LookupField(name string) *Field { return fieldByName[name] }

// Name is the field's JSON and query-language name.
func (f *Field) Name() string { return f.name }

// Kind is the field's value type.
func (f *Field) Kind() FieldKind { return f.kind }

// Indexed reports whether the field has a secondary index (ByField).
func (f *Field) Indexed() bool { return f.indexed }

// inSchema reports whether f is a row of the schema, not a look-alike.
func (f *Field) inSchema() bool { return f != nil && fieldByName[f.name] == f }

// String returns a string field's value ("" for other kinds but id).
func (f *Field) String(m *Meta) string {
	switch {
	case f.str != nil:
		return *f.str(m)
	case f.kind == KindID:
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

// validateMeta checks the plaintext fields against the schema and limits.
func validateMeta(m *Meta, l Limits) error {
	if m.Time.IsZero() {
		return fmt.Errorf("%w: time is required", ErrInvalidRecord)
	}
	if !timeRepresentable(m.Time) {
		return fmt.Errorf("%w: time %s outside %d..%d (stored as Unix nanoseconds)", ErrInvalidRecord, m.Time.Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	for _, f := range wireString {
		if err := f.checkString(*f.str(m), l); err != nil {
			return err
		}
	}
	for _, f := range wireU16 {
		if v := *f.int16(m); v < 0 || v > 999 {
			return fmt.Errorf("%w: %s %d out of 0..999", ErrInvalidRecord, f.name, v)
		}
	}
	for _, f := range wireF64 {
		if v := *f.float(m); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s %v must be a finite number >= 0", ErrInvalidRecord, f.name, v)
		}
	}
	for _, f := range wireUvarint {
		if *f.int64(m) < 0 {
			return fmt.Errorf("%w: sizes must be >= 0 (%s)", ErrInvalidRecord, f.name)
		}
	}
	return nil
}

func (f *Field) checkString(v string, l Limits) error {
	if f.check != nil {
		return f.check(v)
	}
	if len(v) > l.MaxFieldBytes {
		return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrRecordTooLarge, f.name, len(v), l.MaxFieldBytes)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRecord, f.name)
	}
	return nil
}

func checkMethod(v string) error {
	if !ValidMethod(v) {
		return fmt.Errorf("%w: method %q must be 1..32 characters of an HTTP token (RFC 9110)", ErrInvalidRecord, v)
	}
	return nil
}

// MaxMethodBytes bounds a record's method.
const MaxMethodBytes = 32

// tchar marks the bytes of an HTTP token (RFC 9110 tchar).
var tchar = func() (t [256]bool) {
	for _, c := range []byte("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
		t[c] = true
	}
	return t
}()

// ValidMethod reports whether m is a method Append accepts: 1..32 bytes of
// an HTTP token, stored as given (methods are case-sensitive).
func ValidMethod(m string) bool {
	if len(m) == 0 || len(m) > MaxMethodBytes {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !tchar[m[i]] {
			return false
		}
	}
	return true
}
