package engine

import (
	"errors"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

func TestAppendGetScan(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(1)), 500, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	require.Len(t, ids, len(recs))
	for i := range recs {
		got, err := db.tn("acme").Get(bg, ids[i], PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], ids[i], got)
	}
	// Log only: no payload decrypted.
	got, err := db.tn("acme").Get(bg, ids[0], PartLog)
	require.NoError(t, err)
	require.Nil(t, got.Payload)
	require.Equal(t, recs[0].Path, got.Path)
	_, err = db.tn("acme").Get(bg, ids[1], PartPayload)
	require.ErrorIs(t, err, ErrNoPayload)

	// Newest first over the time index.
	var seen []ID
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
		require.NoError(t, err)
		seen = append(seen, m.ID)
	}
	require.Len(t, seen, 500)
	require.Equal(t, ids[499], seen[0])
	require.Equal(t, ids[0], seen[499])
	// Oldest first: the same records in the reverse order.
	var oldest []ID
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{Oldest: true}) {
		require.NoError(t, err)
		oldest = append(oldest, m.ID)
	}
	require.Equal(t, ids, oldest)

	// Secondary index with IN, merged newest first.
	want := 0
	for _, r := range recs {
		if r.Status == 500 || r.Status == 503 {
			want++
		}
	}
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(500, 503)})
	require.NoError(t, err)
	require.Equal(t, want, n)
	var prev time.Time
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{Index: ByStatus(500, 503)}) {
		require.NoError(t, err)
		require.True(t, m.Status == 500 || m.Status == 503)
		if !prev.IsZero() {
			require.False(t, m.Time.After(prev), "newest first")
		}
		prev = m.Time
	}
	prev, n = time.Time{}, 0
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{Index: ByStatus(500, 503), Oldest: true}) {
		require.NoError(t, err)
		require.False(t, m.Time.Before(prev), "oldest first")
		prev = m.Time
		n++
	}
	require.Equal(t, want, n)

	// Time range and cursor paging: every record exactly once.
	from, to := t0.Add(100*time.Millisecond), t0.Add(300*time.Millisecond)
	var cur *Cursor
	got200 := map[ID]bool{}
	for {
		page := 0
		for m, err := range db.tn("acme").Scan(bg, ScanOptions{From: from, To: to, After: cur}) {
			require.NoError(t, err)
			require.False(t, got200[m.ID], "repeated")
			got200[m.ID] = true
			cur = &Cursor{Time: m.Time, ID: m.ID}
			page++
			if page == 37 {
				break
			}
		}
		if page < 37 {
			break
		}
	}
	require.Len(t, got200, 200)

	// Other tenants see nothing.
	n, err = db.tn("globex").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = db.tn("globex").Get(bg, ids[0], PartLog)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestReopenAndReindexEqualsLive(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	recs := genRecords(rand.New(rand.NewSource(2)), 300, t0)
	ids, err := db.tn("acme").Append(bg, recs[:150])
	require.NoError(t, err)
	ids2, err := db.tn("beta").Append(bg, recs[150:])
	require.NoError(t, err)
	db.flushJournals(t) // what Close does first: journaled records into blocks
	live := dumpIndex(t, db.DB)
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	reopened := dumpIndex(t, db.DB)
	requireSameIndex(t, live, reopened, true, "reopen changes nothing but sealing")
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	requireSameIndex(t, reopened, dumpIndex(t, db.DB), false, "index rebuilt from segments equals the live index")
	got, err := db.tn("beta").Get(bg, ids2[3], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[153], ids2[3], got)
	got, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[0], ids[0], got)
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	_, err := Open(dir, &Options{})
	require.ErrorIs(t, err, ErrLocked)
}

func TestValidationIsAllOrNothing(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Limits.MaxHeaders = 4 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(3)), 10, t0)
	recs[7].RequestHeaders = append(recs[7].RequestHeaders, Header{"a", "b"}, Header{"c", "d"})
	_, err := db.tn("acme").Append(bg, recs)
	require.ErrorIs(t, err, ErrRecordTooLarge)
	require.Contains(t, err.Error(), "record 7")
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n, "nothing of the batch was written")
	bad := genRecords(rand.New(rand.NewSource(3)), 1, t0)
	bad[0].Time = time.Time{}
	_, err = db.tn("acme").Append(bg, bad)
	require.ErrorIs(t, err, ErrInvalidRecord)
	_, err = db.Tenant("../etc")
	require.ErrorIs(t, err, ErrInvalidTenant)
}

func TestConcurrentAppendAndRead(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 4 << 10 })
	defer db.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	type written struct {
		rec Record
		id  ID
	}
	var mu sync.Mutex
	var all []written
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			tenant := []string{"acme", "beta"}[w%2]
			for i := 0; i < 20; i++ {
				recs := genRecords(rng, 1+rng.Intn(10), t0.Add(time.Duration(w*1000+i)*time.Second))
				ids, err := db.tn(tenant).Append(bg, recs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for j := range recs {
					all = append(all, written{recs[j], ids[j]})
				}
				mu.Unlock()
				// Read back something already acknowledged, concurrently.
				got, err := db.tn(tenant).Get(bg, ids[0], PartAll)
				if err != nil {
					errs <- err
					return
				}
				if got.Path != recs[0].Path {
					errs <- errors.New("read back a different record")
					return
				}
			}
		}(w)
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if _, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(200)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, len(all), st.Tenants["acme"].Records+st.Tenants["beta"].Records)
	require.Less(t, st.GroupCommits, uint64(80), "concurrent appends are coalesced")
}

func TestTenantIsolationKeys(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(4)), 5, t0)
	_, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	_, err = db.tn("beta").Append(bg, recs)
	require.NoError(t, err)
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Equal(t, []string{keys.LocalURI("acme")}, st.Tenants["acme"].KeysInUse)
	require.Equal(t, []string{keys.LocalURI("beta")}, st.Tenants["beta"].KeysInUse)
	// Tenant A's key does not open tenant B's wrapped DEK.
	segs, err := db.Admin().Segments(bg, "beta")
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	r := openSegment(t, db.DB, "beta", segs[0])
	h := r.Header()
	_, err = db.local.Unwrap(bg, keys.LocalURI("acme"), h.Slot.Wrapped, keys.SegmentContext("beta", segs[0].ID))
	require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
	_, err = db.local.Unwrap(bg, keys.LocalURI("beta"), h.Slot.Wrapped, keys.SegmentContext("acme", segs[0].ID))
	require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
	require.NoError(t, r.Close())
}

func TestCleanReopenReplaysNothing(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 100, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	st, err := db.Stats(bg)
	require.NoError(t, err)
	require.Zero(t, st.BlocksReplayed)
	require.Equal(t, 100, st.Tenants["acme"].Records)
}

// TestUseAfterClose: every method of the data and operator planes returns
// ErrClosed after Close, and reads racing with Close end cleanly (Close
// waits for them) instead of reaching a closed index.
func TestUseAfterClose(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	acme := db.tn("acme")
	ids, err := acme.Append(bg, genRecords(rand.New(rand.NewSource(1)), 200, t0))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := 0
				var serr error
				for _, err := range acme.Scan(bg, ScanOptions{}) {
					if err != nil {
						serr = err
						break
					}
					n++
				}
				_, gerr := acme.Get(bg, ids[n%len(ids)], PartAll)
				if serr != nil || gerr != nil {
					if err := errors.Join(serr, gerr); !errors.Is(err, ErrClosed) {
						t.Errorf("a read racing with Close: %v", err)
					}
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, db.Close())
	wg.Wait()

	_, err = acme.Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, ErrClosed)
	_, err = acme.GetMeta(bg, ids[0])
	require.ErrorIs(t, err, ErrClosed)
	_, err = acme.Count(bg, ScanOptions{})
	require.ErrorIs(t, err, ErrClosed)
	for _, err := range acme.Scan(bg, ScanOptions{}) {
		require.ErrorIs(t, err, ErrClosed)
	}
	_, err = acme.Append(bg, genRecords(rand.New(rand.NewSource(2)), 1, t0))
	require.ErrorIs(t, err, ErrClosed)
	_, err = db.Admin().Segments(bg, "acme")
	require.ErrorIs(t, err, ErrClosed)
	_, err = db.Admin().Verify(bg, "acme")
	require.ErrorIs(t, err, ErrClosed)
	_, err = db.Stats(bg)
	require.ErrorIs(t, err, ErrClosed)

	// A Tenant that did not come from DB.Tenant fails, it does not panic.
	var zero Tenant
	_, err = zero.Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, ErrInvalidTenant)
	_, err = zero.Append(bg, nil)
	require.ErrorIs(t, err, ErrInvalidTenant)
}
