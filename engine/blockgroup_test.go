package engine

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestGroupFiltersSkipBlocks: a lookup by trace id over hundreds of blocks
// tests a group filter per 64 blocks and reads a handful of blocks, and
// every lookup still finds its record (no false negative at group
// boundaries), live, after a reopen, after a reindex and read-only.
func TestGroupFiltersSkipBlocks(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	rng := rand.New(rand.NewSource(8))
	recs := genRecords(rng, 3000, t0)
	sessions := map[string]int{}
	for i := range recs {
		recs[i].TraceID = fmt.Sprintf("trace-%06d", i)
		recs[i].SessionID = fmt.Sprintf("sess-%03d", rng.Intn(300))
		recs[i].Payload = nil
		sessions[recs[i].SessionID]++
	}
	for s := 0; s < len(recs); s += 50 {
		_, err := db.tn("acme").Append(bg, recs[s:s+50])
		require.NoError(t, err)
	}
	check := func(db *testDB, stage string) {
		t.Helper()
		segs := loadedSnapshot(t, db.DB, "acme")
		blocks, groups := 0, 0
		for _, sv := range segs {
			for _, s := range sv.blocks {
				blocks++
				if s.group != nil {
					groups++
				}
			}
		}
		require.Greater(t, blocks, 500, stage)
		require.Greater(t, groups, 5, stage)
		worst, tested := 0, 0
		for i := 0; i < len(recs); i += 7 {
			o := ScanOptions{Index: ByTrace(recs[i].TraceID)}
			b := newScanBounds(&o)
			worst = max(worst, len(b.candidates(segs)))
			filtered := 0 // blocks whose own filter the lookup tests
			for _, sv := range segs {
				skip := b.skippedGroups(sv.blocks)
				for _, s := range sv.blocks {
					if !skip[s.seq/groupBlocks] {
						filtered++
					}
				}
			}
			tested = max(tested, filtered)
			n := 0
			for m, err := range db.tn("acme").Scan(bg, o) {
				require.NoError(t, err)
				require.Equal(t, recs[i].TraceID, m.TraceID)
				n++
			}
			require.Equal(t, 1, n, "%s: trace %s", stage, recs[i].TraceID)
		}
		require.Less(t, worst, 8, "%s: blocks read for one trace out of %d", stage, blocks)
		// A value no record has: every group (and so every block) skipped
		// but the few a filter lets through by chance.
		o := ScanOptions{Index: ByTrace("no-such-trace")}
		b := newScanBounds(&o)
		require.Less(t, len(b.candidates(segs)), 4, stage)
		n, err := db.tn("acme").Count(bg, o)
		require.NoError(t, err)
		require.Zero(t, n, stage)
		require.Less(t, tested, blocks/3, "%s: blocks tested for one trace out of %d", stage, blocks)
		for s, want := range sessions {
			n, err := db.tn("acme").Count(bg, ScanOptions{Index: BySession(s)})
			require.NoError(t, err)
			require.Equal(t, want, n, "%s: session %s", stage, s)
		}
	}
	check(db, "live")
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, nil)
	check(db, "reopened")
	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	for _, c := range checks {
		require.Empty(t, c.Result.Problems, c.Path)
		require.Empty(t, c.IndexProblems, c.Path)
	}
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	check(db, "reindexed")
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	check(ro, "read-only")
	require.NoError(t, ro.Close())
	require.NoError(t, db.Close())
}
