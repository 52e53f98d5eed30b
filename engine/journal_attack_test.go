package engine

import (
	"encoding/binary"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// journalCrash is a store whose writer crashed with acknowledged records
// only in an active segment's journal (appends of one record each, the
// manifest checkpointed after every one).
type journalCrash struct {
	mem     *vfs.MemFS
	opts    func(*Options)
	now     *time.Time
	ids     []ID
	recs    []Record
	journal string // the journal's path
}

func newJournalCrash(t *testing.T, tenant string, n int) *journalCrash {
	now := t0
	c := &journalCrash{mem: vfs.NewMem(), now: &now}
	indexDir := t.TempDir()
	c.opts = func(o *Options) { o.IndexDir = indexDir; o.Now = func() time.Time { return *c.now } }
	db := openTest(t, c.mem, "/db", c.opts)
	c.recs = genRecords(rand.New(rand.NewSource(int64(n))), n, t0)
	for i := range c.recs {
		*c.now = c.now.Add(2 * time.Second) // past checkpointEvery: every append checkpoints
		ids, err := db.tn(tenant).Append(bg, c.recs[i:i+1])
		require.NoError(t, err)
		c.ids = append(c.ids, ids[0])
	}
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, n, st.Tenants[tenant].Journaled, "every record only in the journal")
	require.NoError(t, db.control(bg, func() error { c.journal = db.tenants[tenant].j.Path(); return nil }))
	c.mem.Crash()
	_ = db.Close()
	return c
}

func (c *journalCrash) open(t *testing.T) *testDB { return openTest(t, c.mem, "/db", c.opts) }

// journalBlockEnds lists where each block of the journal file b ends.
func journalBlockEnds(t *testing.T, mem *vfs.MemFS, path string) []int64 {
	r, err := segment.Open(path, &segment.ReadOptions{FS: mem})
	require.NoError(t, err)
	defer r.Close()
	var ends []int64
	for _, bi := range r.Blocks() {
		ends = append(ends, bi.Offset+bi.Length)
	}
	return ends
}

// TestJournalReplayedAfterCrash: the records a crash left only in a
// journal are all served after Open, exactly once, and the journal is gone.
func TestJournalReplayedAfterCrash(t *testing.T) {
	c := newJournalCrash(t, "acme", 12)
	db := c.open(t)
	defer db.Close()
	require.Empty(t, db.Recovery().Damaged)
	require.Equal(t, 12, db.Recovery().JournalRecords)
	for i, id := range c.ids {
		got, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, c.recs[i], id, got)
	}
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 12, n)
	_, err = c.mem.Stat(c.journal)
	require.ErrorIs(t, err, vfs.ErrNotExist)
}

// TestJournalOldCopyPutBack: a copy of a journal taken before its replay
// and put back later (a backup restored over the directory, a replay by an
// attacker) stores nothing twice.
func TestJournalOldCopyPutBack(t *testing.T) {
	c := newJournalCrash(t, "acme", 8)
	old, err := c.mem.Bytes(c.journal)
	require.NoError(t, err)
	db := c.open(t)
	require.NoError(t, db.Close())
	writeMemFile(t, c.mem, c.journal, old)
	db = c.open(t)
	defer db.Close()
	require.Empty(t, db.Recovery().Damaged)
	require.Zero(t, db.Recovery().JournalRecords, "every record is stored already")
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 8, n)
}

// TestJournalCutIsReported: a journal cut at a block boundary below the
// manifest's checkpoint while the writer is down is reported as loss (not
// taken as a torn tail), and what remains is replayed.
func TestJournalCutIsReported(t *testing.T) {
	c := newJournalCrash(t, "acme", 6)
	ends := journalBlockEnds(t, c.mem, c.journal)
	require.Len(t, ends, 6+countPayloads(c.recs))
	b, err := c.mem.Bytes(c.journal)
	require.NoError(t, err)
	require.NoError(t, c.mem.SetBytes(c.journal, b[:ends[1]]))
	db := c.open(t)
	defer db.Close()
	requireReported(t, db.DB, "acknowledged records were cut off")
	_, err = db.tn("acme").GetMeta(bg, c.ids[0])
	require.NoError(t, err, "what the journal still holds is replayed")
	_, err = db.tn("acme").GetMeta(bg, c.ids[5])
	require.ErrorIs(t, err, ErrNotFound)
}

// TestJournalRemovedIsReported: a journal deleted while the writer is down
// is reported as loss.
func TestJournalRemovedIsReported(t *testing.T) {
	c := newJournalCrash(t, "acme", 4)
	require.NoError(t, c.mem.Remove(c.journal))
	db := c.open(t)
	defer db.Close()
	requireReported(t, db.DB, "is gone; the manifest's checkpoint recorded")
}

// TestJournalEditedIsRefused: a journal block whose bytes were changed
// (its CRCs recomputed, so it is not a torn tail) fails authentication: it
// is reported, nothing of the edited block is served, and the file is kept.
func TestJournalEditedIsRefused(t *testing.T) {
	c := newJournalCrash(t, "acme", 4)
	ends := journalBlockEnds(t, c.mem, c.journal)
	b, err := c.mem.Bytes(c.journal)
	require.NoError(t, err)
	// Move the last block's times (frame header, in the AAD) a year back.
	start := ends[len(ends)-2]
	fr := b[start:ends[len(ends)-1]]
	binary.LittleEndian.PutUint64(fr[48:], uint64(t0.Add(-365*24*time.Hour).UnixNano()))
	binary.LittleEndian.PutUint32(fr[64:], atkCRC(fr[:64]))
	binary.LittleEndian.PutUint32(fr[len(fr)-4:], atkCRC(fr[:len(fr)-4]))
	require.NoError(t, c.mem.SetBytes(c.journal, b))
	db := c.open(t)
	defer db.Close()
	requireReported(t, db.DB, "journal")
	require.Zero(t, db.Recovery().JournalRecords, "nothing of an unauthenticated journal is replayed")
	_, err = c.mem.Stat(c.journal)
	require.NoError(t, err, "kept for the operator")
}

// TestJournalFromAnotherTenantOrSegment: a journal copied beside another
// tenant's segment, or another segment of the same tenant, is refused and
// reported: its DEK is bound to its own segment and tenant.
func TestJournalFromAnotherTenantOrSegment(t *testing.T) {
	t.Run("tenant", func(t *testing.T) {
		c := newJournalCrash(t, "acme", 3)
		b, err := c.mem.Bytes(c.journal)
		require.NoError(t, err)
		db := c.open(t)
		_, err = db.tn("beta").Append(bg, genRecords(rand.New(rand.NewSource(1)), 1, t0))
		require.NoError(t, err)
		var seg string
		require.NoError(t, db.control(bg, func() error { seg = db.tenants["beta"].w.Path(); return nil }))
		c.mem.Crash()
		_ = db.Close()
		_, jid, _ := idsOfJournal(c.journal)
		writeMemFile(t, c.mem, journalPathOf(seg, jid), b)
		db = c.open(t)
		defer db.Close()
		requireReported(t, db.DB, "journal")
		for _, id := range c.ids {
			_, err := db.tn("beta").GetMeta(bg, id)
			require.ErrorIs(t, err, ErrNotFound, "nothing of acme's journal in beta")
		}
		n, err := db.tn("beta").Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, 1, n, "beta's own record")
	})
	t.Run("segment", func(t *testing.T) {
		c := newJournalCrash(t, "acme", 3)
		b, err := c.mem.Bytes(c.journal)
		require.NoError(t, err)
		db := c.open(t) // replays into a new segment, sealed
		require.NoError(t, db.Close())
		files, err := c.mem.List(filepath.Dir(c.journal))
		require.NoError(t, err)
		var other string
		for _, f := range files {
			seg, _, _ := idsOfJournal(c.journal)
			if strings.HasSuffix(f, segmentExt) && f != segmentFileName(segHex(seg)) {
				other = filepath.Join(filepath.Dir(c.journal), f)
			}
		}
		require.NotEmpty(t, other)
		_, jid, _ := idsOfJournal(c.journal)
		writeMemFile(t, c.mem, journalPathOf(other, jid), b)
		db = c.open(t)
		defer db.Close()
		requireReported(t, db.DB, "journal")
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, 3, n)
	})
}

// TestJournalOfDeletedSegmentIsRefused: a journal put back after retention
// deleted its segment would bring deleted records back: it is refused.
func TestJournalOfDeletedSegmentIsRefused(t *testing.T) {
	c := newJournalCrash(t, "acme", 3)
	b, err := c.mem.Bytes(c.journal)
	require.NoError(t, err)
	db := c.open(t)
	require.NoError(t, db.Admin().SetRetention(bg, "acme", time.Hour))
	*c.now = c.now.Add(48 * time.Hour)
	rep, err := db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Records)
	require.NoError(t, db.Close())
	writeMemFile(t, c.mem, c.journal, b)
	db = c.open(t)
	defer db.Close()
	requireReported(t, db.DB, "which the tenant manifest does not list")
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n, "no deleted record comes back")
}

// TestReadOnlyServesJournaledRecords: a read-only DB beside the writer sees
// the records acknowledged from the journal as of its open or refresh,
// each once, across the writer's flushes; an edited journal is reported.
func TestReadOnlyServesJournaledRecords(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 2 << 10 }) // journals retired every 32 KiB
	defer w.Close()
	recs := genRecords(rand.New(rand.NewSource(9)), 120, t0)
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	defer ro.Close()
	var ids []ID
	for i := range recs {
		got, err := w.tn("acme").Append(bg, recs[i:i+1])
		require.NoError(t, err)
		ids = append(ids, got[0])
		if i%7 != 0 {
			continue
		}
		require.NoError(t, ro.Refresh(bg))
		seen := map[ID]bool{}
		for m, err := range ro.tn("acme").Scan(bg, ScanOptions{}) {
			require.NoError(t, err)
			require.False(t, seen[m.ID], "record %s twice", m.ID)
			seen[m.ID] = true
		}
		require.Len(t, seen, i+1)
		got2, err := ro.tn("acme").Get(bg, ids[i], PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], ids[i], got2)
	}
}

func countPayloads(recs []Record) int {
	n := 0
	for _, r := range recs {
		if r.Payload != nil {
			n++
		}
	}
	return n
}

// writeMemFile creates (or replaces) a file of mem with b, durably.
func writeMemFile(t *testing.T, mem *vfs.MemFS, path string, b []byte) {
	t.Helper()
	if _, err := mem.Stat(path); err == nil {
		require.NoError(t, mem.SetBytes(path, b))
		return
	}
	f, err := mem.Create(path)
	require.NoError(t, err)
	_, err = f.Write(b)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, mem.SyncDir(filepath.Dir(path)))
}

// TestReadOnlyReportsCutJournal: a read-only DB (no recovery of its own)
// reports a journal cut below, or removed despite, the manifest's
// checkpoint, in the answer of the query that misses its records.
func TestReadOnlyReportsCutJournal(t *testing.T) {
	for _, remove := range []bool{false, true} {
		c := newJournalCrash(t, "acme", 5)
		if remove {
			require.NoError(t, c.mem.Remove(c.journal))
		} else {
			ends := journalBlockEnds(t, c.mem, c.journal)
			b, err := c.mem.Bytes(c.journal)
			require.NoError(t, err)
			require.NoError(t, c.mem.SetBytes(c.journal, b[:ends[0]]))
		}
		ro := openTest(t, c.mem, "/db", func(o *Options) { c.opts(o); o.ReadOnly = true })
		_, err := ro.tn("acme").Count(bg, ScanOptions{})
		require.ErrorIs(t, err, ErrSegmentLoss, "removed=%v", remove)
		require.NoError(t, ro.Close())
	}
}
