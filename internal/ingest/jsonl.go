package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/logstore/logstore/engine"
)

// maxLine bounds one JSONL line.
const maxLine = 16 << 20

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

// readJSONL reads one engine record per line (README: "JSONL schema").
func readJSONL(r io.Reader, name string, emit func(engine.Record) error, bad func(error) error) error {
	return readLines(r, name, maxLine, jsonlRecordFrom, emit, bad)
}

func jsonlRecordFrom(b []byte) (engine.Record, error) {
	var jr jsonlRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jr); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return engine.Record{}, fmt.Errorf("field %s: a %s where a %s belongs", te.Field, te.Value, te.Type)
		}
		return engine.Record{}, fmt.Errorf("not a JSON record: %v", err)
	}
	if dec.More() {
		return engine.Record{}, errors.New("more than one JSON value on the line")
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
		default:
			ep.RequestBody = p.RequestBodyBase64
		}
		switch {
		case p.ResponseBody != nil && p.ResponseBodyBase64 != nil:
			return engine.Record{}, errors.New("give response_body or response_body_base64, not both")
		case p.ResponseBody != nil:
			ep.ResponseBody = []byte(*p.ResponseBody)
		default:
			ep.ResponseBody = p.ResponseBodyBase64
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
