package engine

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Header is one HTTP header line; order and duplicates are kept so a capture
// round-trips byte for byte.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Payload holds the captured bodies. It is stored in its own blocks so a
// request log can be read without decrypting its payload.
type Payload struct {
	RequestContentType  string `json:"request_content_type,omitempty"`
	RequestBody         []byte `json:"request_body,omitempty"`
	ResponseContentType string `json:"response_content_type,omitempty"`
	ResponseBody        []byte `json:"response_body,omitempty"`
}

// Record is one captured request. The field classification (README,
// docs/format/record.md):
//
//   - plaintext and indexed: ID, Time, SessionID, TraceID, SpanID, Method, Host,
//     Status, UpstreamStatus, ResponseSource, the three latencies, RouteID,
//     ServiceID, RequestSize, ResponseSize;
//   - sealed (encrypted, never indexed, never written in plaintext): Path,
//     Query, ClientIP, ConsumerID, headers, Attributes and the Payload.
type Record struct {
	ID                ID        `json:"id"`
	Time              time.Time `json:"time"`
	SessionID         string    `json:"session_id,omitempty"`
	TraceID           string    `json:"trace_id,omitempty"`
	SpanID            string    `json:"span_id,omitempty"`
	Method            string    `json:"method"`
	Host              string    `json:"host,omitempty"`
	Status            int       `json:"status"`
	UpstreamStatus    int       `json:"upstream_status,omitempty"`
	ResponseSource    string    `json:"response_source,omitempty"`
	LatencyMs         float64   `json:"latency_ms"`
	UpstreamLatencyMs float64   `json:"upstream_latency_ms,omitempty"`
	GatewayLatencyMs  float64   `json:"gateway_latency_ms,omitempty"`
	RouteID           string    `json:"route_id,omitempty"`
	ServiceID         string    `json:"service_id,omitempty"`
	RequestSize       int64     `json:"request_size,omitempty"`
	ResponseSize      int64     `json:"response_size,omitempty"`

	Path            string            `json:"path"`
	Query           string            `json:"query,omitempty"`
	ClientIP        string            `json:"client_ip,omitempty"`
	ConsumerID      string            `json:"consumer_id,omitempty"`
	RequestHeaders  []Header          `json:"request_headers,omitempty"`
	ResponseHeaders []Header          `json:"response_headers,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	Payload         *Payload          `json:"payload,omitempty"`
}

// Meta is the plaintext, indexable part of a record plus where it is stored.
// Reading it never needs a key.
type Meta struct {
	ID                ID        `json:"id"`
	Time              time.Time `json:"time"`
	SessionID         string    `json:"session_id,omitempty"`
	TraceID           string    `json:"trace_id,omitempty"`
	SpanID            string    `json:"span_id,omitempty"`
	Method            string    `json:"method"`
	Host              string    `json:"host,omitempty"`
	Status            int       `json:"status"`
	UpstreamStatus    int       `json:"upstream_status,omitempty"`
	ResponseSource    string    `json:"response_source,omitempty"`
	LatencyMs         float64   `json:"latency_ms"`
	UpstreamLatencyMs float64   `json:"upstream_latency_ms,omitempty"`
	GatewayLatencyMs  float64   `json:"gateway_latency_ms,omitempty"`
	RouteID           string    `json:"route_id,omitempty"`
	ServiceID         string    `json:"service_id,omitempty"`
	RequestSize       int64     `json:"request_size,omitempty"`
	ResponseSize      int64     `json:"response_size,omitempty"`
	HasPayload        bool      `json:"has_payload"`
	Loc               Locator   `json:"-"`
}

// Locator is where a record lives: segment, block frame offset and sequence,
// and the record's index in the block.
type Locator struct {
	Segment [16]byte
	Offset  int64
	Seq     uint64
	Index   int
}

// Limits bound what one record may hold.
type Limits struct {
	// MaxRecordBytes bounds a record's encoded size, payload included
	// (default 8 MiB).
	MaxRecordBytes int
	// MaxHeaders bounds request plus response headers (default 256).
	MaxHeaders int
	// MaxFieldBytes bounds each plaintext string field (default 1024).
	MaxFieldBytes int
}

func (l *Limits) setDefaults() {
	if l.MaxRecordBytes == 0 {
		l.MaxRecordBytes = 8 << 20
	}
	if l.MaxHeaders == 0 {
		l.MaxHeaders = 256
	}
	if l.MaxFieldBytes == 0 {
		l.MaxFieldBytes = 1024
	}
}

// Validate checks a record against the default limits, as Append will
// (ingesters call it to report a bad record at its place in the input).
func (r *Record) Validate() error {
	var l Limits
	l.setDefaults()
	return r.validate(l)
}

// validate checks a record against the limits before anything is written.
func (r *Record) validate(l Limits) error {
	if r.Time.IsZero() {
		return fmt.Errorf("%w: time is required", ErrInvalidRecord)
	}
	if r.Method == "" || len(r.Method) > 32 || strings.ContainsAny(r.Method, " \t\r\n") {
		return fmt.Errorf("%w: method %q must be 1..32 characters without spaces", ErrInvalidRecord, r.Method)
	}
	if r.Status < 0 || r.Status > 999 || r.UpstreamStatus < 0 || r.UpstreamStatus > 999 {
		return fmt.Errorf("%w: status %d / upstream status %d out of 0..999", ErrInvalidRecord, r.Status, r.UpstreamStatus)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"latency_ms", r.LatencyMs}, {"upstream_latency_ms", r.UpstreamLatencyMs}, {"gateway_latency_ms", r.GatewayLatencyMs}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("%w: %s %v must be a finite number >= 0", ErrInvalidRecord, f.name, f.v)
		}
	}
	if r.RequestSize < 0 || r.ResponseSize < 0 {
		return fmt.Errorf("%w: sizes must be >= 0", ErrInvalidRecord)
	}
	for _, f := range []struct{ name, v string }{{"session_id", r.SessionID}, {"trace_id", r.TraceID}, {"span_id", r.SpanID},
		{"host", r.Host}, {"response_source", r.ResponseSource}, {"route_id", r.RouteID}, {"service_id", r.ServiceID}} {
		if len(f.v) > l.MaxFieldBytes {
			return fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrRecordTooLarge, f.name, len(f.v), l.MaxFieldBytes)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRecord, f.name)
		}
	}
	if n := len(r.RequestHeaders) + len(r.ResponseHeaders); n > l.MaxHeaders {
		return fmt.Errorf("%w: %d headers, over the limit of %d", ErrRecordTooLarge, n, l.MaxHeaders)
	}
	return nil
}

func (r *Record) meta() Meta {
	return Meta{ID: r.ID, Time: r.Time, SessionID: r.SessionID, TraceID: r.TraceID, SpanID: r.SpanID, Method: r.Method,
		Host: r.Host, Status: r.Status, UpstreamStatus: r.UpstreamStatus, ResponseSource: r.ResponseSource,
		LatencyMs: r.LatencyMs, UpstreamLatencyMs: r.UpstreamLatencyMs, GatewayLatencyMs: r.GatewayLatencyMs,
		RouteID: r.RouteID, ServiceID: r.ServiceID, RequestSize: r.RequestSize, ResponseSize: r.ResponseSize,
		HasPayload: r.Payload != nil}
}

// fill copies the plaintext fields of m into r.
func (r *Record) fill(m *Meta) {
	r.ID, r.Time, r.SessionID, r.TraceID, r.SpanID = m.ID, m.Time, m.SessionID, m.TraceID, m.SpanID
	r.Method, r.Host, r.Status, r.UpstreamStatus, r.ResponseSource = m.Method, m.Host, m.Status, m.UpstreamStatus, m.ResponseSource
	r.LatencyMs, r.UpstreamLatencyMs, r.GatewayLatencyMs = m.LatencyMs, m.UpstreamLatencyMs, m.GatewayLatencyMs
	r.RouteID, r.ServiceID, r.RequestSize, r.ResponseSize = m.RouteID, m.ServiceID, m.RequestSize, m.ResponseSize
}
