package crashtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore/s3store"
)

// TestKill9Bucket: a writer uploading to a bucket is killed with SIGKILL,
// some runs while the bucket is unreachable (nothing sealed goes up). The
// restarted node uploads what the crash left, and a stateless reader that
// has only the bucket and the tenant's key reads every acknowledged record
// byte for byte.
func TestKill9Bucket(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "driver")
	out, err := exec.Command("go", "build", "-o", bin, "./driver").CombinedOutput()
	require.NoError(t, err, "%s", out)
	srv := s3test.StartGofakes3(t)
	b, err := s3store.Open(context.Background(), BucketURL, BucketOptions(srv.URL))
	require.NoError(t, err)
	require.NoError(t, b.CreateBucket(context.Background()))
	dir := t.TempDir()
	acked := map[engine.ID]ack{}
	for it := 0; it < 4; it++ {
		down := it%2 == 1
		srv.Faults.SetDown(down)
		cmd := exec.Command(bin, dir, strconv.Itoa(it))
		cmd.Env = append(os.Environ(), BucketEndpointEnv+"="+srv.URL)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := make(chan []string)
		go func() {
			var got []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			lines <- got
		}()
		time.Sleep(time.Duration(400+150*it) * time.Millisecond) // long enough to seal segments
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for _, l := range <-lines {
			var run, n int
			var id string
			if _, err := fmt.Sscanf(l, "ack %d %d %s", &run, &n, &id); err == nil {
				pid, err := engine.ParseID(id)
				require.NoError(t, err)
				acked[pid] = ack{run, n}
			}
		}
		_ = cmd.Wait()
	}
	srv.Faults.SetDown(false)
	// The node restarts: recovery seals what the crash left, and the
	// uploader sends every sealed segment not in the bucket yet.
	db, err := engine.Open(dir, &engine.Options{Bucket: b, RetentionInterval: -1})
	require.NoError(t, err)
	rep, err := db.Admin().Upload(context.Background())
	require.NoError(t, err)
	require.Zero(t, rep.Pending)
	require.NoError(t, db.Close())

	// A reader with nothing but the bucket and a copy of the key.
	rdir := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(rdir, "keys"), os.DirFS(filepath.Join(dir, "keys"))))
	ro, err := engine.Open(rdir, &engine.Options{ReadOnly: true, Bucket: b})
	require.NoError(t, err)
	defer ro.Close()
	n, err := mustTenant(ro, "acme").Count(context.Background(), engine.ScanOptions{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, len(acked))
	for id, a := range acked {
		got, err := mustTenant(ro, "acme").Get(context.Background(), id, engine.PartAll)
		require.NoError(t, err, "acknowledged record %s (run %d #%d) is not in the bucket", id, a.run, a.n)
		want := Record(a.run, a.n)
		require.Equal(t, want.Path, got.Path)
		require.Equal(t, want.Payload, got.Payload)
	}
	t.Logf("%d acknowledged records over 4 kills (2 with the bucket down), all read back from the bucket", len(acked))
}
