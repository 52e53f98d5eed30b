package main

import (
	"bytes"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// lockedBuffer is a buffer a child process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeFollowJSONL writes n records with ids, capture times from base on
// and statuses 200..204, and returns the ids of those with status 201.
func writeFollowJSONL(t *testing.T, path string, n int, base time.Time, seed int64) map[string]bool {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	var buf bytes.Buffer
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		ts := base.Add(time.Duration(i) * time.Millisecond)
		var id engine.ID
		var ms [8]byte
		be.BigEndian.PutUint64(ms[:], uint64(ts.UnixMilli()))
		copy(id[:6], ms[2:])
		rng.Read(id[6:])
		line, err := json.Marshal(genRecord{ID: id.String(), Time: ts.Format(time.RFC3339Nano), Method: "GET", Host: "api.example.com",
			Status: 200 + i%5, Session: fmt.Sprintf("s-%d", i%7)})
		require.NoError(t, err)
		buf.Write(line)
		buf.WriteByte('\n')
		if 200+i%5 == 201 {
			want[id.String()] = true
		}
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	return want
}

// TestQueryFollowBesideIngest: `logstore query --follow` (one process, the
// store read-only) prints exactly the matching records that `logstore
// ingest` runs (other processes, holding the lock) store after it started,
// whatever their capture times (the second file is older than what
// exists), none of those before, each once; SIGINT ends it with exit 0.
func TestQueryFollowBesideIngest(t *testing.T) {
	dir := t.TempDir()
	files := t.TempDir()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	before := filepath.Join(files, "before.jsonl")
	writeFollowJSONL(t, before, 500, t0, 1)
	r := cli(t, dir, "ingest", "--tenant", "acme", "--format", "jsonl", before)
	require.Equal(t, 0, r.code, r.stderr)

	follow := exec.Command(binary, "--dir", dir, "query", "--tenant", "acme", "--where", "status = 201", "--follow", "-o", "json")
	var stdout, stderr lockedBuffer
	follow.Stdout, follow.Stderr = &stdout, &stderr
	require.NoError(t, follow.Start())
	defer follow.Process.Kill()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "following tenant acme") },
		30*time.Second, 10*time.Millisecond, "follow never started: %s", &stderr)

	want := map[string]bool{}
	for i, base := range []time.Time{t0.Add(time.Hour), t0.Add(-48 * time.Hour)} {
		path := filepath.Join(files, fmt.Sprintf("after%d.jsonl", i))
		for id := range writeFollowJSONL(t, path, 3000, base, int64(i+2)) {
			want[id] = true
		}
		r := cli(t, dir, "ingest", "--tenant", "acme", "--format", "jsonl", path)
		require.Equal(t, 0, r.code, r.stderr)
	}
	lines := func() []string { return strings.Split(strings.TrimSpace(stdout.String()), "\n") }
	require.Eventually(t, func() bool { return len(lines()) >= len(want) }, 30*time.Second, 10*time.Millisecond,
		"followed %d of %d records; stderr: %s", len(lines()), len(want), &stderr)

	require.NoError(t, follow.Process.Signal(syscall.SIGINT))
	require.NoError(t, follow.Wait(), "exit status; stderr: %s", stderr.String())
	require.Equal(t, 0, follow.ProcessState.ExitCode())
	got := map[string]bool{}
	for _, line := range lines() {
		var row struct {
			ID     string `json:"id"`
			Status int    `json:"status"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row), line)
		require.Equal(t, 201, row.Status)
		require.False(t, got[row.ID], "record %s printed twice", row.ID)
		require.True(t, want[row.ID], "record %s was not ingested after the follow started", row.ID)
		got[row.ID] = true
	}
	require.Len(t, got, len(want))
}

// TestQueryFollowUsage: flags that make no sense with --follow are usage
// errors (exit 2).
func TestQueryFollowUsage(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, dir, "demo")
	require.Equal(t, 0, r.code, r.stderr)
	for _, extra := range [][]string{{"--all"}, {"--limit", "5"}, {"--cursor", "x"}, {"--count"}, {"--last", "-1"}, {"--last", "10001"}} {
		r := cli(t, dir, append([]string{"query", "--tenant", "demo", "--follow"}, extra...)...)
		require.Equal(t, 2, r.code, "%v: %s", extra, r.stderr)
		require.Contains(t, r.stderr, "--", extra)
	}
	r = cli(t, dir, "query", "--tenant", "demo", "--last", "3")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--follow")
}

// TestQueryFollowLast: --follow --last N prints the newest N matches
// first, oldest first (the page `query --limit N` prints, reversed), then
// waits; SIGTERM ends it with exit 0.
func TestQueryFollowLast(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, dir, "demo")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "query", "--tenant", "demo", "--where", "status >= 300", "--limit", "3", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	page := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, page, 3)

	follow := exec.Command(binary, "--dir", dir, "query", "--tenant", "demo", "--where", "status >= 300", "--follow", "--last", "3", "-o", "json")
	var stdout, stderr lockedBuffer
	follow.Stdout, follow.Stderr = &stdout, &stderr
	require.NoError(t, follow.Start())
	defer follow.Process.Kill()
	require.Eventually(t, func() bool { return strings.Count(stdout.String(), "\n") >= 3 }, 30*time.Second, 10*time.Millisecond,
		"stderr: %s", &stderr)
	require.NoError(t, follow.Process.Signal(syscall.SIGTERM))
	require.NoError(t, follow.Wait(), "stderr: %s", stderr.String())
	require.Equal(t, []string{page[2], page[1], page[0]}, strings.Split(strings.TrimSpace(stdout.String()), "\n"))
}
