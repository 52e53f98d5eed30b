package engine

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOpenVersion1Store opens a store written by the build before manifests
// and segment format v2 (testdata/v1-store, made by that build: two tenants,
// acme linked to local://acme-cmek with a retention, 40 records each). It is
// adopted: each tenant gets a manifest bound to the key its configuration
// named, every record reads back, and new writes use the linked key.
func TestOpenVersion1Store(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v1-store")))
	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	rep := db.Recovery()
	require.True(t, db.index.migrated, "the index, in format 1, was migrated")
	require.Equal(t, 2, rep.TenantsAdopted, "%+v", rep)
	require.Empty(t, rep.Damaged)
	uri, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "local://acme-cmek", uri, "the binding comes from the old index configuration, not a new local key")
	cfg, err := db.config("acme")
	require.NoError(t, err)
	require.Equal(t, 10*365*24*time.Hour, cfg.Retention)
	for _, tenant := range []string{"acme", "globex"} {
		n, err := db.tn(tenant).Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, 40, n)
		for m, err := range db.tn(tenant).Scan(bg, ScanOptions{}) {
			require.NoError(t, err)
			rec, err := db.tn(tenant).Get(bg, m.ID, PartAll)
			require.NoError(t, err)
			require.Contains(t, rec.Path, "/v1/"+tenant+"/")
		}
		checks, err := db.Admin().Verify(bg, tenant)
		require.NoError(t, err)
		for _, c := range checks {
			require.NoError(t, c.OpenErr)
			require.NoError(t, c.KeyErr)
			require.Empty(t, c.Result.Problems)
		}
	}
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 3, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = os.Stat(filepath.Join(dir, "keys", "acme.key"))
	require.ErrorIs(t, err, os.ErrNotExist, "no local key was created for a linked tenant")

	db, err = Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	require.Empty(t, db.Recovery().Damaged)
	require.Zero(t, db.Recovery().TenantsAdopted)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 43, n)
}

// legacyEntries counts the index entries of format 1's per-record kinds.
func legacyEntries(t *testing.T, x *index) int {
	t.Helper()
	n := 0
	for _, k := range legacyKinds {
		require.NoError(t, x.scan([]byte{k}, []byte{k + 1}, func(_, _ []byte) error { n++; return nil }))
	}
	return n
}

// TestIndexFormat1Migrated: the v1 store's index is in format 1 (per-record
// entries). Open removes them and indexes every segment as block
// summaries; a crash right after the migration's batch (before recovery
// indexed anything) leaves an index the next Open completes.
func TestIndexFormat1Migrated(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v1-store")))
	// Only the migration: open the index as Open does, then stop, as a
	// crash right after it would.
	x, err := openIndex(dir, Options{})
	require.NoError(t, err)
	require.True(t, x.migrated)
	require.Zero(t, legacyEntries(t, x))
	require.NoError(t, x.close())

	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	require.False(t, db.index.migrated, "migrated once")
	require.Zero(t, legacyEntries(t, db.index))
	for _, tenant := range []string{"acme", "globex"} {
		n, err := db.tn(tenant).Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, 40, n)
		checks, err := db.Admin().Verify(bg, tenant)
		require.NoError(t, err)
		for _, c := range checks {
			require.Empty(t, c.IndexProblems)
		}
	}
	uri, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "local://acme-cmek", uri, "the migration kept the non-derived configuration")
	require.NoError(t, db.Close())
}

// TestOpenStoreWithVersion1Summaries opens a store written by the build
// before group filters (testdata/v2-store, made by bd99b94: index format 2,
// block summaries version 1, sealed segments anchored by the SHA-256 of
// their version-1 summary files; two tenants, 800 records each, 1 KiB
// blocks, two segments each). Nothing is reported, every query, lookup and
// Get answers, Verify and VerifyIndex are clean (also after a reindex,
// which computes version-2 summaries the anchors do not cover), and new
// segments get group filters.
func TestOpenStoreWithVersion1Summaries(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		dir := t.TempDir()
		require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v2-store")))
		db, err := Open(dir, &Options{RetentionInterval: -1, ReadOnly: readOnly})
		require.NoError(t, err)
		require.Empty(t, db.Recovery().Damaged, "read-only %v", readOnly)
		requireV2StoreServed(t, db)
		if !readOnly {
			checks, err := db.Admin().Verify(bg, "")
			require.NoError(t, err)
			for _, c := range checks {
				require.NoError(t, c.OpenErr)
				require.Empty(t, c.Result.Problems, c.Path)
				require.Empty(t, c.IndexProblems, c.Path)
			}
			_, err = db.Admin().Reindex(bg)
			require.NoError(t, err)
			requireV2StoreServed(t, db)
			_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 5, t0))
			require.NoError(t, err)
		}
		require.NoError(t, db.Close())
	}
}

func requireV2StoreServed(t *testing.T, db *DB) {
	t.Helper()
	for _, tenant := range []string{"acme", "globex"} {
		tn, err := db.Tenant(tenant)
		require.NoError(t, err)
		n, err := tn.Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 800)
		got := 0
		for m, err := range tn.Scan(bg, ScanOptions{Index: ByTrace("trace-" + tenant + "-0420")}) {
			require.NoError(t, err)
			rec, err := tn.Get(bg, m.ID, PartAll)
			require.NoError(t, err)
			require.Equal(t, "/v2/"+tenant+"/items/420", rec.Path)
			got++
		}
		require.Equal(t, 1, got)
	}
}
