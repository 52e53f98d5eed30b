package main

// End-to-end tests of the first items of the CLI issue (14): mistakes get
// a clear error and the documented exit code, never a silent wrong answer;
// --all streams every row; time flags take days, weeks and dates.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sampleStore is a store holding the bundled 300-record sample as tenant acme.
func sampleStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	r := cli(t, dir, "ingest", "--tenant", "acme", "../../testdata/demo-sample.jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	return dir
}

func TestUnknownTenantIsAnError(t *testing.T) {
	dir := sampleStore(t)
	for _, args := range [][]string{
		{"query", "--tenant", "acme2"},
		{"query", "--tenant", "acme2", "--count"},
		{"show", "--tenant", "acme2", "019NHYJXEG0ERSTGCWMGFJGDE7"},
		{"audit", "--tenant", "acme2"},
		{"keys", "status", "--tenant", "acme2"},
		{"segments", "list", "--tenant", "acme2"},
		{"segments", "verify", "--tenant", "acme2"},
		{"tenants", "delete", "acme2", "--yes"},
	} {
		r := cli(t, dir, args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stdout+r.stderr)
		require.Contains(t, r.stderr, `no tenant "acme2"`, args)
		require.Contains(t, r.stderr, "(tenants: acme)", args)
	}
	_, err := os.Stat(filepath.Join(dir, "segments", "acme2"))
	require.True(t, os.IsNotExist(err), "no tenant directory was created")
}

func TestMistypedDirNeverCreatesAStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nosuch")
	for _, args := range [][]string{
		{"query", "--tenant", "acme"},
		{"show", "--tenant", "acme", "019NHYJXEG0ERSTGCWMGFJGDE7"},
		{"audit", "--tenant", "acme"},
		{"keys", "status", "--tenant", "acme"},
		{"keys", "list"},
		{"segments", "list"},
		{"segments", "verify"},
		{"tenants", "delete", "acme", "--yes"},
	} {
		r := cli(t, missing, args...)
		require.Equal(t, exitError, r.code, "%v: %s", args, r.stdout+r.stderr)
		require.Contains(t, r.stderr, "no logstore data directory at "+missing, args)
		_, err := os.Stat(missing)
		require.True(t, os.IsNotExist(err), "%v created %s", args, missing)
	}
	r := cli(t, "", "query", "--tenant", "acme")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "--dir is empty")
}

func TestQueryMistakesAreUsageErrors(t *testing.T) {
	dir := sampleStore(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--where", "method = GET;"}, `unexpected ';'`},
		{[]string{"--where", "method = GET AND AND status = 200"}, "got the keyword AND"},
		{[]string{"--where", "status = 99999999999999999999"}, "out of range"},
		{[]string{"--where", "status = 2000"}, "HTTP status"},
		{[]string{"--where", "status = 200 AND"}, "end of the expression"},
		{[]string{"--since", "-1h"}, "must be positive"},
		{[]string{"--since", "7x"}, "is not an age"},
		{[]string{"--from", "2026-11-02", "--to", "2026-11-01"}, "is not before --to"},
		{[]string{"--from", "yesterday"}, "use RFC 3339"},
		{[]string{"--limit", "1000000"}, "use --all"},
		{[]string{"--all", "--count"}, "not with --count"},
	} {
		r := cli(t, dir, append([]string{"query", "--tenant", "acme"}, c.args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", c.args, r.stdout+r.stderr)
		require.Contains(t, r.stderr, c.want, c.args)
		require.NotContains(t, r.stderr, "logstore: logstore/", "one prefix")
	}
	// The sample's records are from 2026-11-01.
	count := func(args ...string) int {
		r := cli(t, dir, append([]string{"query", "--tenant", "acme", "--count"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
		require.NoError(t, err, r.stdout)
		return n
	}
	require.Equal(t, 300, count())
	require.Equal(t, 300, count("--from", "2026-11-01", "--to", "2026-11-02"))
	require.Equal(t, 300, count("--from", "2026-11-01T00:00", "--to", "2026-11-02 00:00"))
	require.Zero(t, count("--from", "2026-11-02"))
	require.Zero(t, count("--since", "7d"), "the sample is older than a week: %s", "2026-11-01")
	require.Equal(t, 300, count("--since", "5200w"))
	require.Equal(t, count("--where", "method = GET"), count("--where", "method = 'GET'"))
}

func TestQueryAllStreamsEveryRow(t *testing.T) {
	dir := sampleStore(t)
	for _, args := range [][]string{{"--all"}, {"--limit", "0"}} {
		r := cli(t, dir, append([]string{"query", "--tenant", "acme", "--format", "json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		require.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 300, args)
		require.NotContains(t, r.stderr, "--cursor", "no page: every row")
	}
	r := cli(t, dir, "query", "--tenant", "acme", "--all", "--where", "status >= 400")
	require.Equal(t, 0, r.code, r.stderr)
	n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")) - 1 // the header
	c := cli(t, dir, "query", "--tenant", "acme", "--count", "--where", "status >= 400")
	require.Equal(t, strings.TrimSpace(c.stdout), strconv.Itoa(n))
	require.Contains(t, r.stderr, strconv.Itoa(n)+" row(s)")
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := cli(t, t.TempDir(), args...)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "logstore")
	}
}

func TestWrongCallsExitTwo(t *testing.T) {
	dir := sampleStore(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"qurey"}, `did you mean "query"?`},
		{[]string{"keys", "lnk"}, `did you mean "link"?`},
		{[]string{"keys"}, "needs a command"},
		{[]string{"show", "--tenant", "acme"}, "accepts 1 arg(s)"},
		{[]string{"query", "--tenant", "acme", "extra"}, "unknown command"},
		{[]string{"query", "--tenant", "acme", "--nosuchflag"}, "unknown flag"},
		{[]string{"keys", "link", "--tenant", "acme", "--key", "bogus://x"}, "bad key URI"},
		{[]string{"keys", "link", "--tenant", "acme", "--key", "not-a-uri"}, "bad key URI"},
	} {
		r := cli(t, dir, c.args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", c.args, r.stdout+r.stderr)
		require.Contains(t, r.stderr, c.want, c.args)
	}
}

func TestMisplacedBodyNamesPayload(t *testing.T) {
	in := filepath.Join(t.TempDir(), "one.jsonl")
	require.NoError(t, os.WriteFile(in, []byte(`{"time":"2026-11-01T09:00:00Z","method":"GET","status":200,"request_body":"{}"}`+"\n"), 0o600))
	r := cli(t, filepath.Join(t.TempDir(), "store"), "ingest", "--tenant", "acme", in)
	require.Equal(t, exitError, r.code, r.stdout)
	require.Contains(t, r.stderr, `unknown field "request_body": bodies go under "payload"`)
}

func TestSkipInvalidGoesOnOverFiles(t *testing.T) {
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk.bin")
	require.NoError(t, os.WriteFile(junk, []byte("\x00\x01 not a capture \x02"), 0o600))
	empty := filepath.Join(tmp, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	sample := "../../testdata/demo-sample.jsonl"
	dir := filepath.Join(tmp, "store")
	r := cli(t, dir, "ingest", "--tenant", "acme", "--skip-invalid", junk, filepath.Join(tmp, "missing.har"), sample)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "skipped file "+junk)
	require.Contains(t, r.stderr, "skipped file "+filepath.Join(tmp, "missing.har"))
	require.Contains(t, r.stdout, "ingested 300 record(s)")
	require.Contains(t, r.stdout, "2 file(s) skipped")
	require.NotContains(t, r.stderr, "stored 0 record(s)", "nothing to reassure about")
	// Without it, the first bad file stops the ingest, and says nothing
	// about records it never stored.
	r = cli(t, dir, "ingest", "--tenant", "acme", filepath.Join(tmp, "missing.har"), sample)
	require.Equal(t, exitError, r.code)
	require.NotContains(t, r.stderr, "stored 0 record(s)")
	r = cli(t, dir, "ingest", "--tenant", "acme", empty)
	t.Logf("empty input: code %d, %s%s", r.code, r.stdout, r.stderr)
	require.NotContains(t, r.stderr, "stored 0 record(s)")
}

func TestConventions(t *testing.T) {
	dir := sampleStore(t)
	// Short flags and --output.
	long := cli(t, dir, "query", "--tenant", "acme", "--where", "status >= 400", "--format", "json", "--all")
	short := cli(t, dir, "query", "-t", "acme", "-w", "status >= 400", "-o", "json", "--all")
	alias := cli(t, dir, "query", "-t", "acme", "-w", "status >= 400", "--output", "json", "--all")
	require.Equal(t, 0, long.code, long.stderr)
	require.Equal(t, long.stdout, short.stdout)
	require.Equal(t, long.stdout, alias.stdout)
	// JSON on the listings.
	for _, args := range [][]string{{"segments", "list", "-o", "json"}, {"keys", "list", "--output", "json"}} {
		r := cli(t, dir, args...)
		require.Equal(t, 0, r.code, r.stderr)
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			require.True(t, json.Valid([]byte(line)), "%v: %s", args, line)
			require.Contains(t, line, `"tenant":"acme"`)
		}
	}
	r := cli(t, dir, "keys", "list")
	require.NotContains(t, r.stdout, "[local://acme]", "no Go slice syntax")
	// Help with the grammar, the fields and examples.
	for _, args := range [][]string{{"help", "query"}, {"query", "--help"}} {
		r := cli(t, dir, args...)
		require.Equal(t, 0, r.code)
		for _, want := range []string{"Grammar of --where", "latency_ms (number)", "Sealed fields", "request_body", "Examples:"} {
			require.Contains(t, r.stdout, want, args)
		}
	}
	// Usage lines are written once.
	for _, args := range [][]string{{"query", "--help"}, {"segments", "list", "--help"}, {"ingest", "--help"}} {
		r := cli(t, dir, args...)
		require.Equal(t, 0, r.code)
		require.NotContains(t, r.stdout, "[flags] [flags]", args)
		require.NotContains(t, r.stdout, "] [flags]\n", args)
	}
}

func TestIngestIsIdempotent(t *testing.T) {
	dir := sampleStore(t)
	sample := "../../testdata/demo-sample.jsonl"
	r := cli(t, dir, "ingest", "-t", "acme", sample)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "0 record(s) stored, 300 already stored")
	c := cli(t, dir, "query", "-t", "acme", "--count")
	require.Equal(t, "300", strings.TrimSpace(c.stdout), "nothing stored twice")
	r = cli(t, dir, "ingest", "-t", "acme", "--allow-duplicates", sample)
	require.Equal(t, 0, r.code, r.stderr)
	c = cli(t, dir, "query", "-t", "acme", "--count")
	require.Equal(t, "600", strings.TrimSpace(c.stdout), "--allow-duplicates stores again")
}

// TestIngestInterruptedAndResumed: SIGINT stops an ingest between batches;
// it says what it stored, and running it again stores the rest, each record
// exactly once.
func TestIngestInterruptedAndResumed(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "big.jsonl")
	var b strings.Builder
	const n = 60000
	for i := 0; i < n; i++ {
		// Every 1000th line repeats the previous one: identical entries stay distinct.
		j := i - i%1000/999
		fmt.Fprintf(&b, `{"time":"2026-11-01T09:%02d:%02d.%03dZ","method":"GET","host":"h","status":200,"latency_ms":%d,"path":"/p/%d","request_headers":[{"name":"x","value":"%s"}]}`+"\n",
			j/60000%60, j/1000%60, j%1000, j%500, j, strings.Repeat("v", 200))
	}
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o600))
	dir := filepath.Join(tmp, "store")
	cmd := exec.Command(binary, "--dir", dir, "ingest", "-t", "acme", in)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	require.NoError(t, cmd.Start())
	time.Sleep(700 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	if err == nil {
		t.Skipf("the ingest finished before the signal (%s): nothing to resume", strings.TrimSpace(so.String()))
	}
	require.Contains(t, se.String(), "interrupted: ", se.String())
	require.Contains(t, se.String(), "Run the same command again to resume")
	r := cli(t, dir, "ingest", "-t", "acme", in)
	require.Equal(t, 0, r.code, r.stderr)
	c := cli(t, dir, "query", "-t", "acme", "--count")
	require.Equal(t, strconv.Itoa(n), strings.TrimSpace(c.stdout), "every record once: %s | %s", se.String(), r.stdout)
	require.NotContains(t, r.stdout, " 0 already stored", "the resumed run skipped what the first stored")
}

func TestTenantCompletionAndKeyLinkRefusal(t *testing.T) {
	dir := sampleStore(t)
	r := cli(t, dir, "ingest", "-t", "beta", "../../testdata/demo-sample.jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "__complete", "query", "--tenant", "")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{"acme", "beta", ":4"}, strings.Fields(r.stdout))
	r = cli(t, dir, "__complete", "show", "-t", "b")
	require.Equal(t, []string{"beta", ":4"}, strings.Fields(r.stdout))
	r = cli(t, dir, "completion", "bash")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "bash completion")

	fresh := filepath.Join(t.TempDir(), "new")
	r = cli(t, fresh, "keys", "link", "-t", "acme", "--key", "bogus://x")
	require.Equal(t, exitUsage, r.code, r.stderr)
	_, err := os.Stat(fresh)
	require.True(t, os.IsNotExist(err), "a refused link creates no store")
}
