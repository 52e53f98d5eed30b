package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func seedFiles(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join(shared, g))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	if b, err := os.ReadFile("../../testdata/demo-sample.jsonl"); err == nil {
		f.Add(b[:bytes.IndexByte(b, '\n')+1])
	}
}

// fuzzFormat runs one decoder on arbitrary input: it must never panic, and
// every failure is a typed error.
func fuzzFormat(f *testing.F, format Format) {
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Ingest(context.Background(), &sink{}, "fuzz", bytes.NewReader(data), Options{Format: format})
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

func FuzzHAR(f *testing.F) {
	seedFiles(f, "har/*.har", "har-bad/*.har")
	fuzzFormat(f, FormatHAR)
}

func FuzzJSONL(f *testing.F) {
	seedFiles(f, "har-bad/*.jsonl")
	fuzzFormat(f, FormatJSONL)
}

func FuzzCombined(f *testing.F) {
	f.Add([]byte(`83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0"` + "\n"))
	if b, err := os.ReadFile(filepath.Join(shared, "access", "apache_logs")); err == nil {
		f.Add(b[:4096])
	}
	fuzzFormat(f, FormatCombined)
}

func FuzzDetect(f *testing.F) {
	seedFiles(f, "har-bad/*")
	fuzzFormat(f, FormatAuto)
}

// FuzzHARSmallLimit runs the HAR decoder with a tiny entry limit and
// SkipInvalid, so that oversized entries are skipped and the stream
// resynchronised on arbitrary input: no panic, no hang, typed errors.
func FuzzHARSmallLimit(f *testing.F) {
	seedFiles(f, "har/*.har", "har-bad/*.har")
	f.Add([]byte(testHAR(",\n", testEntry(0, ""), testEntry(1, `, "postData": {"text": "`+strings.Repeat("x", 600)+`"}`), testEntry(2, ""))))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer func(v int64) { harEntryLimit = v }(harEntryLimit)
		harEntryLimit = 512
		_, err := Ingest(context.Background(), &sink{}, "fuzz", bytes.NewReader(data), Options{Format: FormatHAR, SkipInvalid: true})
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// FuzzJSONLUnknownFields: the unknown-field check done after json.Unmarshal
// agrees with a Decoder's DisallowUnknownFields.
func FuzzJSONLUnknownFields(f *testing.F) {
	for _, s := range jsonlKeyCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var jr jsonlRecordIn
		if json.Unmarshal(b, &jr) != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err := dec.Decode(&jr)
		k, found := unknownJSONLField(b)
		if found != (err != nil) {
			t.Fatalf("%q: decoder says %v, unknownJSONLField %q %v", b, err, k, found)
		}
		if found && err.Error() != fmt.Sprintf("json: unknown field %q", k) {
			t.Fatalf("%q: decoder says %v, unknownJSONLField %q", b, err, k)
		}
	})
}

var jsonlKeyCases = []string{
	`{"time":"2026-01-01T00:00:00Z","method":"GET","bogus":1}`,
	`{"TIME":"2026-01-01T00:00:00Z","Method":"GET","Path":"/x"}`,
	`{"time":"2026-01-01T00:00:00Z","payload":{"request_body":"x","nope":{"a":[1,2]}}}`,
	`{"request_headers":[{"name":"a","value":"b"},{"name":"c","valu":"d"}]}`,
	`{"response_headers":[{"Name":"a","VALUE":"b"}],"attributes":{"anything":"goes","x":"y"}}`,
	`{"payload":null,"request_headers":null,"attributes":{}}`,
	`{"p\u0061th":"/x","q\"":1}`,
	`{"id":"","session_id":"s","trace_id":"t","span_id":"u","host":"h","status":1,"upstream_status":2,"response_source":"x","latency_ms":1,` +
		`"upstream_latency_ms":1,"gateway_latency_ms":1,"route_id":"r","service_id":"s","request_size":1,"response_size":2,"query":"q",` +
		`"client_ip":"c","consumer_id":"c","payload":{"request_content_type":"a","request_body_base64":"AA==","response_content_type":"b","response_body":"x"}}`,
	`{"payload":{"request_body":"x"},"payload":{"zz":1}}`,
	`  { "time" : "2026-01-01T00:00:00Z" , "extra" : [ { "a" : "}" } ] }  `,
}

func TestJSONLUnknownFieldsAsDecoder(t *testing.T) {
	for _, s := range jsonlKeyCases {
		var jr jsonlRecordIn
		require.NoError(t, json.Unmarshal([]byte(s), &jr), s)
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		err := dec.Decode(&jr)
		k, found := unknownJSONLField([]byte(s))
		require.Equal(t, err != nil, found, "%s: %v / %q", s, err, k)
		if found {
			require.Equal(t, fmt.Sprintf("json: unknown field %q", k), err.Error(), s)
		}
	}
}
