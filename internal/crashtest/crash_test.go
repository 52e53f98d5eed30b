package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/internal/testenv"
)

func iterations() int {
	if s := os.Getenv("LOGSTORE_CRASH_ITERATIONS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 30
}

type ack struct{ run, n int }

// TestKill9 runs a writer process with SyncAlways and kills it with SIGKILL
// at random moments. After each kill: every acknowledged record is present
// and decrypts to identical bytes, every segment verifies, the index equals a
// rebuild from segments, no segment that existed before the run grew, and no
// sealed marker is on disk or in the process output.
func TestKill9(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "driver")
	out, err := exec.Command("go", "build", "-o", bin, "./driver").CombinedOutput()
	require.NoError(t, err, "%s", out)
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	acked := map[engine.ID]ack{}
	sizes := map[string]int64{}
	iters := iterations()
	start := time.Now()
	for it := 0; it < iters; it++ {
		cmd := exec.Command(bin, dir, strconv.Itoa(it))
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		var mu sync.Mutex
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				mu.Lock()
				lines = append(lines, sc.Text())
				mu.Unlock()
			}
		}()
		// A reader process (this one) beside the writer: read-only, it
		// refreshes and counts while the writer runs, never fails and
		// never sees the count go down.
		stopReader := make(chan struct{})
		readerDone := make(chan readerResult, 1)
		go readBeside(dir, stopReader, readerDone)
		time.Sleep(time.Duration(60+rng.Intn(250)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		<-done
		_ = cmd.Wait()
		close(stopReader)
		rr := <-readerDone
		require.NoError(t, rr.err, "iteration %d: a reader beside the writer", it)
		require.NotContains(t, stderr.String(), Marker, "process output leaks a sealed field")
		for _, l := range lines {
			var run, n int
			var id string
			if _, err := fmt.Sscanf(l, "ack %d %d %s", &run, &n, &id); err != nil {
				continue // a torn last line was never an ack
			}
			pid, err := engine.ParseID(id)
			require.NoError(t, err)
			acked[pid] = ack{run, n}
		}

		// Before any recovery, a read-only open sees every acknowledged
		// record in the crashed writer's files.
		ro, err := engine.Open(dir, &engine.Options{ReadOnly: true})
		require.NoError(t, err)
		n, err := mustTenant(ro, "acme").Count(context.Background(), engine.ScanOptions{})
		require.NoError(t, err, "iteration %d: read-only count after kill -9", it)
		require.GreaterOrEqual(t, n, len(acked), "iteration %d: a reader misses acknowledged records after kill -9", it)
		require.NoError(t, ro.Close())
		t.Logf("iteration %d: the reader refreshed %d times beside the writer, saw up to %d records", it, rr.refreshes, rr.max)

		db, err := engine.Open(dir, &engine.Options{RetentionInterval: -1})
		require.NoError(t, err, "iteration %d: reopen after kill -9", it)
		for path, size := range sizes {
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, size, st.Size(), "iteration %d: %s was appended to after a crash", it, path)
		}
		// Each kill: this run's acks and a sample of older ones; the last
		// kill: every ack of every run.
		checked := 0
		for id, a := range acked {
			if it < iters-1 && a.run != it && rng.Intn(len(acked)) > 300 {
				continue
			}
			checked++
			got, err := mustTenant(db, "acme").Get(context.Background(), id, engine.PartAll)
			require.NoError(t, err, "iteration %d: acknowledged record %s (run %d #%d) lost", it, id, a.run, a.n)
			want := Record(a.run, a.n)
			require.Equal(t, want.Path, got.Path)
			require.Equal(t, want.RequestHeaders, got.RequestHeaders)
			require.Equal(t, want.Payload, got.Payload)
		}
		checks, err := db.Admin().Verify(context.Background(), "acme")
		require.NoError(t, err)
		for _, c := range checks {
			require.NoError(t, c.OpenErr)
			require.Empty(t, c.Result.Problems, "iteration %d: %s", it, c.Path)
			require.Empty(t, c.IndexProblems, "iteration %d: %s", it, c.Path)
			require.True(t, c.Result.Sealed)
		}
		before := scanAll(t, db)
		_, err = db.Admin().Reindex(context.Background())
		require.NoError(t, err)
		require.Equal(t, before, scanAll(t, db), "iteration %d: the index differs from a rebuild from segments", it)
		// Locators are not part of a row: Verify compares them (every index
		// entry's locator and metadata bytes against its block).
		checks, err = db.Admin().Verify(context.Background(), "acme")
		require.NoError(t, err)
		for _, c := range checks {
			require.Empty(t, c.IndexProblems, "iteration %d: %s after reindex", it, c.Path)
		}
		require.Len(t, before, len(acked)+countUnacked(before, acked))
		require.NoError(t, db.Close())
		segs, _ := filepath.Glob(filepath.Join(dir, "segments", "acme", "*.lss"))
		for _, p := range segs {
			st, err := os.Stat(p)
			require.NoError(t, err)
			sizes[p] = st.Size()
		}
	}
	require.Empty(t, testenv.FilesContaining(t, dir, Marker), "a sealed field reached the disk in plaintext")
	t.Logf("%d kills in %s; %d acknowledged records, all checked after the last kill", iters, time.Since(start).Round(time.Millisecond), len(acked))
}

type readerResult struct {
	refreshes, max int
	err            error
}

// readBeside opens dir read-only and refreshes and counts until stop: any
// error, or a count below an earlier one, is its result.
func readBeside(dir string, stop <-chan struct{}, out chan<- readerResult) {
	var res readerResult
	defer func() { out <- res }()
	var ro *engine.DB
	for {
		var err error
		if ro, err = engine.Open(dir, &engine.Options{ReadOnly: true}); err == nil {
			break
		}
		if !errors.Is(err, engine.ErrNotFound) { // the first writer may not have created it yet
			res.err = err
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	defer ro.Close()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := ro.Refresh(context.Background()); err != nil {
			res.err = err
			return
		}
		tn, err := ro.Tenant("acme")
		if err != nil {
			res.err = err
			return
		}
		n, err := tn.Count(context.Background(), engine.ScanOptions{})
		if err != nil {
			res.err = fmt.Errorf("count after %d refreshes: %w", res.refreshes, err)
			return
		}
		if n < res.max {
			res.err = fmt.Errorf("count went down from %d to %d", res.max, n)
			return
		}
		res.max = n
		res.refreshes++
		time.Sleep(5 * time.Millisecond)
	}
}

// scanAll lists every record's metadata from the index, as text.
func scanAll(t *testing.T, db *engine.DB) []string {
	var out []string
	for m, err := range mustTenant(db, "acme").Scan(context.Background(), engine.ScanOptions{}) {
		require.NoError(t, err)
		out = append(out, fmt.Sprintf("%s %v %+v", m.ID, m.Time.UnixNano(), *m))
	}
	return out
}

// countUnacked counts records that were written but whose ack the kill cut
// off (allowed: not acknowledged, yet durable).
func countUnacked(rows []string, acked map[engine.ID]ack) int {
	n := 0
	for _, r := range rows {
		id, _ := engine.ParseID(strings.Fields(r)[0])
		if _, ok := acked[id]; !ok {
			n++
		}
	}
	return n
}

// mustTenant is the handle of a valid tenant name.
func mustTenant(db *engine.DB, name string) *engine.Tenant {
	t, err := db.Tenant(name)
	if err != nil {
		panic(err)
	}
	return t
}
