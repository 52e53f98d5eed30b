package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"iter"
	"math"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/awskms"
	"github.com/logstore/logstore/keys/kmstest"
	"github.com/logstore/logstore/segment"
)

var ctx = context.Background()

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkBlock measures compress+seal and open of request-log blocks, with
// the physical floor beside them: compression alone and AES-GCM alone on the
// same bytes.
func BenchmarkBlock(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		es, raw := blockEntries(size)
		var plain []byte
		for _, e := range es {
			plain = append(plain, e.Data...)
		}
		for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecS2, segment.CodecNone} {
			b.Run(fmt.Sprintf("op=compress/codec=%s/block=%s", codec, sizeName(size)), func(b *testing.B) {
				out, _ := segment.Compress(codec, nil, plain)
				b.SetBytes(int64(raw))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					out, _ = segment.Compress(codec, out[:0], plain)
				}
			})
			for _, enc := range []bool{true, false} {
				p := segment.Params{Tenant: "bench", Codec: codec, FS: nullFS{}}
				if enc {
					p.Cipher, p.DEK, p.KeyURI, p.Wrapped = segment.CipherAES256GCM, benchDEK, "local://bench", []byte("w")
				}
				b.Run(fmt.Sprintf("op=seal/codec=%s/block=%s/enc=%s", codec, sizeName(size), onOff(enc)), func(b *testing.B) {
					w, err := segment.Create("/null", p)
					if err != nil {
						b.Fatal(err)
					}
					defer w.Close()
					b.SetBytes(int64(raw))
					b.ReportAllocs()
					for i := 0; i < b.N; i++ {
						if _, err := w.Append(es); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
		b.Run(fmt.Sprintf("op=aes-gcm-alone/block=%s", sizeName(size)), func(b *testing.B) {
			blk, _ := aes.NewCipher(benchDEK)
			g, _ := cipher.NewGCM(blk)
			nonce := make([]byte, 12)
			out := make([]byte, 0, len(plain)+16)
			b.SetBytes(int64(raw))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out = g.Seal(out[:0], nonce, plain, nil)
			}
		})
	}
}

func startKMS(b *testing.B) *kmstest.Server {
	s, err := kmstest.Start("us-east-1")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// BenchmarkAppend compares logstore (encryption on and off) with the peers on
// the same generated records.
func BenchmarkAppend(b *testing.B) {
	kms := startKMS(b)
	uri := "aws-kms://" + kms.CreateKey()
	stores := []struct {
		name string
		open func(b *testing.B, dir string, sync engine.SyncMode) Store
	}{
		{"logstore/enc=on", func(b *testing.B, dir string, sm engine.SyncMode) Store {
			db, err := engine.Open(dir, &engine.Options{Sync: sm, RetentionInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			return LogstoreStore{db}
		}},
		{"logstore/enc=off", func(b *testing.B, dir string, sm engine.SyncMode) Store {
			db, err := engine.Open(dir, &engine.Options{Sync: sm, Plaintext: true, RetentionInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			return LogstoreStore{db}
		}},
		{"peer=pebble-aead/enc=on", func(b *testing.B, dir string, _ engine.SyncMode) Store {
			p, err := OpenPebbleAEAD(dir)
			if err != nil {
				b.Fatal(err)
			}
			return p
		}},
		{"peer=kms-envelope/enc=on", func(b *testing.B, dir string, _ engine.SyncMode) Store {
			p, err := OpenPebbleAEAD(dir)
			if err != nil {
				b.Fatal(err)
			}
			p.Envelope, p.KeyURI = awskms.New(*KMSOptions(kms)), uri
			return p
		}},
	}
	for _, size := range []int{1 << 10, 16 << 10} {
		recs := NewWorkload(4, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)).Records(400, size)
		for _, batch := range []int{1, 100} {
			for _, sm := range []engine.SyncMode{engine.SyncNever, engine.SyncAlways} {
				for _, writers := range []int{1, 2} {
					for _, st := range stores {
						if st.name[:4] == "peer" && (sm == engine.SyncAlways || writers == 2) {
							continue // the peers are measured in the fast configuration only
						}
						name := fmt.Sprintf("store=%s/record=%s/batch=%d/sync=%s/writers=%d", st.name, sizeName(size), batch, sm, writers)
						b.Run(name, func(b *testing.B) {
							dir := b.TempDir()
							s := st.open(b, dir, sm)
							b.SetBytes(int64(batch * size))
							b.ReportAllocs()
							before := kms.Calls("GenerateDataKey")
							b.ResetTimer()
							var wg sync.WaitGroup
							per := (b.N + writers - 1) / writers
							for w := 0; w < writers; w++ {
								wg.Add(1)
								go func() {
									defer wg.Done()
									for i := 0; i < per; i++ {
										off := (i * batch) % (len(recs) - batch + 1)
										if err := s.Append(ctx, "bench", recs[off:off+batch]); err != nil {
											b.Error(err)
											return
										}
									}
								}()
							}
							wg.Wait()
							b.StopTimer()
							n := float64(per * writers * batch)
							b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
							b.ReportMetric(float64(kms.Calls("GenerateDataKey")-before)*10_000/n, "kms-calls/10k")
							_ = s.Close()
							b.ReportMetric(float64(dirSize(dir))/n, "disk-B/record")
						})
					}
				}
			}
		}
	}
}

// BenchmarkGet measures Get with the DEK cached, and uncached (a Decrypt
// round trip to the test KMS on loopback per read).
func BenchmarkGet(b *testing.B) {
	kms := startKMS(b)
	uri := "aws-kms://" + kms.CreateKey()
	for _, size := range []int{1 << 10, 16 << 10} {
		for _, cached := range []bool{true, false} {
			name := fmt.Sprintf("record=%s/dek=cached", sizeName(size))
			dc := keys.DefaultCacheOptions()
			if !cached {
				name, dc.MaxAge = fmt.Sprintf("record=%s/dek=uncached", sizeName(size)), 0
			}
			b.Run(name, func(b *testing.B) {
				db, err := engine.Open(b.TempDir(), &engine.Options{RetentionInterval: -1, KMS: []keys.Provider{awskms.New(*KMSOptions(kms))}, DEKCache: &dc})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Admin().LinkKey(ctx, "bench", uri); err != nil {
					b.Fatal(err)
				}
				bt := mustTenant(db, "bench")
				ids, err := bt.Append(ctx, NewWorkload(5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)).Records(2000, size))
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := bt.Get(ctx, ids[(i*7919)%len(ids)], engine.PartLog); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// queryRecords is 1,000,000 by default; LOGSTORE_BENCH_RECORDS lowers it
// (CI runs every benchmark once on a small store).
func queryRecords() int {
	if s := os.Getenv("LOGSTORE_BENCH_RECORDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 1_000_000
}

// BenchmarkQuery measures over a large store: a selective lookup (a trace
// id, one record), the first page of 100 of one session (~n/2000 records),
// a full time-range count, a residual filter (a scan of every record's
// metadata), and Open of the store (right after the ingest, then again).
func BenchmarkQuery(b *testing.B) {
	n := queryRecords()
	dir := b.TempDir()
	db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w := NewWorkload(6, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	var trace string
	bt := mustTenant(db, "bench")
	for done := 0; done < n; done += 1000 {
		recs := w.Records(min(1000, n-done), 256)
		if done == 0 {
			trace = recs[0].TraceID
		}
		if _, err := bt.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.Run(fmt.Sprintf("query=selective-trace/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := 0
			for _, err := range bt.Scan(ctx, engine.ScanOptions{Index: engine.ByTrace(trace)}) {
				if err != nil {
					b.Fatal(err)
				}
				c++
			}
			if c != 1 {
				b.Fatal(c)
			}
		}
	})
	b.Run(fmt.Sprintf("query=session-first-page/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := 0
			for _, err := range bt.Scan(ctx, engine.ScanOptions{Index: engine.BySession("sess-0042"), Limit: 100}) {
				if err != nil {
					b.Fatal(err)
				}
				c++
			}
			if c == 0 {
				b.Fatal(c)
			}
		}
	})
	b.Run(fmt.Sprintf("query=residual-latency/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := 0
			for m, err := range bt.Scan(ctx, engine.ScanOptions{}) {
				if err != nil {
					b.Fatal(err)
				}
				if m.LatencyMs > 300 {
					c++
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run(fmt.Sprintf("query=count-latency-range/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		o := engine.ScanOptions{Ranges: []engine.Range{{Field: "latency_ms", Min: math.Nextafter(300, math.Inf(1)), Max: math.Inf(1)}}}
		for i := 0; i < b.N; i++ {
			if _, err := bt.Count(ctx, o); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run(fmt.Sprintf("query=count-time-range/records=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c, err := bt.Count(ctx, engine.ScanOptions{})
			if err != nil || c != n {
				b.Fatal(err, c)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	// Open, then the first query: a count (answered by the sealed
	// segments' rollups), a session's first page (the newest segments'
	// summaries), a trace lookup (every segment's summaries).
	firsts := []struct {
		name string
		run  func(t *engine.Tenant) error
	}{
		{"open", func(t *engine.Tenant) error { _, err := t.Count(ctx, engine.ScanOptions{Limit: 1}); return err }},
		{"open+count", func(t *engine.Tenant) error { _, err := t.Count(ctx, engine.ScanOptions{}); return err }},
		{"open+session-first-page", func(t *engine.Tenant) error {
			return drain(t.Scan(ctx, engine.ScanOptions{Index: engine.BySession("sess-0042"), Limit: 100}))
		}},
		{"open+trace", func(t *engine.Tenant) error {
			return drain(t.Scan(ctx, engine.ScanOptions{Index: engine.ByTrace(trace)}))
		}},
	}
	for _, fq := range firsts {
		b.Run(fmt.Sprintf("op=%s/records=%d", fq.name, n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				db, err := engine.Open(dir, &engine.Options{Sync: engine.SyncNever, RetentionInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				if err := fq.run(mustTenant(db, "bench")); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// drain reads a scan to its end and returns its error.
func drain(seq iter.Seq2[*engine.Meta, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestRunReport(t *testing.T) {
	rep, err := Run(ctx, Options{Records: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) < 10 || len(rep.Ratios) < 5 {
		t.Fatalf("report too small: %+v", rep)
	}
	for _, r := range rep.Rows {
		if r.Group == "append" && r.RecordsPerSec <= 0 {
			t.Fatalf("row %s measured nothing", r.Name)
		}
	}
	kmsEnc := rep.row("append", "logstore enc=on kms").KMSCallsPer10k
	env := rep.row("append", "peer per-record KMS envelope").KMSCallsPer10k
	if env != 10_000 || kmsEnc <= 0 || kmsEnc > 100 {
		t.Fatalf("KMS calls per 10k: envelope %.0f (want 10000), logstore %.1f", env, kmsEnc)
	}
}

// mustTenant is the handle of a valid tenant name.
func mustTenant(db *engine.DB, name string) *engine.Tenant {
	t, err := db.Tenant(name)
	if err != nil {
		panic(err)
	}
	return t
}
