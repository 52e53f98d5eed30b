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
		{engine.PartPayload, "request body (text/plain, 8 bytes):\nhi\tthere\nresponse body (-, 3 bytes), binary, base64:\nAAH/\n"},
	} {
		var b strings.Builder
		require.NoError(t, writeRecordText(&b, rec, c.parts))
		require.Equal(t, "id        00000000000000000000000000\ntime      2026-11-01T09:30:00Z\nrequest   POST -/up?a=1\n"+
			"status    201 (upstream 0)\nlatency   2.0 ms (upstream 0.0, gateway 0.0)\nsession   s1\n"+c.want, b.String())
	}
	var none strings.Builder
	require.NoError(t, writeRecordText(&none, &engine.Record{Meta: engine.Meta{Time: t0}}, engine.PartPayload))
	require.True(t, strings.HasSuffix(none.String(), "payload   none captured\n"), none.String())
	require.False(t, isPrintable([]byte("a\x1bb")))
	require.False(t, isPrintable([]byte{0xc3}))
}
