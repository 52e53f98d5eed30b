package engine

import (
	"math/rand"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// Regression tests for finding 7 of the security review (issue 10): the
// metadata Get returns, and what Verify checks, come from the authenticated
// block, not from the plaintext index.

// tamperRecord rewrites the index copy of a record's metadata, as someone
// with write access to the index (but not the key) could.
func tamperRecord(t *testing.T, db *testDB, tenant string, id ID, edit func(*Meta)) {
	t.Helper()
	m, loc := indexEntry(t, db, tenant, id)
	edit(m)
	v := appendMeta(appendLocator(nil, loc), m, kindLog)
	require.NoError(t, db.index.db.Set(recordKey(tenant, id), v, pebble.NoSync))
}

// indexEntry reads a record's index entry: its metadata and locator.
func indexEntry(t *testing.T, db *testDB, tenant string, id ID) (*Meta, locator) {
	t.Helper()
	v, closer, err := db.index.db.Get(recordKey(tenant, id))
	require.NoError(t, err)
	defer closer.Close()
	m := &Meta{}
	loc, err := decodeRecordValue(v, m)
	require.NoError(t, err)
	return m, loc
}

func otherStatus(s int) int {
	if s == 503 {
		return 200
	}
	return 503
}

func TestGetRefusesIndexMetadataTheBlockDoesNotAuthenticate(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(71)), 30, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	require.NotNil(t, recs[0].Payload)

	forged := otherStatus(recs[0].Status)
	tamperRecord(t, db, "acme", ids[0], func(m *Meta) { m.Status = forged })
	// The index copy is what GetMeta and Scan serve (documented as
	// unauthenticated) ...
	m, err := db.tn("acme").GetMeta(bg, ids[0])
	require.NoError(t, err)
	require.Equal(t, forged, m.Status)
	// ... but Get never shows it beside decrypted fields: every part,
	// the payload alone included, authenticates the request-log metadata.
	for _, parts := range []Part{PartLog, PartPayload, PartAll} {
		rec, err := db.tn("acme").Get(bg, ids[0], parts)
		require.ErrorIs(t, err, ErrIndexMismatch, "parts %d", parts)
		require.ErrorContains(t, err, "status")
		require.Nil(t, rec)
	}

	// A forged latency or route is caught the same way.
	tamperRecord(t, db, "acme", ids[1], func(m *Meta) { m.LatencyMs += 1000; m.RouteID = "forged" })
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.ErrorIs(t, err, ErrIndexMismatch)
	require.ErrorContains(t, err, "latency_ms")
	require.ErrorContains(t, err, "route_id")

	// Untouched records read back as stored.
	for i := 2; i < len(ids); i++ {
		got, err := db.tn("acme").Get(bg, ids[i], PartAll)
		require.NoError(t, err)
		requireSameRecord(t, recs[i], ids[i], got)
	}
}

// TestGetPayloadOnlyAuthenticatesTheLogMetadata: a payload-only Get returns
// the request log's metadata too, so it must be the authenticated copy even
// when the payload block holds nothing but the id and time.
func TestGetPayloadOnlyAuthenticatesTheLogMetadata(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(72)), 6, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	got, err := db.tn("acme").Get(bg, ids[3], PartPayload)
	require.NoError(t, err)
	require.Equal(t, recs[3].Status, got.Status)
	require.Equal(t, recs[3].Payload, got.Payload)
	require.Empty(t, got.Path, "the sealed log fields are not decoded for a payload-only Get")

	tamperRecord(t, db, "acme", ids[3], func(m *Meta) { m.Host = "evil.example.com" })
	_, err = db.tn("acme").Get(bg, ids[3], PartPayload)
	require.ErrorIs(t, err, ErrIndexMismatch)
	require.ErrorContains(t, err, "host")
}

func indexProblemIDs(checks []SegmentCheck) map[ID]int {
	out := map[ID]int{}
	for _, c := range checks {
		for _, p := range c.IndexProblems {
			out[p.ID]++
		}
	}
	return out
}

func TestVerifyComparesTheIndexWithTheSegments(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(73)), 60, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)

	// While appends run, the blocks written after Verify's snapshot of the
	// index are not mistaken for unindexed records.
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

	// 1. metadata edited in the index; 2. an index entry removed; 3. an
	// index entry for a record that does not exist, pointing at another
	// record; 4. a payload entry removed; 5. a payload entry pointing at
	// the log; 6. an index entry pointing into a segment that does not
	// exist; 7. a secondary (status) entry removed; 8. a stale status entry.
	tamperRecord(t, db, "acme", ids[1], func(m *Meta) { m.Status = otherStatus(m.Status) })
	require.NoError(t, db.index.db.Delete(recordKey("acme", ids[2]), pebble.NoSync))
	m4, loc4 := indexEntry(t, db, "acme", ids[4])
	ghost := ids[4]
	ghost[15] ^= 0xff
	forged := *m4
	forged.ID = ghost
	require.NoError(t, db.index.db.Set(recordKey("acme", ghost), appendMeta(appendLocator(nil, loc4), &forged, kindLog), pebble.NoSync))
	require.NotNil(t, recs[6].Payload)
	require.NoError(t, db.index.db.Delete(payloadKey("acme", ids[6]), pebble.NoSync))
	require.NotNil(t, recs[9].Payload)
	_, loc9 := indexEntry(t, db, "acme", ids[9])
	require.NoError(t, db.index.db.Set(payloadKey("acme", ids[9]), appendLocator(nil, loc9), pebble.NoSync))
	nowhere := ids[4]
	nowhere[14] ^= 0xff
	lost := *m4
	lost.ID = nowhere
	lostLoc := loc4
	lostLoc.Segment[0] ^= 0xff
	require.NoError(t, db.index.db.Set(recordKey("acme", nowhere), appendMeta(appendLocator(nil, lostLoc), &lost, kindLog), pebble.NoSync))
	m11, err := db.tn("acme").GetMeta(bg, ids[11])
	require.NoError(t, err)
	require.NoError(t, db.index.db.Delete(append(statusPrefix("acme", m11.Status), timeKey("acme", m11.Time, m11.ID)[len(tenantPrefix(keyTime, "acme")):]...), pebble.NoSync))
	m12, err := db.tn("acme").GetMeta(bg, ids[12])
	require.NoError(t, err)
	require.NoError(t, db.index.db.Set(append(statusPrefix("acme", 999), timeKey("acme", m12.Time, m12.ID)[len(tenantPrefix(keyTime, "acme")):]...), nil, pebble.NoSync))

	checks, err = db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	got := indexProblemIDs(checks)
	for _, id := range []ID{ids[1], ids[2], ghost, ids[6], ids[9], nowhere, ids[11], ids[12]} {
		require.NotZero(t, got[id], "no index problem reported for %s: %v", id, checks)
	}
	require.Len(t, got, 8, "only the tampered records are reported: %v", checks)
	for _, c := range checks {
		for _, p := range c.IndexProblems {
			require.ErrorIs(t, p.Err, ErrIndexMismatch)
		}
	}
	// The entry pointing into a missing segment is reported on a check of
	// that (missing) segment.
	var missing *SegmentCheck
	for i := range checks {
		if checks[i].OpenErr != nil {
			missing = &checks[i]
		}
	}
	require.NotNil(t, missing)
	require.Equal(t, 1, indexProblemIDs([]SegmentCheck{*missing})[nowhere])

	// Reindex rebuilds the index from the segments: clean again (the
	// ghost entries, which no segment holds, are gone with it).
	_, err = db.Admin().Reindex(bg)
	require.NoError(t, err)
	checks, err = db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	require.Len(t, checks, 1)
	require.Empty(t, checks[0].IndexProblems)
}
