package engine

import (
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReviewJournalFaultSweep fails the n-th write, sync, truncate or
// remove of a segment or journal file (one fault, then the disk works), with
// small appends and journal retirement, then Closes and reopens: every
// acknowledged record must be served, once, and nothing reported. CI runs
// a Fibonacci sample of n; LOGSTORE_CRASH_ITERATIONS=N runs every n <= N.
func TestReviewJournalFaultSweep(t *testing.T) {
	steps := []int64{1, 2, 3, 5, 8, 13, 21, 34, 55}
	if n := crashIterations(0); n > 0 {
		steps = steps[:0]
		for i := int64(1); i <= int64(n); i++ {
			steps = append(steps, i)
		}
	}
	for _, stopAtFault := range []bool{false, true} {
		for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync, vfs.OpTruncate, vfs.OpRemove, vfs.OpCreate} {
			for _, suffix := range []string{segmentExt, journalExt} {
				for _, n := range steps {
					name := fmt.Sprintf("%v%s#%d stop=%v", op, suffix, n, stopAtFault)
					mem := vfs.NewMem()
					var count atomic.Int64
					var fired atomic.Bool
					efs := vfs.NewErrorFS(mem, func(o vfs.Op, path string) error {
						if o != op || !strings.HasSuffix(path, suffix) {
							return nil
						}
						if count.Add(1) == n {
							fired.Store(true)
							return vfs.ErrIO
						}
						return nil
					})
					indexDir := t.TempDir()
					opts := func(o *Options) { o.IndexDir = indexDir; o.BlockSize = 1 << 10 }
					db := openTest(t, efs, "/db", opts)
					recs := genRecords(rand.New(rand.NewSource(n)), 120, t0)
					var acks []acked
					for i := range recs {
						ids, err := db.tn("acme").Append(bg, recs[i:i+1])
						if err != nil {
							if stopAtFault {
								break
							}
							continue
						}
						acks = append(acks, acked{recs[i], ids[0]})
					}
					_ = db.Close()
					if !fired.Load() {
						continue
					}
					db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir; o.BlockSize = 1 << 10 })
					missing := 0
					for _, a := range acks {
						if _, err := db2.tn("acme").GetMeta(bg, a.id); err != nil {
							missing++
						}
					}
					seen := map[ID]int{}
					dups := 0
					for m, err := range db2.tn("acme").Scan(bg, ScanOptions{}) {
						if err != nil {
							break
						}
						seen[m.ID]++
						if seen[m.ID] > 1 {
							dups++
						}
					}
					rep := db2.Recovery()
					if missing > 0 || dups > 0 || len(rep.Damaged) > 0 {
						t.Errorf("%s: acked %d, missing %d, dups %d, served %d, damaged %v", name, len(acks), missing, dups, len(seen), rep.Damaged)
					}
					require.NoError(t, db2.Close())
				}
			}
		}
	}
}
