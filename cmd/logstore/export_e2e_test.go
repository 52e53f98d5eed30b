package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExportRoundTrip: export then ingest gives identical records (ids
// kept), in either format: exporting the second store gives the same
// bytes, and the JSONL export of a HAR round trip is the JSONL export of
// the source. On the bundled sample, every shared HAR capture and the
// shared Apache access log.
func TestExportRoundTrip(t *testing.T) {
	needShared(t)
	hars, err := filepath.Glob(filepath.Join(shared, "har", "*.har"))
	require.NoError(t, err)
	inputs := append([]string{"../../testdata/demo-sample.jsonl", filepath.Join(shared, "access", "apache_logs")}, hars...)
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			a := filepath.Join(tmp, "a")
			r := cli(t, a, "ingest", "-t", "acme", in)
			require.Equal(t, 0, r.code, r.stderr)
			source := cli(t, a, "export", "-t", "acme")
			require.Equal(t, 0, source.code, source.stderr)
			require.NotEmpty(t, source.stdout)
			for _, format := range []string{"jsonl", "har"} {
				first := cli(t, a, "export", "-t", "acme", "-o", format)
				require.Equal(t, 0, first.code, first.stderr)
				out := filepath.Join(tmp, "export."+format)
				require.NoError(t, os.WriteFile(out, []byte(first.stdout), 0o600))
				// Into a fresh store, and into a fresh tenant of the same one.
				for _, to := range []struct{ dir, tenant string }{{filepath.Join(tmp, "b-"+format), "acme"}, {a, "copy-" + format}} {
					r = cli(t, to.dir, "ingest", "-t", to.tenant, out)
					require.Equal(t, 0, r.code, r.stderr)
					second := cli(t, to.dir, "export", "-t", to.tenant, "-o", format)
					require.Equal(t, 0, second.code, second.stderr)
					require.Equal(t, first.stdout, second.stdout, "export, ingest, export (%s): the same records", format)
					again := cli(t, to.dir, "export", "-t", to.tenant)
					require.Equal(t, source.stdout, again.stdout, "the same records as the source (%s)", format)
				}
				// Ingesting the export into the tenant it came from adds nothing.
				r = cli(t, a, "ingest", "-t", "acme", out)
				require.Equal(t, 0, r.code, r.stderr)
				require.Contains(t, r.stdout, "ingested 0 record(s)")
			}
		})
	}
}

// TestExportHAR: the HAR export is one valid HAR 1.2 document, entries in
// the order of the JSONL export, each with its _logstore id.
func TestExportHAR(t *testing.T) {
	dir := sampleStore(t)
	r := cli(t, dir, "export", "-t", "acme", "--format", "har", "-w", "status >= 400")
	require.Equal(t, 0, r.code, r.stderr)
	var doc struct {
		Log struct {
			Version string `json:"version"`
			Creator struct {
				Name string `json:"name"`
			} `json:"creator"`
			Entries []struct {
				Request struct {
					URL string `json:"url"`
				} `json:"request"`
				Logstore struct {
					ID string `json:"id"`
				} `json:"_logstore"`
			} `json:"entries"`
		} `json:"log"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
	require.Equal(t, "1.2", doc.Log.Version)
	require.Equal(t, "logstore", doc.Log.Creator.Name)
	j := cli(t, dir, "export", "-t", "acme", "-w", "status >= 400")
	lines := strings.Split(strings.TrimSpace(j.stdout), "\n")
	require.Len(t, doc.Log.Entries, len(lines))
	require.Contains(t, r.stderr, "exported "+strconv.Itoa(len(lines))+" record(s)")
	for i, l := range lines {
		var rec struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &rec))
		require.Equal(t, rec.ID, doc.Log.Entries[i].Logstore.ID)
		require.True(t, strings.HasPrefix(doc.Log.Entries[i].Request.URL, "https://"))
	}
	// Nothing selected: still a valid HAR, with no entries.
	r = cli(t, dir, "export", "-t", "acme", "-o", "har", "-w", "status = 999")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
	require.Empty(t, doc.Log.Entries)
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
	r = cli(t, dir, "export", "-t", "acme", "-o", "xml")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, "jsonl or har")
}
