package segment

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/logstore/logstore/vfs"
)

// requestLogEntries builds about size bytes of realistic request-log records
// (JSON with headers, ids and a small body), seeded and deterministic.
func requestLogEntries(size int) []Entry {
	rng := rand.New(rand.NewSource(42))
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	routes := []string{"/v1/orders", "/v1/users", "/v2/payments", "/healthz", "/v1/catalog/items"}
	var es []Entry
	total := 0
	for i := 0; total < size; i++ {
		data := fmt.Appendf(nil, `{"path":"%s/%d","query":"page=%d&sort=desc","client_ip":"10.%d.%d.%d","headers":{"user-agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36","accept":"application/json","authorization":"Bearer %016x%016x","x-request-id":"%016x"},"body":{"id":%d,"amount":%d.%02d,"currency":"EUR","items":[{"sku":"SKU-%05d","qty":%d}]}}`,
			routes[rng.Intn(len(routes))], rng.Intn(100000), rng.Intn(50), rng.Intn(256), rng.Intn(256), rng.Intn(256),
			rng.Uint64(), rng.Uint64(), rng.Uint64(), i, rng.Intn(10000), rng.Intn(100), rng.Intn(99999), 1+rng.Intn(5))
		meta := fmt.Appendf(nil, `{"id":"01J%023d","method":"%s","status":%d,"latency_ms":%d}`, i, methods[rng.Intn(4)], []int{200, 200, 201, 404, 500}[rng.Intn(5)], rng.Intn(900))
		es = append(es, Entry{Time: int64(i), Meta: meta, Data: data})
		total += len(data)
	}
	return es
}

func benchSizes() []int { return []int{4 << 10, 64 << 10, 1 << 20} }

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkBlockSeal measures compress+seal of one block into a frame, with
// encryption off beside it as the baseline.
func BenchmarkBlockSeal(b *testing.B) {
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		for _, size := range benchSizes() {
			for _, enc := range []bool{true, false} {
				name := fmt.Sprintf("codec=%s/block=%s/enc=%s", codec, sizeName(size), onOff(enc))
				b.Run(name, func(b *testing.B) {
					es := requestLogEntries(size)
					w := benchWriter(b, enc, codec)
					raw := 0
					for _, e := range es {
						raw += len(e.Data)
					}
					b.SetBytes(int64(raw))
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, _, err := w.sealBlock(&w.sealer, es, codec, w.seq); err != nil {
							b.Fatal(err)
						}
						w.seq++
					}
				})
			}
		}
	}
}

// BenchmarkBlockOpen measures read+authenticate+decrypt+decompress of a block.
func BenchmarkBlockOpen(b *testing.B) {
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		for _, size := range benchSizes() {
			for _, enc := range []bool{true, false} {
				name := fmt.Sprintf("codec=%s/block=%s/enc=%s", codec, sizeName(size), onOff(enc))
				b.Run(name, func(b *testing.B) {
					es := requestLogEntries(size)
					fs := vfs.NewMem()
					c := CipherNone
					if enc {
						c = CipherAES256GCM
					}
					path := writeSeg(b, segSpec{fs: fs, codec: codec, cipher: c, blocks: [][]Entry{es}, seal: true})
					r, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
					if err != nil {
						b.Fatal(err)
					}
					if enc {
						if err := r.Unlock(testDEK); err != nil {
							b.Fatal(err)
						}
					}
					raw := 0
					for _, e := range es {
						raw += len(e.Data)
					}
					b.SetBytes(int64(raw))
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, err := r.ReadBlock(0); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func benchWriter(b *testing.B, enc bool, codec Codec) *Writer {
	p := Params{Tenant: testTenant, Codec: codec, FS: vfs.NewMem()}
	if enc {
		p.Cipher, p.DEK, p.KeyURI, p.Wrapped = CipherAES256GCM, testDEK, testURI, testWrap
	}
	w, err := Create("/bench.lss", p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close() })
	return w
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
