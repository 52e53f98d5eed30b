package ingest

import (
	"fmt"

	"github.com/logstore/logstore/engine"
)

// harLogstoreIn is the "_logstore" entry field as read (HARWriter writes
// it: harLogstore). Every member is optional: one that is there overrides
// what the reader derives from the standard fields, one that is not (or is
// null) leaves it. Unknown members are ignored.
type harLogstoreIn struct {
	ID                *engine.ID         `json:"id"`
	SessionID         *string            `json:"session_id"`
	TraceID           *string            `json:"trace_id"`
	SpanID            *string            `json:"span_id"`
	Host              *string            `json:"host"`
	UpstreamStatus    *int               `json:"upstream_status"`
	ResponseSource    *string            `json:"response_source"`
	LatencyMs         *float64           `json:"latency_ms"`
	UpstreamLatencyMs *float64           `json:"upstream_latency_ms"`
	GatewayLatencyMs  *float64           `json:"gateway_latency_ms"`
	RouteID           *string            `json:"route_id"`
	ServiceID         *string            `json:"service_id"`
	RequestSize       *int64             `json:"request_size"`
	ResponseSize      *int64             `json:"response_size"`
	Path              *string            `json:"path"`
	Query             *string            `json:"query"`
	ClientIP          *string            `json:"client_ip"`
	ConsumerID        *string            `json:"consumer_id"`
	Attributes        *map[string]string `json:"attributes"`
	HasPayload        *bool              `json:"has_payload"`
	Originals         []engine.Original  `json:"originals"`
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// apply overrides the fields of rec (derived from e's standard fields)
// with the ones l has.
func (l *harLogstoreIn) apply(rec *engine.Record, e *harEntry) error {
	set(&rec.ID, l.ID)
	set(&rec.SessionID, l.SessionID)
	set(&rec.TraceID, l.TraceID)
	set(&rec.SpanID, l.SpanID)
	set(&rec.Host, l.Host)
	set(&rec.UpstreamStatus, l.UpstreamStatus)
	set(&rec.ResponseSource, l.ResponseSource)
	set(&rec.LatencyMs, l.LatencyMs)
	set(&rec.UpstreamLatencyMs, l.UpstreamLatencyMs)
	set(&rec.GatewayLatencyMs, l.GatewayLatencyMs)
	set(&rec.RouteID, l.RouteID)
	set(&rec.ServiceID, l.ServiceID)
	set(&rec.RequestSize, l.RequestSize)
	set(&rec.ResponseSize, l.ResponseSize)
	set(&rec.Path, l.Path)
	set(&rec.Query, l.Query)
	set(&rec.ClientIP, l.ClientIP)
	set(&rec.ConsumerID, l.ConsumerID)
	set(&rec.Attributes, l.Attributes)
	rec.Originals = l.Originals
	if len(rec.Attributes) == 0 {
		rec.Attributes = nil
	}
	if l.HasPayload != nil {
		p, err := exactPayload(e, *l.HasPayload)
		if err != nil {
			return err
		}
		rec.Payload = p
	}
	return nil
}

// exactPayload is the payload of an entry whose _logstore says whether it
// has one: the request's content type and body from postData (none without
// it), the response's from content, an empty body being none.
func exactPayload(e *harEntry, has bool) (*engine.Payload, error) {
	if !has {
		return nil, nil
	}
	p := &engine.Payload{ResponseContentType: e.Response.Content.MimeType}
	if pd := e.Request.PostData; pd != nil {
		body, err := decodeBody([]byte(pd.Text), pd.Encoding)
		if err != nil {
			return nil, fmt.Errorf("request.postData: %v", err)
		}
		p.RequestContentType, p.RequestBody = pd.MimeType, body
	}
	body, err := decodeBody([]byte(e.Response.Content.Text), e.Response.Content.Encoding)
	if err != nil {
		return nil, fmt.Errorf("response.content: %v", err)
	}
	if len(body) > 0 {
		p.ResponseBody = body
	}
	if len(p.RequestBody) == 0 {
		p.RequestBody = nil
	}
	return p, nil
}
