package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/tmpfs"
)

// countAcme runs `query --count` for tenant acme and returns the count.
func countAcme(t *testing.T, dir string) int {
	t.Helper()
	r := cli(t, dir, "query", "--tenant", "acme", "--count")
	require.Equal(t, 0, r.code, r.stderr)
	n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	require.NoError(t, err, r.stdout)
	return n
}

// jsonlRecords writes records [from, to) as JSONL.
func jsonlRecords(w io.Writer, from, to int) error {
	bw := bufio.NewWriter(w)
	base := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		line, err := json.Marshal(genRecord{Time: base.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano),
			Method: "GET", Host: "api.example.com", Status: 200 + i%5, Session: fmt.Sprintf("s-%d", i%7)})
		if err != nil {
			return err
		}
		bw.Write(line)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// TestQueryWhileIngestRuns: `logstore query` and `show` answer while a
// `logstore ingest` holds the store, with counts that only grow, and never
// make the ingest fail; afterwards they see everything.
func TestQueryWhileIngestRuns(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(t.TempDir(), "first.jsonl")
	f, err := os.Create(first)
	require.NoError(t, err)
	require.NoError(t, jsonlRecords(f, 0, 100))
	require.NoError(t, f.Close())
	r := cli(t, dir, "ingest", "--tenant", "acme", "--format", "jsonl", first)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 100, countAcme(t, dir))

	ingest := exec.Command(binary, "--dir", dir, "ingest", "--tenant", "acme", "--format", "jsonl", "-")
	var stderr strings.Builder
	ingest.Stderr = &stderr
	in, err := ingest.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, ingest.Start())
	defer ingest.Process.Kill()

	total, prev := 100, 100
	for round := 0; round < 8; round++ {
		require.NoError(t, jsonlRecords(in, total, total+2000))
		total += 2000
		n := countAcme(t, dir)
		require.GreaterOrEqual(t, n, prev, "round %d: a reader never sees fewer records", round)
		require.LessOrEqual(t, n, total)
		prev = n
		t.Logf("round %d: %d of %d written records visible", round, n, total)
		r := cli(t, dir, "query", "--tenant", "acme", "--where", "status = 201", "--limit", "3", "--format", "json")
		require.Equal(t, 0, r.code, r.stderr)
	}
	require.Greater(t, prev, 100, "the readers saw records the running ingest acknowledged")
	require.NoError(t, in.Close())
	require.NoError(t, ingest.Wait(), stderr.String())
	require.Equal(t, total, countAcme(t, dir))
}

// TestQueryReadOnlyCopy: a copy of a store on a file system mounted
// read-only answers queries and shows records.
func TestQueryReadOnlyCopy(t *testing.T) {
	dir := t.TempDir()
	ingestSample(t, dir, "acme", 20)
	id := firstID(t, dir, "acme")
	mnt := tmpfs.Mount(t, 64)
	ro := filepath.Join(mnt, "store")
	require.NoError(t, os.CopyFS(ro, os.DirFS(dir)))
	tmpfs.Remount(t, mnt, "ro")
	r := cli(t, ro, "query", "--tenant", "acme", "--count")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "20", strings.TrimSpace(r.stdout))
	r = cli(t, ro, "show", "--tenant", "acme", id.String())
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, id.String())
	// Reading a directory that is not a store creates nothing.
	r = cli(t, filepath.Join(t.TempDir(), "none"), "query", "--tenant", "acme", "--count")
	require.NotEqual(t, 0, r.code)
}
