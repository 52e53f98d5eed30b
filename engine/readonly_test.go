package engine

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/tmpfs"
	"github.com/logstore/logstore/vfs"
)

func countAll(t *testing.T, db *DB, tenant string, o ScanOptions) int {
	t.Helper()
	n, err := db.tn(tenant).Count(bg, o)
	require.NoError(t, err)
	return n
}

// TestReadOnlyBesideWriter: a read-only DB on the directory a writer has
// open sees what was acknowledged as of its Open, more after Refresh (in the
// active segment and in sealed ones, with or without summary files), reads
// sealed data, and never blocks or changes the writer.
func TestReadOnlyBesideWriter(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 1 << 20; o.Compression = "none" })
	defer w.Close()
	rng := rand.New(rand.NewSource(81))
	recs := genRecords(rng, 200, t0)
	ids, err := w.tn("acme").Append(bg, recs)
	require.NoError(t, err)

	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.Equal(t, 200, countAll(t, ro, "acme", ScanOptions{}))
	got, err := ro.tn("acme").Get(bg, ids[7], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[7], ids[7], got)

	// More appends, enough to seal segments: not seen until Refresh.
	for i := 0; i < 20; i++ {
		_, err := w.tn("acme").Append(bg, genRecords(rng, 200, t0.Add(time.Duration(i+1)*time.Hour)))
		require.NoError(t, err)
	}
	require.Equal(t, 200, countAll(t, ro, "acme", ScanOptions{}))
	require.NoError(t, ro.Refresh(bg))
	require.Equal(t, 4200, countAll(t, ro, "acme", ScanOptions{}))
	require.Equal(t, countAll(t, w.DB, "acme", ScanOptions{Index: ByStatus(404)}), countAll(t, ro, "acme", ScanOptions{Index: ByStatus(404)}))
	segs, err := w.Admin().Segments(bg, "acme")
	require.NoError(t, err)
	require.Greater(t, len(segs), 2, "sealed segments exist")
	st, err := ro.Stats(bg)
	require.NoError(t, err)
	require.Zero(t, st.SummaryFileFailures, "sealed segments were read from their summary files")

	// Same answers as the writer, page by page.
	var wPage, rPage []ID
	for m, err := range w.tn("acme").Scan(bg, ScanOptions{Index: BySession("sess-1"), Limit: 50}) {
		require.NoError(t, err)
		wPage = append(wPage, m.ID)
	}
	for m, err := range ro.tn("acme").Scan(bg, ScanOptions{Index: BySession("sess-1"), Limit: 50}) {
		require.NoError(t, err)
		rPage = append(rPage, m.ID)
	}
	require.Equal(t, wPage, rPage)

	// Writes and operator calls are refused; Tenants answers.
	_, err = ro.tn("acme").Append(bg, genRecords(rng, 1, t0))
	require.ErrorIs(t, err, ErrReadOnly)
	_, err = ro.Admin().Verify(bg, "acme")
	require.ErrorIs(t, err, ErrReadOnly)
	tenants, err := ro.Admin().Tenants(bg)
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, tenants)

	// The writer goes on, unaffected.
	_, err = w.tn("acme").Append(bg, genRecords(rng, 5, t0))
	require.NoError(t, err)
}

// TestReadOnlySummaryFileDamaged: a damaged or missing summary file costs
// a read of the segment, never a wrong answer.
func TestReadOnlySummaryFileDamaged(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 1 << 20; o.Compression = "none" })
	rng := rand.New(rand.NewSource(82))
	for i := 0; i < 10; i++ {
		_, err := w.tn("acme").Append(bg, genRecords(rng, 200, t0.Add(time.Duration(i)*time.Hour)))
		require.NoError(t, err)
	}
	want := countAll(t, w.DB, "acme", ScanOptions{Index: ByStatus(500)})
	require.NoError(t, w.Close())
	files, err := filepath.Glob(filepath.Join(dir, "segments", "acme", "*"+summaryExt))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 2)
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	b[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(files[0], b, 0o600))
	require.NoError(t, os.Remove(files[1]))

	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.Equal(t, 2000, countAll(t, ro, "acme", ScanOptions{}))
	require.Equal(t, want, countAll(t, ro, "acme", ScanOptions{Index: ByStatus(500)}))
	st, err := ro.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.SummaryFileFailures, "the damaged file is counted (a missing one is not a failure)")

	// The next writer Open writes the missing one again.
	w2 := openTest(t, vfs.Default, dir, nil)
	require.NoError(t, w2.Close())
	require.FileExists(t, files[1])
}

// TestReadOnlyOnReadOnlyMount: a store on a file system mounted read-only
// can be queried and read; a read-only Open of a path with no store fails
// and creates nothing.
func TestReadOnlyOnReadOnlyMount(t *testing.T) {
	mnt := tmpfs.Mount(t, 32)
	dir := filepath.Join(mnt, "db")
	w := openTest(t, vfs.Default, dir, nil)
	recs := genRecords(rand.New(rand.NewSource(83)), 100, t0)
	ids, err := w.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	tmpfs.Remount(t, mnt, "ro")

	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	require.Equal(t, 100, countAll(t, ro, "acme", ScanOptions{}))
	got, err := ro.tn("acme").Get(bg, ids[3], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[3], ids[3], got)
	require.NoError(t, ro.Close())

	_, err = Open(filepath.Join(t.TempDir(), "nothing"), &Options{ReadOnly: true})
	require.ErrorIs(t, err, ErrNotFound)
	_, err = os.Stat(filepath.Join(t.TempDir(), "nothing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
