package awskms

import (
	"testing"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/kmstest"
)

// BenchmarkUnwrap measures a DEK unwrap through the DEK cache: a hit is a
// map lookup, a miss is a Decrypt round trip to the test KMS on loopback
// through the real SDK client.
func BenchmarkUnwrap(b *testing.B) {
	s, err := kmstest.Start("us-east-1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := New(Options{LoadConfig: endpoints(map[string]*kmstest.Server{"us-east-1": s}), CallTimeout: 5 * time.Second})
	uri := "aws-kms://" + s.CreateKey()
	ec := keys.SegmentContext("acme", "s")
	dk, err := p.GenerateDataKey(bg, uri, ec)
	if err != nil {
		b.Fatal(err)
	}
	for _, cached := range []bool{true, false} {
		name := "dek=uncached"
		opts := keys.CacheOptions{MaxAge: 0}
		if cached {
			name, opts = "dek=cached", keys.DefaultCacheOptions()
		}
		b.Run(name, func(b *testing.B) {
			c := keys.NewCache(p, opts)
			if _, err := c.Unwrap(bg, uri, dk.Wrapped, ec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dek, err := c.Unwrap(bg, uri, dk.Wrapped, ec)
				if err != nil {
					b.Fatal(err)
				}
				keys.Zero(dek)
			}
		})
	}
}
