package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
)

// TestBucketCLI: two nodes ingest into one bucket with --bucket (the S3
// client configured by the standard AWS variables); `segments upload` and
// `segments list` say where each segment is; a third directory holding
// nothing but a copy of the key answers queries and show from the bucket.
func TestBucketCLI(t *testing.T) {
	needShared(t)
	srv := s3test.StartGofakes3(t)
	srv.Bucket(t, "logs", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	bucket := "s3://logs/cli"

	w1, w2, rd := t.TempDir(), t.TempDir(), t.TempDir()
	r := cli(t, w1, "--bucket", bucket, "ingest", "-t", "acme", "--format", "combined", filepath.Join(shared, "access", "apache_logs"))
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ingested 10000 record(s)")
	// The second node shares the first one's key (the embedded default is
	// a local key: a fleet shares a KMS key, or this file).
	require.NoError(t, os.CopyFS(filepath.Join(w2, "keys"), os.DirFS(filepath.Join(w1, "keys"))))
	hars, _ := filepath.Glob(filepath.Join(shared, "har", "*.har"))
	r = cli(t, w2, append([]string{"--bucket", bucket, "ingest", "-t", "acme"}, hars...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var harCount int
	_, err := fmt.Sscanf(r.stdout[strings.Index(r.stdout, "ingested "):], "ingested %d", &harCount)
	require.NoError(t, err)

	r = cli(t, w1, "--bucket", bucket, "segments", "upload")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "0 pending")
	r = cli(t, w1, "--bucket", bucket, "segments", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "local+bucket")
	require.Regexp(t, `(?m)^acme\s+\S+\s+in-bucket\s+\d+\s+bucket\s`, r.stdout, "the other node's segments are listed too")

	require.NoError(t, os.CopyFS(filepath.Join(rd, "keys"), os.DirFS(filepath.Join(w1, "keys"))))
	r = cli(t, rd, "--bucket", bucket, "query", "-t", "acme", "--count")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprint(10000+harCount), strings.TrimSpace(r.stdout))
	r = cli(t, rd, "--bucket", bucket, "query", "-t", "acme", "--limit", "1", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var row struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &row))
	id := row.ID
	require.NotEmpty(t, id)
	r = cli(t, rd, "--bucket", bucket, "show", "-t", "acme", id)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, id)
	entries, err := os.ReadDir(rd)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the reader keeps nothing on disk but the key it was given")

	// Without credentials the bucket refuses: a clear error, exit 1.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	srv.Faults.Set(s3test.FaultConfig{Deny: true})
	r = cli(t, rd, "--bucket", bucket, "query", "-t", "acme", "--count")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "access denied")
	r = cli(t, w1, "--bucket", "gs://nope", "query", "-t", "acme", "--count")
	require.Equal(t, 2, r.code, r.stderr)
}
