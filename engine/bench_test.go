package engine

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstore/logstore/redact"
	"github.com/logstore/logstore/vfs"
)

// benchRecords returns n realistic request logs of about size bytes each
// (sealed part): JSON-ish headers with ids, tokens and cookies, seeded.
func benchRecords(n, size int) []Record {
	rng := rand.New(rand.NewSource(7))
	recs := genRecords(rng, n, t0)
	agents := []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		"curl/8.5.0", "okhttp/4.12.0", "python-requests/2.31.0"}
	for i := range recs {
		r := &recs[i]
		r.Payload = nil
		r.RequestHeaders = []Header{{"user-agent", agents[rng.Intn(len(agents))]}, {"accept", "application/json"},
			{"authorization", fmt.Sprintf("Bearer eyJhbGciOiJSUzI1NiJ9.%016x%016x", rng.Uint64(), rng.Uint64())},
			{"x-request-id", fmt.Sprintf("%016x-%08x", rng.Uint64(), rng.Uint32())}}
		r.ResponseHeaders = []Header{{"content-type", "application/json; charset=utf-8"}, {"cache-control", "no-store"},
			{"x-kong-upstream-latency", fmt.Sprint(rng.Intn(900))}}
		for k := 0; estimate(r) < size; k++ {
			r.ResponseHeaders = append(r.ResponseHeaders, Header{fmt.Sprintf("x-trace-%d", k),
				fmt.Sprintf("span=%08x;sampled=%d;region=eu-west-%d;cluster=gw-%02d", rng.Uint32(), rng.Intn(2), 1+rng.Intn(3), rng.Intn(40))})
		}
	}
	return recs
}

func estimate(r *Record) int {
	n := len(r.Path) + len(r.Query) + len(r.ClientIP) + len(r.ConsumerID) + 64
	for _, h := range r.RequestHeaders {
		n += len(h.Name) + len(h.Value) + 2
	}
	for _, h := range r.ResponseHeaders {
		n += len(h.Name) + len(h.Value) + 2
	}
	return n
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// BenchmarkAppend measures engine append throughput with encryption on and
// off side by side (off is the plaintext baseline: the ratio is the cost of
// encryption).
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		for _, batch := range []int{1, 100} {
			for _, sm := range []SyncMode{SyncNever, SyncAlways} {
				for _, writers := range []int{1, 2} {
					for _, enc := range []bool{true, false} {
						name := fmt.Sprintf("record=%dKiB/batch=%d/sync=%s/writers=%d/enc=%s", size>>10, batch, sm, writers, onOff(enc))
						b.Run(name, func(b *testing.B) { benchAppend(b, size, batch, sm, writers, enc) })
					}
				}
			}
		}
	}
}

func benchAppend(b *testing.B, size, batch int, sm SyncMode, writers int, enc bool) {
	db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) { o.Sync = sm; o.Plaintext = !enc; o.IndexInMemory = false })
	defer db.Close()
	recs := benchRecords(batch*4, size)
	b.SetBytes(int64(batch * size))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + writers - 1) / writers
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			acme := db.tn("acme")
			for i := 0; i < per; i++ {
				chunk := recs[(i%4)*batch : (i%4+1)*batch]
				if _, err := acme.Append(bg, chunk); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	el := b.Elapsed().Seconds()
	if el > 0 {
		b.ReportMetric(float64(per*writers*batch)/el, "records/s")
	}
	st, _ := db.Stats(bg)
	if t := st.Tenants["acme"]; t.Records > 0 {
		b.ReportMetric(float64(t.StoredBytes)/float64(t.Records), "disk-B/record")
	}
}

// BenchmarkGet measures Get of one record with its DEK cached, beside the
// plaintext engine.
func BenchmarkGet(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		for _, enc := range []bool{true, false} {
			b.Run(fmt.Sprintf("record=%dKiB/dek=cached/enc=%s", size>>10, onOff(enc)), func(b *testing.B) {
				db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) { o.Plaintext = !enc })
				defer db.Close()
				recs := benchRecords(2000, size)
				var ids []ID
				for i := 0; i < len(recs); i += 500 {
					got, err := db.tn("acme").Append(bg, recs[i:i+500])
					if err != nil {
						b.Fatal(err)
					}
					ids = append(ids, got...)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				acme := db.tn("acme")
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if _, err := acme.Get(bg, ids[i%len(ids)], PartLog); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/get")
			})
		}
	}
}

// BenchmarkGetBlockCache measures Get of 1 KiB records from 64 KiB blocks
// read in turn (the debugger UI opening neighbouring records), with the
// block cache on and off (the baseline: every Get decrypts and decompresses
// its whole block). The data set (about 12 MiB of records) is larger than
// the default 8 MiB cache, so each pass decrypts every block once again.
func BenchmarkGetBlockCache(b *testing.B) {
	const size, n = 1 << 10, 12000
	for _, cache := range []bool{true, false} {
		b.Run(fmt.Sprintf("record=1KiB/cache=%s", onOff(cache)), func(b *testing.B) {
			db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) {
				if !cache {
					o.BlockCacheBytes = -1
				}
			})
			defer db.Close()
			recs := benchRecords(n, size)
			var ids []ID
			for i := 0; i < len(recs); i += 500 {
				got, err := db.tn("acme").Append(bg, recs[i:i+500])
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, got...)
			}
			lat := make([]time.Duration, b.N)
			acme := db.tn("acme")
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := acme.Get(bg, ids[i%len(ids)], PartLog); err != nil {
					b.Fatal(err)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			reportLatency(b, lat)
			if st, err := db.Stats(bg); err == nil && st.BlockCacheHits+st.BlockCacheMisses > 0 {
				b.ReportMetric(float64(st.BlockCacheHits)/float64(st.BlockCacheHits+st.BlockCacheMisses), "hit-ratio")
			}
		})
	}
}

// reportLatency reports the p50 and p99 of lat in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkDurableAppend measures group commit under concurrency: callers
// goroutines each append one 1 KiB record per call with SyncAlways on a
// real directory, beside the same load with SyncNever (the baseline without
// fsync). It reports records/s, the records each fsync made durable and the
// p50/p99 latency of an acknowledgement.
func BenchmarkDurableAppend(b *testing.B) {
	for _, callers := range []int{1, 8, 64, 256} {
		for _, sm := range []SyncMode{SyncAlways, SyncNever} {
			b.Run(fmt.Sprintf("callers=%d/sync=%s", callers, sm), func(b *testing.B) {
				benchDurableAppend(b, callers, sm)
			})
		}
	}
}

func benchDurableAppend(b *testing.B, callers int, sm SyncMode) {
	db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) { o.Sync = sm; o.IndexInMemory = false })
	defer db.Close()
	recs := benchRecords(256, 1<<10)
	acme := db.tn("acme")
	if _, err := acme.Append(bg, recs[:1]); err != nil { // the segment and its key exist before timing
		b.Fatal(err)
	}
	before, err := db.Stats(bg)
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(1 << 10)
	b.ReportAllocs()
	b.ResetTimer()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				start := time.Now()
				if _, err := acme.Append(bg, recs[i%len(recs):i%len(recs)+1]); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if el := b.Elapsed().Seconds(); el > 0 {
		b.ReportMetric(float64(b.N)/el, "records/s")
	}
	reportLatency(b, lat)
	after, err := db.Stats(bg)
	if err != nil {
		b.Fatal(err)
	}
	if n := after.AppendFsyncs - before.AppendFsyncs; n > 0 {
		b.ReportMetric(float64(after.AppendFsyncRecords-before.AppendFsyncRecords)/float64(n), "records/fsync")
	}
	if n := after.GroupCommits - before.GroupCommits; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "records/group")
	}
}

// BenchmarkDiskRatio measures what a store takes on disk (every file under
// its directory: segments, summaries, index, manifests, keys, audit) after
// Close, against the records' JSON, by the callers' batch size, with the
// journal (full blocks whatever the batch) and without (a block per
// Append). It reports raw/disk, the ratio the storage issue asks to be
// >= 5x at batch 1 and batch 100.
func BenchmarkDiskRatio(b *testing.B) {
	recs := benchRecords(3000, 1<<10)
	raw := 0
	for i := range recs {
		j, err := json.Marshal(&recs[i])
		if err != nil {
			b.Fatal(err)
		}
		raw += len(j)
	}
	for _, batch := range []int{1, 100} {
		for _, journal := range []bool{true, false} {
			b.Run(fmt.Sprintf("batch=%d/journal=%s", batch, onOff(journal)), func(b *testing.B) {
				b.SetBytes(int64(raw))
				b.ReportAllocs()
				var disk, segs int64
				for i := 0; i < b.N; i++ {
					dir := b.TempDir()
					db := openTest(b, vfs.Default, dir, func(o *Options) { o.Sync = SyncNever; o.NoJournal = !journal; o.IndexInMemory = false })
					acme := db.tn("acme")
					for s := 0; s < len(recs); s += batch {
						if _, err := acme.Append(bg, recs[s:min(s+batch, len(recs))]); err != nil {
							b.Fatal(err)
						}
					}
					if err := db.Close(); err != nil {
						b.Fatal(err)
					}
					disk, segs = dirBytes(b, dir)
				}
				b.ReportMetric(float64(raw)/float64(disk), "raw/disk")
				b.ReportMetric(float64(raw)/float64(segs), "raw/segments")
				b.ReportMetric(float64(disk)/float64(len(recs)), "disk-B/record")
			})
		}
	}
}

// dirBytes sums the sizes of the files under dir, and of its segment files.
func dirBytes(b *testing.B, dir string) (all, segments int64) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		all += fi.Size()
		if strings.HasSuffix(p, segmentExt) {
			segments += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return all, segments
}

// BenchmarkAppendRedaction measures appends of request logs with a 1 KiB
// JSON request body under the default redaction policy beside policy=none
// (the baseline), with bodies that hold a card number and a password
// (secrets=true: the JSON walk runs) or not (the one-pass prefilter).
func BenchmarkAppendRedaction(b *testing.B) {
	for _, secrets := range []bool{false, true} {
		for _, policy := range []string{"default", "none"} {
			b.Run(fmt.Sprintf("secrets=%v/policy=%s", secrets, policy), func(b *testing.B) {
				db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) {
					o.Sync = SyncNever
					if policy == "none" {
						o.Redaction = redact.None()
					}
				})
				defer db.Close()
				recs := benchRecords(400, 1<<10)
				for i := range recs {
					body := fmt.Sprintf(`{"order": {"id": "ord_%d", "items": [{"sku": "SKU-1", "qty": 2, "price": 10.99}]}, "note": "%s"`, i, strings.Repeat("gift wrap, deliver after 6pm; ", 28))
					if secrets {
						body += `, "payment": {"card_number": "4111111111111111", "password": "hunter2"}`
					}
					recs[i].Payload = &Payload{RequestContentType: "application/json", RequestBody: []byte(body + "}")}
				}
				b.SetBytes(int64(100 * 2 << 10))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					chunk := recs[(i%4)*100 : (i%4+1)*100]
					if _, err := db.tn("acme").Append(bg, chunk); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkErase measures erasing one session's records (1 in 10) from a
// tenant of 4 sealed segments of 5,000 records each: every segment is
// rewritten. records/s counts the records read and rewritten; the baseline
// beside it is appending the same records (what rewriting must at least
// cost).
func BenchmarkErase(b *testing.B) {
	recs := benchRecords(20000, 1<<10)
	for i := range recs {
		if i%10 == 0 {
			recs[i].SessionID = "erase-me"
		}
	}
	for _, op := range []string{"erase", "append-baseline"} {
		b.Run("op="+op, func(b *testing.B) {
			b.SetBytes(int64(len(recs) << 10))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := openTest(b, vfs.Default, b.TempDir(), func(o *Options) { o.Sync = SyncNever })
				if op == "erase" {
					for s := 0; s < 4; s++ {
						chunk := recs[s*5000 : (s+1)*5000]
						appendSealed(b, db, "acme", chunk, len(chunk))
					}
				}
				b.StartTimer()
				if op == "erase" {
					rep, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "erase-me"})
					if err != nil || rep.Erased != 2000 {
						b.Fatal(err, rep)
					}
				} else {
					for s := 0; s < 4; s++ {
						if _, err := db.tn("acme").Append(bg, recs[s*5000:(s+1)*5000]); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
