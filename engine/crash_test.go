package engine

import (
	"errors"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

func crashIterations(def int) int {
	if s := os.Getenv("LOGSTORE_CRASH_ITERATIONS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return def
}

type acked struct {
	rec Record
	id  ID
}

// crashFS fails every operation from the crashAt-th segment write or fsync
// on, after simulating a power loss at that moment (unsynced bytes dropped,
// a random part of the unsynced tail kept, as a torn write leaves it).
func crashFS(mem *vfs.MemFS, crashAt int64, rng *rand.Rand) (*vfs.ErrorFS, *atomic.Bool) {
	var ops atomic.Int64
	var crashed atomic.Bool
	var once sync.Once
	efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
		if crashed.Load() {
			return vfs.ErrIO
		}
		if (op == vfs.OpWrite || op == vfs.OpSync) && (strings.HasSuffix(name, ".lss") || strings.HasSuffix(name, ".lsj")) && ops.Add(1) >= crashAt {
			once.Do(func() { mem.CrashTorn(rng); crashed.Store(true) })
			return vfs.ErrIO
		}
		return nil
	})
	return efs, &crashed
}

// TestCrashAtEveryPointOfTheWritePath crashes the store at a random segment
// write or fsync (after block write, before index write, mid-fsync), then
// reopens: every acknowledged record is present and identical, segments
// verify, and the index equals a rebuild from segments.
func TestCrashAtEveryPointOfTheWritePath(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever} {
		iters := crashIterations(15)
		for it := 0; it < iters; it++ {
			rng := rand.New(rand.NewSource(int64(it)))
			mem := vfs.NewMem()
			indexDir := t.TempDir()
			efs, crashed := crashFS(mem, 1+int64(rng.Intn(40)), rng)
			db := openTest(t, efs, "/db", func(o *Options) { o.IndexDir = indexDir; o.Sync = mode; o.BlockSize = 2 << 10 })
			var mu sync.Mutex
			var acks []acked
			var wg sync.WaitGroup
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					wr := rand.New(rand.NewSource(int64(it*10 + w)))
					for i := 0; i < 30 && !crashed.Load(); i++ {
						recs := genRecords(wr, 1+wr.Intn(6), t0.Add(time.Duration(i)*time.Second))
						ids, err := db.appendRecords(bg, []string{"acme", "beta"}[w], recs)
						if err != nil {
							continue
						}
						mu.Lock()
						for j := range recs {
							acks = append(acks, acked{recs[j], ids[j]})
						}
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
			_ = db.Close()
			t.Logf("mode %v iteration %d: crashed=%v acknowledged=%d", mode, it, crashed.Load(), len(acks))

			db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir })
			if mode == SyncAlways {
				// SyncNever promises nothing across a power loss.
				for _, a := range acks {
					tenant := "acme"
					if _, err := db2.tn("acme").GetMeta(bg, a.id); errors.Is(err, ErrNotFound) {
						tenant = "beta"
					}
					got, err := db2.tn(tenant).Get(bg, a.id, PartAll)
					require.NoError(t, err, "iteration %d: acknowledged record %s lost", it, a.id)
					requireSameRecord(t, a.rec, a.id, got)
				}
			}
			checks, err := db2.Admin().Verify(bg, "")
			require.NoError(t, err)
			for _, c := range checks {
				require.NoError(t, c.OpenErr)
				require.NoError(t, c.KeyErr)
				require.Empty(t, c.Result.Problems, "iteration %d: %s", it, c.Path)
				require.True(t, c.Result.Sealed, "recovery seals every segment")
			}
			live := dumpIndex(t, db2.DB)
			_, err = db2.Admin().Reindex(bg)
			require.NoError(t, err)
			requireSameIndex(t, live, dumpIndex(t, db2.DB), false, "index equals a rebuild from segments")

			// No segment is appended to after the crash: new data goes to new segments.
			before := map[string]int64{}
			files, _ := db2.dataFiles()
			for _, f := range files {
				if strings.HasSuffix(f, ".lss") {
					fi, _ := mem.Stat(f)
					before[f] = fi.Size()
				}
			}
			_, err = db2.tn("acme").Append(bg, genRecords(rng, 5, t0))
			require.NoError(t, err)
			for f, n := range before {
				fi, err := mem.Stat(f)
				require.NoError(t, err)
				require.Equal(t, n, fi.Size(), "segment %s grew after recovery", f)
			}
			require.NoError(t, db2.Close())
		}
	}
}

// TestDiskFaults injects ENOSPC and EIO at every write and fsync of the
// append path: the failing append returns an error, later appends work, and
// after reopening every acknowledged record is intact.
func TestDiskFaults(t *testing.T) {
	for _, fault := range []error{vfs.ErrNoSpace, vfs.ErrIO} {
		for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync} {
			for n := int64(1); n <= 8; n++ {
				mem := vfs.NewMem()
				var count atomic.Int64
				efs := vfs.NewErrorFS(mem, vfs.FailNth(op, ".lss", n, fault, &count))
				indexDir := t.TempDir()
				db := openTest(t, efs, "/db", func(o *Options) { o.IndexDir = indexDir })
				rng := rand.New(rand.NewSource(n))
				var acks []acked
				failures := 0
				for i := 0; i < 6; i++ {
					recs := genRecords(rng, 3, t0.Add(time.Duration(i)*time.Minute))
					ids, err := db.tn("acme").Append(bg, recs)
					if err != nil {
						failures++
						require.ErrorIs(t, err, fault)
						continue
					}
					for j := range recs {
						acks = append(acks, acked{recs[j], ids[j]})
					}
				}
				require.LessOrEqual(t, failures, 1, "%v at %v #%d: one fault fails one append", fault, op, n)
				require.NoError(t, db.Close())
				db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir })
				for _, a := range acks {
					got, err := db2.tn("acme").Get(bg, a.id, PartAll)
					require.NoError(t, err)
					requireSameRecord(t, a.rec, a.id, got)
				}
				require.NoError(t, db2.Close())
			}
		}
	}
}

// TestSyncIntervalMakesRecordsDurable: with SyncInterval(d), records
// acknowledged more than d before a power loss survive it.
func TestSyncIntervalMakesRecordsDurable(t *testing.T) {
	mem := vfs.NewMem()
	indexDir := t.TempDir()
	db := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir; o.Sync = SyncInterval(20 * time.Millisecond) })
	recs := genRecords(rand.New(rand.NewSource(1)), 50, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	time.Sleep(150 * time.Millisecond) // several intervals
	mem.Crash()
	_ = db.Close()
	db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir })
	defer db2.Close()
	for i, id := range ids {
		got, err := db2.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], id, got)
	}
}
