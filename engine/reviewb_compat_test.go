package engine

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func requireCleanVerify(t *testing.T, db *DB, stage string) {
	t.Helper()
	checks, err := db.Admin().Verify(bg, "")
	require.NoError(t, err, stage)
	for _, c := range checks {
		require.NoError(t, c.OpenErr, "%s %s", stage, c.Path)
		require.Empty(t, c.Result.Problems, "%s %s", stage, c.Path)
		require.Empty(t, c.IndexProblems, "%s %s", stage, c.Path)
	}
}

// TestReviewBV1StoreAfterReindexAndLostDerivedFiles: the old store,
// reindexed by the new build (version-2 entries for segments anchored by
// version-1 digests), verified, reopened (writable, read-only), and then
// with its index and summary files gone.
func TestReviewBV1StoreAfterReindexAndLostDerivedFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v2-store")))
	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	requireCleanVerify(t, db, "after reindex")
	require.NoError(t, db.Close())

	db, err = Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	require.Empty(t, db.Recovery().Damaged)
	requireV2StoreServed(t, db)
	requireCleanVerify(t, db, "reopened after reindex")
	require.NoError(t, db.Close())

	ro, err := Open(dir, &Options{RetentionInterval: -1, ReadOnly: true})
	require.NoError(t, err)
	require.Empty(t, ro.Recovery().Damaged)
	requireV2StoreServed(t, ro)
	require.NoError(t, ro.Close())

	// The derived files gone: the index and every summary file.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "index")))
	require.NoError(t, filepath.WalkDir(filepath.Join(dir, "segments"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, summaryExt) {
			return os.Remove(p)
		}
		return err
	}))
	for _, readOnly := range []bool{true, false} {
		db, err = Open(dir, &Options{RetentionInterval: -1, ReadOnly: readOnly})
		require.NoError(t, err, "read-only %v", readOnly)
		require.Empty(t, db.Recovery().Damaged, "read-only %v", readOnly)
		requireV2StoreServed(t, db)
		if !readOnly {
			requireCleanVerify(t, db, "no derived files")
		}
		require.NoError(t, db.Close())
	}
}

// TestReviewBRewrittenSummaryFileMatchesV1Anchor: a store from before group
// filters whose summary files are gone (a seal that crashed before writing
// one, an operator's cleanup): Open rewrites them (ensureSummaryFiles), but
// as version 2, which the segments' version-1 anchors never match. Every
// later read-only load (and every catalog load after a Reindex) then finds
// the file useless and re-reads the whole segment's metadata, and the bad
// file is never replaced (it exists).
func TestReviewBRewrittenSummaryFileMatchesV1Anchor(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v2-store")))
	files, err := filepath.Glob(filepath.Join(dir, "segments", "*", "*"+summaryExt))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		require.NoError(t, os.Remove(f))
	}
	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err, "rewritten")
		tenant := filepath.Base(filepath.Dir(f))
		seg, err := parseSegHex(strings.TrimSuffix(filepath.Base(f), summaryExt))
		require.NoError(t, err)
		e := db.manifests.get(tenant).entry(segHex(seg))
		require.NotNil(t, e)
		sums, err := decodeSummaryFile(seg, raw)
		require.NoError(t, err)
		got := sha256.Sum256(encodeSummaryFile(seg, sums))
		require.Equal(t, e.Summaries, got[:], "%s: the rewritten summary file is not the one the manifest anchors", f)
	}
}
