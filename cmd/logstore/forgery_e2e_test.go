package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// TestForgeryEndToEnd replays the review's findings 1 and 2 with the built
// binary: a plaintext segment dropped into an encrypted tenant is never
// served and fails `segments verify`; a truncated sealed segment is reported
// by every command and by verify, never repaired into a clean store.
func TestForgeryEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	r := cli(t, dir, "ingest", "--tenant", "acme", "../../testdata/demo-sample.jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "segments", "verify", "--tenant", "acme")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)

	// Finding 1: a plaintext segment with a forged record.
	plainDir := t.TempDir()
	pdb, err := engine.Open(plainDir, &engine.Options{Plaintext: true, RetentionInterval: -1})
	require.NoError(t, err)
	ids, err := mustTenant(pdb, "acme").Append(context.Background(), []engine.Record{{Meta: engine.Meta{Time: time.Now(), Method: "GET", Status: 299}, Path: "/forged"}})
	require.NoError(t, err)
	require.NoError(t, pdb.Close())
	plain, err := filepath.Glob(filepath.Join(plainDir, "segments", "acme", "*.lss"))
	require.NoError(t, err)
	b, err := os.ReadFile(plain[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "segments", "acme", filepath.Base(plain[0])), b, 0o600))

	r = cli(t, dir, "show", "--tenant", "acme", ids[0].String())
	require.NotEqual(t, 0, r.code, "a forged record is never shown: %s", r.stdout)
	require.NotContains(t, r.stdout, "/forged")
	require.Contains(t, r.stderr, "unencrypted segment refused", "every command warns")
	r = cli(t, dir, "query", "--tenant", "acme", "--where", "status = 299", "--count")
	require.Contains(t, r.stdout, "0")
	r = cli(t, dir, "segments", "verify", "--tenant", "acme")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, "unencrypted segment refused")
	require.NoError(t, os.Remove(filepath.Join(dir, "segments", "acme", filepath.Base(plain[0]))))

	// Finding 2: a sealed segment truncated.
	segs, err := filepath.Glob(filepath.Join(dir, "segments", "acme", "*.lss"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	st, err := os.Stat(segs[0])
	require.NoError(t, err)
	require.NoError(t, os.Truncate(segs[0], st.Size()/2))
	// A query that cannot see every segment fails, naming the loss: it
	// never answers a count short without a word.
	r = cli(t, dir, "query", "--tenant", "acme", "--count")
	require.NotEqual(t, 0, r.code, r.stdout)
	require.Contains(t, r.stderr, "acknowledged segment data is missing")
	r = cli(t, dir, "segments", "verify", "--tenant", "acme")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, "acknowledged segment data is missing")
	r = cli(t, dir, "segments", "verify", "--tenant", "acme") // and again: never repaired
	require.Equal(t, 1, r.code, r.stdout)
}
