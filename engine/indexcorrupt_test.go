package engine

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// corruptStore is a closed store whose index holds acme's entries in one
// large sstable and beta's in a small one (each flushed on its own), so a
// byte flipped in the large one damages acme's entries only.
type corruptStore struct {
	dir        string
	acme, beta []acked
}

func buildCorruptStore(t *testing.T, link string) corruptStore {
	t.Helper()
	s := corruptStore{dir: t.TempDir()}
	db, err := Open(s.dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 8; i++ {
		recs := genRecords(rng, 500, t0.Add(time.Duration(i)*time.Minute))
		ids, err := db.tn("acme").Append(bg, recs)
		require.NoError(t, err)
		for j := range recs {
			s.acme = append(s.acme, acked{recs[j], ids[j]})
		}
	}
	require.NoError(t, db.durableIndex())
	if link != "" {
		_, err := db.Admin().LinkKey(bg, "beta", link)
		require.NoError(t, err)
	}
	recs := genRecords(rng, 200, t0)
	ids, err := db.tn("beta").Append(bg, recs)
	require.NoError(t, err)
	for j := range recs {
		s.beta = append(s.beta, acked{recs[j], ids[j]})
	}
	require.NoError(t, db.Close())
	// Open and close once more, as a query would: the current MANIFEST is
	// then a snapshot followed by the edit that records the last sequence
	// number.
	db, err = Open(s.dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	return s
}

func (s corruptStore) indexFile(t *testing.T, pick func(names []string) string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.dir, "index"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	name := pick(names)
	require.NotEmpty(t, name, "in %v", names)
	return filepath.Join(s.dir, "index", name)
}

// largestTable is acme's sstable.
func largestTable(dir string) func([]string) string {
	return func(names []string) string {
		best, size := "", int64(-1)
		for _, n := range names {
			if st, err := os.Stat(filepath.Join(dir, "index", n)); err == nil && strings.HasSuffix(n, ".sst") && st.Size() > size {
				best, size = n, st.Size()
			}
		}
		return best
	}
}

// currentManifest is the MANIFEST the marker names.
func currentManifest(names []string) string {
	for _, n := range names {
		if strings.HasPrefix(n, "marker.manifest.") {
			return n[strings.LastIndex(n, ".")+1:]
		}
	}
	return ""
}

func lastOptions(names []string) string {
	last := ""
	for _, n := range names {
		if strings.HasPrefix(n, "OPTIONS-") {
			last = n
		}
	}
	return last
}

func flipByte(t *testing.T, path string, at func(b []byte) int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := at(b)
	b[i] ^= 0x01
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

func requireTenant(t *testing.T, db *DB, tenant string, acks []acked, every int) {
	t.Helper()
	n, err := db.tn(tenant).Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(acks), n, "tenant %s", tenant)
	for i := 0; i < len(acks); i += every {
		got, err := db.tn(tenant).Get(bg, acks[i].id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, acks[i].rec, acks[i].id, got)
	}
}

// rebuildAndCheck repairs the index with Options.RebuildIndex and checks
// every tenant.
func rebuildAndCheck(t *testing.T, s corruptStore, betaLink string) *IndexRebuild {
	t.Helper()
	db, err := Open(s.dir, &Options{RetentionInterval: -1, RebuildIndex: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	uri, err := db.Admin().KeyURI(bg, "beta")
	require.NoError(t, err)
	require.Equal(t, betaLink, uri, "beta's linked key survives the rebuild")
	require.NoError(t, db.Admin().VerifyIndex(bg))
	require.NoError(t, db.Admin().IndexHealth())
	requireTenant(t, db, "acme", s.acme, 97)
	requireTenant(t, db, "beta", s.beta, 1)
	_, err = db.tn("beta").Append(bg, genRecords(rand.New(rand.NewSource(9)), 3, t0))
	require.NoError(t, err)
	return db.Admin().IndexRebuild()
}

// TestIndexCorruptSSTable: a byte flipped in an index sstable is an error,
// never an exit: the read that meets it fails with a corruption error,
// VerifyIndex and IndexHealth say ErrIndexCorrupt, appends are refused with
// it, the other tenant's data stays readable, Close returns, and a rebuild
// repairs the index (keeping tenant configuration).
func TestIndexCorruptSSTable(t *testing.T) {
	s := buildCorruptStore(t, "local://beta-linked")
	flipByte(t, s.indexFile(t, largestTable(s.dir)), func(b []byte) int { return len(b) / 4 })

	within(t, hangBound, "reading a damaged index", func() {
		db, err := Open(s.dir, &Options{RetentionInterval: -1})
		require.NoError(t, err)
		// The other tenant's records are intact and readable.
		requireTenant(t, db, "beta", s.beta, 1)
		// Reading everything meets the damaged block.
		err = db.Admin().VerifyIndex(bg)
		require.ErrorIs(t, err, ErrIndexCorrupt)
		require.ErrorIs(t, err, ErrCorrupt)
		require.True(t, pebble.IsCorruptionError(err))
		require.Contains(t, err.Error(), "logstore segments reindex")
		require.NotContains(t, err.Error(), "\n")
		require.ErrorIs(t, db.Admin().IndexHealth(), ErrIndexCorrupt)
		_, err = db.tn("beta").Append(bg, genRecords(rand.New(rand.NewSource(8)), 3, t0))
		require.ErrorIs(t, err, ErrIndexCorrupt)
		// Still readable after the refusal.
		requireTenant(t, db, "beta", s.beta, 10)
		require.NoError(t, db.Close())
	})
	rb := rebuildAndCheck(t, s, "local://beta-linked")
	require.Empty(t, rb.OldIndex)
	require.Equal(t, []string{"acme", "beta"}, rb.Kept, "the manifest sequences are kept")
}

// TestIndexCorruptManifest flips bytes of the MANIFEST (every one of its
// last 48, every 29th before): Open either works with every record, or
// fails with ErrIndexCorrupt, including when the flip is in the last
// record, which Pebble takes for a torn write and ignores, leaving tables
// with sequence numbers the version does not know. The rebuild repairs it,
// keeping the tenants' key binding (their manifests hold it).
func TestIndexCorruptManifest(t *testing.T) {
	base := buildCorruptStore(t, "local://beta-linked")
	manifest := filepath.Base(base.indexFile(t, currentManifest))
	st, err := os.Stat(filepath.Join(base.dir, "index", manifest))
	require.NoError(t, err)
	size := int(st.Size())
	var positions []int
	for p := 0; p < size; p++ {
		if p >= size-48 || p%29 == 0 {
			positions = append(positions, p)
		}
	}
	corrupt, seq := 0, 0
	for _, p := range positions {
		s := base
		s.dir = t.TempDir()
		require.NoError(t, os.CopyFS(s.dir, os.DirFS(base.dir)))
		flipByte(t, filepath.Join(s.dir, "index", manifest), func([]byte) int { return p })
		var openErr error
		within(t, hangBound, "opening with a damaged MANIFEST", func() {
			db, err := Open(s.dir, &Options{RetentionInterval: -1})
			if openErr = err; err != nil {
				return
			}
			// A byte Pebble does not depend on: everything is there.
			requireTenant(t, db, "acme", s.acme, 997)
			requireTenant(t, db, "beta", s.beta, 50)
			require.NoError(t, db.Admin().VerifyIndex(bg))
			require.NoError(t, db.Close())
		})
		if openErr == nil {
			continue
		}
		require.ErrorIs(t, openErr, ErrIndexCorrupt, "byte %d", p)
		require.Contains(t, openErr.Error(), "logstore segments reindex")
		if strings.Contains(openErr.Error(), "sequence number") {
			seq++
		}
		if corrupt++; corrupt == 1 || strings.Contains(openErr.Error(), "sequence number") && seq == 1 {
			// Beta's link is in its tenant manifest, whatever the index.
			rebuildAndCheck(t, s, "local://beta-linked")
		}
	}
	t.Logf("%d of %d flipped MANIFEST bytes made Open fail with ErrIndexCorrupt (%d by the sequence-number check); the others were harmless",
		corrupt, len(positions), seq)
	require.Greater(t, corrupt, len(positions)/2)
	require.Greater(t, seq, 0, "a damaged last record is detected")
}

// TestIndexCorruptOptions: the OPTIONS file matters to Pebble only for the
// comparer and merger names: a flip there fails Open with ErrIndexCorrupt,
// a flip in a tuning value is harmless (Pebble writes a new file on Open).
func TestIndexCorruptOptions(t *testing.T) {
	base := buildCorruptStore(t, "")
	for _, c := range []struct {
		field   string
		corrupt bool
	}{{"comparer=leveldb.", true}, {"mem_table_size=", false}} {
		s := base
		s.dir = t.TempDir()
		require.NoError(t, os.CopyFS(s.dir, os.DirFS(base.dir)))
		flipByte(t, s.indexFile(t, lastOptions), func(b []byte) int {
			i := strings.Index(string(b), c.field)
			require.GreaterOrEqual(t, i, 0)
			return i + len(c.field) + 1
		})
		db, err := Open(s.dir, &Options{RetentionInterval: -1})
		if c.corrupt {
			require.ErrorIs(t, err, ErrIndexCorrupt)
			rebuildAndCheck(t, s, "local://beta")
			continue
		}
		require.NoError(t, err)
		requireTenant(t, db, "beta", s.beta, 1)
		require.NoError(t, db.Close())
	}
}

// TestPebbleFatalNeverExits: the index logger's Fatalf marks the index
// failed and never exits: inside guardIndex it becomes the call's error; a
// failed MANIFEST write returns to Pebble (which returns the error); any
// other Fatalf ends only the calling goroutine.
func TestPebbleFatalNeverExits(t *testing.T) {
	h := newIndexHealth(t.TempDir(), nil, false)
	h.beginClose() // no backoff pause
	lg := indexLogger{h}

	err := guardIndex(func() error { lg.Fatalf("pebble: invariant violation: %s", "x"); return nil })
	require.ErrorIs(t, err, ErrIndexFailed)
	require.ErrorIs(t, h.writable(), ErrIndexFailed)

	err = guardIndex(func() error { lg.Fatalf("MANIFEST flush failed: %v", "write x: no space left on device"); return nil })
	require.ErrorIs(t, err, ErrDiskFull)

	var returned, deferred bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { deferred = true }()
		lg.Fatalf("MANIFEST sync failed: %v", errors.New("input/output error"))
		returned = true
		lg.Fatalf("L%d->L%d: %s already being compacted", 0, 6, "000004")
		t.Error("Fatalf returned outside a guard")
	}()
	<-done
	require.True(t, returned, "a failed MANIFEST write returns to Pebble")
	require.True(t, deferred, "Goexit runs the goroutine's deferred calls")
}
