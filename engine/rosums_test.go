package engine

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReadOnlyKeptSummariesMatchFresh: a read-only DB that refreshes while
// the active segment grows (keeping the summaries of the blocks it read,
// rosums.go) holds the same summaries, group filters included, as one
// opened afresh, and answers a query by value alike.
func TestReadOnlyKeptSummariesMatchFresh(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 4 << 10; o.NoJournal = true })
	defer w.Close()
	acme := w.tn("acme")
	rng := rand.New(rand.NewSource(16))
	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	for i := 0; i < 30; i++ {
		_, err := acme.Append(bg, genRecords(rng, 1+rng.Intn(40), t0))
		require.NoError(t, err)
		require.NoError(t, ro.Refresh(bg))
		_, _, err = ro.catalog.snapshot("acme")
		require.NoError(t, err)
	}
	fresh, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer fresh.Close()
	kept, want := loadedSnapshot(t, ro, "acme"), loadedSnapshot(t, fresh, "acme")
	require.Len(t, kept, len(want))
	blocks := 0
	for i := range want {
		require.Equal(t, want[i].id, kept[i].id)
		require.Len(t, kept[i].blocks, len(want[i].blocks))
		for j, s := range want[i].blocks {
			require.Equal(t, s, kept[i].blocks[j], "segment %d block %d", i, j)
			blocks++
		}
	}
	require.Greater(t, blocks, groupBlocks, "group filters were built")
	require.Equal(t, countAll(t, fresh, "acme", ScanOptions{Index: BySession("sess-3")}), countAll(t, ro, "acme", ScanOptions{Index: BySession("sess-3")}))
}
