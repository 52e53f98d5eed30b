package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// TestFollowPrinterTable: followed rows are written one at a time under a
// header, in columns that line up while the values fit, with no trailing
// blanks; -o json writes one JSON object per line.
func TestFollowPrinterTable(t *testing.T) {
	var b bytes.Buffer
	p := newFollowPrinter(&b, "table")
	at := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	require.NoError(t, p.write(&engine.Meta{Time: at, Method: "GET", Status: 200, LatencyMs: 1.5, Host: "a.example", HasPayload: true}))
	first := b.Len()
	require.NoError(t, p.write(&engine.Meta{Time: at, Method: "DELETE", Status: 503, LatencyMs: 1234.25}))
	require.Greater(t, b.Len(), first, "each row is written at once")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, 3)
	for _, col := range []string{"METHOD", "STATUS", "LATENCY_MS", "HOST"} {
		i := strings.Index(lines[0], col)
		require.Positive(t, i, col)
		for _, l := range lines[1:] {
			require.NotEqual(t, byte(' '), l[i], "%s column of %q", col, l)
			require.Equal(t, byte(' '), l[i-1], "%s column of %q", col, l)
		}
	}
	for _, l := range lines {
		require.Equal(t, strings.TrimRight(l, " "), l)
	}
	require.True(t, strings.HasSuffix(lines[1], "yes"))

	b.Reset()
	p = newFollowPrinter(&b, "json")
	require.NoError(t, p.write(&engine.Meta{Time: at, Method: "GET", Status: 200}))
	require.NoError(t, p.write(&engine.Meta{Time: at, Method: "PUT", Status: 201}))
	require.Equal(t, 2, strings.Count(b.String(), "\n"))
	require.Contains(t, b.String(), `"status":201`)
}
