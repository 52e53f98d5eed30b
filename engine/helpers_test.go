package engine

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// genRecords makes n deterministic request logs; every third has a payload.
func genRecords(rng *rand.Rand, n int, start time.Time) []Record {
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	out := make([]Record, n)
	for i := range out {
		r := Record{
			Meta: Meta{
				Time:         start.Add(time.Duration(i) * time.Millisecond),
				SessionID:    fmt.Sprintf("sess-%d", rng.Intn(5)),
				TraceID:      fmt.Sprintf("%032x", rng.Uint64()),
				Method:       methods[rng.Intn(len(methods))],
				Host:         "api.example.com",
				Status:       []int{200, 201, 404, 500, 503}[rng.Intn(5)],
				LatencyMs:    float64(rng.Intn(5000)) / 10,
				RouteID:      fmt.Sprintf("route-%d", rng.Intn(3)),
				ServiceID:    "svc-orders",
				RequestSize:  int64(rng.Intn(4000)),
				ResponseSize: int64(rng.Intn(40000)),
			},
			Path:            fmt.Sprintf("/v1/orders/%d", rng.Intn(100000)),
			Query:           "expand=items",
			ClientIP:        fmt.Sprintf("203.0.113.%d", rng.Intn(255)),
			ConsumerID:      "consumer-7",
			RequestHeaders:  []Header{{"accept", "application/json"}, {"x-client-tag", fmt.Sprintf("tag-%d", i)}, {"accept", "dup"}},
			ResponseHeaders: []Header{{"content-type", "application/json"}},
			Attributes:      map[string]string{"region": "eu-west-1"},
		}
		if i%3 == 0 {
			body := make([]byte, 64+rng.Intn(2000))
			rng.Read(body)
			r.Payload = &Payload{RequestContentType: "application/octet-stream", RequestBody: body,
				ResponseContentType: "application/json", ResponseBody: []byte(fmt.Sprintf(`{"ok":true,"n":%d}`, i))}
		}
		out[i] = r
	}
	return out
}

type testDB struct {
	*DB
	t   testing.TB
	dir string
	fs  vfs.FS
}

func openTest(t testing.TB, fs vfs.FS, dir string, mod func(*Options)) *testDB {
	t.Helper()
	o := &Options{FS: fs, RetentionInterval: -1}
	if mod != nil {
		mod(o)
	}
	db, err := Open(dir, o)
	require.NoError(t, err)
	return &testDB{DB: db, t: t, dir: dir, fs: fs}
}

// requireSameRecord compares everything a caller stored with what Get returned.
func requireSameRecord(t testing.TB, want Record, id ID, got *Record) {
	t.Helper()
	want.ID = id
	want.Time = want.Time.UTC()
	want.HasPayload = want.Payload != nil
	require.Equal(t, want, *got)
}

var bg = context.Background()

// tn is the tenant handle of a valid tenant name.
func (db *DB) tn(name string) *Tenant {
	t, err := db.Tenant(name)
	if err != nil {
		panic(err)
	}
	return t
}

// flushJournals seals every active segment, which flushes the journaled
// records into blocks, and waits for their index entries.
func (db *testDB) flushJournals(t testing.TB) {
	t.Helper()
	require.NoError(t, db.control(bg, func() error {
		db.sealAll()
		db.indexBarrier()
		return nil
	}))
}

// loadedSnapshot is the catalog's view of tenant with every lazy segment
// loaded: each view's blocks are the segment's summaries.
func loadedSnapshot(t testing.TB, db *DB, tenant string) []segView {
	t.Helper()
	segs, _, err := db.catalog.snapshot(tenant)
	require.NoError(t, err)
	for i := range segs {
		blocks, _, err := segs[i].summaries()
		require.NoError(t, err)
		segs[i].blocks, segs[i].lazy = blocks, nil
	}
	return segs
}
