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

// checkGroupLookups: every acknowledged record is found by its trace id
// (Scan and Count), and counts by session equal a brute-force count.
func checkGroupLookups(t *testing.T, db *DB, tenant string, acks []acked, stage string) {
	t.Helper()
	tn, err := db.Tenant(tenant)
	require.NoError(t, err)
	sessions := map[string]int{}
	for _, a := range acks {
		sessions[a.rec.SessionID]++
	}
	missing := []string{}
	for _, a := range acks {
		n := 0
		for m, err := range tn.Scan(bg, ScanOptions{Index: ByTrace(a.rec.TraceID)}) {
			require.NoError(t, err, stage)
			if m.ID == a.id {
				n++
			}
		}
		if n != 1 {
			missing = append(missing, a.rec.TraceID)
			continue
		}
		c, err := tn.Count(bg, ScanOptions{Index: ByTrace(a.rec.TraceID)})
		require.NoError(t, err, stage)
		require.Equal(t, 1, c, "%s: count of trace %s", stage, a.rec.TraceID)
	}
	require.Empty(t, missing, "%s: %d of %d acknowledged records not found by trace id", stage, len(missing), len(acks))
	for s, want := range sessions {
		n, err := tn.Count(bg, ScanOptions{Index: BySession(s)})
		require.NoError(t, err, stage)
		require.Equal(t, want, n, "%s: count of session %s", stage, s)
	}
}

func groupWorkload(rng *rand.Rand, n int) []Record {
	recs := genRecords(rng, n, t0)
	for i := range recs {
		recs[i].TraceID = fmt.Sprintf("trace-%06d", i)
		recs[i].SessionID = fmt.Sprintf("sess-%03d", rng.Intn(200))
		if rng.Intn(3) != 0 {
			recs[i].Payload = nil
		}
	}
	return recs
}

// TestReviewBGroupFiltersMixedWorkload: payload blocks interleaved,
// journaled single appends, batches, seals mid-group; then lookups live,
// reopened, read-only and after a reindex.
func TestReviewBGroupFiltersMixedWorkload(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	rng := rand.New(rand.NewSource(99))
	recs := groupWorkload(rng, 4000)
	var acks []acked
	for i := 0; i < len(recs); {
		var k int
		switch rng.Intn(4) {
		case 0:
			k = 1
		case 1:
			k = 1 + rng.Intn(10)
		default:
			k = 20 + rng.Intn(120)
		}
		k = min(k, len(recs)-i)
		ids, err := db.tn("acme").Append(bg, recs[i:i+k])
		require.NoError(t, err)
		for j, id := range ids {
			acks = append(acks, acked{recs[i+j], id})
		}
		i += k
		if rng.Intn(60) == 0 {
			db.flushJournals(t) // seals the active segment mid-group
		}
	}
	checkGroupLookups(t, db.DB, "acme", acks, "live")
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, nil)
	checkGroupLookups(t, db.DB, "acme", acks, "reopened")
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	checkGroupLookups(t, ro.DB, "acme", acks, "read-only")
	require.NoError(t, ro.Close())
	requireCleanVerify(t, db.DB, "verify")
	_, err := db.Admin().Reindex(bg)
	require.NoError(t, err)
	checkGroupLookups(t, db.DB, "acme", acks, "reindexed")
	require.NoError(t, db.Close())
}

// TestReviewBGroupFiltersAfterWriteFaults: segment writes and fsyncs fail
// now and then (abandonTo cuts segments mid-group, journals are cut back
// and orphaned); every acknowledged record is found by its trace id, live
// and after a reopen.
func TestReviewBGroupFiltersAfterWriteFaults(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			mem := vfs.NewMem()
			rng := rand.New(rand.NewSource(seed))
			var armed atomic.Bool
			frng := rand.New(rand.NewSource(seed * 7))
			efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
				if !armed.Load() {
					return nil
				}
				if (op == vfs.OpWrite || op == vfs.OpSync) && (strings.HasSuffix(name, segmentExt) || strings.HasSuffix(name, journalExt)) && frng.Intn(150) == 0 {
					return vfs.ErrIO
				}
				return nil
			})
			indexDir := t.TempDir()
			opts := func(o *Options) { o.IndexDir = indexDir; o.BlockSize = 1 << 10 }
			db := openTest(t, efs, "/db", opts)
			armed.Store(true)
			recs := groupWorkload(rng, 3000)
			var acks []acked
			for i := 0; i < len(recs); {
				k := 1
				if rng.Intn(2) == 0 {
					k = 1 + rng.Intn(150)
				}
				k = min(k, len(recs)-i)
				ids, err := db.tn("acme").Append(bg, recs[i:i+k])
				if err == nil {
					for j, id := range ids {
						acks = append(acks, acked{recs[i+j], id})
					}
				}
				i += k
			}
			armed.Store(false)
			t.Logf("abandoned %d acked %d", db.stats.segmentsAbandoned.Load(), len(acks))
			checkGroupLookups(t, db.DB, "acme", acks, "live")
			require.NoError(t, db.Close())
			db = openTest(t, mem, "/db", opts)
			t.Logf("recovery: %+v", db.Recovery())
			checkGroupLookups(t, db.DB, "acme", acks, "reopened")
			require.NoError(t, db.Close())
		})
	}
}
