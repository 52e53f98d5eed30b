package engine

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"os"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// Regression tests for finding 7 of the security review (issue 10), in the
// block-summary index (issue 12): the index holds no copy of any record's
// metadata, so the metadata Get returns is the block's, which AES-GCM
// authenticates; the unauthenticated copy GetMeta and scans read is the
// block's plaintext metadata section, and Get refuses a block whose section
// was edited. Verify compares every block with its index entry.

// editSegmentStatus rewrites, in the active (unsealed) segment file at
// path, the status of request log id in its block's plaintext metadata,
// fixing every checksum: what someone with write access to the data
// directory (but not the key) can do. A compressed metadata section
// (format v3) is decompressed, edited and compressed again, and the frames
// after it move with its new length.
func editSegmentStatus(t *testing.T, path string, id ID, status int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := append([]byte(nil), b[:segment.HeaderSize]...)
	edited := false
	for off := segment.HeaderSize; off+68 <= len(b); {
		fr := b[off:]
		require.Equal(t, "LBLK", string(fr[:4]), "an unsealed segment: frames to the end")
		recs := int(binary.LittleEndian.Uint32(fr[32:]))
		metaLen := int(binary.LittleEndian.Uint32(fr[36:]))
		bodyLen := int(binary.LittleEndian.Uint32(fr[44:]))
		n := 68 + metaLen + bodyLen + 4
		sec := fr[68 : 68+metaLen]
		compressed := fr[5]&1 != 0
		raw := sec
		if compressed {
			_, k := binary.Uvarint(sec)
			dec, err := zstd.NewReader(nil)
			require.NoError(t, err)
			raw, err = dec.DecodeAll(sec[k:], nil)
			require.NoError(t, err)
			dec.Close()
		}
		here := false
		for j, p := 0, 0; j < recs; j++ {
			l, k := binary.Uvarint(raw[p:])
			m := raw[p+k : p+k+int(l)]
			if m[1] == kindLog && bytes.Equal(m[2:18], id[:]) {
				binary.LittleEndian.PutUint16(m[27:], uint16(status))
				here = true
			}
			p += k + int(l)
		}
		if !here { // other frames stay byte for byte
			out = append(out, fr[:n]...)
			off += n
			continue
		}
		edited = true
		if compressed {
			enc, err := zstd.NewWriter(nil)
			require.NoError(t, err)
			sec = binary.AppendUvarint(nil, uint64(len(raw)))
			sec = enc.EncodeAll(raw, sec)
		}
		frame := append(append(append([]byte(nil), fr[:68]...), sec...), fr[68+metaLen:n-4]...)
		binary.LittleEndian.PutUint32(frame[36:], uint32(len(sec)))
		binary.LittleEndian.PutUint32(frame[64:], atkCRC(frame[:64]))
		frame = binary.LittleEndian.AppendUint32(frame, atkCRC(frame))
		out = append(out, frame...)
		off += n
	}
	require.True(t, edited, "record %s not found in %s", id, path)
	require.NoError(t, os.WriteFile(path, out, 0o600))
}

func TestGetRefusesMetadataTheBlockDoesNotAuthenticate(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.NoJournal = true })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(71)), 30, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	// The last record is in the file's last block: its metadata section
	// can change length (compressed again) without moving another block.
	i := len(ids) - 1
	seg := db.segFilesOf(t, "acme")[0]

	forged := otherStatus(recs[i].Status)
	editSegmentStatus(t, seg, ids[i], forged)
	// The plaintext section no longer hashes to what was indexed: GetMeta
	// and Scan refuse the block (the scan serves the other blocks and
	// reports it) ...
	_, err = db.tn("acme").GetMeta(bg, ids[i])
	require.ErrorIs(t, err, ErrIndexMismatch)
	n := 0
	var scanErr error
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
		if err != nil {
			scanErr = err
			break
		}
		require.NotEqual(t, ids[i], m.ID)
		n++
	}
	require.ErrorIs(t, scanErr, ErrIndexMismatch)
	require.Less(t, n, len(ids))
	// ... and Get never shows it beside decrypted fields: every part, the
	// payload alone included, authenticates the request log's block.
	for _, parts := range []Part{PartLog, PartPayload, PartAll} {
		rec, err := db.tn("acme").Get(bg, ids[i], parts)
		require.ErrorIs(t, err, segment.ErrAuth, "parts %d", parts)
		require.Nil(t, rec)
	}
	// Verify reports the block (its authentication fails).
	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	require.NotEmpty(t, checks[0].Result.Problems)
}

func otherStatus(s int) int {
	if s == 503 {
		return 200
	}
	return 503
}

// segFilesOf lists tenant's segment files.
func (db *testDB) segFilesOf(t *testing.T, tenant string) []string {
	t.Helper()
	ids, err := db.listSegmentFiles(tenant)
	require.NoError(t, err)
	var out []string
	for _, id := range ids {
		out = append(out, db.segPath(tenant, id))
	}
	return out
}

// summaryOf returns the index key and summary of the request-log block
// holding record id.
func summaryOf(t *testing.T, db *testDB, tenant string, id ID, kind byte) ([]byte, *blockSummary) {
	t.Helper()
	cands, _, err := db.catalog.find(tenant, id, kind)
	require.NoError(t, err)
	require.NotEmpty(t, cands)
	s := cands[0].sum
	return blockKey(tenant, s.seg, s.seq), s
}

// setSummary writes s as the index entry k, as someone who can write the
// index could, and drops the catalog (as a reopen would).
func setSummary(t *testing.T, db *testDB, k []byte, s *blockSummary) {
	t.Helper()
	require.NoError(t, db.index.db.Set(k, appendSummary(nil, s), pebble.NoSync))
	db.catalog.reset()
}

func problemBlocks(checks []SegmentCheck) map[int]int {
	out := map[int]int{}
	for _, c := range checks {
		for _, p := range c.IndexProblems {
			out[p.Block]++
		}
	}
	return out
}

func TestVerifyComparesTheIndexWithTheSegments(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 4 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(73)), 120, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)

	// While appends run, the blocks written after Verify's snapshot of the
	// index are not mistaken for unindexed ones.
	done := make(chan error)
	go func() {
		rng := rand.New(rand.NewSource(74))
		for i := 0; i < 40; i++ {
			if _, err := db.tn("beta").Append(bg, genRecords(rng, 20, t0)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 5; i++ {
		checks, err := db.Admin().Verify(bg, "beta")
		require.NoError(t, err)
		for _, c := range checks {
			require.Empty(t, c.IndexProblems, "pass %d", i)
		}
	}
	require.NoError(t, <-done)

	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	require.Len(t, checks, 1)
	require.NoError(t, checks[0].KeyErr)
	require.Empty(t, checks[0].IndexProblems)
	payloads := 0
	for _, r := range recs {
		if r.Payload != nil {
			payloads++
		}
	}
	require.Equal(t, len(recs)+payloads, checks[0].IndexChecked, "every log and payload entry compared")

	// Five blocks, five edits of their index entries: 1. a filter emptied
	// (a query would skip the block); 2. a status range narrowed; 3. an
	// entry removed; 4. an entry for a block the segment does not hold;
	// 5. an entry for a segment that does not exist.
	k1, s1 := summaryOf(t, db, "acme", ids[0], kindLog)
	e1 := *s1
	e1.bloom = bloom{k: s1.bloom.k, words: make([]uint64, len(s1.bloom.words))}
	setSummary(t, db, k1, &e1)
	last := ids[len(ids)-1]
	k2, s2 := summaryOf(t, db, "acme", last, kindLog)
	require.NotEqual(t, s1.seq, s2.seq)
	e2 := *s2
	e2.maxStatus = e2.minStatus
	setSummary(t, db, k2, &e2)
	k3, s3 := summaryOf(t, db, "acme", ids[len(ids)/2], kindLog)
	require.NotContains(t, []uint64{s1.seq, s2.seq}, s3.seq)
	require.NoError(t, db.index.db.Delete(k3, pebble.NoSync))
	ghost := *s2
	ghost.seq = 1000
	setSummary(t, db, blockKey("acme", ghost.seg, ghost.seq), &ghost)
	nowhere := *s2
	nowhere.seg[0] ^= 0xff
	setSummary(t, db, blockKey("acme", nowhere.seg, nowhere.seq), &nowhere)

	checks, err = db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	got := problemBlocks(checks)
	for _, seq := range []uint64{s1.seq, s2.seq, s3.seq, 1000} {
		require.NotZero(t, got[int(seq)], "no index problem reported for block %d: %v", seq, checks)
	}
	for _, c := range checks {
		for _, p := range c.IndexProblems {
			require.ErrorIs(t, p.Err, ErrIndexMismatch)
		}
	}
	require.Contains(t, checks[0].IndexProblems[0].Err.Error(), "filter differs")
	var missing *SegmentCheck
	for i := range checks {
		if checks[i].OpenErr != nil {
			missing = &checks[i]
		}
	}
	require.NotNil(t, missing, "the entry for a missing segment is reported on a check of that segment")
	require.ErrorIs(t, missing.OpenErr, ErrIndexMismatch)

	// Reindex rebuilds the index from the segments: clean again.
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	checks, err = db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	require.Len(t, checks, 1)
	require.Empty(t, checks[0].IndexProblems)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(recs), n)
}

// TestEditedSummaryNeverServesAnotherRecord: an index entry pointed at
// another block of the segment makes the record unreachable (ErrNotFound),
// never served from the wrong block.
func TestEditedSummaryNeverServesAnotherRecord(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.BlockSize = 4 << 10 })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(75)), 120, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	k1, s1 := summaryOf(t, db, "acme", ids[0], kindLog)
	_, s2 := summaryOf(t, db, "acme", ids[len(ids)-1], kindLog)
	e := *s1
	e.offset, e.count, e.exact = s2.offset, s2.count, s2.exact
	setSummary(t, db, blockKey("acme", s1.seg, s2.seq), &e) // s2's key, s1's filter
	require.NoError(t, db.index.db.Delete(k1, pebble.NoSync))
	db.catalog.reset()
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, ErrNotFound)
}
