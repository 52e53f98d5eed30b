package engine

import (
	"fmt"
	"math/rand"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
)

// TestBucketLoadUnderFaults: 3 writer nodes and 2 stateless readers share a
// bucket that fails requests (500s, 503 SlowDown, stalls, GET bodies cut
// short) for a bounded time. Every record a reader returns is one a writer
// acknowledged, with the same content (zero wrong reads); reads fail only
// with retryable errors; once the faults stop, every acknowledged record is
// in the bucket and reads back byte for byte (zero lost).
func TestBucketLoadUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	f := newFleet(t, s3test.StartGofakes3(t))
	const writers, readers = 3, 2
	var ws []*testDB
	for i := 0; i < writers; i++ {
		w := f.writer(t.TempDir(), func(o *Options) { o.UploadOnClose = 20 * time.Second })
		_, err := w.Admin().LinkKey(bg, "acme", f.key)
		require.NoError(t, err)
		ws = append(ws, w)
	}
	_, err := ws[0].Admin().Upload(bg) // writes the bucket's marker: a reader refuses a bucket without one
	require.NoError(t, err)
	var rs []*DB
	for i := 0; i < readers; i++ {
		rs = append(rs, f.reader(func(o *Options) { o.BucketCacheBytes = 1 << 20; o.BlockCacheBytes = -1 }))
	}
	f.srv.Faults.Set(s3test.FaultConfig{Err500: 0.05, SlowDown: 0.05, Truncate: 0.05, Stall: 0.02, StallFor: 300 * time.Millisecond})

	var mu sync.Mutex // guards acked
	acked := map[ID]Record{}
	var wrong, retryable, reads atomic.Int64
	// early holds the ids a reader saw before their Append returned (a seal
	// and upload can beat the caller's bookkeeping): checked at the end.
	var early sync.Map
	var fatal atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func(i int, w *testDB) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(100 + i)))
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				recs := genRecords(rng, 50, t0.Add(time.Duration(i)*time.Hour+time.Duration(round)*time.Second))
				for j := range recs {
					recs[j].SessionID = fmt.Sprintf("w%d-%d", i, round) // ids differ per writer
				}
				ids, err := w.tn("acme").Append(bg, recs)
				if err != nil {
					fatal.Store(fmt.Errorf("append on writer %d: %w", i, err))
					return
				}
				mu.Lock()
				for j, id := range ids {
					acked[id] = recs[j]
				}
				mu.Unlock()
			}
		}(i, w)
	}
	check := func(r *DB, rng *rand.Rand) {
		if err := r.Refresh(bg); err != nil {
			if objstore.IsRetryable(err) {
				retryable.Add(1)
				return
			}
			fatal.Store(fmt.Errorf("refresh: %w", err))
			return
		}
		var seen []ID
		for m, err := range r.tn("acme").Scan(bg, ScanOptions{}) {
			reads.Add(1)
			if err != nil {
				if !objstore.IsRetryable(err) {
					fatal.Store(fmt.Errorf("scan: %w", err))
				}
				retryable.Add(1)
				break
			}
			mu.Lock()
			want, ok := acked[m.ID]
			mu.Unlock()
			if !ok {
				early.Store(m.ID, m)
			} else if want.TraceID != m.TraceID || !want.Time.UTC().Equal(m.Time) {
				if wrong.Add(1) < 3 {
					t.Logf("scan %s: want %s %v, got %s %v", m.ID, want.TraceID, want.Time, m.TraceID, m.Time)
				}
			}
			seen = append(seen, m.ID)
		}
		for k := 0; k < 5 && len(seen) > 0; k++ {
			id := seen[rng.Intn(len(seen))]
			got, err := r.tn("acme").Get(bg, id, PartAll)
			reads.Add(1)
			if err != nil {
				if !objstore.IsRetryable(err) {
					fatal.Store(fmt.Errorf("get: %w", err))
				}
				retryable.Add(1)
				continue
			}
			mu.Lock()
			want, ok := acked[id]
			mu.Unlock()
			if !ok {
				continue // seen early: its metadata is checked at the end
			}
			want.ID, want.Time, want.HasPayload = id, want.Time.UTC(), want.Payload != nil
			if !reflect.DeepEqual(want, *got) {
				if wrong.Add(1) < 3 {
					t.Logf("get %s:\nwant %v\ngot  %v", id, want, *got)
				}
			}
		}
	}
	for i, r := range rs {
		wg.Add(1)
		go func(i int, r *DB) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(200 + i)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				check(r, rng)
			}
		}(i, r)
	}
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	if err, _ := fatal.Load().(error); err != nil {
		t.Fatal(err)
	}
	early.Range(func(k, v any) bool {
		want, ok := acked[k.(ID)]
		m := v.(*Meta)
		if !ok || want.TraceID != m.TraceID || !want.Time.UTC().Equal(m.Time) {
			wrong.Add(1)
		}
		return true
	})
	require.Zero(t, wrong.Load(), "wrong reads")
	f.srv.Faults.Set(s3test.FaultConfig{})
	for _, w := range ws {
		require.NoError(t, w.Close())
	}
	t.Logf("%d acknowledged records, %d reads, %d retryable failures; faults injected: 500=%d 503=%d stall=%d truncate=%d",
		len(acked), reads.Load(), retryable.Load(), f.srv.Faults.Count("500"), f.srv.Faults.Count("503"),
		f.srv.Faults.Count("stall"), f.srv.Faults.Count("truncate"))
	require.Positive(t, f.srv.Faults.Count("500")+f.srv.Faults.Count("503")+f.srv.Faults.Count("truncate"))
	for _, r := range append(rs, f.reader(nil)) {
		require.NoError(t, r.Refresh(bg))
		require.Equal(t, len(acked), countAll(t, r, "acme", ScanOptions{}), "zero lost")
		n := 0
		for id, want := range acked {
			if n++; n > 300 {
				break
			}
			got, err := r.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err)
			requireSameRecord(t, want, id, got)
		}
	}
}
