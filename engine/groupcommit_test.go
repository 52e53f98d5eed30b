package engine

import (
	"math/rand"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestAppendFsyncCounters: every SyncAlways group commit fsyncs each
// touched tenant's segment once and counts the records it made durable;
// concurrent callers share fsyncs.
func TestAppendFsyncCounters(t *testing.T) {
	for _, sm := range []SyncMode{SyncAlways, SyncNever} {
		db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Sync = sm })
		recs := genRecords(rand.New(rand.NewSource(1)), 64, t0)
		_, err := db.tn("acme").Append(bg, recs[:10])
		require.NoError(t, err)
		_, err = db.tn("acme").Append(bg, recs[10:11])
		require.NoError(t, err)
		var wg sync.WaitGroup
		for i := 11; i < len(recs); i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, err := db.tn([]string{"acme", "beta"}[i%2]).Append(bg, recs[i:i+1])
				require.NoError(t, err)
			}(i)
		}
		wg.Wait()
		st, err := db.Stats(bg)
		require.NoError(t, err)
		if sm == SyncNever {
			require.Zero(t, st.AppendFsyncs)
			require.Zero(t, st.AppendFsyncRecords)
		} else {
			require.Equal(t, uint64(len(recs)), st.AppendFsyncRecords)
			require.GreaterOrEqual(t, st.AppendFsyncs, uint64(3))
			require.LessOrEqual(t, st.AppendFsyncs, uint64(len(recs)-9))
			require.LessOrEqual(t, st.AppendFsyncs, 2*st.GroupCommits, "at most one fsync per tenant per group")
		}
		require.NoError(t, db.Close())
	}
}
