package engine

import (
	"context"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// collector gathers what one follow yields.
type collector struct {
	mu      sync.Mutex
	got     map[ID]int
	errs    []error
	started chan struct{}
	done    chan struct{}
}

func startFollow(ctx context.Context, tn *Tenant, o FollowOptions) *collector {
	c := &collector{got: map[ID]int{}, started: make(chan struct{}), done: make(chan struct{})}
	o.Started = func() { close(c.started) }
	go func() {
		defer close(c.done)
		for m, err := range tn.Follow(ctx, o) {
			c.mu.Lock()
			if err != nil {
				c.errs = append(c.errs, err)
			} else {
				c.got[m.ID]++
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) has(id ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[id] > 0
}

// requireExactly checks that c yielded each of want once, and nothing else.
func (c *collector) requireExactly(t *testing.T, want map[ID]bool, name string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.errs, name)
	for id, n := range c.got {
		require.Equal(t, 1, n, "%s: record %s yielded %d times", name, id, n)
		require.True(t, want[id], "%s: record %s was not appended after the follow started", name, id)
	}
	require.Len(t, c.got, len(want), name)
}

// TestFollowExactBesideWriter: writers append in goroutines (single records
// through the journal, batches as blocks, with capture times older than
// what exists) while segments seal and retention removes one; a follower on
// a read-only DB of the same directory and one on the writer DB each yield
// every record appended after they started exactly once, and none before.
func TestFollowExactBesideWriter(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 1 << 20; o.Now = clk.Now })
	defer w.Close()
	acme := w.tn("acme")
	rng := rand.New(rand.NewSource(14))
	require.NoError(t, w.Admin().SetRetention(bg, "acme", 72*time.Hour))
	// Before the follow: an expired sealed segment, a live one, and
	// records waiting in the journal.
	_, err := acme.Append(bg, genRecords(rng, 300, t0.Add(-100*time.Hour)))
	require.NoError(t, err)
	require.NoError(t, w.control(bg, func() error { return w.sealActive(w.tenants["acme"]) }))
	_, err = acme.Append(bg, genRecords(rng, 300, t0.Add(-2*time.Hour)))
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		_, err = acme.Append(bg, genRecords(rng, 1, t0.Add(-time.Hour)))
		require.NoError(t, err)
	}

	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	fro := startFollow(ctx, ro.tn("acme"), FollowOptions{Interval: 10 * time.Millisecond})
	fw := startFollow(ctx, acme, FollowOptions{})
	for _, c := range []*collector{fro, fw} {
		select {
		case <-c.started:
		case <-time.After(30 * time.Second):
			t.Fatal("follow did not start")
		}
	}

	var mu sync.Mutex
	want := map[ID]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 40; i++ {
				n := 1
				if i%4 == 0 {
					n = 150 // a block or more: written to the segment at once
				}
				// Capture times before, among and after the existing ones.
				ids, err := acme.Append(bg, genRecords(rng, n, t0.Add(-time.Duration(rng.Intn(48))*time.Hour)))
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				for _, id := range ids {
					want[id] = true
				}
				mu.Unlock()
				if i == 20 && g == 0 {
					assertNoError(t, w.control(bg, func() error { return w.sealActive(w.tenants["acme"]) }))
					rep, err := w.Admin().ApplyRetention(bg)
					assertNoError(t, err)
					if rep.Segments != 1 {
						t.Errorf("retention removed %d segments, want 1", rep.Segments)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	w.flushJournals(t) // every journaled record into a block, segments sealed
	// A last record: once a follower has it, it has read every block
	// acknowledged before it.
	last, err := acme.Append(bg, genRecords(rng, 1, t0.Add(-30*time.Hour)))
	require.NoError(t, err)
	want[last[0]] = true
	for name, c := range map[string]*collector{"read-only": fro, "writer": fw} {
		require.Eventually(t, func() bool { return c.has(last[0]) }, 30*time.Second, 5*time.Millisecond, name)
	}
	cancel()
	<-fro.done
	<-fw.done
	require.Greater(t, len(want), 1000)
	fro.requireExactly(t, want, "read-only")
	fw.requireExactly(t, want, "writer")
	segs, err := w.Admin().Segments(bg, "acme")
	require.NoError(t, err)
	require.Greater(t, len(segs), 3, "the follow crossed seals")
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// TestFollowFilterAndClose: the follow yields only what its options select,
// records in a batch come in time order, and closing the DB ends it with
// ErrClosed.
func TestFollowFilterAndClose(t *testing.T) {
	w := openTest(t, vfs.Default, t.TempDir(), nil)
	acme := w.tn("acme")
	ctx := bg
	c := startFollow(ctx, acme, FollowOptions{Index: ByStatus(500), From: t0, Interval: time.Hour})
	<-c.started
	recs := genRecords(rand.New(rand.NewSource(3)), 200, t0.Add(-100*time.Millisecond))
	ids, err := acme.Append(bg, recs)
	require.NoError(t, err)
	want := map[ID]bool{}
	for i, r := range recs {
		if r.Status == 500 && !r.Time.Before(t0) {
			want[ids[i]] = true
		}
	}
	require.NotEmpty(t, want)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.got) >= len(want)
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, w.Close())
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end on Close")
	}
	c.mu.Lock()
	require.Len(t, c.errs, 1)
	require.ErrorIs(t, c.errs[0], ErrClosed)
	c.errs = nil
	c.mu.Unlock()
	c.requireExactly(t, want, "filtered")

	for _, err := range acme.Follow(bg, FollowOptions{Interval: -1}) {
		require.ErrorIs(t, err, ErrInvalidOptions)
	}
}

// TestFollowRetriesFailedRefresh: while the read-only DB's files cannot be
// read (every Refresh and read fails) the follow keeps its position, yields
// one ErrFollowStalled after FailAfter failed ticks, and once the files read
// again yields what was appended meanwhile, exactly once.
func TestFollowRetriesFailedRefresh(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 1 << 20 })
	defer w.Close()
	acme := w.tn("acme")
	rng := rand.New(rand.NewSource(15))
	_, err := acme.Append(bg, genRecords(rng, 100, t0))
	require.NoError(t, err)
	efs := vfs.NewErrorFS(vfs.Default, nil)
	ro, err := Open(dir, &Options{ReadOnly: true, FS: efs})
	require.NoError(t, err)
	defer ro.Close()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	c := startFollow(ctx, ro.tn("acme"), FollowOptions{Interval: 5 * time.Millisecond, FailAfter: 3})
	<-c.started

	want := map[ID]bool{}
	appendSome := func(n int) {
		for i := 0; i < n; i++ {
			ids, err := acme.Append(bg, genRecords(rng, 1+rng.Intn(3)*100, t0.Add(-time.Duration(rng.Intn(100))*time.Hour)))
			require.NoError(t, err)
			for _, id := range ids {
				want[id] = true
			}
		}
	}
	appendSome(5)
	efs.SetInjector(func(op vfs.Op, name string) error {
		if op == vfs.OpOpen || op == vfs.OpRead || op == vfs.OpList {
			return vfs.ErrIO
		}
		return nil
	})
	appendSome(10)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.errs) > 0
	}, 30*time.Second, 5*time.Millisecond)
	appendSome(10)
	w.flushJournals(t)
	appendSome(5)
	efs.SetInjector(nil)
	last, err := acme.Append(bg, genRecords(rng, 1, t0))
	require.NoError(t, err)
	want[last[0]] = true
	require.Eventually(t, func() bool { return c.has(last[0]) }, 30*time.Second, 5*time.Millisecond)
	cancel()
	<-c.done
	c.mu.Lock()
	require.Len(t, c.errs, 1, "one report per outage")
	require.ErrorIs(t, c.errs[0], ErrFollowStalled)
	require.ErrorIs(t, c.errs[0], vfs.ErrInjected)
	c.errs = nil
	c.mu.Unlock()
	c.requireExactly(t, want, "after the outage")
}

// TestFollowReadOnlyClose: closing a read-only DB ends a follow waiting for
// its next tick (a long Interval) with ErrClosed, and Close does not wait
// for the follow.
func TestFollowReadOnlyClose(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, vfs.Default, dir, nil)
	defer w.Close()
	_, err := w.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 10, t0))
	require.NoError(t, err)
	ro, err := Open(dir, &Options{ReadOnly: true})
	require.NoError(t, err)
	c := startFollow(bg, ro.tn("acme"), FollowOptions{Interval: time.Hour})
	<-c.started
	require.NoError(t, ro.Close())
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end on Close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.errs, 1)
	require.ErrorIs(t, c.errs[0], ErrClosed)
	require.Empty(t, c.got)
}
