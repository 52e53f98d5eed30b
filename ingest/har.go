package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harEntry struct {
	StartedDateTime string       `json:"startedDateTime"`
	Time            float64      `json:"time"`
	Request         *harRequest  `json:"request"`
	Response        *harResponse `json:"response"`
	Timings         struct {
		Send    float64 `json:"send"`
		Wait    float64 `json:"wait"`
		Receive float64 `json:"receive"`
	} `json:"timings"`
	ServerIPAddress string `json:"serverIPAddress"`
	// Logstore is the custom "_logstore" field HARWriter writes
	// (harlogstore.go); its values override what is derived.
	Logstore *harLogstoreIn `json:"_logstore"`
}

type harRequest struct {
	Method      string      `json:"method"`
	URL         string      `json:"url"`
	Headers     reqHeaders  `json:"headers"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	PostData    *harPayload `json:"postData"`
}

type harPayload struct {
	MimeType string   `json:"mimeType"`
	Text     postText `json:"text"`
	Encoding string   `json:"encoding"`
}

type harResponse struct {
	Status      int         `json:"status"`
	Headers     respHeaders `json:"headers"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	Content     struct {
		Size     int64       `json:"size"`
		MimeType string      `json:"mimeType"`
		Text     contentText `json:"text"`
		Encoding string      `json:"encoding"`
	} `json:"content"`
}

// Header lists are counted before they are decoded (an entry with millions
// of headers costs no memory), and bodies are decoded straight to bytes.
type (
	reqHeaders  []harNV
	respHeaders []harNV
	postText    []byte
	contentText []byte
)

func (h *reqHeaders) UnmarshalJSON(b []byte) (err error) {
	*h, err = decodeHeaders(b, "request.headers")
	return err
}

func (h *respHeaders) UnmarshalJSON(b []byte) (err error) {
	*h, err = decodeHeaders(b, "response.headers")
	return err
}

func (t *postText) UnmarshalJSON(b []byte) (err error) {
	*t, err = decodeText(b, "request.postData.text")
	return err
}

func (t *contentText) UnmarshalJSON(b []byte) (err error) {
	*t, err = decodeText(b, "response.content.text")
	return err
}

// kindOf names the JSON kind of a value by its first byte.
func kindOf(b []byte) string {
	if len(b) == 0 {
		return "value"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func decodeHeaders(b []byte, field string) ([]harNV, error) {
	switch kindOf(b) {
	case "null":
		return nil, nil
	case "array":
	default:
		return nil, safeError{fmt.Errorf("field %s: a %s where an array belongs", field, kindOf(b))}
	}
	if n := countElements(b, MaxHeaders+1); n > MaxHeaders {
		return nil, safeError{fmt.Errorf("%w: %s: more than %d headers, over the limit of %d per record", ErrTooLarge, field, MaxHeaders, MaxHeaders)}
	}
	var hs []harNV
	if err := json.Unmarshal(b, &hs); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, safeError{typeError(field+"[]", te)}
		}
		return nil, safeError{fmt.Errorf("field %s: not a list of name/value objects", field)}
	}
	return hs, nil
}

// countElements counts the elements of the JSON array b (valid JSON), up to
// stop.
func countElements(b []byte, stop int) int {
	depth, commas, any := 0, 0, false
	inStr, esc := false, false
scan:
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			inStr = true
		case '[', '{':
			depth++
			if depth == 1 {
				continue
			}
		case ']', '}':
			depth--
			if depth == 0 {
				break scan
			}
		case ',':
			if depth == 1 {
				if commas++; commas+1 >= stop {
					return commas + 1
				}
				continue
			}
		}
		any = true
	}
	if !any {
		return 0
	}
	return commas + 1
}

// decodeText decodes a JSON string to bytes with one copy when it has no
// escapes (the common case), as encoding/json would decode it to a string.
func decodeText(b []byte, field string) ([]byte, error) {
	switch kindOf(b) {
	case "null":
		return nil, nil
	case "string":
	default:
		return nil, safeError{fmt.Errorf("field %s: a %s where a string belongs", field, kindOf(b))}
	}
	tooLarge := func() error {
		return safeError{fmt.Errorf("%w: %s: over %d bytes, more than a record can hold even in base64", ErrTooLarge, field, maxBodyText)}
	}
	if in := b[1 : len(b)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		if len(in) > maxBodyText {
			return nil, tooLarge() // refused before it is copied
		}
		return bytes.Clone(in), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, safeError{fmt.Errorf("field %s: not a JSON string", field)}
	}
	if len(s) > maxBodyText {
		return nil, tooLarge()
	}
	return []byte(s), nil
}

// maxBodyText is the longest body text that can fit in a record: the
// base64 form of a MaxRecordBytes body.
const maxBodyText = (MaxRecordBytes+2)/3*4 + 4

func harRecord(e *harEntry) (engine.Record, error) {
	if e.Request == nil {
		return engine.Record{}, errors.New("entry has no request")
	}
	if e.Response == nil {
		return engine.Record{}, errors.New("entry has no response")
	}
	t, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
	if err != nil {
		return engine.Record{}, errors.New("startedDateTime: not an RFC 3339 time")
	}
	if e.Request.URL == "" {
		return engine.Record{}, errors.New("request.url: missing or empty")
	}
	u, err := url.Parse(e.Request.URL)
	if err != nil {
		return engine.Record{}, badURL("request.url", err)
	}
	if e.Response.Status < 0 || e.Response.Status > 999 {
		return engine.Record{}, errors.New("response.status: out of range 0..999")
	}
	rec := engine.Record{
		Meta: engine.Meta{
			Time:              t,
			Method:            e.Request.Method,
			Host:              u.Host,
			Status:            e.Response.Status,
			LatencyMs:         nonNeg(e.Time),
			UpstreamLatencyMs: nonNeg(e.Timings.Wait),
			RequestSize:       sizeOf(e.Request.HeadersSize, e.Request.BodySize),
			ResponseSize:      sizeOf(e.Response.HeadersSize, e.Response.BodySize),
			ResponseSource:    "upstream",
		},
		Path:            u.EscapedPath(),
		Query:           u.RawQuery,
		RequestHeaders:  headers([]harNV(e.Request.Headers)),
		ResponseHeaders: headers([]harNV(e.Response.Headers)),
	}
	if rec.Path == "" {
		rec.Path = "/"
	}
	if g := rec.LatencyMs - rec.UpstreamLatencyMs; g > 0 {
		rec.GatewayLatencyMs = g
	}
	if e.ServerIPAddress != "" {
		rec.Attributes = map[string]string{"server_ip": strings.Trim(e.ServerIPAddress, "[]")}
	}
	rec.TraceID, rec.SpanID = traceIDs(rec.RequestHeaders)
	if rec.Payload, err = derivedPayload(e); err != nil {
		return engine.Record{}, err
	}
	if e.Logstore != nil {
		if err := e.Logstore.apply(&rec, e); err != nil {
			return engine.Record{}, err
		}
	}
	return rec, nil
}

// derivedPayload is the payload of an entry without _logstore: there is one
// when the request has postData or the response a body.
func derivedPayload(e *harEntry) (*engine.Payload, error) {
	var p engine.Payload
	has := false
	if pd := e.Request.PostData; pd != nil {
		body, err := decodeBody([]byte(pd.Text), pd.Encoding)
		if err != nil {
			return nil, fmt.Errorf("request.postData: %v", err)
		}
		p.RequestContentType, p.RequestBody, has = pd.MimeType, body, true
	}
	c := e.Response.Content
	if len(c.Text) > 0 || c.Encoding != "" {
		body, err := decodeBody([]byte(c.Text), c.Encoding)
		if err != nil {
			return nil, fmt.Errorf("response.content: %v", err)
		}
		p.ResponseContentType, p.ResponseBody, has = c.MimeType, body, true
	} else if c.MimeType != "" && has {
		p.ResponseContentType = c.MimeType
	}
	if !has {
		return nil, nil
	}
	return &p, nil
}

func decodeBody(text []byte, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "":
		if len(text) == 0 {
			return nil, nil
		}
		return text, nil
	case "base64":
		b := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := base64.StdEncoding.Decode(b, text)
		if err != nil {
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				return nil, fmt.Errorf("text: invalid base64 at byte %d", int64(ce))
			}
			return nil, errors.New("text: invalid base64")
		}
		return b[:n], nil
	}
	return nil, errors.New(`encoding: unknown (want "base64" or none; value withheld)`)
}

func headers(in []harNV) []engine.Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]engine.Header, len(in))
	for i, h := range in {
		out[i] = engine.Header{Name: h.Name, Value: h.Value}
	}
	return out
}

func nonNeg(v float64) float64 {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func sizeOf(h, b int64) int64 {
	var n int64
	if h > 0 {
		n += h
	}
	if b > 0 {
		n += b
	}
	return n
}

// traceIDs extracts trace and span ids from W3C traceparent or B3 headers.
func traceIDs(hs []engine.Header) (trace, span string) {
	for _, h := range hs {
		switch strings.ToLower(h.Name) {
		case "traceparent":
			parts := strings.Split(h.Value, "-")
			if len(parts) == 4 && len(parts[1]) == 32 && len(parts[2]) == 16 {
				return parts[1], parts[2]
			}
		case "x-b3-traceid":
			trace = h.Value
		case "x-b3-spanid":
			span = h.Value
		}
	}
	return trace, span
}
