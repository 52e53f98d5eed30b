package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExportRoundTrip: export then ingest gives identical records (ids
// kept): exporting the second store gives the same bytes. On the bundled
// sample and on every shared HAR capture.
func TestExportRoundTrip(t *testing.T) {
	needShared(t)
	hars, err := filepath.Glob(filepath.Join(shared, "har", "*.har"))
	require.NoError(t, err)
	inputs := append([]string{"../../testdata/demo-sample.jsonl"}, hars...)
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			tmp := t.TempDir()
			a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
			r := cli(t, a, "ingest", "-t", "acme", in)
			require.Equal(t, 0, r.code, r.stderr)
			first := cli(t, a, "export", "-t", "acme")
			require.Equal(t, 0, first.code, first.stderr)
			require.NotEmpty(t, first.stdout)
			out := filepath.Join(tmp, "export.jsonl")
			require.NoError(t, os.WriteFile(out, []byte(first.stdout), 0o600))
			r = cli(t, b, "ingest", "-t", "acme", out)
			require.Equal(t, 0, r.code, r.stderr)
			second := cli(t, b, "export", "-t", "acme")
			require.Equal(t, 0, second.code, second.stderr)
			require.Equal(t, first.stdout, second.stdout, "export, ingest, export: the same records")
			// Ingesting the export into the store it came from adds nothing.
			r = cli(t, a, "ingest", "-t", "acme", out)
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "ingested 0 record(s)")
		})
	}
}

func TestExportSelectsAndIsAudited(t *testing.T) {
	dir := sampleStore(t)
	r := cli(t, dir, "export", "-t", "acme", "-w", "status >= 400")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	c := cli(t, dir, "query", "-t", "acme", "--count", "-w", "status >= 400")
	require.Equal(t, strings.TrimSpace(c.stdout), strconv.Itoa(len(lines)))
	require.Contains(t, r.stderr, "exported "+strconv.Itoa(len(lines))+" record(s)")
	for _, l := range lines {
		require.Contains(t, l, `"path":`, "decrypted: sealed fields are there")
	}
	a := cli(t, dir, "audit", "-t", "acme")
	require.Equal(t, 0, a.code, a.stderr)
	require.Contains(t, a.stdout, "Decrypt", "the export's key use is in the audit trail")
	r = cli(t, dir, "export", "-t", "nosuch")
	require.Equal(t, exitUsage, r.code)
	r = cli(t, dir, "export", "-t", "acme", "-o", "har")
	require.Equal(t, exitUsage, r.code)
}
