package engine

import (
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReviewBOrphanJournalReleasedBeforeAbandonedSegmentDurable: with
// SyncInterval, records journaled and made durable by a tick are flushed
// into blocks of the active segment; the next tick's fsync of the segment
// fails (abandon keeps every block written, unsynced) and the repair's
// seal fails too (deferred to the next Open). The journal, now an orphan,
// is the only durable copy of those records, yet releaseOrphans removes it
// as soon as the next segment is sealed: it checks that the orphan's
// pending records are in blocks, not that the abandoned segment's blocks
// are durable. A power loss then loses acknowledged, once-durable records.
func TestReviewBOrphanJournalReleasedBeforeAbandonedSegmentDurable(t *testing.T) {
	mem := vfs.NewMem()
	var failSeg, crashed atomic.Bool
	efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
		if crashed.Load() {
			return vfs.ErrIO
		}
		if failSeg.Load() && op == vfs.OpSync && strings.HasSuffix(name, segmentExt) {
			return vfs.ErrIO
		}
		return nil
	})
	indexDir := t.TempDir()
	opts := func(o *Options) {
		o.IndexDir = indexDir
		o.BlockSize = 8 << 10
		o.Sync = SyncInterval(10 * time.Millisecond)
	}
	db := openTest(t, efs, "/db", opts)
	recs := genRecords(rand.New(rand.NewSource(11)), 400, t0)
	for i := range recs {
		recs[i].Payload = nil
	}
	early := appendOneByOne(t, db, "acme", recs[:5]) // journaled
	time.Sleep(80 * time.Millisecond)                // ticks: the journal is fsynced, the records durable
	require.NoError(t, db.control(bg, func() error {
		ts, err := db.tenant("acme")
		require.NoError(t, err)
		require.Len(t, ts.pend[kindLog].entries, 5, "the early records are journaled, in no block")
		require.Zero(t, ts.w.BlockCount())
		return nil
	}))

	failSeg.Store(true)
	_, err := db.tn("acme").Append(bg, recs[5:200]) // flushes the pending records into blocks
	require.NoError(t, err)
	require.Eventually(t, func() bool { return db.stats.segmentsAbandoned.Load() > 0 }, 2*time.Second, 5*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	failSeg.Store(false)
	t.Logf("abandoned %d, repairs deferred %d", db.stats.segmentsAbandoned.Load(), db.stats.abandonRepairsDeferred.Load())
	require.Positive(t, db.stats.abandonRepairsDeferred.Load(), "the repair failed (its fsync)")

	_, err = db.tn("acme").Append(bg, recs[200:400]) // the next segment
	require.NoError(t, err)
	db.flushJournals(t) // seals it: releaseOrphans
	// Later work syncs the directory (a new segment's creation), so the
	// removal is durable.
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(12)), 1, t0))
	require.NoError(t, err)
	names, err := mem.List(db.segDir("acme"))
	require.NoError(t, err)
	journals := 0
	for _, n := range names {
		if strings.HasSuffix(n, journalExt) {
			journals++
		}
	}
	t.Logf("journals left: %d (%v)", journals, names)

	mem.Crash() // power loss
	crashed.Store(true)
	_ = db.Close()
	db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir })
	defer db2.Close()
	t.Logf("recovery: %+v", db2.Recovery())
	lost := 0
	segs, _, _ := db2.catalog.snapshot("acme")
	for _, sv := range segs {
		n := 0
		for _, b := range sv.blocks {
			n += b.count
		}
		t.Logf("segment %s: %d blocks %d records", segHex(sv.id), len(sv.blocks), n)
	}
	for _, id := range early {
		m, err := db2.tn("acme").GetMeta(bg, id)
		t.Logf("early %s: %v %v", id, m != nil, err)
	}
	for _, id := range early {
		if _, err := db2.tn("acme").GetMeta(bg, id); err != nil {
			lost++
		}
	}
	require.Zero(t, lost, "records durable in a journal before the failed fsync were lost; reported: %v", db2.Recovery().Damaged)
}
