package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/logstore/logstore/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
)

// shared is where the team's real-world captures live (../shared/testdata
// beside the module root); needShared says whether a test may use them.
var shared = testenv.Path()

var binary string

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir, err := os.MkdirTemp("", "logstore-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "logstore")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build failed: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the built binary as a user would.
func cli(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--dir", dir}, args...)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, so.String(), se.String()}
}

// needShared checks that the captures are there: ../shared/testdata, or
// outside CI the repository's copy, testdata/shared (testenv).
func needShared(t testing.TB) {
	t.Helper()
	testenv.SharedTestdata(t)
}

func TestDemoInEmptyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	r := cli(t, dir, "demo")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "300 request logs")
	require.Contains(t, r.stdout, "0 problem(s)")
	require.Contains(t, r.stdout, "is sealed")
	// Redaction and export are part of the tour: the card number is masked
	// before sealing, the export reads back.
	require.Contains(t, r.stdout, `"number": "**** **** **** 1111"`)
	require.NotContains(t, r.stdout, "stored:   Authorization: Bearer")
	har := dir + "-export.har"
	ing := cli(t, dir, "ingest", "-t", "demo", har)
	require.Equal(t, 0, ing.code, ing.stderr)
	require.Contains(t, ing.stdout, "0 record(s) stored, 5 already stored")
	st, err := os.Stat(filepath.Join(dir, "keys", "demo.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// parse reads a capture with the library, for expected values.
func parse(t *testing.T, path string) []engine.Record {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	c := &collector{}
	_, err = ingest.Ingest(context.Background(), c, path, f, ingest.Options{})
	require.NoError(t, err)
	return c.recs
}

type collector struct{ recs []engine.Record }

func (c *collector) Append(_ context.Context, recs []engine.Record) ([]engine.ID, error) {
	c.recs = append(c.recs, recs...)
	return make([]engine.ID, len(recs)), nil
}

var cursorRE = regexp.MustCompile(`--cursor (\S+)`)

func TestIngestQueryShowEndToEnd(t *testing.T) {
	needShared(t)
	dir := t.TempDir()
	hars, _ := filepath.Glob(filepath.Join(shared, "har", "*.har"))
	var all []engine.Record
	for _, h := range hars {
		all = append(all, parse(t, h)...)
	}
	// with-bom.har is postdata.har with a BOM: the same record, which the
	// default (idempotent) ingest stores once. This test compares every
	// query with a brute force over every parsed entry, so it keeps both.
	r := cli(t, dir, append([]string{"ingest", "--tenant", "acme", "--session", "capture-1"}, hars...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("ingested %d record(s)", len(all)-1))
	require.Contains(t, r.stdout, "with-bom.har: har, 0 record(s) stored, 1 already stored")
	r = cli(t, dir, "ingest", "--tenant", "acme", "--session", "capture-1", "--allow-duplicates", filepath.Join(shared, "har", "with-bom.har"))
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "ingest", "--tenant", "acme", "--format", "combined", "--session", "apache", filepath.Join(shared, "access", "apache_logs"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ingested 10000 record(s)")

	count := func(args ...string) int {
		r := cli(t, dir, append([]string{"query", "--tenant", "acme", "--count"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var n int
		_, err := fmt.Sscan(r.stdout, &n)
		require.NoError(t, err)
		return n
	}
	want404, wantPost := 0, 0
	for _, rec := range all {
		if rec.Status == 404 {
			want404++
		}
		if rec.Method == "POST" {
			wantPost++
		}
	}
	apache := parse(t, filepath.Join(shared, "access", "apache_logs"))
	for _, rec := range apache {
		if rec.Status == 404 {
			want404++
		}
		if rec.Method == "POST" {
			wantPost++
		}
	}
	require.Equal(t, want404, count("--where", "status = 404"))
	require.Equal(t, wantPost, count("--where", "method = POST"))
	require.Equal(t, len(all), count("--where", "session_id = 'capture-1'"))
	require.Equal(t, 10000, count("--where", "session_id = apache"))
	// Time range: the Apache log covers 2015-05-17..20.
	inRange := 0
	for _, rec := range apache {
		if !rec.Time.Before(mustTime("2015-05-18T00:00:00Z")) && rec.Time.Before(mustTime("2015-05-19T00:00:00Z")) {
			inRange++
		}
	}
	require.Equal(t, inRange, count("--from", "2015-05-18T00:00:00Z", "--to", "2015-05-19T00:00:00Z"))

	// Page with cursors until exhaustion: nothing missed or repeated.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		args := []string{"query", "--tenant", "acme", "--where", "status = 2xx AND session_id = apache", "--limit", "997", "--format", "json"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		r := cli(t, dir, args...)
		require.Equal(t, 0, r.code, r.stderr)
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if line == "" {
				continue
			}
			var row struct{ ID string }
			require.NoError(t, json.Unmarshal([]byte(line), &row))
			require.False(t, seen[row.ID], "repeated %s", row.ID)
			seen[row.ID] = true
		}
		m := cursorRE.FindStringSubmatch(r.stderr)
		if m == nil {
			break
		}
		cursor = m[1]
	}
	want2xx := 0
	for _, rec := range apache {
		if rec.Status/100 == 2 {
			want2xx++
		}
	}
	require.Len(t, seen, want2xx)

	// show: the raw response body equals the HAR's, byte for byte (a
	// gzip body kept exactly as captured).
	r = cli(t, dir, "query", "--tenant", "acme", "--where", "host = '127.0.0.1:5000'", "--format", "json", "--limit", "1000")
	require.Equal(t, 0, r.code, r.stderr)
	gz := parse(t, filepath.Join(shared, "har", "gzip-encoded-body.har"))[0]
	var id string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var row struct {
			ID   string
			Time string
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row))
		if mustTime(row.Time).Equal(gz.Time) {
			id = row.ID
		}
	}
	require.NotEmpty(t, id, "the gzip capture is queryable by host")
	r = cli(t, dir, "show", "--tenant", "acme", id, "--part", "payload", "--format", "raw")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, gz.Payload.ResponseBody, []byte(r.stdout))
	r = cli(t, dir, "show", "--tenant", "acme", id)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "binary, base64:")
	require.Contains(t, r.stdout, base64.StdEncoding.EncodeToString(gz.Payload.ResponseBody))

	// Sealed fields cannot be searched (usage error, exit 2).
	r = cli(t, dir, "query", "--tenant", "acme", "--where", "client_ip = '83.149.9.216'")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "encrypted and not searchable")
	r = cli(t, dir, "query", "--tenant", "acme", "--where", "stauts = 500")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `did you mean "status"`)

	// Verify, reindex, audit.
	r = cli(t, dir, "segments", "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "0 problem(s)")
	r = cli(t, dir, "segments", "reindex")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, want404, count("--where", "status = 404"))
	r = cli(t, dir, "audit", "--tenant", "acme")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "GenerateDataKey")

	// A revoked key: reads of sealed data exit 3; metadata still answers.
	require.NoError(t, os.Rename(filepath.Join(dir, "keys", "acme.key"), filepath.Join(dir, "acme.key.bak")))
	r = cli(t, dir, "show", "--tenant", "acme", id)
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "key not found")
	require.Equal(t, want404, count("--where", "status = 404"))
	require.NoError(t, os.Rename(filepath.Join(dir, "acme.key.bak"), filepath.Join(dir, "keys", "acme.key")))

	// Disabling the local key revokes it the same way (exit 3), enabling restores.
	r = cli(t, dir, "keys", "disable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "show", "--tenant", "acme", id)
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "key disabled")
	r = cli(t, dir, "ingest", "--tenant", "acme", filepath.Join(shared, "har", "postdata.har"))
	require.Equal(t, 3, r.code, "writes fail closed: %s", r.stderr)
	r = cli(t, dir, "keys", "enable", "local://acme")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "show", "--tenant", "acme", id)
	require.Equal(t, 0, r.code, r.stderr)

	// Tenant deletion.
	r = cli(t, dir, "tenants", "delete", "acme")
	require.Equal(t, 2, r.code, "needs --yes")
	r = cli(t, dir, "tenants", "delete", "acme", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, "query", "--tenant", "acme", "--count")
	require.Equal(t, exitUsage, r.code, "a deleted tenant is unknown: %s", r.stdout)
	require.Contains(t, r.stderr, `no tenant "acme"`)
}

func TestBadInputsExitOneWithThePlace(t *testing.T) {
	needShared(t)
	files, _ := filepath.Glob(filepath.Join(shared, "har-bad", "*"))
	require.NotEmpty(t, files)
	dir := t.TempDir()
	for _, f := range files {
		r := cli(t, dir, "ingest", "--tenant", "acme", f)
		require.Equal(t, 1, r.code, "%s: %s", f, r.stderr)
		require.Contains(t, r.stderr, filepath.Base(f), "the error names the file")
		require.NotContains(t, r.stderr, "stored 0 record(s)", "%s: nothing stored, nothing to reassure about", f)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"query"}, {"query", "--tenant", "a", "--bogus"}, {"show", "--tenant", "a"}, {"nope"},
		{"query", "--tenant", "../x"}, {"keys", "rewrap", "--tenant", "a"}, {"show", "--tenant", "a", "not-an-id"}} {
		r := cli(t, dir, args...)
		require.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
	r := cli(t, dir, "keys", "policy", "--principal", "arn:aws:iam::123456789012:role/debugger")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, `"kms:GenerateDataKey*"`)
}

func mustTime(s string) (t timeT) {
	v, err := parseTime(s)
	if err != nil {
		panic(err)
	}
	return v
}
