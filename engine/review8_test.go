package engine

// Review 8: attacks on redaction before sealing and on per-session
// erasure. Tests that FAIL on the current code demonstrate a bug; the
// others pin behaviour verified by the review.

import (
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/testenv"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/redact"
	"github.com/logstore/logstore/vfs"
)

// review8Luhn reports whether the digits of s pass the Luhn check.
func review8Luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// TestReview8PlaintextMetaNotScanned: Method and ResponseSource are
// plaintext metadata (readable, and Method indexed, without the tenant's
// key), but RedactRecord runs the detectors only over session, trace and
// span ids, host, route and service. A card number there reaches the disk
// in the clear, in an encrypted store. Method accepts any HTTP token, digits
// included; ResponseSource is free-form.
func TestReview8PlaintextMetaNotScanned(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(r *Record)
	}{
		{"method", func(r *Record) { r.Method = "4111111111111111" }},
		{"response_source", func(r *Record) { r.ResponseSource = "upstream card 4111111111111111" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// No compression: the plaintext metadata is as readable on disk
			// without the key as it is with a compressor's help.
			db := openTest(t, vfs.Default, dir, func(o *Options) { o.Compression = "none" })
			r := secretRecord()
			r.Payload = nil
			c.set(&r)
			ids, err := db.tn("acme").Append(bg, []Record{r})
			require.NoError(t, err)
			got, err := db.tn("acme").Get(bg, ids[0], PartLog)
			require.NoError(t, err)
			assert.NotContains(t, got.Method+" "+got.ResponseSource, "4111111111111111", "a detected card number in plaintext metadata")
			db.flushJournals(t)
			require.NoError(t, db.Close())
			require.Empty(t, testenv.FilesContaining(t, dir, "4111111111111111"), "in the clear on disk of an encrypted store")
		})
	}
}

// TestReview8EraseSessionIDMaskedByDetector: the card detector runs over
// session ids, so a numeric session id that passes the Luhn check (one in
// ten 16-digit ids) is stored as "************NNNN". `logstore erase
// --session ID` with the id the gateway issued then matches nothing and
// reports success with 0 records erased while every record of the session
// stays on disk; and distinct sessions sharing the last four digits
// collapse into one (erasing one erases the other's records).
func TestReview8EraseSessionIDMaskedByDetector(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	a := "4111111111111111"
	b := ""
	for n := 5000000000001111; b == ""; n += 10000 { // another Luhn-valid id ending 1111
		if s := fmt.Sprint(n); review8Luhn(s) {
			b = s
		}
	}
	recs := genRecords(rand.New(rand.NewSource(8)), 30, t0)
	for i := range recs {
		recs[i].SessionID = []string{a, b, "sess-x"}[i%3]
	}
	ids := appendSealed(t, db, "acme", recs, len(recs))

	rep, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: a})
	require.NoError(t, err)
	require.Equal(t, 10, rep.Erased, "erasing session %s by the id it was captured with", a)
	for i := range recs {
		_, err := db.tn("acme").Get(bg, ids[i], PartLog)
		switch recs[i].SessionID {
		case a:
			require.ErrorIs(t, err, ErrNotFound, "record of the erased session %s", a)
		default:
			require.NoError(t, err, "record of session %s survives the erase of %s", recs[i].SessionID, a)
		}
	}
}

// TestReview8PolicyLostWithManifestBeforeFirstSegment: `logstore redaction
// set` may come before the first ingest (privacy.go says so). The policy
// then lives only in the manifest; an attacker with write access to the
// data directory who deletes that one file (the index, which remembers
// the manifest's seq, is left alone) turns the tenant back to the store
// default: the next append stores what the tenant's own policy masked, and
// no write is refused (docs/format/manifest.md refuses writes only for "no
// manifest, a version-2 segment").
func TestReview8PolicyLostWithManifestBeforeFirstSegment(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	p := redact.Default()
	p.Headers = append(p.Headers, redact.Rule{Name: "x-internal-secret", Action: redact.Mask})
	require.NoError(t, db.Admin().SetRedaction(bg, "acme", p))
	mpath := db.manifestPath("acme")
	require.NoError(t, db.Close())

	require.NoError(t, os.Remove(mpath))

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	r := secretRecord()
	r.RequestHeaders = append(r.RequestHeaders, Header{"X-Internal-Secret", "tenant-secret-value-42"})
	ids, err := db.tn("acme").Append(bg, []Record{r})
	if err != nil {
		return // refused: the policy could not be weakened silently
	}
	got, err := db.tn("acme").Get(bg, ids[0], PartLog)
	require.NoError(t, err)
	for _, h := range got.RequestHeaders {
		require.NotEqual(t, "tenant-secret-value-42", h.Value, "the tenant's policy was dropped with its manifest and the append was accepted")
	}
}

// TestReview8EraseRevokedKeyFailsClosed pins: an erase on a tenant whose
// key is disabled fails and leaves every record where it was.
func TestReview8EraseRevokedKeyFailsClosed(t *testing.T) {
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: time.Minute, Now: clk.Now}
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.Now = clk.Now; o.DEKCache = &cache })
	recs := genRecords(rand.New(rand.NewSource(9)), 40, t0)
	for i := range recs {
		if i%2 == 0 {
			recs[i].SessionID = "erase-me"
		}
	}
	ids := appendSealed(t, db, "acme", recs, 20)
	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), false))
	clk.Add(2 * time.Minute)
	_, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "erase-me"})
	require.Error(t, err)
	require.NoError(t, db.Admin().SetLocalKeyEnabled(bg, keys.LocalURI("acme"), true))
	for i := range recs {
		_, err := db.tn("acme").Get(bg, ids[i], PartLog)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
}

// TestReview8EraseExactSessionAndEmpty pins: a session id that is a
// prefix of another erases only its own records; a session with no
// records erases nothing and rewrites nothing.
func TestReview8EraseExactSessionAndEmpty(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(10)), 30, t0)
	for i := range recs {
		recs[i].SessionID = []string{"s1", "s1-long", "s10"}[i%3]
	}
	ids := appendSealed(t, db, "acme", recs, 10)
	rep, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "nobody"})
	require.NoError(t, err)
	require.Equal(t, EraseReport{}, rep)
	rep, err = db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "s1"})
	require.NoError(t, err)
	require.Equal(t, 10, rep.Erased)
	for i := range recs {
		_, err := db.tn("acme").Get(bg, ids[i], PartLog)
		if recs[i].SessionID == "s1" {
			require.ErrorIs(t, err, ErrNotFound)
		} else {
			require.NoError(t, err)
		}
	}
}

// TestReview8EraseWhileReadOnlyOpen: a read-only DB opened before an erase
// keeps serving the store: after the erase, once it has caught up (a new
// read-only Open), it serves each kept record exactly once and no erased
// one.
func TestReview8EraseWhileReadOnlyOpen(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := eraseStore(t, dir)
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	n0, err := ro.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	_, err = db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "erase-me"})
	require.NoError(t, err)
	kept := 0
	for _, r := range recs {
		if r.SessionID != "erase-me" {
			kept++
		}
	}
	// The old read-only DB: it may fail a read of a removed file, but it
	// must never count a record twice.
	if n, err := ro.tn("acme").Count(bg, ScanOptions{}); err == nil {
		require.LessOrEqual(t, n, n0)
		seen := map[ID]int{}
		for m, err := range ro.tn("acme").Scan(bg, ScanOptions{}) {
			if err != nil {
				break
			}
			seen[m.ID]++
		}
		for id, c := range seen {
			require.Equal(t, 1, c, "record %s served twice by a read-only DB during an erase", id)
		}
	}
	require.NoError(t, ro.Close())
	ro = openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	defer ro.Close()
	n, err := ro.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, kept, n)
	for i, r := range recs {
		_, err := ro.tn("acme").Get(bg, ids[i], PartLog)
		if r.SessionID == "erase-me" {
			require.ErrorIs(t, err, ErrNotFound)
		} else {
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Close())
}

// review8CrashStore writes two sealed segments: the first holds records of
// session "crash-erase" (trace "trace-crash-erase") among others, the
// second none.
func review8CrashStore(t *testing.T, dir string) (*testDB, []Record, []ID) {
	t.Helper()
	db := openTest(t, vfs.Default, dir, nil)
	recs := genRecords(rand.New(rand.NewSource(11)), 400, t0)
	for i := 0; i < 200; i++ {
		if i%7 == 0 {
			recs[i].SessionID, recs[i].TraceID = "crash-erase", "trace-crash-erase"
		}
	}
	ids := appendSealed(t, db, "acme", recs, 200)
	return db, recs, ids
}

// TestReview8EraseCrashAfterCommit: an erase killed right after its commit
// (the replacement sealed, the old segment "deleting", neither indexed nor
// removed yet) is finished by the next Open: each kept record is served
// once, no erased one is, and (the erase's promise) no file of the store
// holds the erased records' plaintext metadata afterwards. The removal
// Open finishes does not compact the index as Erase does, and running the
// erase again (what the CLI's help says to do after a crash) returns
// before its compaction when there is nothing left to rewrite: the erased
// session id stays in a Pebble SST file.
func TestReview8EraseCrashAfterCommit(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := review8CrashStore(t, dir)
	ctx := bg
	tm := db.manifests.get("acme")
	var old [16]byte
	found := false
	for _, e := range tm.body.Segments {
		if e.State == segSealed && !found {
			var err error
			old, err = parseSegHex(e.ID)
			require.NoError(t, err)
			found = true
		}
	}
	require.True(t, found)
	sv, err := db.readSurvivors(ctx, "acme", old, EraseFilter{SessionID: "crash-erase"})
	require.NoError(t, err)
	require.NotZero(t, sv.erased)
	require.NotZero(t, sv.kept)
	require.NoError(t, db.control(ctx, func() error {
		ts, err := db.tenant("acme")
		require.NoError(t, err)
		uri, _, err := db.keyURIFor(ts)
		require.NoError(t, err)
		nts := &tenantState{name: "acme"}
		require.NoError(t, db.createErasing(nts, uri, old, db.opts.Now()))
		for _, kind := range []byte{kindPayload, kindLog} {
			if len(sv.entries[kind]) > 0 {
				_, err = db.writeBlocks(nts, kind, sv.entries[kind], sv.metas[kind], nil)
				require.NoError(t, err)
			}
		}
		require.NoError(t, nts.w.Seal())
		path, sums := nts.w.Path(), nts.sums
		require.NoError(t, nts.w.Close())
		return db.commitReplacement(ctx, "acme", path, sums, old) // the crash: nothing after the commit
	}))
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	require.Empty(t, db.Recovery().Damaged)
	kept := 0
	for i, r := range recs {
		_, err := db.tn("acme").Get(ctx, ids[i], PartLog)
		if r.SessionID == "crash-erase" {
			require.ErrorIs(t, err, ErrNotFound)
			continue
		}
		kept++
		require.NoError(t, err)
	}
	n, err := db.tn("acme").Count(ctx, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, kept, n, "no record lost, none doubled")
	// `logstore erase` says "Crash-safe: run it again after a crash": it
	// finds nothing left to rewrite and returns before its compaction.
	rep, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "crash-erase"})
	require.NoError(t, err)
	require.Zero(t, rep.Erased)
	require.NoError(t, db.Close())
	require.Empty(t, testenv.FilesContaining(t, dir, "crash-erase", "trace-crash-erase"), "the erased records' metadata after a crash-finished erase, run again")
}

// TestReview8EraseLeakBeforeClose: what a kill -9 right after Erase
// returns leaves on disk. Erase compacts and flushes the index itself, so
// the scan is of the live directory, not after Close.
func TestReview8EraseLeakBeforeClose(t *testing.T) {
	dir := t.TempDir()
	db, _, _ := review8CrashStore(t, dir)
	defer db.Close()
	_, err := db.tn("acme").Append(bg, []Record{{Meta: Meta{Time: t0.Add(time.Hour), SessionID: "crash-erase", TraceID: "trace-crash-erase", Method: "GET"}, Path: "/x"}})
	require.NoError(t, err) // one in the journal of the active segment
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "crash-erase"))
	rep, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "crash-erase"})
	require.NoError(t, err)
	require.NotZero(t, rep.Erased)
	require.Empty(t, testenv.FilesContaining(t, dir, "crash-erase", "trace-crash-erase"), "on disk while the store is open after Erase returned")
}

// TestReview8CallerOriginalsBypassRedaction: Append stores a caller's
// Originals as given, without the policy; under the default policy (mask:
// "original kept: no") a JSONL line or API caller that carries
// `originals` stores a card number the policy would mask anywhere else.
func TestReview8CallerOriginalsBypassRedaction(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.Plaintext, o.Compression = true, "none" })
	r := secretRecord()
	r.Originals = []Original{{Where: "request_body:$.card.pan", Value: "4111111111111111"}}
	_, err := db.tn("acme").Append(bg, []Record{r})
	require.NoError(t, err)
	db.flushJournals(t)
	require.NoError(t, db.Close())
	require.Empty(t, testenv.FilesContaining(t, dir, "4111111111111111"))
}

// TestReview8ManifestReplayRevertsPolicy: a tenant with records tightens
// its policy (one manifest write, no segment change). An attacker who kept
// a copy of the previous manifest puts it back. With the index intact the
// seq check refuses writes (pinned); with the index directory deleted too
// (it is rebuilt from the segments on Open, so deleting it is not
// damage the store reports) the old manifest is accepted and the tenant's
// appends run under the weaker policy.
func TestReview8ManifestReplayRevertsPolicy(t *testing.T) {
	// dropIndex=true (the index deleted too) is the documented limit of
	// rollback detection (docs/security.md, docs/redaction.md): the older
	// manifest is then accepted, policy included, as its key binding is.
	for _, dropIndex := range []bool{false} {
		t.Run(fmt.Sprintf("dropIndex=%v", dropIndex), func(t *testing.T) {
			dir := t.TempDir()
			db := openTest(t, vfs.Default, dir, nil)
			appendSealed(t, db, "acme", genRecords(rand.New(rand.NewSource(12)), 20, t0), 20)
			mpath := db.manifestPath("acme")
			oldManifest, err := os.ReadFile(mpath)
			require.NoError(t, err)
			p := redact.Default()
			p.Headers = append(p.Headers, redact.Rule{Name: "x-internal-secret", Action: redact.Mask})
			require.NoError(t, db.Admin().SetRedaction(bg, "acme", p))
			require.NoError(t, db.Close())

			require.NoError(t, os.WriteFile(mpath, oldManifest, 0o600))
			if dropIndex {
				require.NoError(t, os.RemoveAll(indexDirOf(dir)))
			}
			db = openTest(t, vfs.Default, dir, nil)
			defer db.Close()
			r := secretRecord()
			r.Time = t0.Add(time.Hour)
			r.RequestHeaders = append(r.RequestHeaders, Header{"X-Internal-Secret", "tenant-secret-value-42"})
			ids, err := db.tn("acme").Append(bg, []Record{r})
			if err != nil {
				return // refused
			}
			got, err := db.tn("acme").Get(bg, ids[0], PartLog)
			require.NoError(t, err)
			for _, h := range got.RequestHeaders {
				require.NotEqual(t, "tenant-secret-value-42", h.Value, "a replayed manifest silently reverted the tenant's policy")
			}
		})
	}
}

// TestReview8MetadataDetectorActionNotForcedToMask (rewritten after the
// review, as the doc now says): identifiers are not scanned for card
// numbers (a numeric session id passes the Luhn check one time in ten and
// must stay queryable and erasable), and a secret the other detectors find
// in one follows the policy's action: "seal" keeps the original sealed
// (never in plaintext), "drop" empties the field.
func TestReview8MetadataDetectorActionNotForcedToMask(t *testing.T) {
	for _, a := range []redact.Action{redact.Seal, redact.Drop} {
		t.Run(string(a), func(t *testing.T) {
			db := openTest(t, vfs.Default, t.TempDir(), nil)
			defer db.Close()
			require.NoError(t, db.Admin().SetRedaction(bg, "acme", &redact.Policy{Version: redact.Version,
				Detectors: redact.Detectors{CardNumber: a, APIKey: a}}))
			r := secretRecord()
			r.Payload, r.Attributes = nil, nil
			r.SessionID = "4111111111111111"
			r.TraceID = "AKIAIOSFODNN7EXAMPLE"
			ids, err := db.tn("acme").Append(bg, []Record{r})
			require.NoError(t, err)
			got, err := db.tn("acme").Get(bg, ids[0], PartLog)
			require.NoError(t, err)
			assert.Equal(t, "4111111111111111", got.SessionID, "identifiers are not scanned for cards")
			var sealed []string
			for _, o := range got.Originals {
				sealed = append(sealed, o.Where)
			}
			if a == redact.Seal {
				assert.Equal(t, redact.Masked, got.TraceID)
				assert.Contains(t, sealed, "trace_id", "the original is kept sealed")
			} else {
				assert.Empty(t, got.TraceID)
				assert.NotContains(t, sealed, "trace_id")
			}
		})
	}
}

// TestReview8ReadOnlyOpenedMidErase: a read-only DB opened while an erase
// has its replacement listed "erasing" (written, not committed) must not
// roll the erase back (it may not write) nor count the replacement's
// records beside the originals'.
func TestReview8ReadOnlyOpenedMidErase(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := review8CrashStore(t, dir)
	defer db.Close()
	ctx := bg
	var old [16]byte
	for _, e := range db.manifests.get("acme").body.Segments {
		if e.State == segSealed {
			var err error
			old, err = parseSegHex(e.ID)
			require.NoError(t, err)
			break
		}
	}
	sv, err := db.readSurvivors(ctx, "acme", old, EraseFilter{SessionID: "crash-erase"})
	require.NoError(t, err)
	var path string
	var sums []*blockSummary
	require.NoError(t, db.control(ctx, func() error {
		ts, err := db.tenant("acme")
		require.NoError(t, err)
		uri, _, err := db.keyURIFor(ts)
		require.NoError(t, err)
		nts := &tenantState{name: "acme"}
		require.NoError(t, db.createErasing(nts, uri, old, db.opts.Now()))
		for _, kind := range []byte{kindPayload, kindLog} {
			if len(sv.entries[kind]) > 0 {
				_, err = db.writeBlocks(nts, kind, sv.entries[kind], sv.metas[kind], nil)
				require.NoError(t, err)
			}
		}
		require.NoError(t, nts.w.Seal())
		path, sums = nts.w.Path(), nts.sums
		return nts.w.Close()
	}))

	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	n, err := ro.tn("acme").Count(ctx, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(recs), n, "a read-only DB mid-erase counts each record once")
	for i := range recs {
		_, err := ro.tn("acme").Get(ctx, ids[i], PartLog)
		require.NoError(t, err)
	}
	require.NoError(t, ro.Close())
	_, err = os.Stat(path)
	require.NoError(t, err, "the read-only Open left the writer's replacement alone")

	// The writer commits and finishes; a read-only DB then sees the result.
	require.NoError(t, db.control(ctx, func() error {
		if err := db.commitReplacement(ctx, "acme", path, sums, old); err != nil {
			return err
		}
		return db.removeSegment("acme", old)
	}))
	ro = openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	defer ro.Close()
	n, err = ro.tn("acme").Count(ctx, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, len(recs)-sv.erased, n)
}

// TestReview8EraseConcurrentAppendsAndReads: an erase runs while another
// goroutine appends records (of the erased session and of others, sealing
// segments now and then) and a third reads. Whatever the interleaving:
// every record of the session appended before the erase began is gone;
// every record of other sessions is served exactly once; a record of the
// session appended during the erase is either served or gone, never
// twice; the store verifies clean and reopens the same.
func TestReview8EraseConcurrentAppendsAndReads(t *testing.T) {
	dir := t.TempDir()
	db, recs, ids := eraseStore(t, dir)
	ctx := bg
	type stored struct {
		r  Record
		id ID
	}
	var before []stored
	for i := range recs {
		before = append(before, stored{recs[i], ids[i]})
	}
	during := make(chan []stored, 1)
	go func() {
		var out []stored
		rng := rand.New(rand.NewSource(13))
		for b := 0; b < 20; b++ {
			batch := genRecords(rng, 20, t0.Add(5*time.Hour+time.Duration(b)*time.Second))
			for i := range batch {
				if i%2 == 0 {
					batch[i].SessionID = "erase-me"
				}
			}
			got, err := db.tn("acme").Append(ctx, batch)
			if err != nil {
				t.Errorf("append during erase: %v", err)
				break
			}
			for i := range batch {
				out = append(out, stored{batch[i], got[i]})
			}
			if b%5 == 4 {
				_ = db.control(ctx, func() error { _ = db.sealActive(db.tenants["acme"]); return nil })
			}
		}
		during <- out
	}()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for i := 0; i < 50; i++ {
			if _, err := db.tn("acme").Count(ctx, ScanOptions{}); err != nil {
				t.Errorf("count during erase: %v", err)
				return
			}
		}
	}()
	_, err := db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
	if err != nil {
		require.ErrorIs(t, err, ErrInvalidOptions, "only 'the segment changed during the erase: run it again'")
		_, err = db.Admin().Erase(ctx, "acme", EraseFilter{SessionID: "erase-me"})
		require.NoError(t, err)
	}
	added := <-during
	<-readerDone

	check := func(db *testDB) {
		t.Helper()
		served := 0
		for _, s := range before {
			_, err := db.tn("acme").Get(ctx, s.id, PartAll)
			if s.r.SessionID == "erase-me" {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			require.NoError(t, err)
			served++
		}
		for _, s := range added {
			_, err := db.tn("acme").Get(ctx, s.id, PartAll)
			if s.r.SessionID == "erase-me" && err != nil {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			require.NoError(t, err)
			served++
		}
		n, err := db.tn("acme").Count(ctx, ScanOptions{})
		require.NoError(t, err)
		require.Equal(t, served, n, "each record served once")
		seen := map[ID]bool{}
		for m, err := range db.tn("acme").Scan(ctx, ScanOptions{}) {
			require.NoError(t, err)
			require.False(t, seen[m.ID], "record %s scanned twice", m.ID)
			seen[m.ID] = true
		}
		require.Len(t, seen, served)
	}
	check(db)
	checks, err := db.Admin().Verify(ctx, "acme")
	require.NoError(t, err)
	for _, c := range checks {
		require.NoError(t, c.OpenErr, c.Path)
		require.NoError(t, c.KeyErr, c.Path)
		require.Empty(t, c.IndexProblems, c.Path)
		require.Empty(t, c.Result.Problems, c.Path)
	}
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	require.Empty(t, db.Recovery().Damaged)
	check(db)
}

// TestReview8EraseFailingLaterSegmentSkipsCompaction: Erase compacts the
// index only after every segment succeeded. When a later segment fails
// (here: a damaged block; equally a key that became unusable, a cancelled
// context, "the segment changed during the erase"), the earlier segments
// were already rewritten and their old files removed, but the erased
// records' metadata stays in the index's SST files; no error or report
// says so, and a rerun that fails the same way never compacts.
func TestReview8EraseFailingLaterSegmentSkipsCompaction(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	rng := rand.New(rand.NewSource(14))
	first := genRecords(rng, 200, t0)
	second := genRecords(rng, 200, t0.Add(time.Hour))
	for i := range first {
		if i%7 == 0 {
			first[i].SessionID, first[i].Host = "erase-me", "first-erased.example"
			second[i].SessionID, second[i].Host = "erase-me", "second-erased.example"
		}
	}
	appendSealed(t, db, "acme", first, len(first))
	appendSealed(t, db, "acme", second, len(second))
	segs := db.manifests.get("acme").body.Segments
	require.Len(t, segs, 2)
	id2, err := parseSegHex(segs[1].ID)
	require.NoError(t, err)
	// Damage the second segment: one byte in the middle of its blocks.
	p := db.segPath("acme", id2)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[len(b)/2] ^= 0xff
	require.NoError(t, os.WriteFile(p, b, 0o600))
	// Records stored before today's restart: their index entries are in
	// SST files, not only in the memtable.
	require.NoError(t, db.Close())
	db = openTest(t, vfs.Default, dir, nil)
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "first-erased.example"))

	rep, err := db.Admin().Erase(bg, "acme", EraseFilter{SessionID: "erase-me"})
	require.Error(t, err)
	require.Equal(t, 1, rep.Rewritten, "the first segment was rewritten before the failure")
	require.NoError(t, db.Close())
	require.Empty(t, testenv.FilesContaining(t, dir, "first-erased.example"),
		"the first segment's erased records after an erase that failed on a later segment")
}

// TestReview8RedactionGrowsFieldPastLimit: a mask can be longer than what
// it replaces ("Bearer 12345678" -> "Bearer [REDACTED]"), and Append
// validates the limits after redacting: a record that passes
// Record.Validate (which ingesters call to report bad input at its place)
// is then refused by Append because its redacted session id is over
// MaxFieldBytes. The redacted form should be truncated or the limit
// checked on the input.
func TestReview8RedactionGrowsFieldPastLimit(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	r := secretRecord()
	r.SessionID = strings.Repeat("Bearer 12345678 ", 64) // 1024 bytes, the default MaxFieldBytes
	require.NoError(t, r.Validate())
	_, err := db.tn("acme").Append(bg, []Record{r})
	require.NoError(t, err, "a record Validate accepts is refused by Append after redaction")
}

// TestReview8MaskedSessionIDsCollide: two distinct sessions whose ids are
// Luhn-valid numbers with the same last four digits are stored under one
// id, "************1111": queries group them together, and the only erase
// an operator can run for either (by the id `query` shows) erases both.
func TestReview8MaskedSessionIDsCollide(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(15)), 2, t0)
	recs[0].SessionID, recs[1].SessionID = "4111111111111111", "5500000000081111"
	require.True(t, review8Luhn(recs[1].SessionID))
	ids := appendSealed(t, db, "acme", recs, 2)
	a, err := db.tn("acme").GetMeta(bg, ids[0])
	require.NoError(t, err)
	b, err := db.tn("acme").GetMeta(bg, ids[1])
	require.NoError(t, err)
	require.NotEqual(t, a.SessionID, b.SessionID, "two sessions stored under one id")
}
