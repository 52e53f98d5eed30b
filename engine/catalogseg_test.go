package engine

import (
	"cmp"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// lazyStore writes six sealed segments an hour apart (and nothing active)
// and returns the records in time order, with their ids.
func lazyStore(t *testing.T) (string, []Record, []ID) {
	t.Helper()
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	rng := rand.New(rand.NewSource(21))
	var recs []Record
	var ids []ID
	for seg := 0; seg < 6; seg++ {
		batch := genRecords(rng, 300, t0.Add(time.Duration(seg)*time.Hour))
		recs = append(recs, batch...)
		ids = append(ids, appendSealed(t, db, "acme", batch, len(batch))...)
	}
	require.NoError(t, db.Close())
	return dir, recs, ids
}

// loadedSegments counts the catalog's lazy segments of tenant, and how many
// of them are loaded.
func loadedSegments(t *testing.T, db *DB, tenant string) (lazy, loaded int) {
	t.Helper()
	segs, _, err := db.catalog.snapshot(tenant)
	require.NoError(t, err)
	for _, sv := range segs {
		if sv.lazy != nil {
			lazy++
			if sv.lazy.loaded() {
				loaded++
			}
		}
	}
	return lazy, loaded
}

// TestLazySegmentsLoadOnlyWhatAReadNeeds: after an Open, sealed segments
// are their rollups; each kind of read loads only the segments it cannot
// decide from them, and answers exactly what a brute-force filter does.
func TestLazySegmentsLoadOnlyWhatAReadNeeds(t *testing.T) {
	dir, recs, ids := lazyStore(t)
	for _, ro := range []bool{false, true} {
		name := map[bool]string{false: "writer", true: "read-only"}[ro]
		open := func() *testDB { return openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = ro }) }
		count := func(db *testDB, o ScanOptions) int {
			n, err := db.tn("acme").Count(bg, o)
			require.NoError(t, err)
			return n
		}
		brute := func(o ScanOptions) int {
			b := newScanBounds(&o)
			n := 0
			for i := range recs {
				m := recs[i].Meta
				m.ID = ids[i]
				if b.record(&m) {
					n++
				}
			}
			return n
		}
		steps := []struct {
			what   string
			read   func(db *testDB)
			loaded int // lazy segments loaded after it
		}{
			{"count of everything", func(db *testDB) { require.Equal(t, len(recs), count(db, ScanOptions{})) }, 0},
			{"count of two whole segments", func(db *testDB) {
				o := ScanOptions{From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)}
				require.Equal(t, 600, count(db, o))
			}, 0},
			{"status range no segment holds", func(db *testDB) {
				o := ScanOptions{Ranges: []Range{{Field: "status", Min: 600, Max: 700}}}
				require.Zero(t, count(db, o))
			}, 0},
			{"count cutting one segment", func(db *testDB) {
				o := ScanOptions{From: t0.Add(2*time.Hour + 100*time.Millisecond), To: t0.Add(3 * time.Hour)}
				require.Equal(t, brute(o), count(db, o))
			}, 1},
			{"newest page", func(db *testDB) {
				n := 0
				for m, err := range db.tn("acme").Scan(bg, ScanOptions{Limit: 50}) {
					require.NoError(t, err)
					require.Equal(t, ids[len(ids)-1-n], m.ID)
					n++
				}
				require.Equal(t, 50, n)
			}, 2},
			{"get from the oldest segment", func(db *testDB) {
				got, err := db.tn("acme").Get(bg, ids[7], PartAll)
				require.NoError(t, err)
				requireSameRecord(t, recs[7], ids[7], got)
			}, 3},
			{"status count over every segment", func(db *testDB) {
				o := ScanOptions{Index: ByStatus(404)}
				require.Equal(t, brute(o), count(db, o))
			}, 6},
		}
		db := open()
		lazy, loaded := loadedSegments(t, db.DB, "acme")
		require.Equal(t, 6, lazy, name)
		require.Zero(t, loaded, name)
		for _, st := range steps {
			st.read(db)
			_, loaded = loadedSegments(t, db.DB, "acme")
			require.Equal(t, st.loaded, loaded, "%s: %s", name, st.what)
		}
		// Every record is found by its trace, and a session's pages
		// equal the brute force.
		for i := 0; i < len(recs); i += 37 {
			o := ScanOptions{Index: ByTrace(recs[i].TraceID)}
			require.Equal(t, brute(o), count(db, o))
		}
		var want, got []ID
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].SessionID == "sess-3" {
				want = append(want, ids[i])
			}
		}
		for m, err := range db.tn("acme").Scan(bg, ScanOptions{Index: BySession("sess-3")}) {
			require.NoError(t, err)
			got = append(got, m.ID)
		}
		require.Equal(t, want, got, name)
		require.NoError(t, db.Close())
	}
}

// TestLazySegmentsConcurrentFirstReads: many readers reaching the same
// unloaded segments at once load each once and agree.
func TestLazySegmentsConcurrentFirstReads(t *testing.T) {
	dir, recs, _ := lazyStore(t)
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	errs := make(chan error, 8)
	counts := make(chan int, 8)
	for g := 0; g < 8; g++ {
		go func() {
			n, err := db.tn("acme").Count(bg, ScanOptions{Index: BySession("sess-1")})
			counts <- n
			errs <- err
		}()
	}
	var seen []int
	for g := 0; g < 8; g++ {
		require.NoError(t, <-errs)
		seen = append(seen, <-counts)
	}
	want := 0
	for i := range recs {
		if recs[i].SessionID == "sess-1" {
			want++
		}
	}
	require.Equal(t, slices.Repeat([]int{want}, 8), seen)
}

// TestRollupIsAuthenticated: a rollup edited in the manifest (the CRC
// fixed, no key for the MAC) is refused with the manifest: no count or
// skip is ever taken from it, and the reads say why.
func TestRollupIsAuthenticated(t *testing.T) {
	dir, recs, _ := lazyStore(t)
	path := manifestPathIn(dir, "acme")
	body := atkReadManifestBody(t, path, "acme")
	edited := 0
	for i := range body.Segments {
		if r := body.Segments[i].Rollup; r != nil {
			r.LogRecords += 1000
			r.MaxStatus = 100 // would skip every status query
			edited++
		}
	}
	require.Equal(t, 6, edited)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	forged := reencodeManifestBody(t, raw, &body)
	require.NoError(t, os.WriteFile(path, fixManifestCRC(forged), 0o600))
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.ErrorIs(t, err, ErrManifestAuth, "the reads say why")
	require.LessOrEqual(t, n, len(recs), "the forged counts are never used")
	_, err = db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(404)})
	require.ErrorIs(t, err, ErrManifestAuth, "the forged status range never hides a segment silently")
	lazy, _ := loadedSegments(t, db.DB, "acme")
	require.Zero(t, lazy, "an unauthenticated manifest's rollups are not used")
}

func manifestPathIn(dir, tenant string) string {
	return filepath.Join(dir, "segments", tenant, manifestFile)
}

// reencodeManifestBody is raw (a manifest file) with body in place of its
// own and the old MAC kept: what an attacker without the key can write.
func reencodeManifestBody(t *testing.T, raw []byte, body *manifestBody) []byte {
	t.Helper()
	js, err := json.Marshal(body)
	require.NoError(t, err)
	n := binary.LittleEndian.Uint32(raw[12:])
	mac := raw[manifestHeaderLen+int(n) : manifestHeaderLen+int(n)+manifestMACLen]
	out := append([]byte(nil), raw[:manifestHeaderLen]...)
	binary.LittleEndian.PutUint32(out[12:], uint32(len(js)))
	out = append(append(append(out, js...), mac...), 0, 0, 0, 0)
	return out
}

// TestOldStoreGetsRollups: a store sealed before rollups (the v2 fixture)
// loads whole on its first writer Open, which adds the rollups; from the
// next Open on (writer or read-only), its sealed segments load lazily and
// every answer stays the same.
func TestOldStoreGetsRollups(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/v2-store")))
	db := openTest(t, vfs.Default, dir, nil)
	require.Positive(t, db.Recovery().RollupsAdded)
	requireV2StoreServed(t, db.DB)
	require.NoError(t, db.Close())
	for _, ro := range []bool{false, true} {
		db = openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = ro })
		require.Zero(t, db.Recovery().RollupsAdded)
		require.Empty(t, db.Recovery().Damaged)
		lazy, loaded := loadedSegments(t, db.DB, "acme")
		require.Positive(t, lazy, "read-only %v", ro)
		require.Zero(t, loaded)
		requireV2StoreServed(t, db.DB)
		require.NoError(t, db.Close())
	}
}

// TestSummaryFileDigestMatchesEncoding: the digest the catalog computes
// from raw index values is the one of the summary file they encode.
func TestSummaryFileDigestMatchesEncoding(t *testing.T) {
	var sums []*blockSummary
	var raws [][]byte
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 70; i++ { // past one group, so a group filter is in
		recs := genRecords(rng, 1+rng.Intn(40), t0.Add(time.Duration(i)*time.Minute))
		metas := make([]*Meta, len(recs))
		for j := range recs {
			metas[j] = &recs[j].Meta
			metas[j].ID = ID{byte(i), byte(j)}
		}
		sums = append(sums, summarize(ID{9}, uint64(i), int64(i)*4096, kindLog, metas, nil))
	}
	var g groupBuilder
	for _, s := range sums {
		g.add(s)
		raws = append(raws, appendSummary(nil, s))
	}
	require.NotNil(t, sums[63].group)
	for _, n := range []int{0, 1, 64, 70} {
		want := sha256.Sum256(encodeSummaryFile(ID{9}, sums[:n]))
		require.Equal(t, want, summaryFileDigest(ID{9}, raws[:n]), "%d blocks", n)
	}
}

// BenchmarkLazySegments: a scan newest-first and a count that need every
// lazy segment (each loaded already: the cost measured is queueing their
// blocks). Sorting every block once is the baseline; a scan pushes each
// segment's blocks into its queue as it reaches the segment, which should
// cost about the same however many segments there are.
func BenchmarkLazySegments(b *testing.B) {
	for _, n := range []int{1000, 16000} {
		const per = 8
		var segs []segView
		var all []candidate
		for i := 0; i < n; i++ {
			seg := [16]byte{byte(i >> 8), byte(i)}
			var blocks []*blockSummary
			for j := 0; j < per; j++ {
				lo := int64(i)*1000 + int64(j)*100
				s := &blockSummary{seg: seg, seq: uint64(j), kind: kindLog, count: 10, minTime: lo, maxTime: lo + 99}
				blocks = append(blocks, s)
				all = append(all, candidate{seg: seg, sum: s})
			}
			r := &blockSummary{seg: seg, kind: kindLog, count: 10 * per, minTime: int64(i) * 1000, maxTime: int64(i)*1000 + 100*per - 1}
			l := &lazySegment{rollup: r, load: func() ([]*blockSummary, error, error) { return blocks, nil, nil }}
			_, _, _, _ = l.get()
			segs = append(segs, segView{id: seg, lazy: l})
		}
		o := ScanOptions{}
		sb := newScanBounds(&o)
		b.Run(fmt.Sprintf("op=sort-once/segments=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c := slices.Clone(all)
				slices.SortFunc(c, func(x, y candidate) int { return cmp.Compare(y.sum.maxTime, x.sum.maxTime) })
			}
		})
		b.Run(fmt.Sprintf("op=queue/segments=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				q := &candQueue{c: sb.candidates(segs)}
				heap.Init(q)
				popped := 0
				for q.Len() > 0 {
					c := heap.Pop(q).(candidate)
					if c.lazy != nil {
						for _, x := range sb.lazyBlocks(c, &scanFaults{}) {
							heap.Push(q, x)
						}
						continue
					}
					popped++
				}
				if popped != n*per {
					b.Fatal(popped)
				}
			}
		})
	}
}

// TestVerifyChecksSummaryFiles: Verify reports a sealed segment's summary
// file that is missing or not the one its manifest anchors; Reindex writes
// it again from the segment, and reads never depended on it.
func TestVerifyChecksSummaryFiles(t *testing.T) {
	dir, recs, _ := lazyStore(t)
	segs, err := filepath.Glob(filepath.Join(dir, "segments", "acme", "*"+summaryExt))
	require.NoError(t, err)
	require.Len(t, segs, 6)
	require.NoError(t, os.Remove(segs[0]))
	b, err := os.ReadFile(segs[1])
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(segs[1], b, 0o600))

	db := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(404, 500)})
	require.NoError(t, err, "reads take the segment's own metadata")
	require.Positive(t, n)
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	problems := func() (out []string) {
		checks, err := db.Admin().Verify(bg, "acme")
		require.NoError(t, err)
		for _, c := range checks {
			for _, p := range c.IndexProblems {
				require.ErrorIs(t, p.Err, ErrIndexMismatch)
				out = append(out, p.Err.Error())
			}
		}
		return out
	}
	// The writer's Open wrote the missing file again; the damaged one is
	// reported until a reindex.
	got := problems()
	require.Len(t, got, 1, "%q", got)
	require.Contains(t, got[0], "not the one the manifest anchors")
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	require.Empty(t, problems())
	n, err = db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(recs), n)
}
