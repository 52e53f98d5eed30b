package engine

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// Concurrent appends, Get, GetMeta, Scan, Count, Verify and retention of
// an unrelated expired segment: every acknowledged record is readable right
// after its acknowledgement and scans of live data never fail. Held up.
func TestReview12ConcurrentReadersAndRetention(t *testing.T) {
	now := t0.Add(48 * time.Hour)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) {
		o.BlockSize = 2 << 10
		o.Now = func() time.Time { return now }
	})
	defer db.Close()
	for i := 0; i < 5; i++ {
		_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(int64(i))), 100, t0))
		require.NoError(t, err)
		require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	}
	require.NoError(t, db.Admin().SetRetention(bg, "acme", 24*time.Hour))
	recent := t0.Add(47 * time.Hour)
	var mu sync.Mutex
	var acked []ID
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	stop := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(100 + w)))
			for i := 0; i < 60; i++ {
				ids, err := db.tn("acme").Append(bg, genRecords(rng, 1+rng.Intn(20), recent.Add(time.Duration(rng.Intn(1000))*time.Millisecond)))
				if err != nil {
					errs <- err
					return
				}
				for _, id := range ids {
					if _, err := db.tn("acme").Get(bg, id, PartAll); err != nil {
						errs <- err
						return
					}
				}
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
			}
		}(w)
	}
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(200 + r)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				n := len(acked)
				var id ID
				if n > 0 {
					id = acked[rng.Intn(n)]
				}
				mu.Unlock()
				if n > 0 {
					if _, err := db.tn("acme").GetMeta(bg, id); err != nil {
						errs <- err
						return
					}
				}
				o := ScanOptions{From: recent, Oldest: rng.Intn(2) == 0, Limit: rng.Intn(50)}
				got := 0
				for _, err := range db.tn("acme").Scan(bg, o) {
					if err != nil {
						errs <- err
						return
					}
					got++
				}
				c, err := db.tn("acme").Count(bg, ScanOptions{From: recent})
				if err == nil && c < n {
					err = fmt.Errorf("Count %d below %d acknowledged", c, n)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(r)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := db.Admin().ApplyRetention(bg); err != nil {
			errs <- err
		}
		checks, err := db.Admin().Verify(bg, "acme")
		if err != nil {
			errs <- err
		}
		for _, c := range checks {
			if len(c.IndexProblems) > 0 || c.OpenErr != nil {
				t.Errorf("verify: %+v", c)
			}
		}
	}()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
