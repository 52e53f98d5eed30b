package engine

import (
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// appendOneByOne appends recs one Append call each and returns their ids.
func appendOneByOne(t testing.TB, db *testDB, tenant string, recs []Record) []ID {
	t.Helper()
	ids := make([]ID, len(recs))
	for i := range recs {
		got, err := db.tn(tenant).Append(bg, recs[i:i+1])
		require.NoError(t, err)
		ids[i] = got[0]
	}
	return ids
}

// segmentBlocks lists the blocks of every segment file of tenant, with
// their kinds.
func segmentBlocks(t *testing.T, fs vfs.FS, db *testDB, tenant string) ([]segment.BlockInfo, []byte) {
	t.Helper()
	files, err := db.listSegmentFiles(tenant)
	require.NoError(t, err)
	var out []segment.BlockInfo
	var kinds []byte
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), &segment.ReadOptions{FS: fs})
		require.NoError(t, err)
		for i, b := range r.Blocks() {
			blk, err := r.ReadMeta(i)
			require.NoError(t, err)
			out, kinds = append(out, b), append(kinds, blk.Meta[0][1])
		}
		require.NoError(t, r.Close())
	}
	return out, kinds
}

// TestJournalMakesFullBlocks: appends of one record each end in blocks of
// about BlockSize, as a batch would, not one block per record; without the
// journal they make one block per record and take more disk.
func TestJournalMakesFullBlocks(t *testing.T) {
	const blockSize = 16 << 10
	recs := genRecords(rand.New(rand.NewSource(1)), 400, t0)
	disk := map[bool]int64{}
	for _, noJournal := range []bool{false, true} {
		dir := t.TempDir()
		db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = blockSize; o.NoJournal = noJournal })
		appendOneByOne(t, db, "acme", recs)
		st, err := db.Stats(bg)
		require.NoError(t, err)
		require.Equal(t, 400, st.Tenants["acme"].Records, "journaled records count as stored")
		require.NoError(t, db.Close())

		db = openTest(t, vfs.Default, dir, nil)
		blocks, kinds := segmentBlocks(t, vfs.Default, db, "acme")
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, 400, n)
		for _, b := range blocks {
			disk[noJournal] += b.Length
		}
		if noJournal {
			payloads := 0
			for _, r := range recs {
				if r.Payload != nil {
					payloads++
				}
			}
			require.Equal(t, 400+payloads, len(blocks), "a request-log block per Append, and one per payload")
			require.NoError(t, db.Close())
			continue
		}
		require.Less(t, len(blocks), 40, "blocks of about BlockSize, not one per Append")
		for _, kind := range []byte{kindLog, kindPayload} {
			var counts []int
			for i, b := range blocks {
				if kinds[i] == kind {
					counts = append(counts, b.Records)
				}
			}
			want := 0
			for _, r := range recs {
				if kind == kindLog || r.Payload != nil {
					want++
				}
			}
			require.Equal(t, want, sumInts(counts))
			// Every block but the last of its kind is about as full as
			// the first.
			for _, c := range counts[:len(counts)-1] {
				require.GreaterOrEqual(t, c*3, counts[0]*2, "kind %d blocks: %v", kind, counts)
			}
		}
		require.NoError(t, db.Close())
	}
	t.Logf("segment bytes: journal %d, no journal %d (%.2fx)", disk[false], disk[true], float64(disk[true])/float64(disk[false]))
	require.Less(t, disk[false]*3, disk[true]*2, "full blocks take far less disk")
}

// TestJournaledRecordsAreServed: a record is found by Get, GetMeta, Scan
// and Count right after its Append returns, journaled or flushed, and a
// scan running across flushes never sees a record twice or loses one.
func TestJournaledRecordsAreServed(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 8 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(2)), 300, t0)
	var acked sync.Map
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a reader that checks every scan against what was acknowledged
		defer wg.Done()
		last := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			before := 0
			acked.Range(func(_, _ any) bool { before++; return true })
			seen := map[ID]bool{}
			for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
				require.NoError(t, err)
				require.False(t, seen[m.ID], "record %s twice in one scan", m.ID)
				seen[m.ID] = true
			}
			require.GreaterOrEqual(t, len(seen), before, "a scan lost acknowledged records")
			require.GreaterOrEqual(t, len(seen), last, "a later scan saw fewer records")
			last = len(seen)
		}
	}()
	for i := range recs {
		ids, err := db.tn("acme").Append(bg, recs[i:i+1])
		require.NoError(t, err)
		acked.Store(ids[0], i)
		got, err := db.tn("acme").Get(bg, ids[0], PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], ids[0], got)
		m, err := db.tn("acme").GetMeta(bg, ids[0])
		require.NoError(t, err)
		require.Equal(t, ids[0], m.ID)
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, i+1, n)
	}
	close(done)
	wg.Wait()
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Positive(t, st.JournalFlushes)
	require.Positive(t, st.JournalBlocks)
	// An explicit id the journal holds is refused as a duplicate.
	dup := recs[0]
	acked.Range(func(k, _ any) bool { dup.ID = k.(ID); return false })
	_, err = db.tn("acme").Append(bg, []Record{dup})
	require.ErrorIs(t, err, ErrExists)
}

// TestJournaledRecordRevocation: a journaled record is served from memory,
// but only while its segment's DEK is: a revoked key stops its Get once the
// DEK cache's max age has passed, as for a block on disk.
func TestJournaledRecordRevocation(t *testing.T) {
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: 5 * time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Now = clk.Now; o.DEKCache = &cache })
	defer db.Close()
	ids := appendOneByOne(t, db, "acme", genRecords(rand.New(rand.NewSource(3)), 3, t0))
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, 3, st.Tenants["acme"].Journaled)
	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), false))
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.NoError(t, err, "within the DEK cache's max age")
	clk.Add(5*time.Minute + time.Second)
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.ErrorIs(t, err, keys.ErrKeyUnusable)
	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), true))
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.NoError(t, err)
}

// TestJournalPowerLossAtEveryStep: SyncAlways appends of one record each,
// with the power cut at every write and fsync of the segment or its journal
// in turn (torn tails kept at random). After the restart every
// acknowledged record is there, identical, exactly once; nothing is there
// that no Append sent; and the journals are gone once replayed.
func TestJournalPowerLossAtEveryStep(t *testing.T) {
	recs := genRecords(rand.New(rand.NewSource(4)), 60, t0)
	steps := crashIterations(90)
	for crashAt := int64(1); crashAt <= int64(steps); crashAt++ {
		mem := vfs.NewMem()
		indexDir := t.TempDir()
		rng := rand.New(rand.NewSource(crashAt))
		efs, crashed := crashFS(mem, crashAt, rng)
		// Blocks of 1 KiB: a flush every few appends, a journal retired
		// every 16 KiB.
		db := openTest(t, efs, "/db", func(o *Options) { o.IndexDir = indexDir; o.BlockSize = 1 << 10 })
		sent := map[ID]int{}
		var acked []ID
		for i := range recs {
			if crashed.Load() {
				break
			}
			r := recs[i]
			r.ID = idFor(i)
			sent[r.ID] = i
			if _, err := db.tn("acme").Append(bg, []Record{r}); err == nil {
				acked = append(acked, r.ID)
			}
		}
		_ = db.Close()
		db2 := openTest(t, mem, "/db", func(o *Options) { o.IndexDir = indexDir })
		for _, id := range acked {
			got, err := db2.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err, "crash at step %d: acknowledged record %s lost", crashAt, id)
			requireSameRecord(t, recs[sent[id]], id, got)
		}
		seen := map[ID]bool{}
		for m, err := range db2.tn("acme").Scan(bg, ScanOptions{}) {
			require.NoError(t, err)
			require.False(t, seen[m.ID], "crash at step %d: record %s twice", crashAt, m.ID)
			_, ok := sent[m.ID]
			require.True(t, ok, "crash at step %d: a record nobody sent", crashAt)
			seen[m.ID] = true
		}
		require.Empty(t, db2.Recovery().Damaged, "crash at step %d", crashAt)
		names, _ := mem.List("/db/segments/acme")
		for _, n := range names {
			require.NotContains(t, n, journalExt, "crash at step %d: a journal left after replay", crashAt)
		}
		require.NoError(t, db2.Close())
	}
}

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// idFor is a caller-chosen record id, so a test knows every id it sent.
func idFor(i int) ID {
	var id ID
	id[0], id[14], id[15] = 0x01, byte(i>>8), byte(i)
	return id
}

// TestJournalRetired: a journal whose records are all in blocks is removed
// once past 16 blocks' worth, so it stays small however long the segment
// lives; its records stay served.
func TestJournalRetired(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(12)), 300, t0)
	for i := range recs {
		_, err := db.tn("acme").Append(bg, recs[i:i+1])
		require.NoError(t, err)
		names, err := vfs.Default.List(db.segDir("acme"))
		require.NoError(t, err)
		journals := 0
		for _, n := range names {
			if _, _, ok := idsOfJournal(n); ok {
				journals++
				fi, err := vfs.Default.Stat(filepath.Join(db.segDir("acme"), n))
				require.NoError(t, err)
				require.Less(t, fi.Size(), 4*db.journalRetireBytes(), "a journal stays small")
			}
		}
		require.LessOrEqual(t, journals, 1)
	}
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Positive(t, st.JournalsRetired)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 300, n)
}
