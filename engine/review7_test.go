package engine

import (
	"errors"
	"fmt"
	"iter"
	"math/rand"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// r7Store is a store with several sealed segments whose time ranges
// overlap, an active segment with indexed blocks, and (while the returned
// writer is open) journaled records. It returns the open writer and every
// record with its id.
func r7Store(t *testing.T, seed int64) (string, *testDB, []Record, []ID) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(seed))
	r7SegRecs = nil
	small := func(o *Options) { o.BlockSize = 1 << 10 }
	gen := func(n int, base, span time.Duration) []Record {
		recs := genRecords(rng, n, t0)
		for i := range recs {
			// Overlapping segments, and some records sharing a time.
			recs[i].Time = t0.Add(base + time.Duration(rng.Int63n(int64(span)/int64(time.Millisecond)))*time.Millisecond)
			if i > 0 && rng.Intn(8) == 0 {
				recs[i].Time = recs[i-1].Time
			}
		}
		return recs
	}
	var recs []Record
	var ids []ID
	db := openTest(t, vfs.Default, dir, small)
	spans := [][2]time.Duration{{0, 40 * time.Minute}, {10 * time.Minute, 20 * time.Minute}, {50 * time.Minute, 10 * time.Minute},
		{5 * time.Minute, 60 * time.Minute}, {70 * time.Minute, 5 * time.Minute}, {30 * time.Minute, time.Minute}}
	for _, sp := range spans {
		batch := gen(120+rng.Intn(80), sp[0], sp[1])
		r7SegRecs = append(r7SegRecs, batch)
		recs = append(recs, batch...)
		ids = append(ids, appendSealed(t, db, "acme", batch, len(batch))...)
	}
	require.NoError(t, db.Close())
	// An active segment with blocks (no journal).
	db = openTest(t, vfs.Default, dir, func(o *Options) { small(o); o.NoJournal = true })
	batch := gen(150, 20*time.Minute, 50*time.Minute)
	got, err := db.tn("acme").Append(bg, batch)
	require.NoError(t, err)
	recs, ids = append(recs, batch...), append(ids, got...)
	require.NoError(t, db.control(bg, func() error { db.indexBarrier(); return nil }))
	require.NoError(t, db.Close())
	// Journaled records on top.
	db = openTest(t, vfs.Default, dir, small)
	batch = gen(60, 25*time.Minute, 40*time.Minute)
	got, err = db.tn("acme").Append(bg, batch)
	require.NoError(t, err)
	recs, ids = append(recs, batch...), append(ids, got...)
	return dir, db, recs, ids
}

// r7SegRecs are the records of each sealed segment r7Store wrote last.
var r7SegRecs [][]Record

// r7Brute returns the ids o selects, in scan order, by brute force.
func r7Brute(t *testing.T, recs []Record, ids []ID, o ScanOptions) []ID {
	t.Helper()
	require.NoError(t, o.check())
	b := newScanBounds(&o)
	type pos struct {
		t  int64
		id ID
	}
	var sel []pos
	for i := range recs {
		m := recs[i].Meta
		m.ID = ids[i]
		if b.record(&m) {
			sel = append(sel, pos{m.Time.UnixNano(), m.ID})
		}
	}
	slices.SortFunc(sel, func(x, y pos) int {
		c := cmpPos(x.t, x.id, y.t, y.id)
		if !o.Oldest {
			c = -c
		}
		return c
	})
	if o.Limit > 0 && len(sel) > o.Limit {
		sel = sel[:o.Limit]
	}
	var out []ID
	for _, p := range sel {
		out = append(out, p.id)
	}
	return out
}

func r7Scan(t *testing.T, db *DB, o ScanOptions) []ID {
	t.Helper()
	var out []ID
	for m, err := range db.tn("acme").Scan(bg, o) {
		require.NoError(t, err)
		out = append(out, m.ID)
	}
	return out
}

// r7Queries are options over the store's time span (t0 .. t0+80m).
func r7Queries(recs []Record, ids []ID, rng *rand.Rand) []ScanOptions {
	tm := func() time.Time {
		switch rng.Intn(3) {
		case 0: // a record's exact time (segment bounds included)
			return recs[rng.Intn(len(recs))].Time
		case 1:
			return recs[rng.Intn(len(recs))].Time.Add(time.Nanosecond)
		}
		return t0.Add(time.Duration(rng.Int63n(int64(80 * time.Minute))))
	}
	var qs []ScanOptions
	idx := []func() Index{
		func() Index { return ByTime() },
		func() Index { return ByStatus(404) },
		func() Index { return ByStatus(200, 503) },
		func() Index { return BySession("sess-2") },
		func() Index { i := rng.Intn(len(recs)); return ByTrace(recs[i].TraceID) },
		func() Index { return ByMethod("PUT") },
	}
	for i := 0; i < 300; i++ {
		o := ScanOptions{Index: idx[rng.Intn(len(idx))](), Oldest: rng.Intn(2) == 0}
		switch rng.Intn(4) {
		case 0:
		case 1:
			o.From = tm()
		case 2:
			o.To = tm()
		case 3:
			a, b := tm(), tm()
			if b.Before(a) {
				a, b = b, a
			}
			o.From, o.To = a, b
		}
		switch rng.Intn(4) {
		case 1:
			o.Ranges = []Range{{Field: "status", Min: 200, Max: 404}}
		case 2:
			o.Ranges = []Range{{Field: "latency_ms", Min: 100, Max: 300}}
		case 3:
			o.Ranges = []Range{{Field: "status", Min: 0, Max: 999}, {Field: "latency_ms", Min: 0, Max: 1000}}
		}
		if rng.Intn(3) == 0 {
			o.Limit = 1 + rng.Intn(100)
		}
		if rng.Intn(3) == 0 {
			j := rng.Intn(len(recs))
			o.After = &Cursor{Time: recs[j].Time, ID: ids[j]}
		}
		qs = append(qs, o)
	}
	// Time ranges on the sealed segments' exact bounds.
	for _, seg := range r7SegRecs {
		lo, hi := seg[0].Time, seg[0].Time
		for _, r := range seg {
			if r.Time.Before(lo) {
				lo = r.Time
			}
			if r.Time.After(hi) {
				hi = r.Time
			}
		}
		for _, ft := range [][2]time.Time{{lo, hi.Add(1)}, {lo, hi}, {lo.Add(1), hi.Add(1)}, {lo.Add(-1), hi.Add(2)}} {
			for _, ix := range []Index{ByTime(), ByStatus(500)} {
				for _, old := range []bool{false, true} {
					qs = append(qs, ScanOptions{From: ft[0], To: ft[1], Index: ix, Oldest: old},
						ScanOptions{From: ft[0], To: ft[1], Index: ix, Oldest: old, Limit: 5},
						ScanOptions{From: ft[0], To: ft[1], Index: ix, Oldest: old, Ranges: []Range{{Field: "latency_ms", Min: 0, Max: 500}}})
				}
			}
		}
	}
	return qs
}

// TestReview7BruteForce: Count, Scan (both orders, limits, cursors, time
// bounds, ranges, indexes), paging and Get on sealed segments that overlap
// in time, an active segment and journaled records give exactly the
// brute-force answer, writer and read-only, from a fresh Open (lazy
// segments) and once every segment is loaded.
func TestReview7BruteForce(t *testing.T) {
	seeds := []int64{77, 78}
	if raceEnabled {
		seeds = seeds[:1] // and every 4th query (r7Stride)
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { r7BruteForce(t, seed) })
	}
}

func r7BruteForce(t *testing.T, seed int64) {
	dir, w, recs, ids := r7Store(t, seed)
	defer w.Close()
	check := func(name string, db *DB, seed int64) {
		rng := rand.New(rand.NewSource(seed))
		for qi, o := range r7Queries(recs, ids, rng) {
			if raceEnabled && qi%4 != 0 {
				continue
			}
			want := r7Brute(t, recs, ids, o)
			require.Equal(t, want, r7Scan(t, db, o), "%s: scan %d %+v", name, qi, o)
			n, err := db.tn("acme").Count(bg, o)
			require.NoError(t, err)
			require.Equal(t, len(want), n, "%s: count %d %+v", name, qi, o)
			if qi%10 == 0 {
				// Page through with cursors.
				p := o
				p.Limit = 7
				var paged []ID
				for {
					got := r7Scan(t, db, p)
					paged = append(paged, got...)
					if len(got) < p.Limit || (o.Limit > 0 && len(paged) >= o.Limit) {
						break
					}
					last := got[len(got)-1]
					j := slices.Index(ids, last)
					p.After = &Cursor{Time: recs[j].Time, ID: last}
				}
				if o.Limit > 0 && len(paged) > o.Limit {
					paged = paged[:o.Limit]
				}
				require.Equal(t, want, paged, "%s: paged %d", name, qi)
			}
		}
		for i := 0; i < len(ids); i += 37 {
			got, err := db.tn("acme").Get(bg, ids[i], PartAll)
			require.NoError(t, err, "%s: get %d", name, i)
			requireSameRecord(t, recs[i], ids[i], got)
		}
	}
	check("writer, fresh", w.DB, seed*10+1)
	check("writer, loaded", w.DB, seed*10+2)
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	defer ro.Close()
	lazy, _ := loadedSegments(t, ro.DB, "acme")
	require.Positive(t, lazy)
	check("read-only, fresh", ro.DB, seed*10+3)
	check("read-only, loaded", ro.DB, seed*10+4)
	require.NoError(t, w.Close())
	w2 := openTest(t, vfs.Default, dir, nil)
	defer w2.Close()
	lazy, loaded := loadedSegments(t, w2.DB, "acme")
	require.Positive(t, lazy)
	require.Zero(t, loaded)
	check("writer reopened, fresh", w2.DB, seed*10+5)
}

// r7SegIDs are tenant's sealed segment ids in the manifest, in order.
func r7SegIDs(t *testing.T, dir string) [][16]byte {
	body := atkReadManifestBody(t, manifestPathIn(dir, "acme"), "acme")
	var out [][16]byte
	for _, e := range body.Segments {
		if e.State == segSealed {
			id, err := parseSegHex(e.ID)
			require.NoError(t, err)
			out = append(out, id)
		}
	}
	return out
}

// TestReview7DeletedIndexEntriesHideSealedSegment (pre-existing, not a
// regression: e635e79 does the same): deleting every 'b' entry of one
// sealed segment from the index (store closed) makes a writer's Count and
// Scan leave its 300 records out with no error, though the authenticated
// manifest lists the segment as sealed, anchors its summaries (its summary
// file is intact) and now even carries its rollup. The writer's catalog
// lists segments from the index only (segmentsIn). A read-only DB, which
// lists them from the manifest, serves all 1800. Correct: every sealed
// segment of the manifest is in the catalog (entered by its rollup, loaded
// from the summary file or the segment when the index has nothing), or
// reads report it.
func TestReview7DeletedIndexEntriesHideSealedSegment(t *testing.T) {
	dir, recs, _ := lazyStore(t)
	seg := r7SegIDs(t, dir)[2]
	atkEditIndex(t, dir, func(idx *pebble.DB) {
		p := segmentBlocksPrefix("acme", seg)
		require.NoError(t, idx.DeleteRange(p, prefixEnd(p), pebble.NoSync))
	})
	for _, ro := range []bool{true, false} {
		db := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = ro })
		n, err := db.tn("acme").Count(bg, ScanOptions{})
		require.True(t, err != nil || n == len(recs), "read-only %v: Count %d of %d records, no error", ro, n, len(recs))
		got := 0
		var serr error
		for _, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
			if err != nil {
				serr = err
				break
			}
			got++
		}
		require.True(t, serr != nil || got == len(recs), "read-only %v: Scan %d of %d records, no error", ro, got, len(recs))
		require.NoError(t, db.Close())
	}
}

// TestReview7ConcurrentLazyLoads: first reads of lazy segments race with
// appends and seals (catalog apply), retention deleting lazy segments
// (catalog reset) and, in a read-only DB, Refresh. Run with -race.
func TestReview7ConcurrentLazyLoads(t *testing.T) {
	dir, recs, ids := lazyStore(t)
	now := t0.Add(9 * time.Hour)
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.Now = func() time.Time { return now } })
	defer w.Close()
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true; o.Now = func() time.Time { return now } })
	defer ro.Close()
	require.NoError(t, w.Admin().SetRetention(bg, "acme", 6*time.Hour)) // segments 0..2 expire
	done := make(chan struct{})
	errs := make(chan error, 64)
	reader := func(db *DB, g int) {
		rng := rand.New(rand.NewSource(int64(g)))
		for {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			switch rng.Intn(4) {
			case 0:
				n, err := db.tn("acme").Count(bg, ScanOptions{Index: BySession("sess-1")})
				if err != nil || n > len(recs)+2000 {
					errs <- fmt.Errorf("read-only %v: count %d: %w", db.opts.ReadOnly, n, err)
					return
				}
			case 1:
				for _, err := range db.tn("acme").Scan(bg, ScanOptions{Limit: 400, Oldest: rng.Intn(2) == 0}) {
					if err != nil {
						errs <- fmt.Errorf("read-only %v: scan: %w", db.opts.ReadOnly, err)
						return
					}
				}
			case 2:
				i := rng.Intn(len(ids))
				if _, err := db.tn("acme").Get(bg, ids[i], PartLog); err != nil && !errors.Is(err, ErrNotFound) {
					errs <- fmt.Errorf("read-only %v: get: %w", db.opts.ReadOnly, err)
					return
				}
			case 3:
				if db.opts.ReadOnly {
					if err := db.Refresh(bg); err != nil {
						errs <- err
						return
					}
				}
			}
		}
	}
	for g := 0; g < 3; g++ {
		go reader(w.DB, g)
		go reader(ro.DB, 10+g)
	}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 4; i++ {
		appendSealed(t, w, "acme", genRecords(rng, 100, t0.Add(time.Duration(6+i)*time.Hour)), 50)
		if i == 1 {
			rep, err := w.Admin().ApplyRetention(bg)
			require.NoError(t, err)
			require.Equal(t, 3, rep.Segments)
		}
	}
	close(done)
	for g := 0; g < 6; g++ {
		require.NoError(t, <-errs)
	}
}

// TestReview7LazyLoadOfDeletingSegmentIsUnanchored: a scan's lazy segment
// is loaded against the manifest as it is when the scan reaches it, not as
// it was when the scan began. If retention has meanwhile marked the segment
// "deleting" (deleteSegment: the manifest first, the index entries after),
// the load finds no anchor and takes the index entries as they are: an
// attacker who edited a block's plaintext metadata and its index entry
// (store closed) gets the forged metadata served without an error. Before
// the lazy catalog the scan's snapshot held the anchored summaries, so the
// block read failed with ErrIndexMismatch. Correct: a lazy segment's load
// accepts only summaries anchored by the entry the catalog entered it with
// (or, once the segment is no longer sealed, serves nothing from it).
func TestReview7LazyLoadOfDeletingSegmentIsUnanchored(t *testing.T) {
	dir := t.TempDir()
	plain := func(o *Options) { o.Compression = "none" } // metadata editable in place
	{
		db := openTest(t, vfs.Default, dir, plain)
		rng := rand.New(rand.NewSource(4))
		for seg := 0; seg < 3; seg++ {
			appendSealed(t, db, "acme", genRecords(rng, 100, t0.Add(time.Duration(seg)*time.Hour)), 100)
		}
		require.NoError(t, db.Close())
	}
	seg := r7SegIDs(t, dir)[0] // the oldest: a newest-first scan reaches it last
	path := filepath.Join(dir, "segments", "acme", segmentFileName(segHex(seg)))
	id, orig := atkEditSealedStatus(t, path)
	require.NotEqual(t, 299, orig)
	r, err := segment.Open(path, &segment.ReadOptions{})
	require.NoError(t, err)
	block, hash := -1, [16]byte{}
	for i := range r.Blocks() {
		blk, err := r.ReadMeta(i)
		require.NoError(t, err)
		for _, m := range blk.Meta {
			if string(m[2:18]) == string(id[:]) {
				block, hash = i, metaHashOf(blk.Meta)
			}
		}
	}
	require.NoError(t, r.Close())
	require.GreaterOrEqual(t, block, 0)
	atkEditIndex(t, dir, func(idx *pebble.DB) {
		k := blockKey("acme", seg, uint64(block))
		v, closer, err := idx.Get(k)
		require.NoError(t, err)
		s, err := decodeSummary(seg, uint64(block), v)
		require.NoError(t, closer.Close())
		require.NoError(t, err)
		s.metaHash = hash
		require.NoError(t, idx.Set(k, appendSummary(nil, s), pebble.NoSync))
	})
	db := openTest(t, vfs.Default, dir, plain)
	defer db.Close()
	lazy, loaded := loadedSegments(t, db.DB, "acme")
	require.Equal(t, 3, lazy)
	require.Zero(t, loaded)
	next, stop := iter.Pull2(db.tn("acme").Scan(bg, ScanOptions{}))
	defer stop()
	_, err, ok := next()
	require.True(t, ok)
	require.NoError(t, err)
	// Retention's first step on the oldest segment (deleteSegment), here
	// without the rest, which follows within milliseconds.
	require.NoError(t, db.control(bg, func() error { return db.setSegmentState(bg, "acme", seg, segDeleting) }))
	var scanErr error
	forged := false
	for {
		m, err, ok := next()
		if !ok {
			break
		}
		if err != nil {
			scanErr = err
			break
		}
		if m.ID == id && m.Status == 299 {
			forged = true
		}
	}
	require.False(t, forged && scanErr == nil,
		"a record whose plaintext metadata was edited (status %d -> 299) is served without an error", orig)
}
