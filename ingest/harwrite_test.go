package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// writeHAR writes recs with a HARWriter.
func writeHAR(t *testing.T, recs ...engine.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewHARWriter(&buf, "logstore test")
	for _, r := range recs {
		require.NoError(t, w.Write(r))
	}
	require.NoError(t, w.Close())
	require.Equal(t, len(recs), w.Entries())
	return buf.Bytes()
}

// readBack reads a HAR with readHAR, failing on any bad entry.
func readBack(t *testing.T, har []byte) []engine.Record {
	t.Helper()
	var out []engine.Record
	err := readHAR(bytes.NewReader(har), "t.har", func(r engine.Record) error {
		out = append(out, r)
		return nil
	}, func(err error) error { return err })
	require.NoError(t, err)
	return out
}

// sameRecords compares records as the JSONL schema writes them (every
// field, times with their offset, bodies byte for byte) and, times aside,
// by deep equality.
func sameRecords(t *testing.T, want, got []engine.Record) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, err := MarshalJSONL(want[i])
		require.NoError(t, err)
		g, err := MarshalJSONL(got[i])
		require.NoError(t, err)
		require.Equal(t, string(w), string(g), "record %d", i)
		require.True(t, want[i].Time.Equal(got[i].Time))
		a, b := want[i], got[i]
		a.Time, b.Time = time.Time{}, time.Time{}
		a.HasPayload, b.HasPayload = false, false
		require.Equal(t, a, b, "record %d", i)
	}
}

func awkwardRecords() []engine.Record {
	id := func(b byte) engine.ID { var id engine.ID; id[0], id[15] = 1, b; return id }
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return []engine.Record{
		{ // binary bodies, both ways
			Meta: engine.Meta{ID: id(1), Time: t0, Method: "POST", Host: "api.example.com", Status: 201, LatencyMs: 12.345678901234567,
				UpstreamLatencyMs: 0.1, GatewayLatencyMs: 12.245678901234567, ResponseSource: "upstream", RequestSize: 10, ResponseSize: 99},
			Path: "/upload", RequestHeaders: []engine.Header{{Name: "Content-Type", Value: "application/octet-stream"}},
			Payload: &engine.Payload{RequestContentType: "application/octet-stream", RequestBody: []byte{0, 1, 0xff, 0xfe, 'a'},
				ResponseContentType: "image/png", ResponseBody: []byte("\x89PNG\r\n\x1a\n\x00")},
		},
		{ // a payload with no bodies and no content types
			Meta: engine.Meta{ID: id(2), Time: t0.Add(time.Second), Method: "GET", Status: 204}, Path: "/empty", Payload: &engine.Payload{},
		},
		{ // a payload with content types only
			Meta: engine.Meta{ID: id(3), Time: t0, Method: "GET", Status: 200}, Path: "/ct",
			Payload: &engine.Payload{RequestContentType: "text/plain", ResponseContentType: "application/json"},
		},
		{ // no headers, no payload, no host, zero latency, a traceparent-free record with trace ids
			Meta: engine.Meta{ID: id(4), Time: t0, Method: "DELETE", Status: 0, TraceID: "abc", SpanID: "def"}, Path: "/",
		},
		{ // non-UTC time, unicode everywhere, a traceparent header but no trace id in the record
			Meta: engine.Meta{ID: id(5), Time: time.Date(2025, 12, 31, 23, 59, 59, 1, time.FixedZone("X", -(5*3600+30*60))),
				Method: "PUT", Host: "bücher.example", Status: 418, SessionID: "sess-é", RouteID: "r→1", ServiceID: "s✓"}, ConsumerID: "用户",
			Path: "/caf%C3%A9/%2F/na%20me", Query: "q=%E2%9C%93&a=1&a=2&plus=a+b&amp=%26&empty=&flag&bad=%zz",
			ClientIP: "2001:db8::1", RequestHeaders: []engine.Header{{Name: "traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
				{Name: "X-Émoji", Value: "😀"}, {Name: "Cookie", Value: "a=1; b=2"}, {Name: "Cookie", Value: "c=3"}},
			ResponseHeaders: []engine.Header{{Name: "Set-Cookie", Value: "s=x; Path=/"}, {Name: "Location", Value: "/next"}, {Name: "Empty", Value: ""}},
			Attributes:      map[string]string{"protocol": "HTTP/2.0", "server_ip": "10.0.0.1", "ü": "ß", "": "empty key"},
			Payload:         &engine.Payload{RequestContentType: "text/plain; charset=utf-8", RequestBody: []byte("héllo\x00\t\n\"\\</>&"), ResponseBody: []byte("ok")},
		},
		{ // a path and query the URL syntax refuses as they are, a host with a port
			Meta: engine.Meta{Time: t0, Method: "GET", Host: "localhost:8080", Status: 200}, Path: "no-slash #frag?x", Query: "a b=c\x7f",
		},
		{ // a host the URL syntax refuses
			Meta: engine.Meta{ID: id(7), Time: t0, Method: "OPTIONS", Host: "bad host/%", Status: 999, UpstreamStatus: 502,
				ResponseSource: "gateway", LatencyMs: 1e-9, UpstreamLatencyMs: 123456789.125}, Path: "/x",
			Attributes: map[string]string{},
		},
	}
}

func TestHARWriterRoundTripsAwkwardRecords(t *testing.T) {
	recs := awkwardRecords()
	har := writeHAR(t, recs...)
	require.True(t, json.Valid(har), string(har))
	got := readBack(t, har)
	want := awkwardRecords()
	want[6].Attributes = nil // an empty map reads back as none
	sameRecords(t, want, got)

	// Through Ingest: detected as HAR, every record valid for the engine.
	s := &sink{}
	res, err := Ingest(context.Background(), s, "t.har", bytes.NewReader(har), Options{})
	require.NoError(t, err)
	require.Equal(t, FormatHAR, res.Format)
	require.Equal(t, len(recs), res.Stored)
	// And again, through a second write: the same bytes.
	require.Equal(t, string(har), string(writeHAR(t, got...)))
}

func TestHARWriterIsHAR12(t *testing.T) {
	har := writeHAR(t, awkwardRecords()...)
	var doc struct {
		Log struct {
			Version string            `json:"version"`
			Creator map[string]string `json:"creator"`
			Entries []map[string]any  `json:"entries"`
		} `json:"log"`
	}
	require.NoError(t, json.Unmarshal(har, &doc))
	require.Equal(t, "1.2", doc.Log.Version)
	require.Equal(t, map[string]string{"name": "logstore", "version": "test"}, doc.Log.Creator)
	require.Len(t, doc.Log.Entries, len(awkwardRecords()))
	for i, e := range doc.Log.Entries {
		for _, k := range []string{"startedDateTime", "time", "request", "response", "cache", "timings", "_logstore"} {
			require.Contains(t, e, k, "entry %d", i)
		}
		_, err := time.Parse(time.RFC3339Nano, e["startedDateTime"].(string))
		require.NoError(t, err)
		req := e["request"].(map[string]any)
		for _, k := range []string{"method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"} {
			require.Contains(t, req, k, "entry %d request", i)
		}
		for _, k := range []string{"cookies", "headers", "queryString"} {
			require.IsType(t, []any{}, req[k], "entry %d request.%s is an array, never null", i, k)
		}
		require.True(t, strings.HasPrefix(req["url"].(string), "https://"), req["url"])
		if pd, ok := req["postData"].(map[string]any); ok {
			require.Contains(t, pd, "mimeType")
			require.Contains(t, pd, "text")
		}
		resp := e["response"].(map[string]any)
		for _, k := range []string{"status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"} {
			require.Contains(t, resp, k, "entry %d response", i)
		}
		c := resp["content"].(map[string]any)
		require.Contains(t, c, "size")
		require.Contains(t, c, "mimeType")
		tm := e["timings"].(map[string]any)
		for _, k := range []string{"send", "wait", "receive"} {
			require.GreaterOrEqual(t, tm[k].(float64), 0.0)
		}
	}
	e := doc.Log.Entries[4]
	req := e["request"].(map[string]any)
	require.Equal(t, "HTTP/2.0", req["httpVersion"])
	require.Equal(t, "https://bücher.example/caf%C3%A9/%2F/na%20me?q=%E2%9C%93&a=1&a=2&plus=a+b&amp=%26&empty=&flag&bad=%zz", req["url"])
	require.Equal(t, []any{
		map[string]any{"name": "q", "value": "✓"}, map[string]any{"name": "a", "value": "1"}, map[string]any{"name": "a", "value": "2"},
		map[string]any{"name": "plus", "value": "a b"}, map[string]any{"name": "amp", "value": "&"}, map[string]any{"name": "empty", "value": ""},
		map[string]any{"name": "flag", "value": ""}, map[string]any{"name": "bad", "value": "%zz"},
	}, req["queryString"])
	require.Len(t, req["cookies"], 3)
	require.Equal(t, "2025-12-31T23:59:59.000000001-05:30", e["startedDateTime"])
	require.Equal(t, "10.0.0.1", e["serverIPAddress"])
	resp := e["response"].(map[string]any)
	require.Equal(t, "I'm a teapot", resp["statusText"])
	require.Equal(t, "/next", resp["redirectURL"])
	// Binary bodies are base64, text is text.
	bin := doc.Log.Entries[0]
	require.Equal(t, "base64", bin["request"].(map[string]any)["postData"].(map[string]any)["encoding"])
	require.Equal(t, "base64", bin["response"].(map[string]any)["content"].(map[string]any)["encoding"])
	require.NotContains(t, req["postData"], "encoding")
	require.Equal(t, "https://unknown.invalid/x", doc.Log.Entries[6]["request"].(map[string]any)["url"])
}

func TestHARWriterEmptyAndErrors(t *testing.T) {
	// No records: a valid HAR with no entries, which ingest reads as none.
	har := writeHAR(t)
	require.True(t, json.Valid(har))
	require.Empty(t, readBack(t, har))
	f, err := Detect(har)
	require.NoError(t, err)
	require.Equal(t, FormatHAR, f)

	var buf bytes.Buffer
	w := NewHARWriter(&buf, "")
	bad := engine.Record{Meta: engine.Meta{Time: time.Now(), Method: "GET"}, Path: "/\xff-secret"}
	err = w.Write(bad)
	require.ErrorIs(t, err, ErrNotHAR)
	require.Contains(t, err.Error(), "logstore/ingest: ")
	require.Contains(t, err.Error(), "path")
	require.NotContains(t, err.Error(), "secret", "no value in the message")
	// A refused record does not spoil the writer.
	good := awkwardRecords()[0]
	require.NoError(t, w.Write(good))
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Write(good), ErrWriterClosed)
	sameRecords(t, []engine.Record{good}, readBack(t, buf.Bytes()))
	require.Contains(t, buf.String(), `"creator":{"name":"logstore","version":""}`)

	// A failing output: the error is returned and sticks.
	fw := NewHARWriter(failWriter{}, "x")
	require.Error(t, fw.Write(good))
	require.Error(t, fw.Write(good))
	require.Error(t, fw.Close())
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestHARLogstoreOverrides: _logstore members that are there override what
// is derived; without _logstore, or with members missing, the reader
// derives as before.
func TestHARLogstoreOverrides(t *testing.T) {
	entry := func(extra string) string {
		return `{"startedDateTime":"2024-01-02T03:04:05Z","time":10,"request":{"method":"GET","url":"https://h.example/p?q=1",
"headers":[{"name":"traceparent","value":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}]},
"response":{"status":200,"headers":[],"content":{"mimeType":"text/plain","text":"hi"}},"timings":{"wait":4}` + extra + `}`
	}
	in := `{"log":{"entries":[` + entry("") + `,` + entry(`,"_logstore":{"path":"/exact%2f","trace_id":"","has_payload":false,"future_field":1}`) +
		`,` + entry(`,"_logstore":{}`) + `]}}`
	got := readBack(t, []byte(in))
	require.Len(t, got, 3)
	require.Equal(t, "/p", got[0].Path)
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", got[0].TraceID)
	require.NotNil(t, got[0].Payload)
	require.Equal(t, "/exact%2f", got[1].Path)
	require.Equal(t, "q=1", got[1].Query, "not in _logstore: derived")
	require.Empty(t, got[1].TraceID)
	require.Nil(t, got[1].Payload)
	require.Equal(t, got[0], got[2], "an empty _logstore changes nothing")

	// A _logstore of the wrong type is a bad entry at its place, no panic.
	for _, ls := range []string{`"x"`, `{"id":"nope"}`, `{"latency_ms":"1"}`, `{"attributes":[1]}`, `{"has_payload":1}`} {
		err := readHAR(strings.NewReader(`{"log":{"entries":[`+entry(`,"_logstore":`+ls)+`]}}`), "t.har",
			func(engine.Record) error { return nil }, func(err error) error { return err })
		require.ErrorIs(t, err, ErrMalformed, ls)
		require.Contains(t, err.Error(), "HAR entry 0", ls)
	}
}

// TestHARWriterProperty: random records, written and read back, are the
// same records.
func TestHARWriterProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 2000
	if testing.Short() {
		n = 200
	}
	recs := make([]engine.Record, n)
	for i := range recs {
		recs[i] = randomRecord(r)
	}
	sameRecords(t, recs, readBack(t, writeHAR(t, recs...)))
}

func randomRecord(r *rand.Rand) engine.Record {
	str := func() string {
		alphabet := []string{"a", "Z", "0", " ", "%", "%2F", "&", "=", "?", "#", "/", "+", ";", "\"", "\\", "\n", "\x00", "é", "✓", "😀", "\u2028", "<"}
		var b strings.Builder
		for k := r.IntN(8); k > 0; k-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	body := func() []byte {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte(str() + "x")
		}
		b := make([]byte, 1+r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	hdrs := func() []engine.Header {
		var hs []engine.Header
		for k := r.IntN(4); k > 0; k-- {
			hs = append(hs, engine.Header{Name: str(), Value: str()})
		}
		return hs
	}
	var id engine.ID
	if r.IntN(5) > 0 {
		for i := range id {
			id[i] = byte(r.IntN(256))
		}
	}
	zone := time.UTC
	if r.IntN(2) == 0 {
		zone = time.FixedZone("", (r.IntN(28*60)-14*60)*60)
	}
	rec := engine.Record{
		Meta: engine.Meta{ID: id, Time: time.Unix(0, r.Int64N(1<<62)).In(zone), SessionID: str(), TraceID: str(), SpanID: str(),
			Method: []string{"GET", "POST", "X-CUSTOM"}[r.IntN(3)], Host: str(), Status: r.IntN(1000), UpstreamStatus: r.IntN(1000),
			ResponseSource: str(), LatencyMs: r.Float64() * 1e6, UpstreamLatencyMs: r.Float64(), GatewayLatencyMs: float64(r.IntN(100)) / 3,
			RouteID: str(), ServiceID: str(), RequestSize: r.Int64N(1 << 40), ResponseSize: r.Int64N(1 << 40)},
		Path: str(), Query: str(), ClientIP: str(), ConsumerID: str(), RequestHeaders: hdrs(), ResponseHeaders: hdrs(),
	}
	for k := r.IntN(3); k > 0; k-- {
		if rec.Attributes == nil {
			rec.Attributes = map[string]string{}
		}
		rec.Attributes[str()] = str()
	}
	if r.IntN(3) > 0 {
		rec.Payload = &engine.Payload{RequestBody: body(), ResponseBody: body()}
		if r.IntN(2) == 0 {
			rec.Payload.RequestContentType, rec.Payload.ResponseContentType = str(), str()
		}
	}
	return rec
}

// FuzzHARWriter: a record built from fuzzed strings and bytes is written
// as valid JSON and read back the same, or refused with ErrNotHAR.
func FuzzHARWriter(f *testing.F) {
	f.Add("/p", "a=b", "h.example", "X-A", "v", []byte("body"), int64(0), int16(60))
	f.Add("/\xff", "%zz", "", "", "", []byte{0xff}, int64(-1), int16(-330))
	f.Fuzz(func(t *testing.T, path, query, host, hname, hval string, body []byte, ns int64, offMin int16) {
		rec := engine.Record{
			Meta: engine.Meta{Time: time.Unix(0, ns).In(time.FixedZone("", int(offMin)*60)), Method: "GET", Host: host, Status: 200},
			Path: path, Query: query, RequestHeaders: []engine.Header{{Name: hname, Value: hval}},
		}
		if len(body) > 0 {
			rec.Payload = &engine.Payload{ResponseBody: body}
		}
		var buf bytes.Buffer
		w := NewHARWriter(&buf, "fuzz")
		if err := w.Write(rec); err != nil {
			require.ErrorIs(t, err, ErrNotHAR)
			return
		}
		require.NoError(t, w.Close())
		require.True(t, json.Valid(buf.Bytes()), fmt.Sprintf("%q", buf.String()))
		sameRecords(t, []engine.Record{rec}, readBack(t, buf.Bytes()))
	})
}

// TestHARWriterStreams: each Write hands its entry to the output at once
// (nothing is held back but the closing), so memory does not grow with the
// number of records.
func TestHARWriterStreams(t *testing.T) {
	var out countingWriter
	w := NewHARWriter(&out, "x")
	rec := awkwardRecords()[0]
	require.NoError(t, w.Write(rec))
	first := out.n
	require.Positive(t, first)
	for i := 0; i < 1000; i++ {
		before := out.n
		require.NoError(t, w.Write(rec))
		require.Greater(t, out.n, before, "entry %d written through", i)
	}
	require.Less(t, w.buf.Cap(), 4<<10, "one entry buffered at most")
	require.NoError(t, w.Close())
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// FuzzHARLogstore: whatever the _logstore member holds, the reader takes
// the entry or reports it at its place; it never panics.
func FuzzHARLogstore(f *testing.F) {
	var buf bytes.Buffer
	w := NewHARWriter(&buf, "seed")
	if err := errors.Join(w.Write(awkwardRecords()[4]), w.Close()); err != nil {
		f.Fatal(err)
	}
	har := buf.String()
	i := strings.Index(har, `"_logstore":`)
	f.Add(har[i+len(`"_logstore":`) : len(har)-len("}\n]}}\n")])
	f.Add(`{"id":null,"attributes":null,"has_payload":true}`)
	f.Add(`{"path":1}`)
	f.Fuzz(func(t *testing.T, ls string) {
		in := `{"log":{"entries":[{"startedDateTime":"2024-01-02T03:04:05Z","request":{"method":"GET","url":"https://h/p"},` +
			`"response":{"status":200,"content":{"text":"x"}},"_logstore":` + ls + `}]}}`
		s := &sink{}
		_, err := Ingest(context.Background(), s, "f.har", strings.NewReader(in), Options{Format: FormatHAR})
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
		}
	})
}
