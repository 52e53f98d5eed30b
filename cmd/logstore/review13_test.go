package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
)

// TestReview13SegmentsListUploads: `segments list --bucket` on a directory
// holding a local store opens it for writing (a.open), with the bucket:
// the listing command starts the uploader, which claims a node id, writes
// the bucket's marker, adopts every tenant CONFIG it finds (creating those
// tenants locally) and, on Close, seals the active segments and uploads
// every local tenant's segments and manifest into the shared bucket. A
// command that should only read publishes a store that was never part of
// the fleet (an operator's laptop, a forensic copy) into it.
func TestReview13SegmentsListUploads(t *testing.T) {
	srv := s3test.StartGofakes3(t)
	b := srv.Bucket(t, "logs", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")

	dir := filepath.Join(t.TempDir(), "laptop")
	r := cli(t, dir, "demo") // a local store, never uploaded anywhere
	require.Equal(t, 0, r.code, r.stderr)

	r = cli(t, dir, "--bucket", "s3://logs/fleet", "segments", "list")
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	l, err := b.List(context.Background(), "", "")
	require.NoError(t, err)
	var keys []string
	for _, o := range l.Objects {
		keys = append(keys, o.Key)
	}
	require.Empty(t, keys, "`segments list` wrote to the bucket")
}
