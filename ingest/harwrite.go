package ingest

// Writing records as a HAR 1.2 file, streamed: the log header, then each
// entry as it is written, then the closing. The standard fields are filled
// so other tools (browsers, Charles, HAR viewers) read the file; what HAR
// has no place for goes in the custom entry field "_logstore" (README: "HAR
// export"), which readHAR reads back, so export then ingest gives the same
// records, ids included.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

// ErrNotHAR: a record has a value HAR (JSON text) cannot carry exactly,
// such as a string that is not valid UTF-8; it comes wrapped with the
// record's id and the field's name, never the value.
var ErrNotHAR = errors.New("logstore/ingest: record not representable in HAR")

// ErrWriterClosed: Write after Close.
var ErrWriterClosed = errors.New("logstore/ingest: HAR writer closed")

// HARWriter writes records as one HAR 1.2 document, an entry at a time:
// memory does not grow with the number of records. Close writes the end of
// the document (an empty "entries" list if nothing was written); the file
// is not valid HAR without it. Errors are sticky.
type HARWriter struct {
	w        io.Writer
	name     string
	version  string
	started  bool
	closed   bool
	n        int
	err      error
	buf      bytes.Buffer
	enc      *json.Encoder
	unsealed []string
}

// NewHARWriter returns a writer to w; creator names the program in the
// log's creator field, as "name" or "name version".
func NewHARWriter(w io.Writer, creator string) *HARWriter {
	name, version, _ := strings.Cut(creator, " ")
	if name == "" {
		name = "logstore"
	}
	h := &HARWriter{w: w, name: name, version: version}
	h.enc = json.NewEncoder(&h.buf)
	h.enc.SetEscapeHTML(false)
	return h
}

// Entries is the number of entries written so far.
func (h *HARWriter) Entries() int { return h.n }

func (h *HARWriter) header() error {
	if h.started {
		return nil
	}
	h.started = true
	c, _ := json.Marshal(map[string]string{"name": h.name, "version": h.version})
	_, err := fmt.Fprintf(h.w, `{"log":{"version":"1.2","creator":%s,"entries":[`, c)
	return err
}

// Write adds one entry.
func (h *HARWriter) Write(rec engine.Record) error {
	if h.closed {
		return ErrWriterClosed
	}
	if h.err != nil {
		return h.err
	}
	e, err := harEntryOf(&rec)
	if err != nil {
		return err // the record is refused; the writer is still good
	}
	h.buf.Reset()
	if h.n > 0 {
		h.buf.WriteByte(',')
	}
	h.buf.WriteByte('\n')
	if err := h.enc.Encode(e); err != nil {
		return fmt.Errorf("%w: record %s: %v", ErrNotHAR, rec.ID, err)
	}
	h.buf.Truncate(h.buf.Len() - 1) // the encoder's newline
	if h.err = h.header(); h.err != nil {
		return h.err
	}
	if _, h.err = h.w.Write(h.buf.Bytes()); h.err != nil {
		return h.err
	}
	h.n++
	return nil
}

// Close writes the end of the document. It does not close the underlying
// writer.
func (h *HARWriter) Close() error {
	if h.closed {
		return h.err
	}
	h.closed = true
	if h.err != nil {
		return h.err
	}
	if h.err = h.header(); h.err != nil {
		return h.err
	}
	_, h.err = io.WriteString(h.w, "\n]}}\n")
	return h.err
}

// The entry as written: HAR 1.2 field order, required fields always there.
type (
	harOutEntry struct {
		StartedDateTime string         `json:"startedDateTime"`
		Time            float64        `json:"time"`
		Request         harOutRequest  `json:"request"`
		Response        harOutResponse `json:"response"`
		Cache           struct{}       `json:"cache"`
		Timings         harOutTimings  `json:"timings"`
		ServerIPAddress string         `json:"serverIPAddress,omitempty"`
		Logstore        harLogstore    `json:"_logstore"`
	}
	harOutRequest struct {
		Method      string      `json:"method"`
		URL         string      `json:"url"`
		HTTPVersion string      `json:"httpVersion"`
		Cookies     []harNV     `json:"cookies"`
		Headers     []harNV     `json:"headers"`
		QueryString []harNV     `json:"queryString"`
		PostData    *harOutPost `json:"postData,omitempty"`
		HeadersSize int64       `json:"headersSize"`
		BodySize    int64       `json:"bodySize"`
	}
	harOutPost struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding,omitempty"`
	}
	harOutResponse struct {
		Status      int           `json:"status"`
		StatusText  string        `json:"statusText"`
		HTTPVersion string        `json:"httpVersion"`
		Cookies     []harNV       `json:"cookies"`
		Headers     []harNV       `json:"headers"`
		Content     harOutContent `json:"content"`
		RedirectURL string        `json:"redirectURL"`
		HeadersSize int64         `json:"headersSize"`
		BodySize    int64         `json:"bodySize"`
	}
	harOutContent struct {
		Size     int64   `json:"size"`
		MimeType string  `json:"mimeType"`
		Text     *string `json:"text,omitempty"`
		Encoding string  `json:"encoding,omitempty"`
	}
	harOutTimings struct {
		Send    float64 `json:"send"`
		Wait    float64 `json:"wait"`
		Receive float64 `json:"receive"`
	}
)

// harLogstore is the "_logstore" entry field as written: every field of the
// record HAR has no exact place for, each always present (so that a value
// the reader would derive otherwise, a trace id from a traceparent header
// say, is overridden even when it is empty).
type harLogstore struct {
	ID                *engine.ID        `json:"id,omitempty"`
	SessionID         string            `json:"session_id"`
	TraceID           string            `json:"trace_id"`
	SpanID            string            `json:"span_id"`
	Host              string            `json:"host"`
	UpstreamStatus    int               `json:"upstream_status"`
	ResponseSource    string            `json:"response_source"`
	LatencyMs         float64           `json:"latency_ms"`
	UpstreamLatencyMs float64           `json:"upstream_latency_ms"`
	GatewayLatencyMs  float64           `json:"gateway_latency_ms"`
	RouteID           string            `json:"route_id"`
	ServiceID         string            `json:"service_id"`
	RequestSize       int64             `json:"request_size"`
	ResponseSize      int64             `json:"response_size"`
	Path              string            `json:"path"`
	Query             string            `json:"query"`
	ClientIP          string            `json:"client_ip"`
	ConsumerID        string            `json:"consumer_id"`
	Attributes        map[string]string `json:"attributes"`
	HasPayload        bool              `json:"has_payload"`
	// Originals: the sealed originals of masked values, in an export made
	// with them (logstore export --reveal).
	Originals []engine.Original `json:"originals,omitempty"`
}

// harEntryOf maps a record to its HAR entry.
func harEntryOf(r *engine.Record) (*harOutEntry, error) {
	if f := nonUTF8Field(r); f != "" {
		return nil, fmt.Errorf("%w: record %s: %s is not valid UTF-8 (HAR is JSON text; value withheld)", ErrNotHAR, r.ID, f)
	}
	t := r.Time
	if _, off := t.Zone(); off%60 != 0 {
		t = t.UTC() // RFC 3339 offsets are whole minutes: the same instant in UTC
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("%w: record %s: time outside the years 0..9999 RFC 3339 can write", ErrNotHAR, r.ID)
	}
	e := &harOutEntry{
		StartedDateTime: t.Format(time.RFC3339Nano),
		Time:            r.LatencyMs,
		Request: harOutRequest{
			Method: r.Method, URL: harURL(r), HTTPVersion: httpVersion(r),
			Cookies: requestCookies(r.RequestHeaders), Headers: harHeaders(r.RequestHeaders), QueryString: queryList(r.Query),
			HeadersSize: -1, BodySize: knownSize(r.RequestSize),
		},
		Response: harOutResponse{
			Status: r.Status, StatusText: http.StatusText(r.Status), HTTPVersion: httpVersion(r),
			Cookies: responseCookies(r.ResponseHeaders), Headers: harHeaders(r.ResponseHeaders),
			RedirectURL: headerValue(r.ResponseHeaders, "Location"), HeadersSize: -1, BodySize: knownSize(r.ResponseSize),
		},
		Timings:         harOutTimings{Wait: r.UpstreamLatencyMs, Receive: max(0, r.LatencyMs-r.UpstreamLatencyMs)},
		ServerIPAddress: r.Attributes["server_ip"],
		Logstore:        logstoreOf(r),
	}
	e.Response.Content.MimeType = headerValue(r.ResponseHeaders, "Content-Type")
	if p := r.Payload; p != nil {
		if p.RequestContentType != "" || len(p.RequestBody) > 0 {
			text, enc := harBodyText(p.RequestBody)
			e.Request.PostData = &harOutPost{MimeType: p.RequestContentType, Text: text, Encoding: enc}
		}
		e.Request.BodySize = int64(len(p.RequestBody))
		c := &e.Response.Content
		c.MimeType, c.Size = p.ResponseContentType, int64(len(p.ResponseBody))
		if len(p.ResponseBody) > 0 {
			text, enc := harBodyText(p.ResponseBody)
			c.Text, c.Encoding = &text, enc
		}
		e.Response.BodySize = c.Size
	}
	return e, nil
}

// knownSize is a record's request or response size as HAR's bodySize
// without captured bodies: -1 (unknown) for 0.
func knownSize(n int64) int64 {
	if n > 0 {
		return n
	}
	return -1
}

func logstoreOf(r *engine.Record) harLogstore {
	l := harLogstore{
		SessionID: r.SessionID, TraceID: r.TraceID, SpanID: r.SpanID, Host: r.Host,
		UpstreamStatus: r.UpstreamStatus, ResponseSource: r.ResponseSource,
		LatencyMs: r.LatencyMs, UpstreamLatencyMs: r.UpstreamLatencyMs, GatewayLatencyMs: r.GatewayLatencyMs,
		RouteID: r.RouteID, ServiceID: r.ServiceID, RequestSize: r.RequestSize, ResponseSize: r.ResponseSize,
		Path: r.Path, Query: r.Query, ClientIP: r.ClientIP, ConsumerID: r.ConsumerID,
		Attributes: r.Attributes, HasPayload: r.Payload != nil, Originals: r.Originals,
	}
	if l.Attributes == nil {
		l.Attributes = map[string]string{}
	}
	if !r.ID.IsZero() {
		id := r.ID
		l.ID = &id
	}
	return l
}

// nonUTF8Field names the first string field of r that JSON cannot carry.
func nonUTF8Field(r *engine.Record) string {
	names := []string{"session_id", "trace_id", "span_id", "method", "host", "response_source", "route_id",
		"service_id", "path", "query", "client_ip", "consumer_id"}
	for i, s := range []string{r.SessionID, r.TraceID, r.SpanID, r.Method, r.Host, r.ResponseSource, r.RouteID,
		r.ServiceID, r.Path, r.Query, r.ClientIP, r.ConsumerID} {
		if !utf8.ValidString(s) {
			return names[i]
		}
	}
	for _, h := range r.RequestHeaders {
		if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Value) {
			return "request_headers"
		}
	}
	for _, h := range r.ResponseHeaders {
		if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Value) {
			return "response_headers"
		}
	}
	for k, v := range r.Attributes {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "attributes"
		}
	}
	if p := r.Payload; p != nil && (!utf8.ValidString(p.RequestContentType) || !utf8.ValidString(p.ResponseContentType)) {
		return "payload content type"
	}
	return ""
}

// harBodyText is a body as HAR text: itself when it is valid UTF-8, else base64.
func harBodyText(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// harURL is an absolute URL for the request (HAR requires one). The record
// keeps no scheme: https is written. A record without a host, or one the
// URL syntax refuses, gets the host "unknown.invalid". The exact host, path
// and query are in _logstore.
func harURL(r *engine.Record) string {
	host := r.Host
	if host == "" {
		host = "unknown.invalid"
	}
	path := r.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	s := "https://" + host + path
	if r.Query != "" {
		s += "?" + r.Query
	}
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return s
	}
	u := &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: url.PathEscape(r.Query)}
	if _, err := url.Parse(u.String()); err != nil {
		u.Host = "unknown.invalid"
	}
	return u.String()
}

func httpVersion(r *engine.Record) string {
	if p := r.Attributes["protocol"]; strings.HasPrefix(p, "HTTP/") {
		return p
	}
	return "HTTP/1.1"
}

// harHeaders is a header list, empty rather than null.
func harHeaders(hs []engine.Header) []harNV {
	out := make([]harNV, len(hs))
	for i, h := range hs {
		out[i] = harNV(h)
	}
	return out
}

func headerValue(hs []engine.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// queryList is the query as HAR's name/value list, in order; a part that
// does not unescape is given as it is.
func queryList(q string) []harNV {
	out := []harNV{}
	for _, part := range strings.Split(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out = append(out, harNV{Name: unescapeQuery(k), Value: unescapeQuery(v)})
	}
	return out
}

func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil && utf8.ValidString(u) {
		return u
	}
	return s
}

// requestCookies lists the name=value pairs of the Cookie headers.
func requestCookies(hs []engine.Header) []harNV {
	out := []harNV{}
	for _, h := range hs {
		if !strings.EqualFold(h.Name, "Cookie") {
			continue
		}
		for _, c := range strings.Split(h.Value, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(c), "="); ok && k != "" {
				out = append(out, harNV{Name: k, Value: v})
			}
		}
	}
	return out
}

// responseCookies lists the name=value of each Set-Cookie header.
func responseCookies(hs []engine.Header) []harNV {
	out := []harNV{}
	for _, h := range hs {
		if !strings.EqualFold(h.Name, "Set-Cookie") {
			continue
		}
		c, _, _ := strings.Cut(h.Value, ";")
		if k, v, ok := strings.Cut(strings.TrimSpace(c), "="); ok && k != "" {
			out = append(out, harNV{Name: k, Value: v})
		}
	}
	return out
}
