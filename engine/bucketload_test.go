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

// loadRun is the shared state of TestBucketLoadUnderFaults.
type loadRun struct {
	t     *testing.T
	mu    sync.Mutex // guards acked
	acked map[ID]Record
	// early holds the ids a reader saw before their Append returned (a seal
	// and upload can beat the caller's bookkeeping): checked at the end.
	early                   sync.Map
	wrong, retryable, reads atomic.Int64
	fatal                   atomic.Value // error
	stop                    chan struct{}
}

func (l *loadRun) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *loadRun) record(id ID) (Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.acked[id]
	return r, ok
}

// tolerate counts a retryable error and records any other as fatal.
func (l *loadRun) tolerate(what string, err error) {
	if objstore.IsRetryable(err) {
		l.retryable.Add(1)
		return
	}
	l.fatal.Store(fmt.Errorf("%s: %w", what, err))
}

func (l *loadRun) write(i int, w *testDB) {
	rng := rand.New(rand.NewSource(int64(100 + i)))
	for round := 0; !l.stopped(); round++ {
		recs := genRecords(rng, 50, t0.Add(time.Duration(i)*time.Hour+time.Duration(round)*time.Second))
		for j := range recs {
			recs[j].SessionID = fmt.Sprintf("w%d-%d", i, round)
		}
		ids, err := w.tn("acme").Append(bg, recs)
		if err != nil {
			l.fatal.Store(fmt.Errorf("append on writer %d: %w", i, err))
			return
		}
		l.mu.Lock()
		for j, id := range ids {
			l.acked[id] = recs[j]
		}
		l.mu.Unlock()
	}
}

// check refreshes r, scans every record it serves against what was
// acknowledged, and Gets a few.
func (l *loadRun) check(r *DB, rng *rand.Rand) {
	if err := r.Refresh(bg); err != nil {
		l.tolerate("refresh", err)
		return
	}
	var seen []ID
	for m, err := range r.tn("acme").Scan(bg, ScanOptions{}) {
		l.reads.Add(1)
		if err != nil {
			l.tolerate("scan", err)
			break
		}
		if want, ok := l.record(m.ID); !ok {
			l.early.Store(m.ID, m)
		} else if want.TraceID != m.TraceID || !want.Time.UTC().Equal(m.Time) {
			l.wrong.Add(1)
		}
		seen = append(seen, m.ID)
	}
	for k := 0; k < 5 && len(seen) > 0; k++ {
		id := seen[rng.Intn(len(seen))]
		got, err := r.tn("acme").Get(bg, id, PartAll)
		l.reads.Add(1)
		if err != nil {
			l.tolerate("get", err)
			continue
		}
		want, ok := l.record(id)
		if !ok {
			continue // seen early: its metadata is checked at the end
		}
		want.ID, want.Time, want.HasPayload = id, want.Time.UTC(), want.Payload != nil
		if !reflect.DeepEqual(want, *got) {
			l.wrong.Add(1)
		}
	}
}

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
	var ws []*testDB
	for i := 0; i < 3; i++ {
		w := f.writer(t.TempDir(), func(o *Options) { o.UploadOnClose = 20 * time.Second })
		_, err := w.Admin().LinkKey(bg, "acme", f.key)
		require.NoError(t, err)
		ws = append(ws, w)
	}
	_, err := ws[0].Admin().Upload(bg) // writes the bucket's marker: a reader refuses a bucket without one
	require.NoError(t, err)
	var rs []*DB
	for i := 0; i < 2; i++ {
		rs = append(rs, f.reader(func(o *Options) { o.BucketCacheBytes = 1 << 20; o.BlockCacheBytes = -1 }))
	}
	f.srv.Faults.Set(s3test.FaultConfig{Err500: 0.05, SlowDown: 0.05, Truncate: 0.05, Stall: 0.02, StallFor: 300 * time.Millisecond})

	l := &loadRun{t: t, acked: map[ID]Record{}, stop: make(chan struct{})}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); l.write(i, w) }()
	}
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(200 + i)))
			for !l.stopped() {
				l.check(r, rng)
			}
		}()
	}
	time.Sleep(4 * time.Second)
	close(l.stop)
	wg.Wait()
	if err, _ := l.fatal.Load().(error); err != nil {
		t.Fatal(err)
	}
	l.early.Range(func(k, v any) bool {
		want, ok := l.acked[k.(ID)]
		if m := v.(*Meta); !ok || want.TraceID != m.TraceID || !want.Time.UTC().Equal(m.Time) {
			l.wrong.Add(1)
		}
		return true
	})
	require.Zero(t, l.wrong.Load(), "wrong reads")
	f.srv.Faults.Set(s3test.FaultConfig{})
	for _, w := range ws {
		require.NoError(t, w.Close())
	}
	t.Logf("%d acknowledged records, %d reads, %d retryable failures; faults injected: 500=%d 503=%d stall=%d truncate=%d",
		len(l.acked), l.reads.Load(), l.retryable.Load(), f.srv.Faults.Count("500"), f.srv.Faults.Count("503"),
		f.srv.Faults.Count("stall"), f.srv.Faults.Count("truncate"))
	require.Positive(t, f.srv.Faults.Count("500")+f.srv.Faults.Count("503")+f.srv.Faults.Count("truncate"))
	for _, r := range append(rs, f.reader(nil)) {
		require.NoError(t, r.Refresh(bg))
		require.Equal(t, len(l.acked), countAll(t, r, "acme", ScanOptions{}), "zero lost")
		n := 0
		for id, want := range l.acked {
			if n++; n > 300 {
				break
			}
			got, err := r.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err)
			requireSameRecord(t, want, id, got)
		}
	}
}
