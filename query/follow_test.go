package query

import (
	"context"
	"fmt"
	"iter"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// TestFollowFilters: a follow yields exactly the records appended after it
// started that the expression and the time range select (brute force
// decides), whatever their capture times, and none of those before.
func TestFollowFilters(t *testing.T) {
	acme, _, _ := newDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	req := Request{Where: "status = 5xx AND method IN (POST, PUT) AND latency_ms < 800", From: t0.Add(-time.Hour)}
	started := make(chan struct{})
	var mu sync.Mutex
	got := map[engine.ID]int{}
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range Follow(ctx, acme, req, engine.FollowOptions{Started: func() { close(started) }}) {
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			} else {
				got[m.ID]++
			}
			mu.Unlock()
		}
	}()
	<-started

	rng := rand.New(rand.NewSource(9))
	want := map[engine.ID]bool{}
	var last engine.ID
	for batch := 0; batch < 20; batch++ {
		recs := make([]engine.Record, 1+rng.Intn(60))
		for i := range recs {
			recs[i] = engine.Record{Meta: engine.Meta{
				// Older and newer than what exists, some before From.
				Time:      t0.Add(time.Duration(rng.Intn(7200)-3600) * time.Second * 2),
				Method:    []string{"GET", "POST", "PUT"}[rng.Intn(3)],
				Status:    []int{200, 404, 500, 503}[rng.Intn(4)],
				SessionID: fmt.Sprintf("s%d", rng.Intn(50)),
				LatencyMs: float64(rng.Intn(1000)),
			}, Path: "/y"}
		}
		ids, err := acme.Append(ctx, recs)
		require.NoError(t, err)
		for i, r := range recs {
			if r.Status >= 500 && r.Method != "GET" && r.LatencyMs < 800 && !r.Time.Before(req.From) {
				want[ids[i]] = true
				last = ids[i]
			}
		}
	}
	require.NotEmpty(t, want)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[last] > 0 && len(got) >= len(want)
	}, 30*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	require.Empty(t, errs)
	require.Len(t, got, len(want))
	for id, n := range got {
		require.True(t, want[id], "%s not selected", id)
		require.Equal(t, 1, n)
	}

	for _, bad := range []Request{{Limit: 5}, {Cursor: "x"}, {Count: true}, {Where: "stauts = 5"}} {
		for _, err := range Follow(context.Background(), acme, bad, engine.FollowOptions{}) {
			require.Error(t, err)
		}
	}
}

// appendOnScan is a tenant whose first Scan appends a record first: one
// acknowledged after the follow's position was taken that is also on the
// page FollowLast reads.
type appendOnScan struct {
	*engine.Tenant
	once sync.Once
	rec  engine.Record
	id   engine.ID
}

func (a *appendOnScan) Scan(ctx context.Context, o engine.ScanOptions) iter.Seq2[*engine.Meta, error] {
	a.once.Do(func() {
		ids, err := a.Tenant.Append(ctx, []engine.Record{a.rec})
		if err != nil {
			panic(err)
		}
		a.id = ids[0]
	})
	return a.Tenant.Scan(ctx, o)
}

// TestFollowLast: the newest n existing matches come first, oldest first,
// then the new ones; a record both on the page and followed comes once.
func TestFollowLast(t *testing.T) {
	acme, _, _ := newDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	req := Request{Where: "status = 5xx"}
	res, err := Run(ctx, acme, Request{Where: req.Where, Limit: 4})
	require.NoError(t, err)
	racer := &appendOnScan{Tenant: acme, rec: engine.Record{Meta: engine.Meta{Time: t0.Add(24 * time.Hour), Method: "GET", Status: 500}, Path: "/z"}}
	var mu sync.Mutex
	var got []engine.ID
	done := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range FollowLast(ctx, racer, req, 5, engine.FollowOptions{Started: func() { close(started) }}) {
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			got = append(got, m.ID)
			mu.Unlock()
		}
	}()
	<-started
	ids, err := acme.Append(ctx, []engine.Record{
		{Meta: engine.Meta{Time: t0.Add(-time.Hour), Method: "GET", Status: 503}, Path: "/a"},
		{Meta: engine.Meta{Time: t0.Add(-time.Hour), Method: "GET", Status: 200}, Path: "/b"},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 6
	}, 30*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	want := []engine.ID{res.Rows[3].ID, res.Rows[2].ID, res.Rows[1].ID, res.Rows[0].ID, racer.id, ids[0]}
	require.Equal(t, want, got)

	for _, err := range FollowLast(context.Background(), acme, req, MaxLimit+1, engine.FollowOptions{}) {
		require.ErrorIs(t, err, ErrBadValue)
	}
}
