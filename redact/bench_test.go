package redact

import (
	"fmt"
	"strings"
	"testing"
)

// benchBody is a JSON body of about size bytes, with a password field and
// a card number when secrets is set.
func benchBody(size int, secrets bool) []byte {
	var b strings.Builder
	b.WriteString(`{"order": {"id": "ord_8f2a", "items": [`)
	for i := 0; b.Len() < size-200; i++ {
		fmt.Fprintf(&b, `{"sku": "SKU-%05d", "qty": %d, "price": %d.99, "note": "gift wrap please, deliver after 6pm"},`, i, i%5+1, i%90+10)
	}
	b.WriteString(`{"sku": "last", "qty": 1}]}`)
	if secrets {
		b.WriteString(`, "payment": {"card_number": "4111111111111111", "password": "hunter2"}`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

// BenchmarkBody measures redacting request bodies under the default
// policy beside policy=none (the baseline: what an ingest without
// redaction pays, a length check).
func BenchmarkBody(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, secrets := range []bool{false, true} {
			for _, policy := range []string{"default", "none"} {
				p := Default()
				if policy == "none" {
					p = None()
				}
				r, err := p.Compile()
				if err != nil {
					b.Fatal(err)
				}
				body := benchBody(size, secrets)
				name := fmt.Sprintf("size=%dKiB/secrets=%v/policy=%s", size>>10, secrets, policy)
				b.Run(name, func(b *testing.B) {
					b.SetBytes(int64(len(body)))
					b.ReportAllocs()
					for i := 0; i < b.N; i++ {
						r.Body("request_body", "application/json", body, func(Finding) {})
					}
				})
			}
		}
	}
}

// BenchmarkHeaders measures one request's headers through Header.
func BenchmarkHeaders(b *testing.B) {
	hs := [][2]string{{"Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}, {"Accept", "application/json"},
		{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
		{"X-Request-Id", "0f8e2d1c-44a1-4b7e-9d1f-2c3b4a5d6e7f"}, {"Content-Type", "application/json; charset=utf-8"}}
	n := 0
	for _, h := range hs {
		n += len(h[0]) + len(h[1])
	}
	for _, policy := range []string{"default", "none"} {
		p := Default()
		if policy == "none" {
			p = None()
		}
		r, _ := p.Compile()
		b.Run("policy="+policy, func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, h := range hs {
					r.Header("request_header", h[0], h[1], func(Finding) {})
				}
			}
		})
	}
}
