package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/logstore/logstore/vfs"
)

// BenchmarkFollowWriter: appends of 100 records of ~1 KiB on the writer DB,
// alone (baseline) and with a follow on the same DB that must have yielded
// each batch before the next op (the follow's cost per record is the
// difference, with its wake-up latency).
func BenchmarkFollowWriter(b *testing.B) {
	const batch, size = 100, 1024
	recs := benchRecords(batch, size)
	for _, follow := range []bool{false, true} {
		b.Run(fmt.Sprintf("follow=%s", onOff(follow)), func(b *testing.B) {
			db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) { o.Sync = SyncNever })
			defer db.Close()
			acme := db.tn("acme")
			got := make(chan int, 1024)
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			if follow {
				started := make(chan struct{})
				go func() {
					for _, err := range acme.Follow(ctx, FollowOptions{Started: func() { close(started) }}) {
						if err == nil {
							got <- 1
						}
					}
				}()
				<-started
			}
			b.SetBytes(int64(batch * size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := acme.Append(bg, recs); err != nil {
					b.Fatal(err)
				}
				for n := 0; follow && n < batch; n++ {
					<-got
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
		})
	}
}

// BenchmarkFollowReadOnlyTick: one tick of a follow on a read-only DB
// (Refresh, then the new blocks) beside a writer with sealed segments and
// an active one of about 4 MiB, with nothing new (the idle cost paid every
// Interval) and with a 100-record batch new.
func BenchmarkFollowReadOnlyTick(b *testing.B) {
	const size = 1024
	dir := b.TempDir()
	w := openTest(b, vfs.Default, dir, func(o *Options) { o.Sync = SyncNever; o.SegmentSize = 8 << 20 })
	defer w.Close()
	acme := w.tn("acme")
	recs := benchRecords(1000, size)
	for i := 0; i < 20; i++ { // ~20 MiB: sealed segments and an active one
		if _, err := acme.Append(bg, recs); err != nil {
			b.Fatal(err)
		}
	}
	ro, err := Open(dir, &Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	for _, fresh := range []int{0, 100} {
		b.Run(fmt.Sprintf("new=%d", fresh), func(b *testing.B) {
			f := &follower{db: ro, tenant: "acme", segs: map[[16]byte]*followSeg{}, skip: map[ID][16]byte{}}
			so := ScanOptions{}
			f.bounds = newScanBounds(&so)
			f.keep = f.bounds.keepFor()
			if err := ro.Refresh(bg); err != nil {
				b.Fatal(err)
			}
			if err := f.baseline(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			start := time.Now()
			var appendTime time.Duration
			for b.Loop() {
				if fresh > 0 {
					t := time.Now()
					if _, err := acme.Append(bg, recs[:fresh]); err != nil {
						b.Fatal(err)
					}
					appendTime += time.Since(t)
				}
				if err := ro.Refresh(bg); err != nil {
					b.Fatal(err)
				}
				metas, err := f.tick()
				if err != nil || len(metas) != fresh {
					b.Fatalf("tick: %d records, %v", len(metas), err)
				}
			}
			b.ReportMetric(float64((time.Since(start)-appendTime).Nanoseconds())/float64(b.N), "ns/tick")
		})
	}
}
