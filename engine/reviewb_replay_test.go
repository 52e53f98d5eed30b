package engine

import (
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReviewBReplayStartsMidGroup: a crash leaves the active segment's
// index behind its blocks by a number that is not a multiple of 64 (the
// indexer had not committed the last groups); the replay starts mid-group
// and must seed the group filter with the blocks before it. Plaintext, so
// no manifest anchors the summaries and the catalog serves the index's.
func TestReviewBReplayStartsMidGroup(t *testing.T) {
	for _, keep := range []int{1, 40, 63, 64, 65, 100, 127} {
		mem := vfs.NewMem()
		var crashed atomic.Bool
		efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
			if crashed.Load() {
				return vfs.ErrIO
			}
			return nil
		})
		indexDir := t.TempDir()
		opts := func(o *Options) {
			o.IndexDir = indexDir
			o.BlockSize = 1 << 10
			o.Plaintext = true
			o.Sync = SyncAlways
		}
		db := openTest(t, efs, "/db", opts)
		recs := groupWorkload(rand.New(rand.NewSource(int64(keep))), 2500)
		var acks []acked
		for i := 0; i < len(recs); i += 100 {
			ids, err := db.tn("acme").Append(bg, recs[i:i+100])
			require.NoError(t, err)
			for j, id := range ids {
				acks = append(acks, acked{recs[i+j], id})
			}
		}
		require.NoError(t, db.control(bg, func() error { db.indexBarrier(); return nil }))
		crashed.Store(true)
		_ = db.Close()
		mem.Crash()

		// The index as if the indexer had committed only the first keep
		// blocks of the active segment.
		x, err := openIndex("/db", Options{IndexDir: indexDir, FS: mem})
		require.NoError(t, err)
		states, err := (&DB{index: x}).segmentStates("acme")
		require.NoError(t, err)
		require.Len(t, states, 1)
		b := x.newBatch()
		for id, st := range states {
			require.False(t, st.Sealed)
			require.Greater(t, st.Blocks, 128)
			for seq := keep; seq < st.Blocks; seq++ {
				k := blockKey("acme", id, uint64(seq))
				v, closer, err := x.db.Get(k)
				require.NoError(t, err)
				s, err := decodeSummary(id, uint64(seq), v)
				closer.Close()
				require.NoError(t, err)
				if s.kind == kindLog {
					st.Records -= s.count
				} else {
					st.Payloads -= s.count
				}
				require.NoError(t, b.delete(k))
			}
			st.Blocks = keep
			require.NoError(t, putState(b, st))
		}
		require.NoError(t, x.commit(b))
		b.close()
		require.NoError(t, x.close())

		db = openTest(t, mem, "/db", opts)
		require.Positive(t, db.Recovery().BlocksReplayed, "keep %d", keep)
		checkGroupLookups(t, db.DB, "acme", acks, "replayed")
		checks, err := db.Admin().Verify(bg, "")
		require.NoError(t, err)
		for _, c := range checks {
			require.Empty(t, c.IndexProblems, "keep %d: %s", keep, c.Path)
		}
		require.NoError(t, db.Close())
	}
}
