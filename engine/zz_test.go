package engine

import (
	"math/rand"
	"testing"
	"fmt"
	"github.com/logstore/logstore/vfs"
)

func TestZZCands(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.Sync = SyncNever })
	defer db.Close()
	rng := rand.New(rand.NewSource(1))
	var trace string
	for i := 0; i < 300; i++ {
		recs := genRecords(rng, 1000, t0)
		for j := range recs {
			recs[j].TraceID = fmt.Sprintf("%032x", rng.Uint64())
			recs[j].Payload = nil
		}
		if i == 50 { trace = recs[3].TraceID }
		_, err := db.tn("acme").Append(bg, recs)
		if err != nil { t.Fatal(err) }
	}
	db.flushJournals(t)
	segs, _, _ := db.catalog.snapshot("acme")
	o := ScanOptions{Index: ByTrace(trace)}
	b := newScanBounds(&o)
	nb := 0
	for _, s := range segs { nb += len(s.blocks) }
	c := b.candidates(segs)
	t.Logf("blocks %d candidates %d", nb, len(c))
	ents := 0
	for _, s := range segs { for _, bl := range s.blocks { ents += len(bl.bloom.words)*64/10 } }
	t.Logf("bloom entries/block %d", ents/nb)
}
