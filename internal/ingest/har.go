package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/logstore/logstore/engine"
)

// maxHARBytes bounds one HAR file held in memory.
const maxHARBytes = 1 << 30

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
}

type harRequest struct {
	Method      string  `json:"method"`
	URL         string  `json:"url"`
	Headers     []harNV `json:"headers"`
	HeadersSize int64   `json:"headersSize"`
	BodySize    int64   `json:"bodySize"`
	PostData    *struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
	} `json:"postData"`
}

type harResponse struct {
	Status      int     `json:"status"`
	Headers     []harNV `json:"headers"`
	HeadersSize int64   `json:"headersSize"`
	BodySize    int64   `json:"bodySize"`
	Content     struct {
		Size     int64  `json:"size"`
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
	} `json:"content"`
}

// lineAt is the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// readHAR walks {"log": {"entries": [...]}} entry by entry, so a bad entry
// is reported by index and line while the good ones around it are kept.
func readHAR(r io.Reader, name string, emit func(engine.Record) error, bad func(error) error) error {
	data, err := io.ReadAll(io.LimitReader(r, maxHARBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxHARBytes {
		return &EntryError{File: name, Entry: -1, Err: fmt.Errorf("HAR file larger than %d bytes", maxHARBytes)}
	}
	data = bytes.TrimPrefix(data, bom)
	dec := json.NewDecoder(bytes.NewReader(data))
	syntax := func(err error) error {
		var se *json.SyntaxError
		line := lineAt(data, dec.InputOffset())
		if errors.As(err, &se) {
			line = lineAt(data, se.Offset)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("unexpected end of file (truncated HAR?)")
		}
		return &EntryError{File: name, Line: line, Entry: -1, Err: err}
	}
	if err := enterObjectKey(dec, "log"); err != nil {
		return syntax(err)
	}
	if err := enterObjectKey(dec, "entries"); err != nil {
		return syntax(err)
	}
	if t, err := dec.Token(); err != nil {
		return syntax(err)
	} else if d, ok := t.(json.Delim); !ok || d != '[' {
		return syntax(fmt.Errorf("log.entries is not an array"))
	}
	for i := 0; dec.More(); i++ {
		off := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntax(err)
		}
		start := off
		for start < int64(len(data)) && bytes.IndexByte([]byte(" \t\r\n,"), data[start]) >= 0 {
			start++
		}
		line := lineAt(data, start) // where the entry begins
		rec, err := harRecord(raw)
		if err != nil {
			if err := bad(&EntryError{File: name, Line: line, Entry: i, Err: err}); err != nil {
				return err
			}
			continue
		}
		if err := emit(rec); err != nil {
			var ie errInvalid
			if !errors.As(err, &ie) {
				return err
			}
			if err := bad(&EntryError{File: name, Line: line, Entry: i, Err: ie.error}); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return syntax(err)
	}
	return nil
}

// enterObjectKey reads tokens until it is positioned at the value of key in
// the current (or next) object, skipping other members.
func enterObjectKey(dec *json.Decoder, key string) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("expected an object holding %q", key)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if k, _ := t.(string); k == key {
			return nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return fmt.Errorf("no %q member", key)
}

func harRecord(raw []byte) (engine.Record, error) {
	var e harEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return engine.Record{}, fmt.Errorf("field %s: a %s where a %s belongs", te.Field, te.Value, te.Type)
		}
		return engine.Record{}, err
	}
	if e.Request == nil {
		return engine.Record{}, errors.New("entry has no request")
	}
	if e.Response == nil {
		return engine.Record{}, errors.New("entry has no response")
	}
	t, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
	if err != nil {
		return engine.Record{}, fmt.Errorf("startedDateTime %q is not an RFC 3339 time", e.StartedDateTime)
	}
	u, err := url.Parse(e.Request.URL)
	if err != nil || e.Request.URL == "" {
		return engine.Record{}, fmt.Errorf("request.url %q is not a URL", e.Request.URL)
	}
	if e.Response.Status < 0 || e.Response.Status > 999 {
		return engine.Record{}, fmt.Errorf("response.status %d out of range", e.Response.Status)
	}
	rec := engine.Record{
		Time:              t,
		Method:            e.Request.Method,
		Host:              u.Host,
		Path:              u.EscapedPath(),
		Query:             u.RawQuery,
		Status:            e.Response.Status,
		LatencyMs:         nonNeg(e.Time),
		UpstreamLatencyMs: nonNeg(e.Timings.Wait),
		RequestHeaders:    headers(e.Request.Headers),
		ResponseHeaders:   headers(e.Response.Headers),
		RequestSize:       sizeOf(e.Request.HeadersSize, e.Request.BodySize),
		ResponseSize:      sizeOf(e.Response.HeadersSize, e.Response.BodySize),
		ResponseSource:    "upstream",
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
	var p engine.Payload
	has := false
	if pd := e.Request.PostData; pd != nil {
		body, err := decodeBody(pd.Text, pd.Encoding)
		if err != nil {
			return engine.Record{}, fmt.Errorf("request.postData: %v", err)
		}
		p.RequestContentType, p.RequestBody, has = pd.MimeType, body, true
	}
	c := e.Response.Content
	if c.Text != "" || c.Encoding != "" {
		body, err := decodeBody(c.Text, c.Encoding)
		if err != nil {
			return engine.Record{}, fmt.Errorf("response.content: %v", err)
		}
		p.ResponseContentType, p.ResponseBody, has = c.MimeType, body, true
	} else if c.MimeType != "" && has {
		p.ResponseContentType = c.MimeType
	}
	if has {
		rec.Payload = &p
	}
	return rec, nil
}

func decodeBody(text, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "":
		if text == "" {
			return nil, nil
		}
		return []byte(text), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("invalid base64: %v", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
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
