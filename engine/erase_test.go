package engine

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/testenv"
	"github.com/logstore/logstore/vfs"
)

// eraseStore writes three sealed segments and an active one; the records
// of session "erase-me" are spread over all of them, and segment 2 holds
// nothing else.
func eraseStore(t *testing.T, dir string) (*testDB, []Record, []ID) {
	t.Helper()
	db := openTest(t, vfs.Default, dir, nil)
	rng := rand.New(rand.NewSource(7))
	var recs []Record
	var ids []ID
	for seg := 0; seg < 4; seg++ {
		batch := genRecords(rng, 200, t0.Add(time.Duration(seg)*time.Hour))
		for i := range batch {
			if seg == 2 || i%7 == 0 {
				batch[i].SessionID = "erase-me"
				batch[i].TraceID = "trace-of-erased-record"
			}
		}
		recs = append(recs, batch...)
		if seg == 3 {
			got, err := db.tn("acme").Append(context.Background(), batch)
			require.NoError(t, err)
			ids = append(ids, got...)
			continue
		}
		ids = append(ids, appendSealed(t, db, "acme", batch, len(batch))...)
	}
	return db, recs, ids
}

func TestEraseSession(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := eraseStore(t, dir)
	ctx := context.Background()
	_, err := db.tn("other").Append(ctx, genRecords(rand.New(rand.NewSource(1)), 10, t0))
	require.NoError(t, err)

	rep, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	erased := 0
	for _, r := range recs {
		if r.SessionID == "erase-me" {
			erased++
		}
	}
	require.Equal(t, erased, rep.Erased)
	require.Equal(t, len(recs)-erased, rep.Kept)
	require.Equal(t, 3, rep.Rewritten)
	require.Equal(t, 1, rep.Removed)

	check := func(db *testDB) {
		t.Helper()
		n, err := db.tn("acme").Count(ctx, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, len(recs)-erased, n)
		for i, r := range recs {
			got, err := db.tn("acme").Get(ctx, ids[i], PartAll)
			if r.SessionID == "erase-me" {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			require.NoError(t, err)
			requireSameRecord(t, r, ids[i], got)
		}
	}
	check(db)
	again, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	require.Zero(t, again.Erased+again.Rewritten+again.Removed, "erasing again finds nothing")
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	require.Empty(t, db.Recovery().Damaged)
	check(db)
	checks, err := db.Admin().Verify(ctx, "acme")
	require.NoError(t, err)
	for _, c := range checks {
		require.NoError(t, c.OpenErr, c.Path)
		require.NoError(t, c.KeyErr, c.Path)
		require.Empty(t, c.IndexProblems, c.Path)
		require.Empty(t, c.Result.Problems, c.Path)
	}
	require.NoError(t, db.Close())
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	check(ro)
	require.NoError(t, ro.Close())

	_, err = openTest(t, vfs.Default, dir, nil).Admin().Erase(ctx, "acme", EraseFilter{})
	require.ErrorIs(t, err, ErrInvalidOptions)
}

// TestEraseLeakScan: after an erase, no file of the store holds the erased
// records' plaintext metadata (session and trace ids, in the index, the
// summary files and the blocks' metadata sections) nor any ciphertext of
// the segments they were in; the kept records' ids are still there, which
// proves the scan looks where they would be.
func TestEraseLeakScan(t *testing.T) {
	dir := t.TempDir()
	db, _, _ := eraseStore(t, dir)
	ctx := context.Background()
	before := segmentFiles(t, dir)
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "erase-me", "trace-of-erased-record"))
	_, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	require.NoError(t, db.Close())

	require.Empty(t, testenv.FilesContaining(t, dir, "erase-me", "trace-of-erased-record"))
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "sess-1"), "the scan finds what is kept")
	for path, data := range before {
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "an erased segment's file is gone: %s", path)
		// 64 bytes from the middle of the old file: ciphertext of its blocks.
		mid := data[len(data)/2 : len(data)/2+64]
		require.Empty(t, testenv.FilesContaining(t, dir, string(mid)), "ciphertext of %s survives", filepath.Base(path))
	}
}

// TestEraseCrashBeforeCommit: an erase cut after its replacement segment
// was written but before the manifest made it sealed is undone by the next
// Open: the replacement goes, every record of the original is still served.
func TestEraseCrashBeforeCommit(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := eraseStore(t, dir)
	ctx := context.Background()
	require.NoError(t, db.control(ctx, func() error { db.sealTolerated(db.tenants["acme"]); return nil }))
	tm := db.manifests.get("acme")
	old, err := parseSegHex(tm.body.Segments[0].ID)
	require.NoError(t, err)
	sv, err := db.readSurvivors(ctx, "acme", old, EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	require.NotZero(t, sv.kept)
	require.NoError(t, db.control(ctx, func() error {
		ts, err := db.tenant("acme")
		require.NoError(t, err)
		uri, _, err := db.keyURIFor(ts)
		require.NoError(t, err)
		nts := &tenantState{name: "acme"}
		require.NoError(t, db.createErasing(nts, uri, old, db.opts.Now()))
		_, err = db.writeBlocks(nts, kindLog, sv.entries[kindLog], sv.metas[kindLog], nil)
		require.NoError(t, err)
		require.NoError(t, nts.w.Seal())
		return nts.w.Close() // the crash: no commit
	}))
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	require.Equal(t, 1, db.Recovery().ErasesRolledBack)
	require.Empty(t, db.Recovery().Damaged)
	n, err := db.tn("acme").Count(ctx, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(recs), n, "no record lost, none doubled")
	for i := range recs {
		_, err := db.tn("acme").Get(ctx, ids[i], PartLog)
		require.NoError(t, err)
	}
	rep, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	require.NotZero(t, rep.Erased, "the erase runs again")
}

func segmentFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	matches, err := filepath.Glob(filepath.Join(dir, "segments", "*", "*"+segmentExt))
	require.NoError(t, err)
	for _, m := range matches {
		b, err := os.ReadFile(m)
		require.NoError(t, err)
		out[m] = b
	}
	require.NotEmpty(t, out)
	return out
}

// TestEraseFollowSeesNothingNew: a follow running across an erase prints
// no kept record a second time (the replacement segment's records are not
// new), and still prints records appended after the erase.
func TestEraseFollowSeesNothingNew(t *testing.T) {
	dir := t.TempDir()
	db, _, _ := eraseStore(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	got := make(chan *Meta, 1000)
	go func() {
		for m, err := range db.tn("acme").Follow(ctx, FollowOptions{Interval: 10 * time.Millisecond, Started: func() { close(started) }}) {
			if err != nil {
				return
			}
			got <- m
		}
	}()
	<-started
	_, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	after := genRecords(rand.New(rand.NewSource(99)), 3, t0.Add(5*time.Hour))
	ids, err := db.tn("acme").Append(ctx, after)
	require.NoError(t, err)
	var seen []ID
	require.Eventually(t, func() bool {
		for {
			select {
			case m := <-got:
				seen = append(seen, m.ID)
			default:
				return len(seen) >= len(ids)
			}
		}
	}, 30*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // a few more ticks: anything else would show now
	for len(got) > 0 {
		seen = append(seen, (<-got).ID)
	}
	require.ElementsMatch(t, ids, seen, "only the records appended after the erase are new")
	cancel()
	require.NoError(t, db.Close())
}

// TestEraseConcurrentScansSeeEachRecordOnce: scans running beside an erase
// never see a record twice (the index swaps a segment for its replacement
// in one batch) and never more records than there were.
func TestEraseConcurrentScansSeeEachRecordOnce(t *testing.T) {
	db, recs, _ := eraseStore(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			seen := map[ID]bool{}
			for m, err := range db.tn("acme").Scan(ctx, ScanOptions{}) {
				if err != nil {
					errs <- err
					return
				}
				if seen[m.ID] {
					errs <- fmt.Errorf("record %s seen twice", m.ID)
					return
				}
				seen[m.ID] = true
			}
			if len(seen) > len(recs) {
				errs <- fmt.Errorf("%d records, more than the %d stored", len(seen), len(recs))
				return
			}
		}
	}()
	_, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	close(done)
	require.NoError(t, err)
	for err := range errs {
		require.NoError(t, err)
	}
}
