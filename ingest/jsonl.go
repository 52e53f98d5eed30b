package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

// jsonlPayload lets a JSONL line give bodies as text or as base64.
type jsonlPayload struct {
	RequestContentType  string  `json:"request_content_type,omitempty"`
	RequestBody         *string `json:"request_body,omitempty"`
	RequestBodyBase64   []byte  `json:"request_body_base64,omitempty"`
	ResponseContentType string  `json:"response_content_type,omitempty"`
	ResponseBody        *string `json:"response_body,omitempty"`
	ResponseBodyBase64  []byte  `json:"response_body_base64,omitempty"`
}

type jsonlRecord struct {
	engine.Record
	Payload *jsonlPayload `json:"payload,omitempty"`
}

// jsonlPayloadIn is jsonlPayload as read: bodies are decoded straight to
// bytes, and refused before they are copied when no record could hold them.
type jsonlPayloadIn struct {
	RequestContentType  string      `json:"request_content_type"`
	RequestBody         *bodyText   `json:"request_body"`
	RequestBodyBase64   *bodyBase64 `json:"request_body_base64"`
	ResponseContentType string      `json:"response_content_type"`
	ResponseBody        *bodyText   `json:"response_body"`
	ResponseBodyBase64  *bodyBase64 `json:"response_body_base64"`
}

type jsonlRecordIn struct {
	engine.Record
	Payload *jsonlPayloadIn `json:"payload"`
}

type (
	bodyText   []byte
	bodyBase64 []byte
)

func (t *bodyText) UnmarshalJSON(b []byte) (err error) {
	*t, err = decodeText(b, "payload.*_body")
	return err
}

func (t *bodyBase64) UnmarshalJSON(b []byte) error {
	const field = "payload.*_body_base64"
	if kindOf(b) != "string" {
		return safeError{fmt.Errorf("field %s: a %s where a base64 string belongs", field, kindOf(b))}
	}
	in := b[1 : len(b)-1]
	if bytes.IndexByte(in, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return safeError{fmt.Errorf("field %s: not a JSON string", field)}
		}
		in = []byte(s)
	}
	if len(in) > maxBodyText {
		return safeError{fmt.Errorf("%w: %s: over %d bytes, more than a record can hold", ErrTooLarge, field, maxBodyText)}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(in)))
	n, err := base64.StdEncoding.Decode(out, in)
	if err != nil {
		var ce base64.CorruptInputError
		errors.As(err, &ce)
		return safeError{fmt.Errorf("field %s: invalid base64 at byte %d", field, int64(ce))}
	}
	*t = out[:n]
	return nil
}

// readJSONL reads one engine record per line (README: "JSONL schema").
func readJSONL(r io.Reader, name string, emit func(engine.Record) error, bad func(error) error) error {
	return readLines(r, name, MaxJSONLLineBytes, jsonlRecordFrom, emit, bad)
}

func jsonlRecordFrom(b []byte) (engine.Record, error) {
	// json.Unmarshal reads the line in place (a Decoder would copy it); the
	// unknown fields a Decoder would refuse are looked for after.
	var jr jsonlRecordIn
	if err := json.Unmarshal(b, &jr); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && strings.Contains(se.Error(), "after top-level value") {
			return engine.Record{}, errors.New("more than one JSON value on the line")
		}
		return engine.Record{}, jsonRecordError(err)
	}
	if k, ok := unknownJSONLField(b); ok {
		return engine.Record{}, jsonRecordError(fmt.Errorf("json: unknown field %q", k))
	}
	rec := jr.Record
	if rec.Time.IsZero() {
		return engine.Record{}, errors.New(`"time" is required (RFC 3339)`)
	}
	if rec.Method == "" {
		return engine.Record{}, errors.New(`"method" is required`)
	}
	if p := jr.Payload; p != nil {
		ep := &engine.Payload{RequestContentType: p.RequestContentType, ResponseContentType: p.ResponseContentType}
		switch {
		case p.RequestBody != nil && p.RequestBodyBase64 != nil:
			return engine.Record{}, errors.New("give request_body or request_body_base64, not both")
		case p.RequestBody != nil:
			ep.RequestBody = []byte(*p.RequestBody)
		case p.RequestBodyBase64 != nil:
			ep.RequestBody = []byte(*p.RequestBodyBase64)
		}
		switch {
		case p.ResponseBody != nil && p.ResponseBodyBase64 != nil:
			return engine.Record{}, errors.New("give response_body or response_body_base64, not both")
		case p.ResponseBody != nil:
			ep.ResponseBody = []byte(*p.ResponseBody)
		case p.ResponseBodyBase64 != nil:
			ep.ResponseBody = []byte(*p.ResponseBodyBase64)
		}
		if len(ep.RequestBody) == 0 {
			ep.RequestBody = nil
		}
		if len(ep.ResponseBody) == 0 {
			ep.ResponseBody = nil
		}
		rec.Payload = ep
	}
	return rec, nil
}

// MarshalJSONL encodes a record as one JSONL line of the ingest schema
// (bodies as text when they are valid UTF-8, else base64).
func MarshalJSONL(rec engine.Record) ([]byte, error) {
	jr := jsonlRecord{Record: rec}
	jr.Record.Payload = nil
	if p := rec.Payload; p != nil {
		jp := &jsonlPayload{RequestContentType: p.RequestContentType, ResponseContentType: p.ResponseContentType}
		jp.RequestBody, jp.RequestBodyBase64 = textOrBase64(p.RequestBody)
		jp.ResponseBody, jp.ResponseBodyBase64 = textOrBase64(p.ResponseBody)
		jr.Payload = jp
	}
	return json.Marshal(jr)
}

func textOrBase64(b []byte) (*string, []byte) {
	if b == nil {
		return nil, nil
	}
	if isText(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}

// The keys a JSONL record may have, from the JSON tags (matched without
// regard to case, as encoding/json does).
var (
	jsonlRecordKeys  = jsonKeys(reflect.TypeOf(jsonlRecordIn{}))
	jsonlPayloadKeys = jsonKeys(reflect.TypeOf(jsonlPayloadIn{}))
	jsonlHeaderKeys  = jsonKeys(reflect.TypeOf(engine.Header{}))
)

func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			keys = append(keys, jsonKeys(f.Type)...)
		case name != "":
			keys = append(keys, name)
		case f.IsExported():
			keys = append(keys, f.Name)
		}
	}
	return keys
}

func knownKey(keys []string, k string) string {
	for _, c := range keys {
		if strings.EqualFold(c, k) {
			return c
		}
	}
	return ""
}

// unknownJSONLField finds a key of the record, of its payload or of a
// header that the record schema does not have (b is valid JSON).
func unknownJSONLField(b []byte) (string, bool) {
	s := &keyScanner{b: b}
	unknown, found := "", false
	s.object(func(k string) bool {
		switch knownKey(jsonlRecordKeys, k) {
		case "":
			unknown, found = k, true
		case "payload":
			s.object(func(k string) bool {
				if knownKey(jsonlPayloadKeys, k) == "" {
					unknown, found = k, true
					return false
				}
				s.skip()
				return true
			})
		case "request_headers", "response_headers":
			s.array(func() bool {
				s.object(func(k string) bool {
					if knownKey(jsonlHeaderKeys, k) == "" {
						unknown, found = k, true
						return false
					}
					s.skip()
					return true
				})
				return !found
			})
		default:
			s.skip()
		}
		return !found
	})
	return unknown, found
}

// keyScanner walks valid JSON.
type keyScanner struct {
	b []byte
	i int
}

func (s *keyScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\r' || s.b[s.i] == '\n') {
		s.i++
	}
}

func (s *keyScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string at the current position.
func (s *keyScanner) str() string {
	start, esc := s.i, false
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '\\':
			s.i++
			esc = true
		case c == '"':
			s.i++
			raw := s.b[start:s.i]
			if !esc && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1])
			}
			var v string
			_ = json.Unmarshal(raw, &v)
			return v
		}
	}
	return ""
}

// skip skips one value.
func (s *keyScanner) skip() {
	switch s.peek() {
	case '"':
		s.str()
	case '{':
		s.object(func(string) bool { s.skip(); return true })
	case '[':
		s.array(func() bool { s.skip(); return true })
	default:
		for s.i < len(s.b) && !strings.ContainsRune(" \t\r\n,]}", rune(s.b[s.i])) {
			s.i++
		}
	}
}

// object calls member at each key of the object at the current position
// (member reads the value); a value that is not an object is skipped.
func (s *keyScanner) object(member func(key string) bool) {
	if s.peek() != '{' {
		s.skip()
		return
	}
	s.i++
	for s.peek() == '"' {
		k := s.str()
		s.peek() // the colon
		s.i++
		if !member(k) {
			return
		}
		if s.peek() == ',' {
			s.i++
		}
	}
	s.i++ // }
}

// array calls elem at each element (elem reads it); a value that is not an
// array is skipped.
func (s *keyScanner) array(elem func() bool) {
	if s.peek() != '[' {
		s.skip()
		return
	}
	s.i++
	for s.peek() != ']' && s.i < len(s.b) {
		if !elem() {
			return
		}
		if s.peek() == ',' {
			s.i++
		}
	}
	s.i++ // ]
}
