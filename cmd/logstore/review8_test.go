package main

// Review 8: CLI-level attacks on redaction and erasure. Tests that FAIL on
// the current code demonstrate a bug.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReview8IngestedOriginalsBypassDefaultPolicy: a JSONL line (or a HAR
// entry's _logstore) may carry "originals"; the engine stores a caller's
// originals as given, without the policy. Under the default policy, which
// masks and keeps no original, the card number of this line is stored
// (sealed) and `show --reveal` prints it back: an ingest path that stores
// a value the policy masks.
func TestReview8IngestedOriginalsBypassDefaultPolicy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	in := filepath.Join(t.TempDir(), "a.jsonl")
	line := `{"time": "2026-11-01T10:00:01Z", "method": "POST", "path": "/v1/pay", "status": 200, "latency_ms": 3,` +
		` "attributes": {"note": "card 4111111111111111"}, "originals": [{"where": "attribute:note", "value": "card 4111111111111111"}]}` + "\n"
	require.NoError(t, os.WriteFile(in, []byte(line), 0o600))
	r := cli(t, dir, "ingest", "-t", "acme", in)
	require.Equal(t, 0, r.code, r.stderr)
	q := cli(t, dir, "query", "-t", "acme", "-o", "json")
	require.Equal(t, 0, q.code, q.stderr)
	id := strings.SplitN(strings.SplitN(q.stdout, `"id":"`, 2)[1], `"`, 2)[0]
	s := cli(t, dir, "show", "-t", "acme", "--reveal", id)
	require.Equal(t, 0, s.code, s.stderr)
	require.Contains(t, s.stdout, "************1111", "the attribute is masked")
	require.NotContains(t, s.stdout, "4111111111111111", "the default policy (mask) keeps no original, but the input's originals were stored")
}

// TestReview8EraseLuhnSessionReportsSuccess: a numeric session id that
// passes the Luhn check is stored masked by the card detector, so `logstore
// erase --session ID` with the id the gateway issued erases nothing and
// exits 0 ("erased 0 record(s)") while the session's records stay.
func TestReview8EraseLuhnSessionReportsSuccess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	in := filepath.Join(t.TempDir(), "a.jsonl")
	var b strings.Builder
	for i := 0; i < 3; i++ {
		b.WriteString(`{"time": "2026-11-01T10:00:0` + string(rune('1'+i)) + `Z", "session_id": "4111111111111111", "method": "GET", "path": "/v1/x", "status": 200, "latency_ms": 3}` + "\n")
	}
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o600))
	r := cli(t, dir, "ingest", "-t", "acme", in)
	require.Equal(t, 0, r.code, r.stderr)
	e := cli(t, dir, "erase", "-t", "acme", "--session", "4111111111111111", "--yes")
	require.Equal(t, 0, e.code, e.stderr)
	require.Contains(t, e.stdout, "erased 3 record(s)", "the session's records were not erased: %s", e.stdout)
}
