package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// TestRenderBytes pins the exact text of `logstore query` and `logstore show`:
// scripts read it.
func TestRenderBytes(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)
	var table strings.Builder
	require.NoError(t, writeTable(&table, []engine.Meta{
		{Time: t0, Method: "GET", Status: 200, LatencyMs: 12.25, Host: "api.example.com", HasPayload: true},
		{Time: t0.Add(-time.Second), Method: "POST", Status: 503, LatencyMs: 1000},
	}))
	require.Equal(t, ""+
		"TIME                      ID                          METHOD  STATUS  LATENCY_MS  HOST             ROUTE  SESSION  PAYLOAD\n"+
		"2026-11-01T09:30:00.000Z  00000000000000000000000000  GET     200     12.2        api.example.com  -      -        yes\n"+
		"2026-11-01T09:29:59.000Z  00000000000000000000000000  POST    503     1000.0      -                -      -        \n",
		table.String())

	rec := &engine.Record{
		Meta: engine.Meta{
			Time:      t0,
			Method:    "POST",
			Status:    201,
			LatencyMs: 2,
			SessionID: "s1",
		},
		Path:           "/up",
		Query:          "a=1",
		RequestHeaders: []engine.Header{{Name: "accept", Value: "*/*"}},
		Payload:        &engine.Payload{RequestContentType: "text/plain", RequestBody: []byte("hi\tthere"), ResponseBody: []byte{0, 1, 0xff}},
	}
	for _, c := range []struct {
		parts engine.Part
		want  string
	}{
		{engine.PartLog, "request headers (1):\n  accept: */*\nresponse headers (0):\n"},
		{engine.PartPayload, "request body (text/plain, 8 bytes):\nhi\tthere\nresponse body (3 bytes), binary, base64:\nAAH/\n"},
	} {
		var b strings.Builder
		require.NoError(t, writeRecordText(&b, rec, c.parts))
		require.Equal(t, "id        00000000000000000000000000\ntime      2026-11-01T09:30:00Z\nrequest   POST -/up?a=1\n"+
			"status    201\nlatency   2.0 ms\nsession   s1\n"+c.want, b.String())
	}
	var none strings.Builder
	require.NoError(t, writeRecordText(&none, &engine.Record{Meta: engine.Meta{Time: t0}}, engine.PartPayload))
	require.True(t, strings.HasSuffix(none.String(), "payload   none captured\n"), none.String())
	var known, empty strings.Builder
	rec.UpstreamStatus, rec.UpstreamLatencyMs, rec.GatewayLatencyMs = 502, 1.5, 0.5
	rec.Payload = &engine.Payload{ResponseContentType: "application/json", ResponseBody: []byte("{}")}
	require.NoError(t, writeRecordText(&known, rec, engine.PartAll))
	require.Contains(t, known.String(), "status    201 (upstream 502)\nlatency   2.0 ms (upstream 1.5, gateway 0.5)\n")
	require.Contains(t, known.String(), "request body none\nresponse body (application/json, 2 bytes):\n{}\n")
	rec.Attributes = map[string]string{"b": "2", "a": "1", "c": "3"}
	require.NoError(t, writeRecordText(&empty, rec, engine.PartLog))
	require.Contains(t, empty.String(), "attribute a=1\nattribute b=2\nattribute c=3\n", "attributes sorted")
	require.False(t, isPrintable([]byte("a\x1bb")))
	require.False(t, isPrintable([]byte{0xc3}))
}

// TestJSONRowsAreClean: query JSON rows have fixed-length UTC times, no
// binary float noise, and "<" as itself.
func TestJSONRowsAreClean(t *testing.T) {
	var b strings.Builder
	require.NoError(t, writeJSONLines(&b, []engine.Meta{
		{Time: time.Date(2026, 11, 1, 9, 30, 0, 0, time.FixedZone("x", 3600)), Method: "GET", Status: 200, LatencyMs: 0.1 + 0.214, RouteID: "<root>"},
		{Time: time.Date(2026, 11, 1, 9, 30, 0, 123456789, time.UTC), Method: "GET", Status: 200, LatencyMs: 12},
	}))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"time":"2026-11-01T08:30:00.000000000Z"`)
	require.Contains(t, lines[0], `"latency_ms":0.314`)
	require.NotContains(t, lines[0], `0.31400000000000006`)
	require.Contains(t, lines[0], `"route_id":"<root>"`)
	require.Contains(t, lines[1], `"time":"2026-11-01T09:30:00.123456789Z"`)
	require.Equal(t, 1, strings.Count(lines[0], `"time"`), "one time field")
}
