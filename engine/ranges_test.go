package engine

import (
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestRangesEqualBruteForce: Scan and Count with numeric Ranges (alone, with
// a status index, with time bounds) select exactly what a filter over every
// record selects, over sealed blocks, blocks of the active segment and
// journaled records, including values at range and block boundaries.
func TestRangesEqualBruteForce(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 2 << 10 })
	defer db.Close()
	rng := rand.New(rand.NewSource(21))
	recs := genRecords(rng, 1500, t0)
	for i := range recs {
		recs[i].LatencyMs = float64(rng.Intn(600)) + []float64{0, 0.5}[rng.Intn(2)]
		recs[i].RequestSize = int64(rng.Intn(5000))
		recs[i].UpstreamStatus = 200 + rng.Intn(4)*100
	}
	var ids []ID
	for s := 0; s < 1000; s += 100 { // blocks, sealed below
		got, err := db.tn("acme").Append(bg, recs[s:s+100])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	db.flushJournals(t)
	for s := 1000; s < 1400; s += 100 { // the active segment
		got, err := db.tn("acme").Append(bg, recs[s:s+100])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	ids = append(ids, appendOneByOne(t, db, "acme", recs[1400:])...) // journaled
	byID := map[ID]*Record{}
	for i := range recs {
		byID[ids[i]] = &recs[i]
	}
	cases := []struct {
		name string
		o    ScanOptions
		want func(r *Record) bool
	}{
		{"latency>300", ScanOptions{Ranges: []Range{{Field: "latency_ms", Min: math.Nextafter(300, math.Inf(1)), Max: math.Inf(1)}}},
			func(r *Record) bool { return r.LatencyMs > 300 }},
		{"latency=[100,100.5]", ScanOptions{Ranges: []Range{{Field: "latency_ms", Min: 100, Max: 100.5}}},
			func(r *Record) bool { return r.LatencyMs >= 100 && r.LatencyMs <= 100.5 }},
		{"status5xx&size<1000", ScanOptions{Index: ByStatus(500, 502, 503), Ranges: []Range{{Field: "request_size", Min: 0, Max: 999}}},
			func(r *Record) bool {
				return (r.Status == 500 || r.Status == 502 || r.Status == 503) && r.RequestSize < 1000
			}},
		{"upstream=300&latency<50&time", ScanOptions{From: recs[200].Time, To: recs[1450].Time,
			Ranges: []Range{{Field: "upstream_status", Min: 300, Max: 300}, {Field: "latency_ms", Min: math.Inf(-1), Max: math.Nextafter(50, math.Inf(-1))}}},
			func(r *Record) bool {
				return !r.Time.Before(recs[200].Time) && r.Time.Before(recs[1450].Time) && r.UpstreamStatus == 300 && r.LatencyMs < 50
			}},
		{"method&latency", ScanOptions{Index: ByMethod("GET"), Ranges: []Range{{Field: "latency_ms", Min: 500, Max: math.Inf(1)}}},
			func(r *Record) bool { return r.Method == "GET" && r.LatencyMs >= 500 }},
		{"status-range-none", ScanOptions{Ranges: []Range{{Field: "status", Min: 1000, Max: 2000}}}, func(*Record) bool { return false }},
	}
	for _, c := range cases {
		want := 0
		for i := range recs {
			if c.want(&recs[i]) {
				want++
			}
		}
		n, err := db.tn("acme").Count(bg, c.o)
		require.NoError(t, err)
		require.Equal(t, want, n, c.name)
		got := 0
		for m, err := range db.tn("acme").Scan(bg, c.o) {
			require.NoError(t, err)
			require.True(t, c.want(byID[m.ID]), "%s: %s does not match", c.name, m.ID)
			got++
		}
		require.Equal(t, want, got, c.name)
	}
	for _, bad := range []Range{{Field: "trace_id", Min: 0, Max: 1}, {Field: "nosuch"}, {Field: "latency_ms", Min: 2, Max: 1}, {Field: "status", Min: math.NaN(), Max: 1}} {
		_, err := db.tn("acme").Count(bg, ScanOptions{Ranges: []Range{bad}})
		require.ErrorIs(t, err, ErrInvalidOptions, "%+v", bad)
	}
}
