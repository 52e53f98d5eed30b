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

// TestReviewRetiredJournalThenSyncFailureLosesAcked: a group flushes the
// pending records into a block, maybeRetireJournal fsyncs the segment and
// removes the journal, then commitTenant's own fsync of the segment fails:
// abandonTo cuts the segment back to before the group, which removes the
// block that held the earlier, acknowledged records whose journal copy is
// gone. They are left only in memory (ts.pend), and since ts.w is nil a
// Close seals nothing: they are lost, unreported.
func TestReviewRetiredJournalThenSyncFailureLosesAcked(t *testing.T) {
	mem := vfs.NewMem()
	var removed, failed atomic.Bool
	efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
		if op == vfs.OpRemove && strings.HasSuffix(name, journalExt) {
			removed.Store(true)
			return nil
		}
		if op == vfs.OpSync && strings.HasSuffix(name, segmentExt) && removed.Load() && !failed.Load() {
			failed.Store(true)
			return vfs.ErrIO
		}
		return nil
	})
	indexDir := t.TempDir()
	opts := func(o *Options) { o.IndexDir = indexDir; o.BlockSize = 1 << 10 }
	db := openTest(t, efs, "/db", opts)
	recs := genRecords(rand.New(rand.NewSource(7)), 400, t0)
	var acks []acked
	for i := range recs {
		ids, err := db.tn("acme").Append(bg, recs[i:i+1])
		if err != nil {
			require.ErrorIs(t, err, vfs.ErrIO)
			break // the process closes right after the failed append
		}
		acks = append(acks, acked{recs[i], ids[0]})
	}
	require.True(t, failed.Load(), "the fault fired (a journal was retired)")
	require.NoError(t, db.Close())

	db2 := openTest(t, mem, "/db", opts)
	defer db2.Close()
	t.Logf("recovery: %+v", db2.Recovery())
	missing := 0
	for _, a := range acks {
		if _, err := db2.tn("acme").GetMeta(bg, a.id); err != nil {
			missing++
		}
	}
	require.Zero(t, missing, "acknowledged records lost after a clean Close (of %d acked); reported: %v", len(acks), db2.Recovery().Damaged)
}

// TestReviewReadOnlyJournalLossUnreported: with the writer down (crashed)
// and acknowledged records only in a journal that the manifest's
// checkpoint vouches for, a read-only DB does not check the journal
// against the checkpoint: a journal deleted, cut below the checkpoint, or
// damaged in the middle loses acknowledged records silently (the writer's
// Open reports all three).
func TestReviewReadOnlyJournalLossUnreported(t *testing.T) {
	for _, tc := range []string{"removed", "cut", "midcorrupt"} {
		t.Run(tc, func(t *testing.T) {
			c := newJournalCrash(t, "acme", 6)
			ends := journalBlockEnds(t, c.mem, c.journal)
			b, err := c.mem.Bytes(c.journal)
			require.NoError(t, err)
			switch tc {
			case "removed":
				require.NoError(t, c.mem.Remove(c.journal))
			case "cut":
				require.NoError(t, c.mem.SetBytes(c.journal, b[:ends[1]]))
			case "midcorrupt":
				b[ends[1]+40] ^= 0xff // inside block 3's frame: later blocks intact
				require.NoError(t, c.mem.SetBytes(c.journal, b))
			}
			ro := openTest(t, c.mem, "/db", func(o *Options) { c.opts(o); o.ReadOnly = true })
			defer ro.Close()
			n, err := ro.tn("acme").Count(bg, ScanOptions{})
			rep := ro.Recovery()
			t.Logf("count %d err %v report %+v", n, err, rep)
			if n < 6 {
				require.True(t, err != nil || len(rep.Damaged) > 0,
					"%d of 6 acknowledged records served, and the loss is not reported", n)
			}
		})
	}
}

// TestReviewFailedJournalAppendResurrected: an append whose journal fsync
// fails returns an error (and the writer drops it: the segment path cuts a
// failed group's blocks for exactly this reason), but its journal block
// stays in the kept journal file: the next Open replays it, and a
// read-only DB serves it at once. A client that retries the failed append
// (new ids) ends with the record stored twice.
func TestReviewFailedJournalAppendResurrected(t *testing.T) {
	mem := vfs.NewMem()
	var count atomic.Int64
	efs := vfs.NewErrorFS(mem, vfs.FailNth(vfs.OpSync, journalExt, 3, vfs.ErrIO, &count))
	indexDir := t.TempDir()
	opts := func(o *Options) { o.IndexDir = indexDir }
	db := openTest(t, efs, "/db", opts)
	recs := genRecords(rand.New(rand.NewSource(3)), 6, t0)
	acked, failed := 0, 0
	for i := range recs {
		if _, err := db.tn("acme").Append(bg, recs[i:i+1]); err != nil {
			require.ErrorIs(t, err, vfs.ErrIO)
			failed++
			continue
		}
		acked++
	}
	require.Equal(t, 1, failed)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, acked, n, "the writer serves the acknowledged records only")

	ro := openTest(t, mem, "/db", func(o *Options) { o.ReadOnly = true })
	nro, err := ro.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, ro.Close())
	require.NoError(t, db.Close())

	db2 := openTest(t, mem, "/db", opts)
	defer db2.Close()
	n2, err := db2.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	t.Logf("acked %d, writer before restart %d, read-only %d, writer after restart %d (replayed %d)", acked, n, nro, n2, db2.Recovery().JournalRecords)
	require.Equal(t, acked, nro, "a read-only DB serves the failed append")
	require.Equal(t, acked, n2, "the failed append comes back after a restart")
}

// TestReviewAbandonedJournalOutlivesRetention: the journal of a segment
// abandoned after an fsync error is kept until the next Open (it may hold
// the only durable copy of records). Retention used to delete that segment
// meanwhile, leaving the journal (expired records, still decryptable) and a
// false tampering report ("the tenant manifest does not list") at the next
// Open. Now retention waits for the replay, and deletes after it.
func TestReviewAbandonedJournalOutlivesRetention(t *testing.T) {
	mem := vfs.NewMem()
	now := t0
	var count atomic.Int64
	efs := vfs.NewErrorFS(mem, vfs.FailNth(vfs.OpSync, journalExt, 3, vfs.ErrIO, &count))
	indexDir := t.TempDir()
	opts := func(o *Options) { o.IndexDir = indexDir; o.Now = func() time.Time { return now } }
	db := openTest(t, efs, "/db", opts)
	recs := genRecords(rand.New(rand.NewSource(4)), 6, t0)
	failed := 0
	for i := range recs {
		if _, err := db.tn("acme").Append(bg, recs[i:i+1]); err != nil {
			failed++
		}
	}
	require.Equal(t, 1, failed)
	db.flushJournals(t)
	require.NoError(t, db.Admin().SetRetention(bg, "acme", time.Hour))
	now = now.Add(48 * time.Hour)
	rep, err := db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Zero(t, rep.Segments, "retention waits for the journal's replay")
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Positive(t, st.RetentionDeferred)
	require.NoError(t, db.Close())

	db2 := openTest(t, mem, "/db", opts)
	defer db2.Close()
	require.Empty(t, db2.Recovery().Damaged, "a false tampering report")
	require.Zero(t, db2.Recovery().JournalRecords, "every journaled record was stored")
	_, err = db2.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	n, err := db2.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n)
	names, err := mem.List(db2.segDir("acme"))
	require.NoError(t, err)
	for _, name := range names {
		require.False(t, strings.HasSuffix(name, journalExt), "a journal of expired records outlived retention: %s", name)
	}
}

// TestReviewCatalogLoadBetweenCommitAndApply: the indexer commits a flush's
// block to the index, then (later, under the catalog's lock) drops the
// journal entries it covers. A catalog load in between (the tenant not
// loaded: after any catalog.reset, which retention's deleteSegment and
// index rebuilds do for every tenant, or a first access) reads the new
// block from the index and adds c.mems, which still holds the journal
// entries: the flushed records are counted and scanned twice.
func TestReviewCatalogLoadBetweenCommitAndApply(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(5)), 10, t0)
	appendOneByOne(t, db, "acme", recs)
	var n, scanned int
	dup := false
	require.NoError(t, db.control(bg, func() error {
		ts := db.tenants["acme"]
		kvs, err := db.flushAll(ts, nil)
		if err != nil {
			return err
		}
		// The indexer's steps for this job, with a reader's load trying
		// to run between the index commit and the catalog change: it
		// waits for both (catalog.commitAndApply).
		read := make(chan error, 1)
		err = db.catalog.commitAndApply(kvs, func() error {
			err := db.commitStaged(kvs)
			go func() {
				db.catalog.reset()
				var err error
				if n, err = db.tn("acme").Count(bg, ScanOptions{}); err != nil {
					read <- err
					return
				}
				seen := map[ID]bool{}
				for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
					if err != nil {
						read <- err
						return
					}
					dup = dup || seen[m.ID]
					seen[m.ID] = true
					scanned++
				}
				read <- nil
			}()
			time.Sleep(20 * time.Millisecond) // the reader is waiting now
			return err
		})
		if err != nil {
			return err
		}
		return <-read
	}))
	require.False(t, dup, "a scan served a record twice (%d scanned)", scanned)
	require.Equal(t, 10, n, "count")
}

// TestReviewCatalogResetRaceDoubleCount: the same race, unprompted: appends
// that flush journals while another goroutine resets the catalog (as
// retention does) and counts.
func TestReviewCatalogResetRaceDoubleCount(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 1 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(6)), 800, t0)
	var submitted atomic.Int64
	done := make(chan struct{})
	var worst atomic.Int64
	go func() {
		defer close(done)
		for i := range recs {
			submitted.Add(1)
			if _, err := db.tn("acme").Append(bg, recs[i:i+1]); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			require.Zero(t, worst.Load(), "a count exceeded the records ever submitted by this much")
			return
		default:
		}
		db.catalog.reset()
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		if over := int64(n) - submitted.Load(); over > worst.Load() {
			worst.Store(over)
		}
	}
}

// TestReviewJournalTruncatedBelowHeaderUnreported: a journal cut to fewer
// bytes than a header (here: emptied) while the writer is down is taken
// for one "being created": readJournal returns nothing and no error, and
// replayJournal returns without a report although the manifest's
// checkpoint vouches for its acknowledged records (a cut at a block
// boundary is reported; a cut to 0 bytes is not).
func TestReviewJournalTruncatedBelowHeaderUnreported(t *testing.T) {
	for _, size := range []int{0, 10} {
		c := newJournalCrash(t, "acme", 5)
		b, err := c.mem.Bytes(c.journal)
		require.NoError(t, err)
		require.NoError(t, c.mem.SetBytes(c.journal, b[:size]))
		db := c.open(t)
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		rep := db.Recovery()
		require.NoError(t, db.Close())
		t.Logf("size %d: served %d of 5, report %+v", size, n, rep)
		require.True(t, n == 5 || len(rep.Damaged) > 0, "journal cut to %d bytes: %d of 5 acknowledged records served, loss not reported", size, n)
	}
}
