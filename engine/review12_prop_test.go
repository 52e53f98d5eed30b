package engine

// Review 12: property checks of the block-summary read paths against a
// brute-force model. These held up (see the report); they stay as
// regression tests.

import (
	"bytes"
	"cmp"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

type r12Rec struct {
	id     ID
	t      time.Time
	status int
}

func r12Select(all []r12Rec, o ScanOptions, statuses []int) []r12Rec {
	var out []r12Rec
	for _, r := range all {
		if !o.From.IsZero() && r.t.Before(o.From) || !o.To.IsZero() && !r.t.Before(o.To) {
			continue
		}
		if statuses != nil && !slices.Contains(statuses, r.status) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b r12Rec) int {
		c := cmpPos(a.t.UnixNano(), a.id, b.t.UnixNano(), b.id)
		if o.Oldest {
			return c
		}
		return -c
	})
	if o.After != nil {
		for i, r := range out {
			c := cmpPos(r.t.UnixNano(), r.id, o.After.Time.UnixNano(), o.After.ID)
			if o.Oldest && c > 0 || !o.Oldest && c < 0 {
				out = out[i:]
				goto limit
			}
		}
		out = nil
	}
limit:
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[:o.Limit]
	}
	return out
}

func TestReview12ScanGetCountMatchModel(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	rng := rand.New(rand.NewSource(12))
	var all []r12Rec
	for round := 0; round < 12; round++ {
		recs := genRecords(rng, 30+rng.Intn(40), t0)
		for i := range recs {
			// Times spread over a few seconds, many equal; ids random (any
			// time prefix) for half the batches, engine-assigned otherwise.
			recs[i].Time = t0.Add(time.Duration(rng.Intn(50)) * 100 * time.Millisecond)
			if round%2 == 0 {
				rng.Read(recs[i].ID[:])
			}
		}
		ids, err := db.tn("acme").Append(bg, recs)
		require.NoError(t, err)
		for i := range recs {
			all = append(all, r12Rec{ids[i], recs[i].Time.UTC(), recs[i].Status})
		}
		if round%4 == 3 {
			require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
		}
		// Interleave lookups so the live catalog is loaded and then
		// appended to out of id order.
		_, err = db.tn("acme").GetMeta(bg, all[rng.Intn(len(all))].id)
		require.NoError(t, err)
	}
	check := func(db *testDB) {
		for _, r := range all {
			m, err := db.tn("acme").GetMeta(bg, r.id)
			require.NoError(t, err)
			require.Equal(t, r.status, m.Status)
		}
		for i := 0; i < 400; i++ {
			o := ScanOptions{Oldest: rng.Intn(2) == 0, Limit: rng.Intn(3) * rng.Intn(60)}
			var statuses []int
			if rng.Intn(3) == 0 {
				statuses = []int{[]int{200, 201, 404, 500, 503}[rng.Intn(5)]}
				o.Index = ByStatus(statuses...)
			}
			if rng.Intn(2) == 0 {
				o.From = t0.Add(time.Duration(rng.Intn(50)) * 100 * time.Millisecond)
			}
			if rng.Intn(2) == 0 {
				o.To = t0.Add(time.Duration(rng.Intn(50)) * 100 * time.Millisecond)
				if !o.From.IsZero() && o.From.After(o.To) {
					o.From, o.To = o.To, o.From
				}
			}
			if rng.Intn(2) == 0 {
				a := all[rng.Intn(len(all))]
				o.After = &Cursor{Time: a.t, ID: a.id}
			}
			want := r12Select(all, o, statuses)
			var got []r12Rec
			for m, err := range db.tn("acme").Scan(bg, o) {
				require.NoError(t, err)
				got = append(got, r12Rec{m.ID, m.Time, m.Status})
			}
			require.Equal(t, len(want), len(got), "options %+v", o)
			for j := range want {
				require.Equal(t, want[j].id, got[j].id, "options %+v, position %d", o, j)
			}
			n, err := db.tn("acme").Count(bg, o)
			require.NoError(t, err)
			require.Equal(t, len(want), n, "count, options %+v", o)
		}
	}
	check(db)
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	defer db.Close()
	check(db)
}

// idLookup against brute force, with blocks added in random id order and
// lookups interleaved.
func TestReview12IDLookupModel(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	for trial := 0; trial < 200; trial++ {
		var l idLookup
		var blocks []*blockSummary
		var ids [][]ID
		for b := 0; b < 1+rng.Intn(40); b++ {
			var metas []*Meta
			var bids []ID
			base := byte(rng.Intn(256))
			for j := 0; j < 1+rng.Intn(6); j++ {
				var id ID
				rng.Read(id[:])
				if rng.Intn(2) == 0 {
					id[0] = base
				}
				metas = append(metas, &Meta{ID: id, Time: t0})
				bids = append(bids, id)
			}
			s := summarize(ID{}, uint64(b), 0, kindLog, metas, nil)
			blocks = append(blocks, s)
			ids = append(ids, bids)
			l.add(s)
			if rng.Intn(3) == 0 {
				for bi, bids := range ids {
					for _, id := range bids {
						found := l.find(id, nil)
						require.True(t, slices.Contains(found, blocks[bi]), "trial %d", trial)
					}
				}
			}
		}
		for bi, bids := range ids {
			for _, id := range bids {
				require.True(t, slices.Contains(l.find(id, nil), blocks[bi]))
			}
		}
		_ = cmp.Compare[int]
		_ = bytes.Compare
	}
}

func FuzzReview12DecodeSummary(f *testing.F) {
	metas := []*Meta{{ID: ID{1}, Time: t0, Status: 200, Method: "GET"}, {ID: ID{2}, Time: t0.Add(time.Second), Status: 503}}
	f.Add(appendSummary(nil, summarize(ID{}, 0, 100, kindLog, metas, nil)))
	f.Add([]byte{summaryVersion, kindLog})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSummary(ID{}, 0, b)
		if err != nil {
			return
		}
		s.mayHoldID(ID{1})
		s.mayMatch(&Index{field: fieldStatus, statuses: []int{200}})
		var l idLookup
		l.add(s)
		l.find(ID{1}, nil)
	})
}
