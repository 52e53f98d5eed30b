package engine

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/tmpfs"
)

// hangBound is a hang detector, not a performance target.
const hangBound = 60 * time.Second

// within runs f and fails the test, with every goroutine's stack, if it
// has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) time.Duration {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s did not return within %v (hang):\n%s", what, d, buf[:runtime.Stack(buf, true)])
		return 0
	}
}

// incompressible makes n records with random 8 KiB bodies, so a few MiB
// fill a small disk.
func incompressible(rng *rand.Rand, n int, start time.Time) []Record {
	recs := genRecords(rng, n, start)
	for i := range recs {
		body := make([]byte, 8<<10)
		rng.Read(body)
		recs[i].Payload = &Payload{RequestContentType: "application/octet-stream", RequestBody: body}
	}
	return recs
}

// fillUntilFull appends until an append fails; it returns what was
// acknowledged and the error.
func fillUntilFull(t *testing.T, db *DB, rng *rand.Rand, gen func(*rand.Rand, int, time.Time) []Record) ([]acked, error, time.Time) {
	var acks []acked
	for i := 0; i < 100000; i++ {
		recs := gen(rng, 16, t0.Add(time.Duration(i)*time.Second))
		ids, err := db.tn("acme").Append(bg, recs)
		if err != nil {
			return acks, err, time.Now()
		}
		for j := range recs {
			acks = append(acks, acked{recs[j], ids[j]})
		}
	}
	t.Fatal("the disk never filled")
	return nil, nil, time.Time{}
}

// requireAllAcked counts the indexed records and reads back every
// acknowledged one (every step-th).
func requireAllAcked(t *testing.T, db *DB, acks []acked, step int) {
	t.Helper()
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, len(acks), "every acknowledged record is indexed")
	for i := 0; i < len(acks); i += step {
		got, err := db.tn("acme").Get(bg, acks[i].id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, acks[i].rec, acks[i].id, got)
	}
	t.Logf("%d acknowledged record(s) intact (%d indexed, every %d read back)", len(acks), n, step)
}

// TestDiskFullOnTmpfs fills a real tmpfs through the engine: the append
// that meets ENOSPC fails with ErrDiskFull, later appends fail fast, the
// process does not spin, Close returns promptly, and once the tmpfs is
// enlarged appends work again and every acknowledged record is intact, in
// the same process and after a reopen. With the index on its own small
// tmpfs, the full disk is met by Pebble's flush (the original hang: Pebble
// retried it for ever and Close waited for it).
func TestDiskFullOnTmpfs(t *testing.T) {
	for _, c := range []struct {
		name           string
		ownIndexFS     bool // the index on its own 2 MiB tmpfs
		closeWhileFull bool
	}{
		{"shared", false, false},
		{"shared,closeWhileFull", false, true},
		{"index", true, false},
		{"index,closeWhileFull", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mnt := tmpfs.Mount(t, 8)
			full := mnt
			opts := &Options{RetentionInterval: -1}
			gen := incompressible
			if c.ownIndexFS {
				// The index holds one small entry per block: tiny blocks
				// and a roomy segment disk make the index's disk fill first.
				mnt = tmpfs.Mount(t, 128)
				full = tmpfs.Mount(t, 2)
				opts.IndexDir = filepath.Join(full, "index")
				opts.BlockSize = 1 << 10
				gen = func(rng *rand.Rand, n int, start time.Time) []Record { return genRecords(rng, 4*n, start) }
			}
			dir := filepath.Join(mnt, "db")
			db, err := Open(dir, opts)
			require.NoError(t, err)
			rng := rand.New(rand.NewSource(1))
			var acks []acked
			var fullAt time.Time
			within(t, hangBound, "filling the disk", func() {
				acks, err, fullAt = fillUntilFull(t, db, rng, gen)
			})
			require.ErrorIs(t, err, ErrDiskFull)
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.Contains(t, err.Error(), "logstore/engine: disk full")
			t.Logf("%d record(s) acknowledged before: %v", len(acks), err)
			if c.ownIndexFS {
				require.ErrorIs(t, db.Admin().IndexHealth(), ErrDiskFull)
			}

			// Later appends fail fast (the index knows, or the segment
			// write meets ENOSPC again), and nothing spins meanwhile.
			el := within(t, hangBound, "an append on a full disk", func() {
				_, err = db.tn("acme").Append(bg, gen(rng, 16, t0.Add(-time.Hour)))
			})
			require.ErrorIs(t, err, ErrDiskFull)
			t.Logf("an append on the full disk failed in %v", el)
			cpu := cpuTime()
			time.Sleep(3 * time.Second)
			cpu = cpuTime() - cpu
			t.Logf("CPU used in 3 s while full: %v", cpu)
			require.Less(t, cpu, 1500*time.Millisecond, "no retry loop spins while the disk is full")

			if !c.closeWhileFull {
				tmpfs.Resize(t, full, 64)
				// Retryable: the same DB takes appends again once space
				// returns (within the health probe's second).
				deadline := time.Now().Add(hangBound)
				for {
					recs := gen(rng, 16, t0.Add(-2*time.Hour))
					ids, err := db.tn("acme").Append(bg, recs)
					if err == nil {
						for j := range recs {
							acks = append(acks, acked{recs[j], ids[j]})
						}
						break
					}
					require.ErrorIs(t, err, ErrDiskFull)
					require.True(t, time.Now().Before(deadline), "appends never resumed: %v", err)
					time.Sleep(200 * time.Millisecond)
				}
				require.NoError(t, db.Admin().IndexHealth())
				requireAllAcked(t, db, acks, 10)
			}
			el = within(t, hangBound, "Close", func() { err = db.Close() })
			t.Logf("Close took %v; %v from the first ErrDiskFull to closed", el, time.Since(fullAt))
			require.NoError(t, err)

			if c.closeWhileFull {
				tmpfs.Resize(t, full, 64)
			}
			db2, err := Open(dir, opts)
			require.NoError(t, err)
			requireAllAcked(t, db2, acks, 1)
			checks, err := db2.Admin().Verify(bg, "acme")
			require.NoError(t, err)
			for _, c := range checks {
				require.NoError(t, c.OpenErr)
				require.Empty(t, c.Result.Problems)
			}
			require.NoError(t, db2.Admin().VerifyIndex(bg))
			require.NoError(t, db2.Close())
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDiskFullReadOnlyOpen: on a tmpfs with no space left at all, Open
// falls back to a read-only index: queries and reads work, appends fail
// with ErrDiskFull, nothing hangs.
func TestDiskFullReadOnlyOpen(t *testing.T) {
	mnt := tmpfs.Mount(t, 8)
	dir := filepath.Join(mnt, "db")
	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(2))
	recs := genRecords(rng, 50, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	// Fill every byte left.
	f, err := os.Create(filepath.Join(mnt, "filler"))
	require.NoError(t, err)
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	require.NoError(t, f.Close())

	within(t, hangBound, "open, read, append and close on a full disk", func() {
		db, err = Open(dir, &Options{RetentionInterval: -1})
		require.NoError(t, err)
		require.ErrorIs(t, db.Admin().IndexHealth(), ErrDiskFull)
		for i, id := range ids {
			got, err := db.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err)
			requireSameRecord(t, recs[i], id, got)
		}
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, len(ids), n)
		_, err = db.tn("acme").Append(bg, genRecords(rng, 5, t0))
		require.ErrorIs(t, err, ErrDiskFull)
		require.NoError(t, db.Close())
	})
}

// TestIndexFilesArePrivate: the index directory is 0700 and its files 0600
// after Open, ingest, flush and compaction, whatever the umask; a directory
// left 0755/0644 by an older version is tightened on Open.
func TestIndexFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	indexDir := filepath.Join(dir, "index")
	check := func(when string) {
		t.Helper()
		st, err := os.Stat(indexDir)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "%s: %s", when, indexDir)
		ents, err := os.ReadDir(indexDir)
		require.NoError(t, err)
		for _, e := range ents {
			fi, err := e.Info()
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted by Pebble meanwhile (an obsolete file)
			}
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s: %s", when, e.Name())
		}
	}
	db, err := Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	check("after Open")
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 6; i++ {
		_, err := db.tn("acme").Append(bg, genRecords(rng, 500, t0.Add(time.Duration(i)*time.Minute)))
		require.NoError(t, err)
		require.NoError(t, db.durableIndex()) // one sstable per round
	}
	check("after ingest and flushes")
	require.NoError(t, db.index.db.Compact(bg, []byte{0}, []byte{0xff}, true))
	check("after a compaction")
	require.NoError(t, db.Close())
	check("after Close")

	// An index written by an older version, with the usual umask.
	require.NoError(t, os.Chmod(indexDir, 0o755))
	ents, err := os.ReadDir(indexDir)
	require.NoError(t, err)
	for _, e := range ents {
		require.NoError(t, os.Chmod(filepath.Join(indexDir, e.Name()), 0o644))
	}
	db, err = Open(dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	check("after reopening an index left 0755/0644")
	require.NoError(t, db.Close())
}
