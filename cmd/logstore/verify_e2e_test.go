package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/segment"
)

// End-to-end regression tests for findings 7, 13 and 14 of the security
// review (issue 10), run against the built binary.

// ingestSample stores n small JSONL records for tenant and returns the path
// of the input file.
func ingestSample(t *testing.T, dir, tenant string, n int) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"time":"2026-11-01T09:00:%02dZ","method":"GET","host":"api.example.com","status":200,"latency_ms":12.5,"path":"/v1/orders/%d","payload":{"response_body":"{\"ok\":true}"}}`+"\n", i%60, i)
	}
	in := filepath.Join(t.TempDir(), tenant+".jsonl")
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o600))
	r := cli(t, dir, "ingest", "--tenant", tenant, in)
	require.Equal(t, 0, r.code, r.stderr)
}

func TestVerifyExitsThreeWhenSegmentsCannotBeAuthenticated(t *testing.T) {
	dir := t.TempDir()
	ingestSample(t, dir, "acme", 20)
	r := cli(t, dir, "segments", "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "authenticated")

	// A disabled key: nothing could be authenticated, so verify cannot
	// vouch for the segments: exit 3, saying why.
	r = cli(t, dir, "keys", "disable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout+r.stderr, "1 segment(s) could not be authenticated: key local://acme")
	require.NotContains(t, r.stdout, "OK ")
	r = cli(t, dir, "keys", "enable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)

	// A missing key file, the same.
	require.NoError(t, os.Rename(filepath.Join(dir, "keys", "acme.key"), filepath.Join(dir, "acme.key.bak")))
	r = cli(t, dir, "segments", "verify", "--tenant", "acme")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout+r.stderr, "could not be authenticated: key local://acme")
	require.Contains(t, r.stdout+r.stderr, "key not found")
	require.NoError(t, os.Rename(filepath.Join(dir, "acme.key.bak"), filepath.Join(dir, "keys", "acme.key")))

	// Corruption is exit 1, even when another segment's key is revoked.
	ingestSample(t, dir, "bob", 5)
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "acme", "*.lss"))
	require.Len(t, segs, 1)
	raw, err := os.ReadFile(segs[0])
	require.NoError(t, err)
	raw[segment.HeaderSize+64] ^= 0x40 // inside the first block
	require.NoError(t, os.WriteFile(segs[0], raw, 0o600))
	r = cli(t, dir, "keys", "disable", "local://bob")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "BAD")
	require.Contains(t, r.stdout+r.stderr, "could not be authenticated: key local://bob")
}

func TestKeysStatusExitsThreeForAnUnusableKey(t *testing.T) {
	dir := t.TempDir()
	ingestSample(t, dir, "acme", 3)
	r := cli(t, dir, "keys", "status", "--tenant", "acme")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "local://acme: Enabled")

	r = cli(t, dir, "keys", "disable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "keys", "status", "--tenant", "acme")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "local://acme: Disabled")
	require.Contains(t, r.stderr, "key disabled")

	r = cli(t, dir, "keys", "enable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "keys", "status", "--tenant", "acme")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)

	require.NoError(t, os.Remove(filepath.Join(dir, "keys", "acme.key")))
	r = cli(t, dir, "keys", "status", "--tenant", "acme")
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout+r.stderr, "key not found")
}

// firstID returns the id of one of tenant's records.
func firstID(t *testing.T, dir, tenant string) engine.ID {
	t.Helper()
	r := cli(t, dir, "query", "--tenant", tenant, "--format", "json", "--limit", "1")
	require.Equal(t, 0, r.code, r.stderr)
	var row struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &row))
	id, err := engine.ParseID(row.ID)
	require.NoError(t, err)
	return id
}

// dropBlockEntries deletes the index entries (block summaries, kind 'b')
// of tenant's blocks, as someone who can write the index but has no key
// could: the records vanish from queries until a reindex.
func dropBlockEntries(t *testing.T, dir, tenant string) {
	t.Helper()
	idx, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{Logger: quietPebble{}})
	require.NoError(t, err)
	lo := append(append([]byte{'b'}, tenant...), 0, 1)
	hi := append(append([]byte{'b'}, tenant...), 0, 2)
	require.NoError(t, idx.DeleteRange(lo, hi, pebble.Sync))
	require.NoError(t, idx.Close())
}

func TestShowAndVerifyReportRemovedIndexEntries(t *testing.T) {
	dir := t.TempDir()
	ingestSample(t, dir, "acme", 10)
	id := firstID(t, dir, "acme")
	r := cli(t, dir, "show", "--tenant", "acme", id.String())
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "status    200")

	dropBlockEntries(t, dir, "acme")
	// Reading commands open read-only, from the manifests and summary
	// files, not the index: they still find the record.
	r = cli(t, dir, "show", "--tenant", "acme", id.String())
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "has no index entry")

	// Reindexing from the segments repairs it.
	r = cli(t, dir, "segments", "reindex")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	r = cli(t, dir, "show", "--tenant", "acme", id.String())
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "status    200")
}

func TestTenantsDeleteDestroysEveryKeyOfTheTenant(t *testing.T) {
	dir := t.TempDir()
	ingestSample(t, dir, "acme", 5)
	r := cli(t, dir, "keys", "rewrap", "--tenant", "acme", "--to", "local://acme-2027")
	require.Equal(t, 0, r.code, r.stderr)
	require.FileExists(t, filepath.Join(dir, "keys", "acme-2027.key"))
	r = cli(t, dir, "tenants", "delete", "acme", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "local://acme-2027")
	for _, n := range []string{"acme", "acme-2027"} {
		_, err := os.Stat(filepath.Join(dir, "keys", n+".key"))
		require.ErrorIs(t, err, os.ErrNotExist, "%s.key survived the tenant's deletion", n)
	}

	// Tenants never come to share a local key: a new tenant whose default
	// key is another tenant's linked key gets none (so deleting either can
	// never shred the other), and deleting it keeps the key.
	r = cli(t, dir, "keys", "link", "--tenant", "zeta", "--key", "local://zeta-k")
	require.Equal(t, 0, r.code, r.stderr)
	ingestSample(t, dir, "zeta", 3)
	in := filepath.Join(t.TempDir(), "one.jsonl")
	require.NoError(t, os.WriteFile(in, []byte(`{"time":"2026-11-01T09:00:00Z","method":"GET","status":200}`+"\n"), 0o600))
	r = cli(t, dir, "ingest", "--tenant", "zeta-k", in) // its default key would be local://zeta-k
	require.Equal(t, 3, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "used by tenant zeta")
	r = cli(t, dir, "tenants", "delete", "zeta-k", "--yes")
	require.Equal(t, exitUsage, r.code, "the refused ingest created no tenant: %s", r.stderr)
	require.Contains(t, r.stderr, `no tenant "zeta-k"`)
	require.FileExists(t, filepath.Join(dir, "keys", "zeta-k.key"))
	r = cli(t, dir, "show", "--tenant", "zeta", firstID(t, dir, "zeta").String())
	require.Equal(t, 0, r.code, "the other tenant's data survives: %s", r.stderr)

	// And a tenant cannot be linked to another tenant's local key.
	r = cli(t, dir, "keys", "link", "--tenant", "acme", "--key", "local://zeta-k")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "zeta")
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
