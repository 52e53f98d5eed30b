package engine

import (
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/vfs"
)

// Benchmarks of the object-storage path (upload.go, remote.go, bucketfs.go)
// against a real gofakes3 server on 127.0.0.1 (internal/s3test), each with
// its local-disk baseline in the same run. The server runs in this process:
// its CPU is part of what the bucket side measures.
//
// LOGSTORE_BENCH_RECORDS sets the records in BenchmarkBucketReader's data
// set (default 1,000,000; CI sets 20000).

// bucketBenchSegment is the SegmentSize of the benchmarks' writers: about
// 22,000 records of ~1 KiB (190 stored bytes each), so several segments seal.
const bucketBenchSegment = 4 << 20

// bucketBenchRecords is the size of BenchmarkBucketReader's data set.
func bucketBenchRecords(b *testing.B) int {
	s := os.Getenv("LOGSTORE_BENCH_RECORDS")
	if s == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1000 {
		b.Fatalf("LOGSTORE_BENCH_RECORDS=%q: want an integer >= 1000", s)
	}
	return n
}

// uploadAll runs upload passes until every sealed segment and the manifest
// are in the bucket.
func uploadAll(b *testing.B, db *DB) {
	var last error
	for try := 0; try < 20; try++ {
		rep, err := db.Admin().Upload(bg)
		if err == nil && rep.Pending == 0 && len(rep.Lost) == 0 {
			return
		}
		last = fmt.Errorf("%v (report %+v)", err, rep)
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("upload did not complete: %v", last)
}

// emptyBucket deletes every tenant object of bucket (the format marker
// stays).
func emptyBucket(b *testing.B, bucket objstore.Bucket) {
	l, err := bucket.List(bg, bucketTenantsDir, "")
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range l.Objects {
		if err := bucket.Delete(bg, o.Key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBucketUpload: one op appends 100,000 records of ~1 KiB in batches
// of 100 (SyncAlways, the default) to a fresh DB and seals the last segment
// (target=local: the baseline), or does the same on a DB with a bucket and
// also waits until every sealed segment, its summary file and the manifest
// are uploaded (target=bucket; the uploader runs beside the appends, as in
// production). The ratio of records/s is the cost of getting the data off
// the machine.
func BenchmarkBucketUpload(b *testing.B) {
	const batch, size, perOp = 100, 1 << 10, 100_000
	srv := s3test.StartGofakes3(b)
	recs := benchRecords(10*batch, size)
	var buckets atomic.Int64
	for _, target := range []string{"local", "bucket"} {
		b.Run("target="+target, func(b *testing.B) {
			var bucket objstore.Bucket
			if target == "bucket" {
				bucket = srv.Bucket(b, fmt.Sprintf("upload-%d", buckets.Add(1)), "bench")
			}
			b.SetBytes(perOp * size)
			b.ReportAllocs()
			var segments, objects int
			var tail time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				db := openTest(b, vfs.Default, dir, func(o *Options) {
					o.SegmentSize = bucketBenchSegment
					o.Bucket = bucket
				})
				acme := db.tn("acme")
				runtime.GC() // every op starts from the same heap
				b.StartTimer()
				for s := 0; s < perOp; s += batch {
					chunk := recs[(s/batch%10)*batch : (s/batch%10+1)*batch]
					if _, err := acme.Append(bg, chunk); err != nil {
						b.Fatal(err)
					}
				}
				db.flushJournals(b) // seal the last segment
				if bucket != nil {
					start := time.Now()
					uploadAll(b, db.DB)
					tail += time.Since(start)
				}
				b.StopTimer()
				st, err := db.Stats(bg)
				if err != nil {
					b.Fatal(err)
				}
				segments += st.Tenants["acme"].Segments
				if st.Upload != nil {
					objects += int(st.Upload.Uploaded)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				// The server keeps objects in this process's heap: emptied
				// after each op, so later ops do not run with a bigger heap
				// (rarer GCs) than earlier ones, nor target=bucket than
				// target=local.
				if bucket != nil {
					emptyBucket(b, bucket)
				}
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			if el := b.Elapsed().Seconds(); el > 0 {
				b.ReportMetric(float64(b.N*perOp)/el, "records/s")
			}
			b.ReportMetric(float64(segments)/float64(b.N), "segments/op")
			if bucket != nil {
				b.ReportMetric(float64(objects)/float64(b.N), "objects/op")
				b.ReportMetric(float64(tail.Milliseconds())/float64(b.N), "upload-tail-ms/op")
			}
		})
	}
}

// readerFixture is a bucket that one writer filled, and that writer's
// (closed) data directory: the local baseline.
type readerFixture struct {
	srv       *s3test.Server
	bucket    objstore.Bucket
	writerDir string
	ids       []ID // every record's, in append order: spread over all segments
	segments  int
}

// buildReaderFixture appends n records of ~1 KiB (times 1 ms apart) in
// batches of 1000 with SyncNever, seals, uploads everything and closes the
// writer.
func buildReaderFixture(b *testing.B, n int) *readerFixture {
	start := time.Now()
	srv := s3test.StartGofakes3(b)
	f := &readerFixture{srv: srv, bucket: srv.Bucket(b, "reader", "bench"), writerDir: b.TempDir()}
	w := openTest(b, vfs.Default, f.writerDir, func(o *Options) {
		o.Sync = SyncNever
		o.SegmentSize = bucketBenchSegment
		o.IndexInMemory = true
		o.Bucket = f.bucket
		o.UploadInterval = time.Second
	})
	const batch = 1000
	pool := benchRecords(min(n, 20_000), 1<<10)
	chunk := make([]Record, 0, batch)
	f.ids = make([]ID, 0, n)
	acme := w.tn("acme")
	for i := 0; i < n; i += batch {
		chunk = chunk[:0]
		for j := i; j < min(i+batch, n); j++ {
			r := pool[j%len(pool)]
			r.Time = t0.Add(time.Duration(j) * time.Millisecond)
			chunk = append(chunk, r)
		}
		ids, err := acme.Append(bg, chunk)
		if err != nil {
			b.Fatal(err)
		}
		f.ids = append(f.ids, ids...)
	}
	w.flushJournals(b)
	uploadAll(b, w.DB)
	st, err := w.Stats(bg)
	if err != nil {
		b.Fatal(err)
	}
	f.segments = st.Tenants["acme"].Segments
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("fixture: %d records, %d segments, %d MiB stored, %d objects uploaded (%d MiB), built in %v",
		n, f.segments, st.Tenants["acme"].StoredBytes>>20, st.Upload.Uploaded, st.Upload.Bytes>>20, time.Since(start).Round(time.Millisecond))
	return f
}

// copyDir copies the files under src to dst (the local:// keys a reader
// needs: a stateless reader's directory holds nothing else).
func copyDir(b *testing.B, src, dst string) {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		b.Fatal(err)
	}
}

// readerDir makes a fresh, empty reader directory holding only the keys.
func (f *readerFixture) readerDir(b *testing.B) string {
	dir := b.TempDir()
	copyDir(b, keysDirOf(f.writerDir), keysDirOf(dir))
	return dir
}

// open opens a reader of source "bucket" (a stateless reader in dir) or
// "local" (a read-only DB of the writer's directory).
func (f *readerFixture) open(b *testing.B, source, dir string, cache bool) *DB {
	o := &Options{ReadOnly: true, RetentionInterval: -1}
	if source == "bucket" {
		o.Bucket = f.bucket
	} else {
		dir = f.writerDir
	}
	if !cache {
		o.BlockCacheBytes = -1
		if source == "bucket" {
			o.BucketCacheBytes = 1 // smaller than any page: nothing is kept
		}
	}
	db, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// benchPage is the first page the debugger UI shows: the newest 50 records
// with status 500.
var benchPage = ScanOptions{Index: ByStatus(500), Limit: 50}

func firstPage(db *DB) error {
	n := 0
	for _, err := range db.tn("acme").Scan(bg, benchPage) {
		if err != nil {
			return err
		}
		n++
	}
	if n != benchPage.Limit {
		return fmt.Errorf("first page: %d records", n)
	}
	return nil
}

// coldQuery is what a fresh reader answers first: the count of the filter,
// then its first page.
func coldQuery(db *DB) (count time.Duration, err error) {
	start := time.Now()
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(500)})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("count: no records")
	}
	count = time.Since(start)
	return count, firstPage(db)
}

// bucketStats reads a reader's bucket counters (zero for a local reader);
// Stats itself makes no request.
func bucketStats(b *testing.B, db *DB) BucketReadStats {
	st, err := db.Stats(bg)
	if err != nil {
		b.Fatal(err)
	}
	if st.Bucket == nil {
		return BucketReadStats{}
	}
	return *st.Bucket
}

// reportLatencyMs reports the p50 and p99 of lat in milliseconds.
func reportLatencyMs(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e6, "p99-ms")
}

// BenchmarkBucketReader measures a stateless reader of a bucket that one
// writer filled with LOGSTORE_BENCH_RECORDS records, beside a read-only DB of
// the writer's own directory (source=local, the baseline) doing the same:
//
//   - op=coldstart: Open of a fresh reader, then the count of ByStatus(500)
//     and its first page of 50; ms to the open, to the count (the first
//     answer), bytes, GETs and LISTs per cold start.
//   - op=firstpage, op=get: one query at a time on a reader warmed by one
//     cold query; p50 and p99 latency and GETs per op. Get reads random ids
//     of the whole data set, with the caches (block cache, bucket page
//     cache) on or off.
//   - op=mixed/readers=N: N readers (each its own DB and directory) answer
//     a first page and a Get each per query, b.N queries in all; queries/s.
func BenchmarkBucketReader(b *testing.B) {
	f := buildReaderFixture(b, bucketBenchRecords(b))
	sources := []string{"bucket", "local"}

	// A cold start on loopback, and with 10 ms per request (a bucket in
	// another region: the round trips, not the bytes, are then the cost).
	coldstarts := []struct {
		name    string
		source  string
		latency time.Duration
	}{{"source=bucket", "bucket", 0}, {"source=bucket/latency=10ms", "bucket", 10 * time.Millisecond}, {"source=local", "local", 0}}
	for _, cs := range coldstarts {
		source := cs.source
		b.Run("op=coldstart/"+cs.name, func(b *testing.B) {
			f.srv.Faults.Set(s3test.FaultConfig{Latency: cs.latency})
			defer f.srv.Faults.Set(s3test.FaultConfig{})
			b.ReportAllocs()
			var open, first time.Duration
			var gets, lists, fetched uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := f.readerDir(b)
				b.StartTimer()
				start := time.Now()
				db := f.open(b, source, dir, true)
				opened := time.Since(start)
				count, err := coldQuery(db)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				open += opened
				first += opened + count
				s := bucketStats(b, db)
				gets += s.Gets
				lists += s.Lists
				fetched += s.BytesFetched
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(open.Microseconds())/1e3/n, "open-ms")
			b.ReportMetric(float64(first.Microseconds())/1e3/n, "first-answer-ms")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/n, "first-page-ms")
			b.ReportMetric(float64(fetched)/1e6/n, "fetched-MB")
			b.ReportMetric(float64(gets)/n, "GETs")
			b.ReportMetric(float64(lists)/n, "LISTs")
			b.ReportMetric(float64(f.segments), "segments")
		})
	}

	// warm opens a reader and answers one cold query on it.
	warm := func(b *testing.B, source string, cache bool) *DB {
		db := f.open(b, source, f.readerDir(b), cache)
		b.Cleanup(func() { db.Close() })
		if _, err := coldQuery(db); err != nil {
			b.Fatal(err)
		}
		return db
	}
	// timed runs op b.N times, timing each, and reports the latencies and
	// the GETs per op.
	timed := func(b *testing.B, db *DB, op func(i int) error) {
		lat := make([]time.Duration, 0, b.N)
		before := bucketStats(b, db)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := op(i); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		after := bucketStats(b, db)
		reportLatencyMs(b, lat)
		b.ReportMetric(float64(after.Gets-before.Gets)/float64(b.N), "GETs/op")
		b.ReportMetric(float64(after.BytesFetched-before.BytesFetched)/1e3/float64(b.N), "fetched-kB/op")
		b.ReportMetric(float64(after.CacheHits-before.CacheHits)/float64(b.N), "page-hits/op")
	}

	for _, source := range sources {
		b.Run("op=firstpage/source="+source, func(b *testing.B) {
			db := warm(b, source, true)
			timed(b, db, func(int) error { return firstPage(db) })
		})
	}

	for _, cache := range []bool{true, false} {
		for _, source := range sources {
			b.Run(fmt.Sprintf("op=get/cache=%s/source=%s", onOff(cache), source), func(b *testing.B) {
				db := warm(b, source, cache)
				acme := db.tn("acme")
				rng := rand.New(rand.NewSource(11))
				b.SetBytes(1 << 10)
				timed(b, db, func(int) error {
					_, err := acme.Get(bg, f.ids[rng.Intn(len(f.ids))], PartAll)
					return err
				})
			})
		}
	}

	for _, readers := range []int{1, 2, 4} {
		for _, source := range sources {
			b.Run(fmt.Sprintf("op=mixed/readers=%d/source=%s", readers, source), func(b *testing.B) {
				dbs := make([]*DB, readers)
				var before uint64
				for r := range dbs {
					dbs[r] = warm(b, source, true)
					before += bucketStats(b, dbs[r]).Gets
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				for r, db := range dbs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rng := rand.New(rand.NewSource(int64(r) + 1))
						acme := db.tn("acme")
						for next.Add(1) <= int64(b.N) {
							if err := firstPage(db); err != nil {
								b.Error(err)
								return
							}
							if _, err := acme.Get(bg, f.ids[rng.Intn(len(f.ids))], PartAll); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				var after uint64
				for _, db := range dbs {
					after += bucketStats(b, db).Gets
				}
				if el := b.Elapsed().Seconds(); el > 0 {
					b.ReportMetric(float64(b.N)/el, "queries/s")
				}
				b.ReportMetric(float64(after-before)/float64(b.N), "GETs/query")
			})
		}
	}
}
