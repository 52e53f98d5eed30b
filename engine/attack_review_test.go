package engine

// The attack suite of the security review: an attacker with WRITE access to
// the data directory but no key (KMS key, or a local key file in DIR/keys
// treated like one). Each TestAttack* asserts the secure behaviour; the
// first group failed on the reviewed code (each was fixed and is now a
// regression test), the second was refused from the start.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// ---------------------------------------------------------------------------
// Attacker tools: nothing here uses a key of the store.

const atkKey = "local://mallory"

// atkPlantKey creates a local master key the attacker knows (in a scratch
// directory) and plants its file in DIR/keys, as manifest.md's "a local key
// file they planted" attacker does. It returns the attacker's own provider
// holding the same key.
func atkPlantKey(t *testing.T, dir, name string) *keys.Local {
	t.Helper()
	scratch := t.TempDir()
	l, err := keys.NewLocal(keys.LocalOptions{Dir: scratch})
	require.NoError(t, err)
	require.NoError(t, l.Create(keys.LocalURI(name)))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "keys"), 0o700))
	copyFile(t, filepath.Join(scratch, name+".key"), filepath.Join(dir, "keys", name+".key"))
	return l
}

// atkEditIndex opens the (closed) store's Pebble index directly, as anyone
// who can write DIR/index can, and applies f.
func atkEditIndex(t *testing.T, dir string, f func(idx *pebble.DB)) {
	t.Helper()
	idx, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{Logger: quietLogger{}, DisableWAL: true})
	require.NoError(t, err)
	f(idx)
	require.NoError(t, idx.Flush())
	require.NoError(t, idx.Close())
}

func atkCRC(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func atkFixPreambleCRC(b []byte) {
	binary.LittleEndian.PutUint32(b[1020:], atkCRC(b[:1020]))
}

// atkSetSlotURI rewrites the key URI of key slot i (keeping generation and
// wrapped DEK) and fixes the slot CRC: the v2 slot MAC is then wrong, but
// nothing checks it until a DEK is used.
func atkSetSlotURI(t *testing.T, b []byte, i int, uri string) {
	t.Helper()
	s := b[1024+i*1024 : 2048+i*1024]
	require.Equal(t, "KSLT", string(s[:4]))
	ul, wl := int(binary.LittleEndian.Uint16(s[12:])), int(binary.LittleEndian.Uint16(s[14:]))
	wrapped := append([]byte(nil), s[16+ul:16+ul+wl]...)
	for j := 12; j < 988; j++ {
		s[j] = 0
	}
	binary.LittleEndian.PutUint16(s[12:], uint16(len(uri)))
	binary.LittleEndian.PutUint16(s[14:], uint16(wl))
	copy(s[16:], uri)
	copy(s[16+len(uri):], wrapped)
	fixSlotCRC(b, i)
}

func atkRewrite(t *testing.T, path string, f func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, f(b), 0o600))
}

// atkEditSealedStatus sets the status of the first request-log record of the
// segment at path to 299 in the block's plaintext metadata section and fixes
// the frame CRC (the AAD, which the attacker cannot fix, now fails). It
// returns the record's id and its genuine status.
func atkEditSealedStatus(t *testing.T, path string) (ID, int) {
	t.Helper()
	r, err := segment.Open(path, &segment.ReadOptions{})
	require.NoError(t, err)
	defer r.Close()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i, bi := range r.Blocks() {
		blk, err := r.ReadMeta(i)
		require.NoError(t, err)
		for _, m := range blk.Meta {
			if m[1] != kindLog {
				continue
			}
			var id ID
			copy(id[:], m[2:18])
			orig := int(binary.LittleEndian.Uint16(m[27:]))
			frame := b[bi.Offset : bi.Offset+bi.Length]
			at := strings.Index(string(frame), string(id[:]))
			require.Greater(t, at, 68)
			binary.LittleEndian.PutUint16(frame[at-2+27:], 299)
			end := len(frame) - 4
			binary.LittleEndian.PutUint32(frame[end:], atkCRC(frame[:end]))
			require.NoError(t, os.WriteFile(path, b, 0o600))
			return id, orig
		}
	}
	t.Fatal("no request-log record found")
	return ID{}, 0
}

func atkForgeManifest(t *testing.T, path string, body *manifestBody, mk []byte) {
	t.Helper()
	raw, err := encodeManifest(body, mk)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, raw, 0o600))
}

func atkReadManifestBody(t *testing.T, path, tenant string) manifestBody {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	p, err := decodeManifest(raw, tenant) // plaintext JSON: no key needed
	require.NoError(t, err)
	return p.body
}

// activeKeyURI is the key the writer wraps tenant's active segment under.
func activeKeyURI(t *testing.T, db *DB, tenant string) string {
	var uri string
	require.NoError(t, db.control(bg, func() error {
		if ts := db.tenants[tenant]; ts != nil {
			uri = ts.keyURI
		}
		return nil
	}))
	return uri
}

func someRecords(seed int64, n int) []Record {
	return genRecords(mrand.New(mrand.NewSource(seed)), n, t0)
}

// ---------------------------------------------------------------------------
// HOLES the review found (failed on the reviewed code; regression tests now).

// TestAttackIndexEditChangesGetMetadata (REFUSED since 615fd2d): the
// attacker rewrites one record's value in the Pebble index (no key needed) to
// claim status 299 and another host. Get must either refuse or return exactly
// what was stored (it now compares with the block's authenticated copy).
func TestAttackIndexEditChangesGetMetadata(t *testing.T) {
	f := newForgeryStore(t)
	id, want := f.ids["acme"][1], f.rec["acme"][1]
	// The index holds no copy of a record's metadata (issue 12): the
	// closest edit is to widen the block's status range and point its
	// entry at another block. Get must serve the genuine record or
	// nothing.
	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		p := tenantPrefix(keyBlock, "acme")
		it, err := idx.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		require.NoError(t, err)
		for it.First(); it.Valid(); it.Next() {
			seg, seq, err := parseBlockKey(it.Key(), len(p))
			require.NoError(t, err)
			s, err := decodeSummary(seg, seq, it.Value())
			require.NoError(t, err)
			s.minStatus, s.maxStatus = 0, 999
			require.NoError(t, idx.Set(append([]byte(nil), it.Key()...), appendSummary(nil, s), pebble.NoSync))
		}
		require.NoError(t, it.Close())
	})
	db := f.open()
	defer db.Close()
	got, err := db.tn("acme").Get(bg, id, PartAll)
	if err == nil {
		requireSameRecord(t, want, id, got)
	}
}

// TestAttackMetadataEditIndexedOnOpen: edit a sealed segment's plaintext
// metadata (status -> 299, frame CRC fixed, same size) and delete the index.
// Open's catch-up replay (syncIndex) indexes sealed segments without checking
// the digest the manifest recorded, and reports nothing; docs say edited
// metadata "never reaches the index".
func TestAttackMetadataEditIndexedOnOpen(t *testing.T) {
	f := newForgeryStore(t)
	id, orig := atkEditSealedStatus(t, f.segFiles("acme")[0])
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
	db := f.open()
	defer db.Close()
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(299)})
	require.NoError(t, err)
	assert.Zero(t, n, "edited metadata reached the index; recovery: %+v", db.Recovery())
	if m, err := db.tn("acme").GetMeta(bg, id); err == nil {
		assert.Equal(t, orig, m.Status)
	}
}

// TestAttackRenamedEditedCopyIndexedByReindex: copy a genuine sealed segment
// A, edit its metadata, and store it under an unlisted name C.lss (header id
// still A). Open reports C as unlisted, but Reindex (openForIndex) checks the
// digest only of the entry named by the FILE NAME (none for C) while
// segmentAllowed checks the HEADER id (A, listed): C's forged metadata is
// indexed with locators into the genuine A, so Get authenticates A's block
// and serves the forged status. Verify also passes C.
func TestAttackRenamedEditedCopyIndexedByReindex(t *testing.T) {
	f := newForgeryStore(t)
	a := f.segFiles("acme")[0]
	tmp := filepath.Join(t.TempDir(), "copy.lss")
	copyFile(t, a, tmp)
	id, orig := atkEditSealedStatus(t, tmp)
	c := filepath.Join(f.dir, "segments", "acme", strings.Repeat("f", 32)+".lss") // sorts after A
	copyFile(t, tmp, c)

	db := f.open()
	defer db.Close()
	requireReported(t, db, "not in the tenant manifest") // Open does see it
	_, err := db.Admin().Reindex(bg)
	require.NoError(t, err)
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(299)})
	require.NoError(t, err)
	assert.Zero(t, n, "Reindex indexed an unlisted, edited file")
	if got, err := db.tn("acme").Get(bg, id, PartLog); err == nil {
		assert.Equal(t, orig, got.Status, "Get served forged metadata on an authenticated block")
	}
	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	flagged := false
	for _, ck := range checks {
		if ck.Path == c && (ck.OpenErr != nil || len(ck.Result.Problems) > 0) {
			flagged = true
		}
	}
	assert.True(t, flagged, "Verify reports the renamed, edited copy")
}

// TestAttackLegacyAdoptionSwitchesKey: delete the tenant's MANIFEST and make
// its segments look like version 1 (two bytes and the preamble CRC); the
// tenant is then "adopted" as a store from before manifests and bound to the
// key named by an unauthenticated v1 key slot, or by a 'c' record planted in
// the index, here a key the attacker planted. The index's memory of a
// manifest ('m' seq) and Options.ExpectedKey are both ignored. New records
// are then sealed under the attacker's key.
func TestAttackLegacyAdoptionSwitchesKey(t *testing.T) {
	for _, variant := range []string{"slot-uri", "index-config", "expected-key"} {
		t.Run(variant, func(t *testing.T) {
			f := newForgeryStore(t)
			atkPlantKey(t, f.dir, "mallory")
			require.NoError(t, os.Remove(f.manifest("acme")))
			for _, p := range f.segFiles("acme") {
				atkRewrite(t, p, func(b []byte) []byte {
					binary.LittleEndian.PutUint16(b[8:], 1) // "version 1"
					atkFixPreambleCRC(b)
					if variant != "index-config" {
						atkSetSlotURI(t, b, 0, atkKey) // v1 slots carry no MAC
					}
					return b
				})
			}
			if variant == "index-config" {
				atkEditIndex(t, f.dir, func(idx *pebble.DB) {
					v, _ := json.Marshal(tenantConfig{V: stateVersion, KeyURI: atkKey})
					require.NoError(t, idx.Set(tenantPrefix(keyConfig, "acme"), v, pebble.NoSync))
				})
			}
			opts := &Options{RetentionInterval: -1}
			if variant == "expected-key" {
				opts.ExpectedKey = func(tn string) string {
					if tn == "acme" {
						return "local://acme"
					}
					return ""
				}
			}
			db, err := Open(f.dir, opts)
			require.NoError(t, err)
			defer db.Close()
			_, aerr := db.tn("acme").Append(bg, someRecords(1, 2))
			uri, _ := db.Admin().KeyURI(bg, "acme")
			assert.NotEqual(t, atkKey, uri, "tenant bound to the attacker's key; recovery: %+v", db.Recovery())
			if aerr == nil {
				assert.NotEqual(t, atkKey, activeKeyURI(t, db, "acme"), "new records sealed under the attacker's key")
			}
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackForgedManifestUnderPlantedKey: manifest.md says a manifest forged
// by someone owning another key "cannot carry such a wrap, so it is refused",
// because every key wrapping a present segment must wrap the manifest key.
// But "the key wrapping a present segment" is read from the segment's key
// slot, whose MAC is not checked on Open. With the index intact:
//   - neutralize-slots: rename every slot's key URI to the attacker's key;
//   - hide-segments: rename the .lss files away and list no segment.
//
// The forged manifest (bound to the planted key, seq+1) is accepted, the
// tenant writes under the attacker's key, and (hide) its records silently
// disappear from the index.
func TestAttackForgedManifestUnderPlantedKey(t *testing.T) {
	for _, variant := range []string{"neutralize-slots", "hide-segments"} {
		t.Run(variant, func(t *testing.T) {
			f := newForgeryStore(t)
			atk := atkPlantKey(t, f.dir, "mallory")
			body := atkReadManifestBody(t, f.manifest("acme"), "acme")
			mk := make([]byte, 32)
			_, _ = rand.Read(mk)
			w, err := atk.Wrap(bg, atkKey, mk, manifestContext("acme"))
			require.NoError(t, err)
			body.Key = keyBinding{URI: atkKey}
			body.Wraps = []keyWrap{{URI: atkKey, Wrapped: w}}
			body.Seq++ // beats the index's rollback check
			switch variant {
			case "neutralize-slots":
				for i := range body.Segments {
					body.Segments[i].KeyURI = atkKey
				}
				for _, p := range f.segFiles("acme") {
					atkRewrite(t, p, func(b []byte) []byte { atkSetSlotURI(t, b, 0, atkKey); return b })
				}
			case "hide-segments":
				body.Segments = nil
				for _, p := range f.segFiles("acme") {
					require.NoError(t, os.Rename(p, p+".hidden"))
				}
			}
			atkForgeManifest(t, f.manifest("acme"), &body, mk)

			db := f.open()
			defer db.Close()
			rep := db.Recovery()
			uri, _ := db.Admin().KeyURI(bg, "acme")
			assert.NotEqual(t, atkKey, uri, "forged manifest accepted; recovery: %+v", rep)
			if _, err := db.tn("acme").Append(bg, someRecords(2, 2)); err == nil {
				assert.NotEqual(t, atkKey, activeKeyURI(t, db, "acme"), "new records sealed under the attacker's key")
			}
			if variant == "hide-segments" {
				// A Count that leaves records out must say so (its error,
				// or Open's report).
				n, err := db.tn("acme").Count(bg, ScanOptions{})
				if err == nil && n < len(f.ids["acme"]) {
					assert.NotEmpty(t, rep.Damaged, "acknowledged records vanished from the index without a report")
				}
			}
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackLiveSlotEditLeaksManifestKey: while the engine runs, the attacker
// rewrites the key URI in the ACTIVE segment's key slot on disk (the writer
// never rewrites it). At seal, recordSealed reads the slot back from disk and
// records its URI in the manifest, and commitManifest wraps the MANIFEST KEY
// under that URI: the planted key. The attacker unwraps the manifest key,
// restores the genuine slot and forges a manifest bound to their key that
// keeps every genuine wrap: it passes the MAC, the wrap check and the
// rollback check. Nothing is reported and all old data stays readable.
func TestAttackLiveSlotEditLeaksManifestKey(t *testing.T) {
	f := newForgeryStore(t)
	atk := atkPlantKey(t, f.dir, "mallory")
	db := f.open()
	_, err := db.tn("acme").Append(bg, someRecords(3, 3))
	require.NoError(t, err)
	var path string
	require.NoError(t, db.control(bg, func() error { path = db.tenants["acme"].w.Path(); return nil }))
	hdr := make([]byte, segment.HeaderSize)
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = fh.ReadAt(hdr, 0)
	require.NoError(t, err)
	genuine := append([]byte(nil), hdr[1024:2048]...)
	atkSetSlotURI(t, hdr, 0, atkKey)
	_, err = fh.WriteAt(hdr[1024:2048], 1024)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	require.NoError(t, db.Close()) // seals the active segment

	body := atkReadManifestBody(t, f.manifest("acme"), "acme")
	w := body.wrapFor(atkKey)
	assert.Nil(t, w, "the manifest key was wrapped under a key URI read from an unauthenticated key slot")
	if w == nil {
		return
	}
	mk, err := atk.Unwrap(bg, atkKey, w.Wrapped, manifestContext("acme"))
	require.NoError(t, err, "the attacker now holds the tenant's manifest key")
	fh, err = os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = fh.WriteAt(genuine, 1024) // slots are outside the digest
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	body.Key = keyBinding{URI: atkKey}
	body.Seq++
	atkForgeManifest(t, f.manifest("acme"), &body, mk)

	db = f.open()
	defer db.Close()
	uri, _ := db.Admin().KeyURI(bg, "acme")
	assert.NotEqual(t, atkKey, uri, "key binding switched without a report; recovery: %+v", db.Recovery())
	if _, err := db.tn("acme").Append(bg, someRecords(4, 2)); err == nil {
		assert.NotEqual(t, atkKey, activeKeyURI(t, db, "acme"), "new records sealed under the attacker's key")
	}
}

// TestAttackOneSlotEditStopsWholeTenant: renaming the key URI in ONE sealed
// segment's slot (CRC fixed) makes checkWraps fail for the whole tenant
// (ErrManifestAuth: "forged manifest") and the tenant refuses all writes.
// The rule is "a damaged segment stops only that segment".
func TestAttackOneSlotEditStopsWholeTenant(t *testing.T) {
	for _, variant := range []string{"listed-segment", "planted-unlisted-copy"} {
		t.Run(variant, func(t *testing.T) { attackOneSlotEdit(t, variant) })
	}
}

func attackOneSlotEdit(t *testing.T, variant string) {
	f := newForgeryStore(t)
	s := f.segFiles("acme")
	target := s[0]
	if variant == "planted-unlisted-copy" { // a copy under a new name: every genuine file stays intact
		target = filepath.Join(filepath.Dir(s[0]), strings.Repeat("2", 32)+".lss")
		copyFile(t, s[0], target)
	}
	atkRewrite(t, target, func(b []byte) []byte { atkSetSlotURI(t, b, 0, "local://globex"); return b })
	db := f.open()
	defer db.Close()
	_, err := db.tn("acme").Append(bg, someRecords(5, 2))
	assert.NoError(t, err, "one segment's damaged key slot stops the whole tenant; recovery: %+v", db.Recovery())
	served := 0
	for _, id := range f.ids["acme"] {
		if _, err := db.tn("acme").Get(bg, id, PartLog); err == nil {
			served++
		}
	}
	assert.NotZero(t, served, "the undamaged segment is still served")
	f.requireHealthy(db, "globex")
}

// TestAttackRetentionDeletesViaIndexEdit (REFUSED since d23a7b1, which
// landed during this review): backdating MaxTime in the index's segment
// states used to make retention delete unexpired, acknowledged segments
// silently; retention now also requires the manifest's MaxTime. See
// TestAttackCrashedActiveSegmentBackdated for what is left.
func TestAttackRetentionDeletesViaIndexEdit(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	f := newForgeryStore(t)
	open := func() *DB {
		db, err := Open(f.dir, &Options{RetentionInterval: -1, Now: func() time.Time { return now }})
		require.NoError(t, err)
		return db
	}
	db := open()
	require.NoError(t, db.Admin().SetRetention(bg, "acme", 24*time.Hour))
	rep, err := db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	require.Zero(t, rep.Segments, "nothing is expired")
	require.NoError(t, db.Close())

	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		p := tenantPrefix(keySegment, "acme")
		it, err := idx.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		require.NoError(t, err)
		type kv2 struct{ k, v []byte }
		var out []kv2
		for it.First(); it.Valid(); it.Next() {
			var st SegmentInfo
			require.NoError(t, json.Unmarshal(it.Value(), &st))
			st.MinTime, st.MaxTime = t0.Add(-60*24*time.Hour), t0.Add(-30*24*time.Hour)
			k, v, err := stateKV(&st)
			require.NoError(t, err)
			out = append(out, kv2{k, v})
		}
		require.NoError(t, it.Close())
		for _, e := range out {
			require.NoError(t, idx.Set(e.k, e.v, pebble.NoSync))
		}
	})
	db = open()
	defer db.Close()
	rep, err = db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	assert.Zero(t, rep.Segments, "retention deleted unexpired segments on the index's word")
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	if n < len(f.ids["acme"]) {
		assert.NotEmpty(t, db.Recovery().Damaged)
	}
	left, _ := filepath.Glob(filepath.Join(f.dir, "segments", "acme", "*.lss"))
	assert.Len(t, left, 2, "acknowledged segments deleted")
}

// TestAttackHugeFileKillsProcess: a sparse 1 TiB file where one tenant's
// MANIFEST (or its local key file) is expected. vfs.ReadFile allocates the
// file's size before decodeManifest checks its 64 MiB limit (or the key
// decoder its 56 bytes): the Go runtime dies with "out of memory" (fatal, not
// recoverable), so one tenant's file stops Open and the whole process. Run in
// a child process.
func TestAttackHugeFileKillsProcess(t *testing.T) {
	if d := os.Getenv("LOGSTORE_ATTACK_CHILD_DIR"); d != "" {
		db, err := Open(d, &Options{RetentionInterval: -1})
		require.NoError(t, err)
		requireReported(t, db, "acme")
		require.NoError(t, db.Close())
		return
	}
	// Only where the kernel refuses a 1 TiB allocation outright: with
	// overcommit_memory=1 the child would really fill memory.
	if oc, err := os.ReadFile("/proc/sys/vm/overcommit_memory"); err != nil || strings.TrimSpace(string(oc)) == "1" {
		t.Skip("needs vm.overcommit_memory 0 or 2")
	}
	for _, kind := range []string{"manifest", "key-file"} {
		t.Run(kind, func(t *testing.T) {
			f := newForgeryStore(t)
			p := f.manifest("acme")
			if kind == "key-file" {
				p = filepath.Join(f.dir, "keys", "acme.key")
			}
			require.NoError(t, os.Truncate(p, 1<<40))
			ctx, cancel := context.WithTimeout(bg, 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAttackHugeFileKillsProcess$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "LOGSTORE_ATTACK_CHILD_DIR="+f.dir)
			out, err := cmd.CombinedOutput()
			msg := string(out)
			if i := strings.Index(msg, "fatal error"); i >= 0 {
				msg = msg[i:min(len(msg), i+300)]
			} else if len(msg) > 1500 {
				msg = msg[:1500]
			}
			assert.NoError(t, err, "Open of a store with a huge %s must report the tenant, not die:\n%s", kind, msg)
		})
	}
}

// TestAttackHugeSegmentFooterAllocation: a planted, unlisted segment file of
// ~1 GiB (sparse) whose trailer points at a footer filling the file. Open
// (segment.Reader.loadFooter) allocates the whole claimed footer (up to 4 GiB,
// the u32 length) before checking its magic: a memory-limited process dies
// on one planted file.
func TestAttackHugeSegmentFooterAllocation(t *testing.T) {
	f := newForgeryStore(t)
	a := f.segFiles("acme")[0]
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	p := filepath.Join(filepath.Dir(a), strings.Repeat("3", 32)+".lss")
	flen := int64(12 + 28*(1<<30/28))
	size := int64(segment.HeaderSize) + flen + 24
	require.NoError(t, os.WriteFile(p, b[:segment.HeaderSize], 0o600))
	require.NoError(t, os.Truncate(p, size))
	tr := make([]byte, 24)
	binary.LittleEndian.PutUint64(tr[0:], uint64(segment.HeaderSize))
	binary.LittleEndian.PutUint32(tr[8:], uint32(flen))
	binary.LittleEndian.PutUint32(tr[12:], atkCRC(tr[:12]))
	copy(tr[16:], "LOGSTEND")
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteAt(tr, size-24)
	require.NoError(t, err)
	require.NoError(t, fh.Close())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	db := f.open()
	runtime.ReadMemStats(&after)
	defer db.Close()
	requireReported(t, db, "acme")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(256<<20),
		"Open allocated %d MiB for one planted file", (after.TotalAlloc-before.TotalAlloc)>>20)
	f.requireHealthy(db, "globex")
}

// TestAttackFIFOBlocksOpen: a named pipe where a file is expected. os.Open
// of a FIFO blocks until a writer appears, and nothing checks the file type
// first: Open (and, for a key file, every operation of the local key
// provider, whose mutex is held) hangs.
func TestAttackFIFOBlocksOpen(t *testing.T) {
	for _, kind := range []string{"manifest", "segment", "key-file", "audit-log"} {
		t.Run(kind, func(t *testing.T) {
			f := newForgeryStore(t)
			var p string
			switch kind {
			case "manifest":
				p = f.manifest("acme")
			case "segment":
				p = f.segFiles("acme")[0]
			case "key-file":
				p = filepath.Join(f.dir, "keys", "acme.key")
			case "audit-log":
				p = filepath.Join(f.dir, "audit", "keys.log")
			}
			require.NoError(t, os.Remove(p))
			require.NoError(t, syscall.Mkfifo(p, 0o600))
			done := make(chan struct{})
			var db *DB
			var oerr error
			go func() {
				defer close(done)
				db, oerr = Open(f.dir, &Options{RetentionInterval: -1})
			}()
			hung := false
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				hung = true
			}
			deadline := time.Now().Add(time.Minute)
		unblock: // feed the pipe until Open returns
			for hung && time.Now().Before(deadline) {
				select {
				case <-done:
					break unblock
				default:
					if w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						_ = w.Close()
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatalf("Open still blocked on the FIFO at %s", p)
			}
			if db != nil {
				defer db.Close()
			}
			assert.False(t, hung, "Open blocked on a FIFO planted at %s", p)
			require.NoError(t, oerr)
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackAuditLogNotRegularStopsOpen: the audit trail is shared; a
// directory (or FIFO, see TestAttackFIFOBlocksOpen) at audit/keys.log is not
// "corrupt" (ErrAuditCorrupt), so it is not set aside: Open fails for every
// tenant.
func TestAttackAuditLogNotRegularStopsOpen(t *testing.T) {
	for _, variant := range []string{"directory", "symlink-to-dev-null"} {
		t.Run(variant, func(t *testing.T) {
			f := newForgeryStore(t)
			p := filepath.Join(f.dir, "audit", "keys.log")
			require.NoError(t, os.Remove(p))
			switch variant {
			case "directory":
				require.NoError(t, os.MkdirAll(filepath.Join(p, "x"), 0o700))
			case "symlink-to-dev-null":
				require.NoError(t, os.Symlink("/dev/null", p))
			}
			db, err := Open(f.dir, &Options{RetentionInterval: -1})
			require.NoError(t, err, "a bad audit file must be set aside and reported, not stop every tenant")
			defer db.Close()
			requireReported(t, db, "audit")
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackIndexSeqBumpStopsAllTenants: the index's 'm' record (newest
// manifest sequence seen) is unauthenticated; setting it to 2^63 for every
// tenant makes every tenant's genuine manifest "rolled back": all tenants
// refuse writes, blamed on their manifests.
func TestAttackIndexSeqBumpStopsAllTenants(t *testing.T) {
	f := newForgeryStore(t)
	atkEditIndex(t, f.dir, func(idx *pebble.DB) {
		for _, tn := range []string{"acme", "globex"} {
			require.NoError(t, idx.Set(manifestSeqKey(tn), binary.LittleEndian.AppendUint64(nil, 1<<63), pebble.NoSync))
		}
	})
	db := f.open()
	defer db.Close()
	_, err := db.tn("globex").Append(bg, someRecords(6, 2))
	assert.NoError(t, err, "an index edit stops a tenant's writes; recovery: %+v", db.Recovery())
}

func TestAttackRollbackWithoutIndexRevertsKey(t *testing.T) {
	// Without the index and without Options.ExpectedKey, an older manifest
	// put back is indistinguishable from the real one (docs/security.md,
	// "not covered"); with the embedder's pin it is refused.
	f := newForgeryStore(t)
	old, err := os.ReadFile(f.manifest("acme"))
	require.NoError(t, err)
	db := f.open()
	_, err = db.Admin().LinkKey(bg, "acme", "local://acme-2027")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.NoError(t, os.WriteFile(f.manifest("acme"), old, 0o600))
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
	pin := func(tenant string) string {
		if tenant == "acme" {
			return "local://acme-2027"
		}
		return ""
	}
	db, err = Open(f.dir, &Options{RetentionInterval: -1, ExpectedKey: pin})
	require.NoError(t, err)
	defer db.Close()
	requireReported(t, db, "the embedder expects local://acme-2027")
	_, err = db.tn("acme").Append(bg, someRecords(8, 1))
	require.ErrorIs(t, err, ErrTenantDamaged)
}

// TestAttackPlantedLocalKeyAdopted: the local provider trusts any key file in
// DIR/keys (local keys are inside the data directory's trust boundary, for
// writers as for readers: docs/security.md). A key file planted before a
// tenant's first write is what its auto-created local://TENANT would use;
// with RequireLinkedKey (production) no key is ever auto-created, so the
// planted file is never used.
func TestAttackPlantedLocalKeyAdopted(t *testing.T) {
	f := newForgeryStore(t)
	atkPlantKey(t, f.dir, "newco")
	db, err := Open(f.dir, &Options{RetentionInterval: -1, RequireLinkedKey: true})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.tn("newco").Append(bg, someRecords(7, 2))
	require.ErrorIs(t, err, ErrNoKey)
}

// ---------------------------------------------------------------------------
// REFUSED from the start.

// TestAttackVersionFieldDowngrade: a listed v2 segment relabelled v1 to dodge
// the slot MAC is refused (manifest records the version; the digest covers
// the preamble), with and without the index.
func TestAttackVersionFieldDowngrade(t *testing.T) {
	for _, dropIndex := range []bool{false, true} {
		f := newForgeryStore(t)
		s := f.segFiles("acme")[0]
		atkRewrite(t, s, func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[8:], 1)
			atkFixPreambleCRC(b)
			return b
		})
		if dropIndex {
			require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
		}
		db := f.open()
		requireReported(t, db, "format version 1")
		failed := 0
		for _, id := range f.ids["acme"] {
			if _, err := db.tn("acme").Get(bg, id, PartLog); err != nil {
				failed++
			}
		}
		require.NotZero(t, failed)
		_, err := db.tn("acme").Append(bg, someRecords(8, 2))
		require.NoError(t, err)
		f.requireHealthy(db, "globex")
		require.NoError(t, db.Close())
	}
}

// TestAttackSegmentMovedToAnotherName: a listed segment renamed to a fresh
// name is reported both as gone and as unlisted.
func TestAttackSegmentMovedToAnotherName(t *testing.T) {
	f := newForgeryStore(t)
	s := f.segFiles("acme")[0]
	require.NoError(t, os.Rename(s, filepath.Join(filepath.Dir(s), strings.Repeat("0", 32)+".lss")))
	db := f.open()
	defer db.Close()
	requireReported(t, db, "is gone")
	requireReported(t, db, "not in the tenant manifest")
	f.requireHealthy(db, "globex")
}

// TestAttackDirectoryOrSymlinkInPlace: directories and symlinks where files
// are expected are refused and stay in their tenant.
func TestAttackDirectoryOrSymlinkInPlace(t *testing.T) {
	cases := map[string]func(f *forgeryStore){
		"dir-at-segment": func(f *forgeryStore) {
			s := f.segFiles("acme")[0]
			require.NoError(t, os.Remove(s))
			require.NoError(t, os.Mkdir(s, 0o700))
		},
		"symlink-segment-to-other-tenant": func(f *forgeryStore) {
			s := f.segFiles("acme")[0]
			require.NoError(t, os.Remove(s))
			require.NoError(t, os.Symlink(f.segFiles("globex")[0], s))
		},
		"dir-at-manifest": func(f *forgeryStore) {
			require.NoError(t, os.Remove(f.manifest("acme")))
			require.NoError(t, os.Mkdir(f.manifest("acme"), 0o700))
		},
		"symlink-manifest-to-other-tenant": func(f *forgeryStore) {
			require.NoError(t, os.Remove(f.manifest("acme")))
			require.NoError(t, os.Symlink(f.manifest("globex"), f.manifest("acme")))
		},
		"symlink-manifest-to-dev-zero": func(f *forgeryStore) {
			require.NoError(t, os.Remove(f.manifest("acme")))
			require.NoError(t, os.Symlink("/dev/zero", f.manifest("acme")))
		},
		"dir-at-manifest-tmp": func(f *forgeryStore) {
			tmp := f.manifest("acme") + ".tmp"
			require.NoError(t, os.MkdirAll(filepath.Join(tmp, "x"), 0o700))
		},
	}
	for name, attack := range cases {
		t.Run(name, func(t *testing.T) {
			f := newForgeryStore(t)
			attack(f)
			db := f.open()
			defer db.Close()
			if name != "dir-at-manifest-tmp" {
				rep := db.Recovery()
				require.NotEmpty(t, append(rep.Damaged, rep.Unverified...))
			} else {
				_, err := db.tn("acme").Append(bg, someRecords(9, 1))
				require.Error(t, err, "a blocked manifest write fails the append, never acknowledges it")
			}
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackMalformedManifest: oversized length field, bad JSON and deeply
// nested JSON with a valid CRC, the wrong tenant name: refused as corrupt or
// forged, in the tenant only.
func TestAttackMalformedManifest(t *testing.T) {
	mk := func(body []byte, n uint32) []byte {
		b := make([]byte, manifestHeaderLen, manifestHeaderLen+len(body)+36)
		copy(b, manifestMagic)
		binary.LittleEndian.PutUint16(b[8:], manifestVersion)
		binary.LittleEndian.PutUint32(b[12:], n)
		b = append(b, body...)
		b = append(b, make([]byte, manifestMACLen)...)
		return binary.LittleEndian.AppendUint32(b, atkCRC(b))
	}
	deep := strings.Repeat("[", 1<<20)
	cases := map[string][]byte{
		"length-field-4GiB": mk([]byte(`{}`), ^uint32(0)),
		"bad-json":          mk([]byte(`{"tenant":"acme",`), 17),
		"deep-json":         mk([]byte(deep), uint32(len(deep))),
		"other-tenant":      mk([]byte(`{"tenant":"globex"}`), 19),
		"no-wraps":          mk([]byte(`{"tenant":"acme","seq":99,"key":{"uri":"local://acme"}}`), 55),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			f := newForgeryStore(t)
			require.NoError(t, os.WriteFile(f.manifest("acme"), raw, 0o600))
			db := f.open()
			defer db.Close()
			requireReported(t, db, "tenant acme")
			_, err := db.tn("acme").Append(bg, someRecords(10, 1))
			require.ErrorIs(t, err, ErrTenantDamaged)
			f.requireHealthy(db, "globex")
		})
	}
}

// TestAttackStrayTenantEntries: a file named like a tenant, a directory with
// an invalid tenant name, and a new tenant directory holding a copy of
// acme's segment are refused or ignored, and stop nobody.
func TestAttackStrayTenantEntries(t *testing.T) {
	f := newForgeryStore(t)
	segs := filepath.Join(f.dir, "segments")
	require.NoError(t, os.WriteFile(filepath.Join(segs, "evil"), []byte("x"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(segs, ".hidden"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(segs, "zz"), 0o700))
	a := f.segFiles("acme")[0]
	copyFile(t, a, filepath.Join(segs, "zz", filepath.Base(a)))
	db := f.open()
	defer db.Close()
	requireReported(t, db, "zz")
	_, err := db.tn("zz").Append(bg, someRecords(11, 1))
	require.Error(t, err, "a tenant whose directory holds another tenant's segment takes no writes under a new key")
	f.requireHealthy(db, "acme")
	f.requireHealthy(db, "globex")
}

// TestAttackPlantedDebris: a header-only copy of a genuine segment under a
// new name is not taken for crash debris (its header id differs from its
// name): reported, never indexed; the genuine segment is untouched.
func TestAttackPlantedDebris(t *testing.T) {
	f := newForgeryStore(t)
	a := f.segFiles("acme")[0]
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	d := filepath.Join(filepath.Dir(a), strings.Repeat("1", 32)+".lss")
	require.NoError(t, os.WriteFile(d, b[:segment.HeaderSize], 0o600))
	db := f.open()
	defer db.Close()
	// header id != file name: reported, not removed as debris
	requireReported(t, db, "not in the tenant manifest")
	f.requireHealthy(db, "acme")
	f.requireHealthy(db, "globex")
}

// TestAttackForgedManifestUnknownKey: a manifest bound to a key the engine
// cannot use (not planted) leaves the tenant unverified: no writes, no reads
// under it, reported; it never creates that key.
func TestAttackForgedManifestUnknownKey(t *testing.T) {
	f := newForgeryStore(t)
	body := atkReadManifestBody(t, f.manifest("acme"), "acme")
	mk := make([]byte, 32)
	body.Key = keyBinding{URI: "local://nobody"}
	body.Wraps = []keyWrap{{URI: "local://nobody", Wrapped: make([]byte, 61)}}
	body.Seq++
	atkForgeManifest(t, f.manifest("acme"), &body, mk)
	db := f.open()
	defer db.Close()
	requireReported(t, db, "acme")
	_, err := db.tn("acme").Append(bg, someRecords(12, 1))
	require.Error(t, err)
	_, statErr := os.Stat(filepath.Join(f.dir, "keys", "nobody.key"))
	require.True(t, errors.Is(statErr, os.ErrNotExist))
	f.requireHealthy(db, "globex")
}

// TestAttackCrashedActiveSegmentBackdated: retention now asks the manifest
// (d23a7b1), but the manifest's MaxTime of a crashed writer's active segment
// comes from recovery's scan of frame headers that only a CRC protects.
// After a crash the attacker backdates every frame's time range and every
// record's time (CRCs fixed) and drops the index: Open seals the segment
// with the backdated MaxTime and indexes the backdated times, retention then
// deletes the whole segment (all blocks, not just the unchecked tail) and
// nothing reports that acknowledged records were tampered with or lost.
func TestAttackCrashedActiveSegmentBackdated(t *testing.T) {
	mem := vfs.NewMem()
	now := t0
	// Uncompressed blocks: the attack edits each frame's metadata in place.
	opts := func(o *Options) {
		o.IndexDir = t.TempDir()
		o.Now = func() time.Time { return now }
		o.Compression = "none"
		o.NoJournal = true // the blocks in the segment (journal blocks: TestAttackJournalEdited)
	}
	db := openTest(t, mem, "/db", opts)
	require.NoError(t, db.Admin().SetRetention(bg, "acme", 24*time.Hour))
	for i := 0; i < 3; i++ {
		now = now.Add(2 * time.Second)
		_, err := db.tn("acme").Append(bg, genRecords(mrand.New(mrand.NewSource(int64(i))), 5, now))
		require.NoError(t, err)
	}
	var path string
	require.NoError(t, db.control(bg, func() error { path = db.tenants["acme"].w.Path(); return nil }))
	mem.Crash()
	_ = db.Close()

	b, err := mem.Bytes(path)
	require.NoError(t, err)
	old := uint64(t0.Add(-30 * 24 * time.Hour).UnixNano())
	frames := 0
	for off := segment.HeaderSize; off+68 <= len(b); {
		fr := b[off:]
		if string(fr[:4]) != "LBLK" {
			break
		}
		recs := int(binary.LittleEndian.Uint32(fr[32:]))
		metaLen := int(binary.LittleEndian.Uint32(fr[36:]))
		bodyLen := int(binary.LittleEndian.Uint32(fr[44:]))
		n := 68 + metaLen + bodyLen + 4
		if off+n > len(b) {
			break
		}
		binary.LittleEndian.PutUint64(fr[48:], old)
		binary.LittleEndian.PutUint64(fr[56:], old)
		binary.LittleEndian.PutUint32(fr[64:], atkCRC(fr[:64]))
		meta := fr[68 : 68+metaLen]
		for j, p := 0, 0; j < recs; j++ {
			l, k := binary.Uvarint(meta[p:])
			m := meta[p+k : p+k+int(l)]
			binary.LittleEndian.PutUint64(m[18:], old)
			p += k + int(l)
		}
		binary.LittleEndian.PutUint32(fr[n-4:], atkCRC(fr[:n-4]))
		off += n
		frames++
	}
	require.Equal(t, 6, frames)
	require.NoError(t, mem.SetBytes(path, b))

	db2 := openTest(t, mem, "/db", opts) // a fresh IndexDir: the index is gone
	defer db2.Close()
	rep, err := db2.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	if rep.Segments > 0 {
		assert.NotEmpty(t, db2.Recovery().Damaged, "retention deleted %d acknowledged, unexpired records without any report", rep.Records)
	}
}
