package engine

import (
	"fmt"
	"time"
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

// Meta is the plaintext part of a record: the fields that are indexed and
// readable without a key (Fields describes each). HasPayload says whether
// bodies were captured; Append derives it from Record.Payload.
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
}

// Record is one captured request: its plaintext Meta and the sealed fields,
// which are encrypted under the tenant's key and never indexed (README,
// docs/format/record.md): Path, Query, ClientIP, ConsumerID, headers,
// Attributes and the Payload.
type Record struct {
	Meta

	Path            string            `json:"path"`
	Query           string            `json:"query,omitempty"`
	ClientIP        string            `json:"client_ip,omitempty"`
	ConsumerID      string            `json:"consumer_id,omitempty"`
	RequestHeaders  []Header          `json:"request_headers,omitempty"`
	ResponseHeaders []Header          `json:"response_headers,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	Payload         *Payload          `json:"payload,omitempty"`
	// Originals are the values the tenant's redaction policy masked with a
	// "seal" action (redaction.go), sealed with the request log; the
	// record's other fields hold the masked copies. Append fills it; a
	// caller's Originals are stored as given (an export read back).
	Originals []Original `json:"originals,omitempty"`
}

// Original is one sealed original of a masked value: Where names the place
// ("request_header:Authorization", "request_body:$.card.number"; the
// redact package's Finding.Where) and Value is what was there.
type Original struct {
	Where string `json:"where"`
	Value string `json:"value"`
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
	if err := validateMeta(&r.Meta, l); err != nil {
		return err
	}
	if n := len(r.RequestHeaders) + len(r.ResponseHeaders); n > l.MaxHeaders {
		return fmt.Errorf("%w: %d headers, over the limit of %d", ErrRecordTooLarge, n, l.MaxHeaders)
	}
	return nil
}

// meta is the record's plaintext part as stored: HasPayload is derived from
// Payload, whatever the caller set.
func (r *Record) meta() Meta {
	m := r.Meta
	m.HasPayload = r.Payload != nil
	return m
}
