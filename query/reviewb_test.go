package query

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// TestReviewBRangesEdgeValues: pushed-down numeric comparisons agree with
// the residual filter on edge values: negative zero, fractional and huge
// latencies, sizes past 2^53 and near 2^63, upstream status classes, IN
// lists, NOT, OR; counts and scans alike, journaled and in blocks.
func TestReviewBRangesEdgeValues(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{RetentionInterval: -1, BlockSize: 2 << 10})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	rng := rand.New(rand.NewSource(3))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	lat := []float64{0, math.Copysign(0, -1), 0.5, 1, 299.99, 300, 300.0000001, 1e300, math.MaxFloat64, math.SmallestNonzeroFloat64}
	sizes := []int64{0, 1, 1 << 53, 1<<53 + 1, math.MaxInt64, 127, 128, 16383, 16384}
	recs := make([]engine.Record, 1500)
	for i := range recs {
		recs[i] = engine.Record{Meta: engine.Meta{
			Time: t0.Add(time.Duration(i) * time.Second), Method: "GET", Host: "h",
			Status:         []int{0, 99, 100, 200, 299, 300, 499, 500, 599, 999}[rng.Intn(10)],
			UpstreamStatus: []int{0, 200, 299, 500, 599, 600}[rng.Intn(6)],
			SessionID:      fmt.Sprintf("s%d", rng.Intn(5)),
			LatencyMs:      lat[rng.Intn(len(lat))], UpstreamLatencyMs: lat[rng.Intn(len(lat))],
			RequestSize: sizes[rng.Intn(len(sizes))], ResponseSize: sizes[rng.Intn(len(sizes))],
		}, Path: "/x"}
	}
	tn, err := db.Tenant("acme")
	require.NoError(t, err)
	var ids []engine.ID
	for i := 0; i < 1000; i += 100 {
		got, err := tn.Append(context.Background(), recs[i:i+100])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	for i := 1000; i < len(recs); i++ { // journaled
		got, err := tn.Append(context.Background(), recs[i:i+1])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	ctx := context.Background()
	for _, where := range []string{
		"latency_ms > -0", "latency_ms >= 0", "latency_ms <= -0", "latency_ms < 0", "latency_ms = 0", "latency_ms = -0",
		"latency_ms > 300", "latency_ms >= 300.0000001", "latency_ms < 1e300", "latency_ms >= 1e308", "latency_ms > inf", "latency_ms < inf",
		"latency_ms <= -inf", "latency_ms >= -inf", "latency_ms = nan", "latency_ms != 0",
		"upstream_status = 5xx", "upstream_status = 2xx AND status = 5xx", "upstream_status IN (500, 599)", "upstream_status >= 599.5",
		"request_size > 9007199254740992", "request_size = 9007199254740993", "request_size >= 9223372036854775807",
		"response_size < 128", "response_size <= 127.5", "request_size > 16383 AND response_size < 16384",
		"status < 100", "status = 1xx", "status >= 999", "status > 99.5 AND status < 100.5",
		"NOT upstream_status = 5xx", "upstream_status = 5xx OR latency_ms > 300",
		"session_id = s1 AND latency_ms > 0 AND request_size > 1", "session_id IN (s1, s2) AND upstream_status != 500",
		"upstream_latency_ms > latency_ms",
	} {
		expr, err := Parse(where)
		if err != nil {
			t.Logf("%q: %v", where, err)
			continue
		}
		want := 0
		for i := range recs {
			m := recs[i].Meta
			m.ID = ids[i]
			if match(expr, &m) {
				want++
			}
		}
		res, err := Run(ctx, tn, Request{Where: where, Count: true})
		require.NoError(t, err, where)
		require.Equal(t, want, res.Count, "count of %q (index %s, ranges %d)", where, res.Plan.Index, res.Plan.Ranges)
		rows := 0
		cursor := ""
		for {
			r, err := Run(ctx, tn, Request{Where: where, Limit: 500, Cursor: cursor})
			require.NoError(t, err, where)
			rows += len(r.Rows)
			if r.Next == "" {
				break
			}
			cursor = r.Next
		}
		require.Equal(t, want, rows, "rows of %q", where)
	}
}
