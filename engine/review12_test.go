package engine

// Review 12: the block-summary index (commit 810aed2). Each test here is a
// regression test for one finding of the review; see the report.

import (
	"errors"
	"iter"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// r12Store makes a store with one old sealed segment (records at t0) and a
// second segment (records at t0+47h), small blocks, and a clock at t0+48h.
func r12Store(t *testing.T) (*testDB, []ID, []ID) {
	now := t0.Add(48 * time.Hour)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) {
		o.BlockSize = 4 << 10
		o.Now = func() time.Time { return now }
	})
	old, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 200, t0))
	require.NoError(t, err)
	require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	recent, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(2)), 200, t0.Add(47*time.Hour)))
	require.NoError(t, err)
	return db, old, recent
}

// Finding 1: a scan running while retention removes an expired segment
// fails with ErrSegmentLoss, the sentinel of real data loss, for a deletion
// the engine itself made on schedule. (Before 810aed2 a scan read only its
// Pebble snapshot and finished.) The same holds for DeleteTenant.
func TestReview12ScanDuringRetentionReportsSegmentLoss(t *testing.T) {
	for _, op := range []string{"retention", "delete-tenant"} {
		t.Run(op, func(t *testing.T) {
			db, _, _ := r12Store(t)
			defer db.Close()
			require.NoError(t, db.Admin().SetRetention(bg, "acme", 24*time.Hour))

			next, stop := iter.Pull2(db.tn("acme").Scan(bg, ScanOptions{}))
			defer stop()
			_, err, ok := next() // reads the newest blocks only
			require.True(t, ok)
			require.NoError(t, err)

			if op == "retention" {
				rep, err := db.Admin().ApplyRetention(bg)
				require.NoError(t, err)
				require.Equal(t, 1, rep.Segments)
			} else {
				_, err := db.Admin().DeleteTenant(bg, "acme")
				require.NoError(t, err)
			}
			for {
				_, err, ok := next()
				if !ok {
					break
				}
				if err != nil {
					require.NotErrorIs(t, err, ErrSegmentLoss,
						"a scan overlapping a scheduled %s reports data loss: %v", op, err)
					break
				}
			}
		})
	}
}

// Finding 2: one refused segment (here: a sealed segment with a header bit
// flipped, which Open reports as corrupt) makes every scan that reaches
// its time range fail, for every record of the tenant, while Count answers
// from the summaries as if nothing were wrong. Before 810aed2 the refused
// segment's index entries were kept "so their records stay visible to
// queries" (recover.go syncIndex) and the other segments' records were
// always served.
func TestReview12OneRefusedSegmentBreaksTenantScans(t *testing.T) {
	f := newForgeryStore(t)
	segs := f.segFiles("acme")
	require.Len(t, segs, 2)
	// Damage the OLDER segment (records at t0); the newer one is intact.
	db := f.open()
	var older string
	for _, p := range segs {
		m := db.segInfoTime(t, "acme", p)
		if m.Equal(t0.Add(39 * time.Millisecond)) {
			older = p
		}
	}
	require.NoError(t, db.Close())
	require.NotEmpty(t, older)
	atkRewrite(t, older, func(b []byte) []byte { b[20] ^= 0x10; return b }) // as TestForgerySegmentSwaps/attack=header-bit-flip

	db = f.open()
	defer db.Close()
	requireReported(t, db, "corrupt")
	// Policy: the intact segment's records are served; the refused one is
	// left out of Scan and Count alike, and both say so in their error.
	n, countErr := db.tn("acme").Count(bg, ScanOptions{})
	require.Error(t, countErr)
	got, scanErr := 0, error(nil)
	for _, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
		if err != nil {
			scanErr = err
			break
		}
		got++
	}
	require.Error(t, scanErr, "the refused segment is reported")
	require.Contains(t, scanErr.Error(), segHex([16]byte(mustSegID(t, older))))
	require.Equal(t, n, got, "Count and Scan agree")
	require.Equal(t, 40, got, "the intact segment's records are all served")
	// A Get of a record in the intact segment works.
	last := f.ids["acme"][len(f.ids["acme"])-1]
	_, err := db.tn("acme").Get(bg, last, PartAll)
	require.NoError(t, err)
}

func mustSegID(t *testing.T, path string) [16]byte {
	id, ok := segmentIDOfPath(path)
	require.True(t, ok)
	return id
}

// segInfoTime returns the max record time the index's state records for
// the segment file at path.
func (db *DB) segInfoTime(t *testing.T, tenant, path string) time.Time {
	t.Helper()
	id, ok := segmentIDOfPath(path)
	require.True(t, ok)
	states, err := db.segmentStates(tenant)
	require.NoError(t, err)
	require.NotNil(t, states[id])
	return states[id].MaxTime
}

// Finding 3: an at-rest edit of a sealed segment's plaintext metadata (frame
// CRC fixed, size unchanged, index intact) is now what GetMeta, Scan and
// Count serve, with no error and nothing in Recovery: Open checks sealed
// segments' sizes, not digests, and the scan path reads the segment's
// metadata with no digest check. Before 810aed2 queries served the index's
// copy, which is only ever built from digest-checked segments
// (docs/security.md: "metadata is indexed without a key only from segments
// whose digest matches the manifest"). The edit also makes the record
// invisible to both ByStatus(orig) and ByStatus(299).
func TestReview12SealedSegmentEditServedByQueries(t *testing.T) {
	f := newForgeryStore(t)
	id, orig := atkEditSealedStatus(t, f.segFiles("acme")[0])
	db := f.open()
	defer db.Close()
	require.Empty(t, db.Recovery().Damaged)

	var seen *Meta
	for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
		if err != nil {
			t.Logf("scan error (fail closed would be acceptable): %v", err)
			return
		}
		if m.ID == id {
			seen = m
		}
	}
	require.NotNil(t, seen)
	inOrig, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(orig)})
	require.NoError(t, err)
	in299, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(299)})
	require.NoError(t, err)
	t.Logf("scan serves status %d (genuine %d); ByStatus(%d) count %d, ByStatus(299) count %d",
		seen.Status, orig, orig, inOrig, in299)
	require.Equal(t, orig, seen.Status, "Scan served metadata edited in a sealed segment, unreported")
}

// Finding 4: migrating a format-1 index on Open deletes every tenant's
// segment state and lets recovery index the segments again; a tenant whose
// key is unavailable at that Open is never reindexed (recoverTenant returns
// before syncIndex), so its records silently vanish: Count 0 and an empty
// Scan with no error, Get ErrNotFound instead of the key error. Without the
// migration the same tenant answers queries from its blocks' metadata
// (readers.go admit, metaOnly). It stays so until a write to the tenant or
// a reopen with the key.
func TestReview12MigrationDuringKeyOutageHidesTenant(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(5)), 50, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())

	keysDir := filepath.Join(dir, "keys")
	require.NoError(t, os.Rename(keysDir, keysDir+".away")) // the key is unavailable
	defer os.Rename(keysDir+".away", keysDir)

	// Baseline: the key outage alone keeps queries working.
	db = openTest(t, vfs.Default, dir, nil)
	require.NotEmpty(t, db.Recovery().Unverified)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 50, n)
	require.NoError(t, db.Close())

	// An index written by the previous release (one legacy entry is enough).
	atkEditIndex(t, dir, func(idx *pebble.DB) {
		require.NoError(t, idx.Set(append(tenantPrefix(keyRecord, "acme"), ids[0][:]...), []byte("legacy"), pebble.NoSync))
	})
	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	require.True(t, db.index.migrated)
	n, err = db.tn("acme").Count(bg, ScanOptions{})
	_, gerr := db.tn("acme").Get(bg, ids[1], PartLog)
	t.Logf("after migration: Count = %d, %v; Get: %v", n, err, gerr)
	require.False(t, err == nil && n == 0, "the tenant's 50 records vanished from Count without an error")
	require.NotErrorIs(t, gerr, ErrNotFound, "Get says an acknowledged record does not exist")
}

// Finding 5: one undecodable block summary stops every read of its tenant
// (each Scan, Count, Get, GetMeta, and each Append with an explicit id),
// not only reads of that block's records; and since a failed load is not
// cached, each call walks the tenant's whole prefix again.
func TestReview12OneBadSummaryStopsWholeTenant(t *testing.T) {
	f := newForgeryStore(t)
	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		p := tenantPrefix(keyBlock, "acme")
		it, err := idx.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		require.NoError(t, err)
		require.True(t, it.First())
		k := append([]byte(nil), it.Key()...)
		require.NoError(t, it.Close())
		require.NoError(t, idx.Set(k, []byte{summaryVersion, 9}, pebble.NoSync)) // one block's entry garbled
	})
	db := f.open()
	defer db.Close()
	f.requireHealthy(db, "globex")
	// Only the records of the garbled block are affected, and their Get
	// says why (ErrIndexCorrupt), never ErrNotFound.
	served, failed := 0, 0
	for _, id := range f.ids["acme"] {
		_, err := db.tn("acme").Get(bg, id, PartAll)
		if err == nil {
			served++
			continue
		}
		failed++
		require.ErrorIs(t, err, ErrIndexCorrupt)
	}
	require.Positive(t, served, "records of intact blocks are served")
	require.Less(t, failed, len(f.ids["acme"])/2)
	// Every record is still counted (the summary file stands in for the
	// index entry); a count that needed the segment's summaries reports
	// the entry it could not use.
	n, _ := db.tn("acme").Count(bg, ScanOptions{})
	require.Equal(t, len(f.ids["acme"]), n)
	_, err := db.tn("acme").Count(bg, ScanOptions{Index: ByTrace("no-such-trace")})
	require.ErrorIs(t, err, ErrIndexCorrupt, "a count says what it could not use")
}

func init() { _ = errors.Is }

// Finding 9: a truncated block summary (or an overlong varint in one) is
// reported with the decoder's bare error ("truncated"), not ErrCorrupt:
// decodeSummary returns d.err unwrapped where decodeMeta wraps it. Every
// read of the tenant then fails with an error no errors.Is sentinel names.
func TestReview12TruncatedSummaryErrorIsUntyped(t *testing.T) {
	full := appendSummary(nil, summarize(ID{}, 0, 4096, kindLog, []*Meta{{ID: ID{1}, Time: t0, Status: 200}}, nil))
	for _, b := range [][]byte{full[:1], full[:10], full[:len(full)-3], {summaryVersion, kindLog, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		_, err := decodeSummary(ID{}, 0, b)
		require.Error(t, err)
		require.ErrorIs(t, err, ErrCorrupt, "decodeSummary(%x): %v", b, err)
	}
	f := newForgeryStore(t)
	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		p := tenantPrefix(keyBlock, "acme")
		it, err := idx.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		require.NoError(t, err)
		require.True(t, it.First())
		k, v := append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)
		require.NoError(t, it.Close())
		require.NoError(t, idx.Set(k, v[:len(v)-3], pebble.NoSync))
	})
	db := f.open()
	defer db.Close()
	_, err := db.tn("acme").Count(bg, ScanOptions{Index: ByTrace("no-such-trace")})
	require.Error(t, err)
	require.ErrorIs(t, err, ErrCorrupt, "%v", err)
}

// TestSealedMetadataEditRefusedWithEveryCopyRewritten: the attacker edits a
// sealed segment's plaintext metadata (CRC fixed) and rewrites every copy
// of its summaries to match (the index's entries and the summary file).
// The manifest's summary digest, under the tenant's key, still names the
// genuine summaries: queries refuse the segment, in a writer's Open and in
// a read-only one.
func TestSealedMetadataEditRefusedWithEveryCopyRewritten(t *testing.T) {
	f := newForgeryStore(t)
	path := f.segFiles("acme")[0]
	id, _ := atkEditSealedStatus(t, path)
	r, err := segment.Open(path, &segment.ReadOptions{})
	require.NoError(t, err)
	sums, err := summarizeSegment(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	seg, ok := segmentIDOfPath(path)
	require.True(t, ok)
	require.NoError(t, os.WriteFile(summaryPathOf(path), encodeSummaryFile(seg, sums), 0o600))
	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		for _, s := range sums {
			require.NoError(t, idx.Set(blockKey("acme", seg, s.seq), appendSummary(nil, s), pebble.NoSync))
		}
	})
	for _, readOnly := range []bool{false, true} {
		db, err := Open(f.dir, &Options{ReadOnly: readOnly, RetentionInterval: -1})
		require.NoError(t, err)
		var scanErr error
		for m, err := range db.tn("acme").Scan(bg, ScanOptions{}) {
			if err != nil {
				scanErr = err
				break
			}
			require.NotEqual(t, 299, m.Status, "read-only %v: edited metadata served", readOnly)
			require.NotEqual(t, id, m.ID)
		}
		require.ErrorIs(t, scanErr, ErrSegmentTampered, "read-only %v", readOnly)
		n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(299)})
		require.ErrorIs(t, err, ErrSegmentTampered)
		require.Zero(t, n)
		f.requireHealthyReads(t, db, "globex")
		require.NoError(t, db.Close())
	}
}

// requireHealthyReads checks every record of tenant reads back (no write:
// the DB may be read-only).
func (f *forgeryStore) requireHealthyReads(t *testing.T, db *DB, tenant string) {
	t.Helper()
	for i, id := range f.ids[tenant] {
		got, err := db.tn(tenant).Get(bg, id, PartAll)
		require.NoError(t, err, "tenant %s record %d", tenant, i)
		requireSameRecord(t, f.rec[tenant][i], id, got)
	}
}
