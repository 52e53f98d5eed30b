package engine

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReviewBForgedGroupFilterInSealedSegment: with write access to the
// data directory but no key, zero the group filters of a sealed segment
// (every group then says "no such value") in the index and in the summary
// file (its CRC fixed up). The anchored digest must catch it: every record
// is still found by trace id, or the lookup reports an error; never a
// silent miss.
func TestReviewBForgedGroupFilterInSealedSegment(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.BlockSize = 1 << 10 })
	recs := groupWorkload(rand.New(rand.NewSource(5)), 2000)
	var acks []acked
	for i := 0; i < len(recs); i += 100 {
		ids, err := db.tn("acme").Append(bg, recs[i:i+100])
		require.NoError(t, err)
		for j, id := range ids {
			acks = append(acks, acked{recs[i+j], id})
		}
	}
	db.flushJournals(t) // seals
	require.NoError(t, db.Close())

	forge := func(s *blockSummary) bool {
		if s.group == nil {
			return false
		}
		for i := range s.group.words {
			s.group.words[i] = 0
		}
		return true
	}
	// The index.
	x, err := openIndex(dir, Options{})
	require.NoError(t, err)
	p := tenantPrefix(keyBlock, "acme")
	b := x.newBatch()
	forged := 0
	require.NoError(t, x.scanPrefix(p, func(k, v []byte) error {
		seg, seq, err := parseBlockKey(k, len(p))
		require.NoError(t, err)
		s, err := decodeSummary(seg, seq, v)
		require.NoError(t, err)
		if forge(s) {
			forged++
			return b.set(append([]byte(nil), k...), appendSummary(nil, s))
		}
		return nil
	}))
	require.Positive(t, forged)
	require.NoError(t, x.commit(b))
	b.close()
	require.NoError(t, x.close())
	// The summary files.
	files, err := filepath.Glob(filepath.Join(dir, "segments", "acme", "*"+summaryExt))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		seg, err := parseSegHex(strings.TrimSuffix(filepath.Base(f), summaryExt))
		require.NoError(t, err)
		sums, err := decodeSummaryFile(seg, raw)
		require.NoError(t, err)
		for _, s := range sums {
			forge(s)
		}
		require.NoError(t, os.WriteFile(f, encodeSummaryFile(seg, sums), 0o600))
	}

	for _, readOnly := range []bool{false, true} {
		db := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = readOnly })
		tn := db.tn("acme")
		silent := 0
		for _, a := range acks {
			found, failed := false, false
			for m, err := range tn.Scan(bg, ScanOptions{Index: ByTrace(a.rec.TraceID)}) {
				if err != nil {
					failed = true
					break
				}
				found = found || m.ID == a.id
			}
			if !found && !failed {
				silent++
			}
		}
		require.Zero(t, silent, "read-only %v: records hidden silently by a forged group filter", readOnly)
		require.NoError(t, db.Close())
	}
}
