package engine

import (
	"bytes"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

func loadDuration() time.Duration {
	if s := os.Getenv("LOGSTORE_LOAD_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return time.Second
}

// peakRSS reads the process's peak resident set (VmHWM) in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// TestLoad runs 4 writers and 4 readers concurrently (1 s in CI, longer with
// LOGSTORE_LOAD_SECONDS): no error, bounded memory, and every record written
// is readable afterwards.
func TestLoad(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.SegmentSize = 4 << 20; o.BlockSize = 16 << 10 })
	defer db.Close()
	deadline := time.Now().Add(loadDuration())
	var mu sync.Mutex
	written := map[ID]Record{}
	var ids []ID
	var reads, errs atomic.Int64
	var wg sync.WaitGroup
	fail := func(err error) {
		if err != nil {
			errs.Add(1)
			t.Error(err)
		}
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			tenant := []string{"acme", "beta"}[w%2]
			for i := 0; time.Now().Before(deadline); i++ {
				recs := genRecords(rng, 1+rng.Intn(20), t0.Add(time.Duration(w*1_000_000+i)*time.Second))
				got, err := db.tn(tenant).Append(bg, recs)
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				for j, id := range got {
					written[id] = recs[j]
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		}(w)
	}
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(100 + r)))
			for time.Now().Before(deadline) {
				mu.Lock()
				if len(ids) == 0 {
					mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				id := ids[rng.Intn(len(ids))]
				want := written[id]
				mu.Unlock()
				tenant := "acme"
				if _, err := db.tn("acme").GetMeta(bg, id); err != nil {
					tenant = "beta"
				}
				got, err := db.tn(tenant).Get(bg, id, PartAll)
				if err != nil {
					fail(err)
					return
				}
				if got.Path != want.Path || (want.Payload != nil && !bytes.Equal(got.Payload.RequestBody, want.Payload.RequestBody)) {
					fail(errRecordMismatch)
					return
				}
				if r == 0 {
					if _, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(500), Limit: 1000}); err != nil {
						fail(err)
						return
					}
				}
				reads.Add(1)
			}
		}(r)
	}
	wg.Wait()
	require.Zero(t, errs.Load())
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	require.Less(t, ms.HeapAlloc, uint64(512<<20), "heap bounded")
	for id, want := range written {
		tenant := "acme"
		if _, err := db.tn("acme").GetMeta(bg, id); err != nil {
			tenant = "beta"
		}
		got, err := db.tn(tenant).Get(bg, id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, want, id, got)
	}
	t.Logf("load: %d records written, %d reads, heap %d MiB after GC, peak RSS %d MiB", len(written), reads.Load(), ms.HeapAlloc>>20, peakRSS()>>20)
}

var errRecordMismatch = errorString("read back a different record")

type errorString string

func (e errorString) Error() string { return string(e) }
