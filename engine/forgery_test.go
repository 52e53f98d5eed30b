package engine

import (
	"errors"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// The forgery suite: an attacker with write access to the data directory but
// no key forges, replaces, truncates, deletes, replays or copies each kind of
// file. Every attack must be refused or reported (Recovery, Verify, a typed
// error), never served as genuine, and must not stop the other tenant.

type forgeryStore struct {
	t   *testing.T
	dir string
	ids map[string][]ID
	rec map[string][]Record
}

func newForgeryStore(t *testing.T) *forgeryStore {
	fs := &forgeryStore{t: t, dir: t.TempDir(), ids: map[string][]ID{}, rec: map[string][]Record{}}
	db := fs.open()
	rng := rand.New(rand.NewSource(3))
	for _, tenant := range []string{"acme", "globex"} {
		for round := 0; round < 2; round++ { // two sealed segments each
			recs := genRecords(rng, 40, t0.Add(time.Duration(round)*time.Hour))
			ids, err := db.tn(tenant).Append(bg, recs)
			require.NoError(t, err)
			fs.ids[tenant] = append(fs.ids[tenant], ids...)
			fs.rec[tenant] = append(fs.rec[tenant], recs...)
			require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants[tenant]); return nil }))
		}
	}
	require.NoError(t, db.Close())
	return fs
}

// open opens the store. Its blocks are written without compression, so
// the attacks can edit a frame's plaintext metadata in place (compressed
// metadata sections are attacked in authmeta_test.go).
func (f *forgeryStore) open() *DB {
	db, err := Open(f.dir, &Options{RetentionInterval: -1, Compression: "none"})
	require.NoError(f.t, err, "a damaged tenant must never stop Open")
	return db
}

func (f *forgeryStore) segFiles(tenant string) []string {
	m, err := filepath.Glob(filepath.Join(f.dir, "segments", tenant, "*.lss"))
	require.NoError(f.t, err)
	require.NotEmpty(f.t, m)
	return m
}

func (f *forgeryStore) manifest(tenant string) string {
	return filepath.Join(f.dir, "segments", tenant, manifestFile)
}

// requireHealthy checks that tenant serves every record it acknowledged.
func (f *forgeryStore) requireHealthy(db *DB, tenant string) {
	f.t.Helper()
	for i, id := range f.ids[tenant] {
		got, err := db.tn(tenant).Get(bg, id, PartAll)
		require.NoError(f.t, err, "tenant %s record %d", tenant, i)
		requireSameRecord(f.t, f.rec[tenant][i], id, got)
	}
	_, err := db.tn(tenant).Append(bg, genRecords(rand.New(rand.NewSource(9)), 2, t0))
	require.NoError(f.t, err, "tenant %s takes writes", tenant)
}

// requireReported checks that Open reported something matching want.
func requireReported(t *testing.T, db *DB, want string) {
	t.Helper()
	rep := db.Recovery()
	all := strings.Join(append(rep.Damaged, rep.Unverified...), "\n")
	require.Contains(t, all, want, "recovery report: %+v", rep)
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

// TestForgeryPlaintextSegment is finding 1: a plaintext segment (cipher suite
// 0, written by a store in plaintext mode) dropped into an encrypted tenant's
// directory, as a new file or replacing a genuine one, is never indexed or
// served, and is reported.
func TestForgeryPlaintextSegment(t *testing.T) {
	f := newForgeryStore(t)
	plainDir := t.TempDir()
	pdb, err := Open(plainDir, &Options{Plaintext: true, RetentionInterval: -1})
	require.NoError(t, err)
	forged := genRecords(rand.New(rand.NewSource(99)), 3, t0)
	forged[0].Status = 299
	fids, err := pdb.tn("acme").Append(bg, forged)
	require.NoError(t, err)
	require.NoError(t, pdb.Close())
	plain, err := filepath.Glob(filepath.Join(plainDir, "segments", "acme", "*.lss"))
	require.NoError(t, err)
	require.Len(t, plain, 1)

	victim := f.segFiles("acme")[0]
	copyFile(t, plain[0], filepath.Join(f.dir, "segments", "acme", filepath.Base(plain[0])))
	copyFile(t, plain[0], victim) // replaces a genuine segment
	db := f.open()
	defer db.Close()
	requireReported(t, db, "unencrypted segment refused")
	_, err = db.tn("acme").Get(bg, fids[0], PartAll)
	require.Error(t, err, "a forged record is never served")
	n, err := db.tn("acme").Count(bg, ScanOptions{Index: ByStatus(299)})
	require.NoError(t, err)
	require.Zero(t, n, "a forged record is never indexed")
	checks, err := db.Admin().Verify(bg, "acme")
	require.NoError(t, err)
	bad := 0
	for _, c := range checks {
		if c.OpenErr != nil {
			bad++
			require.ErrorIs(t, c.OpenErr, segment.ErrPlaintext)
		}
	}
	require.Equal(t, 2, bad, "verify reports both forged files")
	f.requireHealthy(db, "globex")
}

// TestForgeryTruncateAndDelete is finding 2: truncating or deleting a sealed
// segment is reported as loss, never repaired silently; the lost records stay
// visible to queries and their Get says why it fails.
func TestForgeryTruncateAndDelete(t *testing.T) {
	for _, attack := range []string{"truncate", "delete", "truncate-to-block"} {
		t.Run("attack="+attack, func(t *testing.T) {
			f := newForgeryStore(t)
			victim := f.segFiles("acme")[0]
			st, err := os.Stat(victim)
			require.NoError(t, err)
			switch attack {
			case "truncate":
				require.NoError(t, os.Truncate(victim, st.Size()/2))
			case "truncate-to-block": // cut the footer: every block stays valid
				r, err := segment.Open(victim, &segment.ReadOptions{})
				require.NoError(t, err)
				b := r.Blocks()
				require.NoError(t, r.Close())
				require.NoError(t, os.Truncate(victim, b[0].Offset+b[0].Length))
			case "delete":
				require.NoError(t, os.Remove(victim))
			}
			db := f.open()
			defer db.Close()
			requireReported(t, db, "acknowledged segment data is missing")
			// Queries go on over the other segment and say what they left
			// out: the lost segment, as ErrSegmentLoss.
			n, err := db.tn("acme").Count(bg, ScanOptions{})
			require.ErrorIs(t, err, ErrSegmentLoss)
			require.Less(t, n, len(f.ids["acme"]))
			require.Positive(t, n, "the other segment's records are counted")
			var failed int
			for _, id := range f.ids["acme"] {
				if _, err := db.tn("acme").Get(bg, id, PartLog); err != nil {
					failed++
				}
			}
			require.NotZero(t, failed, "records of the damaged segment are not served")
			// Reopening does not make the loss go away.
			require.NoError(t, db.Close())
			db2 := f.open()
			requireReported(t, db2, "acknowledged segment data is missing")
			f.requireHealthy(db2, "globex")
			require.NoError(t, db2.Close())
			db = f.open()
		})
	}
}

// TestForgeryIndexLossKeepsKeyBinding is finding 3: losing the index never
// moves a tenant linked to another key onto an auto-created local key.
func TestForgeryIndexLossKeepsKeyBinding(t *testing.T) {
	f := newForgeryStore(t)
	db := f.open()
	_, err := db.Admin().LinkKey(bg, "acme", "local://acme-cmek")
	require.NoError(t, err)
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(5)), 3, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))

	db = f.open()
	defer db.Close()
	uri, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "local://acme-cmek", uri, "the binding survives index loss")
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(6)), 3, t0))
	require.NoError(t, err)
	require.NoError(t, db.control(bg, func() error {
		require.Equal(t, "local://acme-cmek", db.tenants["acme"].keyURI)
		return nil
	}))
	f.requireHealthy(db, "globex")
}

// TestForgeryManifest attacks the manifest itself: forged, from another
// tenant, truncated, deleted, replayed. The tenant refuses writes (never
// falling back to a new local key) and reports why; the other tenant works.
func TestForgeryManifest(t *testing.T) {
	attacks := map[string]func(f *forgeryStore, old []byte){
		"flip-body": func(f *forgeryStore, _ []byte) {
			b, err := os.ReadFile(f.manifest("acme"))
			require.NoError(t, err)
			i := strings.Index(string(b), `"retention`)
			if i < 0 {
				i = manifestHeaderLen + 5
			}
			b[i] ^= 1
			require.NoError(t, os.WriteFile(f.manifest("acme"), fixManifestCRC(b), 0o600))
		},
		"other-tenant": func(f *forgeryStore, _ []byte) { copyFile(t, f.manifest("globex"), f.manifest("acme")) },
		"truncate":     func(f *forgeryStore, _ []byte) { require.NoError(t, os.Truncate(f.manifest("acme"), 40)) },
		"delete":       func(f *forgeryStore, _ []byte) { require.NoError(t, os.Remove(f.manifest("acme"))) },
		"replay":       func(f *forgeryStore, old []byte) { require.NoError(t, os.WriteFile(f.manifest("acme"), old, 0o600)) },
		"replay-without-index": func(f *forgeryStore, old []byte) {
			require.NoError(t, os.WriteFile(f.manifest("acme"), old, 0o600))
			require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
		},
	}
	want := map[string]string{
		"flip-body": "failed authentication", "other-tenant": "failed authentication", "truncate": "corrupt",
		"delete": "manifest is missing", "replay": "rolled back", "replay-without-index": "not in the tenant manifest",
	}
	for name, attack := range attacks {
		t.Run("attack="+name, func(t *testing.T) {
			f := newForgeryStore(t)
			old, err := os.ReadFile(f.manifest("acme"))
			require.NoError(t, err)
			db := f.open() // a newer manifest with one more segment
			_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(7)), 3, t0))
			require.NoError(t, err)
			require.NoError(t, db.Close())
			attack(f, old)

			db = f.open()
			defer db.Close()
			requireReported(t, db, want[name])
			_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(8)), 2, t0))
			if name != "replay-without-index" {
				require.ErrorIs(t, err, ErrTenantDamaged, "a tenant whose manifest is not trustworthy takes no writes")
			}
			keyFiles, _ := filepath.Glob(filepath.Join(f.dir, "keys", "*.key"))
			for _, k := range keyFiles {
				require.NotContains(t, filepath.Base(k), "acme-", "no new key was created")
			}
			f.requireHealthy(db, "globex")
		})
	}
}

func fixManifestCRC(b []byte) []byte {
	end := len(b) - 4
	c := crc32.Checksum(b[:end], crcTable)
	b[end], b[end+1], b[end+2], b[end+3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	return b
}

// TestForgerySegmentSwaps: a segment copied from another tenant, a sealed
// segment replaced by another of the same tenant, an old copy of a segment
// put back after a rewrap (its retired key slot), and a bit flip in one
// segment's header. Each is refused and reported; everything else works.
func TestForgerySegmentSwaps(t *testing.T) {
	t.Run("attack=copy-other-tenant", func(t *testing.T) {
		f := newForgeryStore(t)
		g := f.segFiles("globex")[0]
		copyFile(t, g, filepath.Join(f.dir, "segments", "acme", filepath.Base(g)))
		db := f.open()
		defer db.Close()
		requireReported(t, db, "belongs to another tenant")
		f.requireHealthy(db, "acme")
		f.requireHealthy(db, "globex")
	})
	t.Run("attack=replace-with-sibling", func(t *testing.T) {
		f := newForgeryStore(t)
		s := f.segFiles("acme")
		copyFile(t, s[1], s[0])
		db := f.open()
		defer db.Close()
		requireReported(t, db, "does not match the tenant manifest")
		f.requireHealthy(db, "globex")
	})
	t.Run("attack=header-bit-flip", func(t *testing.T) { // finding 6
		f := newForgeryStore(t)
		s := f.segFiles("acme")[0]
		b, err := os.ReadFile(s)
		require.NoError(t, err)
		b[20] ^= 0x10
		require.NoError(t, os.WriteFile(s, b, 0o600))
		db := f.open()
		defer db.Close()
		requireReported(t, db, "corrupt")
		f.requireHealthy(db, "globex")
		_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 2, t0))
		require.NoError(t, err, "one damaged segment does not stop its tenant's writes")
	})
	t.Run("attack=replay-old-key-slot", func(t *testing.T) { // finding 8
		f := newForgeryStore(t)
		s := f.segFiles("acme")[0]
		old, err := os.ReadFile(s)
		require.NoError(t, err)
		db := f.open()
		_, err = db.Admin().Rewrap(bg, "acme", "local://acme-2027", nil)
		require.NoError(t, err)
		require.NoError(t, db.Close())
		require.NoError(t, os.WriteFile(s, old, 0o600)) // the whole old file, retired slot included
		for _, dropIndex := range []bool{false, true} {
			if dropIndex { // the index forgets generations; the manifest does not
				require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
			}
			db = f.open()
			requireReported(t, db, "key slot")
			rolledBack := 0
			for _, id := range f.ids["acme"] {
				if _, err := db.tn("acme").Get(bg, id, PartLog); err != nil {
					// Without an index the refused segment is not indexed at all.
					require.True(t, errors.Is(err, ErrKeySlotRollback) || dropIndex && errors.Is(err, ErrNotFound), "%v", err)
					rolledBack++
				}
			}
			require.NotZero(t, rolledBack, "the replayed segment is refused")
			require.NoError(t, db.Close())
		}
	})
	t.Run("attack=forged-slot-generation", func(t *testing.T) {
		f := newForgeryStore(t)
		s := f.segFiles("acme")[0]
		b, err := os.ReadFile(s)
		require.NoError(t, err)
		b[1024+4] = 99 // generation 99, CRC fixed: only the slot MAC can tell
		fixSlotCRC(b, 0)
		require.NoError(t, os.WriteFile(s, b, 0o600))
		db := f.open()
		defer db.Close()
		var refused int
		for _, id := range f.ids["acme"] {
			if _, err := db.tn("acme").Get(bg, id, PartLog); err != nil {
				require.ErrorIs(t, err, segment.ErrKeySlot)
				refused++
			}
		}
		require.NotZero(t, refused)
		f.requireHealthy(db, "globex")
	})
}

func fixSlotCRC(b []byte, slot int) {
	s := b[1024+slot*1024:]
	c := crc32.Checksum(s[:1020], crcTable)
	s[1020], s[1021], s[1022], s[1023] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

// TestForgeryLocalKeyFile: a local key file replaced by another tenant's, or
// by a fresh key, or truncated, never unwraps this tenant's data keys.
func TestForgeryLocalKeyFile(t *testing.T) {
	for _, attack := range []string{"other-tenant", "truncate", "delete", "fresh-key"} {
		t.Run("attack="+attack, func(t *testing.T) {
			f := newForgeryStore(t)
			acme := filepath.Join(f.dir, "keys", "acme.key")
			switch attack {
			case "other-tenant":
				copyFile(t, filepath.Join(f.dir, "keys", "globex.key"), acme)
			case "truncate":
				require.NoError(t, os.Truncate(acme, 10))
			case "delete":
				require.NoError(t, os.Remove(acme))
			case "fresh-key": // a valid key file, just not the tenant's
				other, err := Open(t.TempDir(), &Options{RetentionInterval: -1})
				require.NoError(t, err)
				_, err = other.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 1, t0))
				require.NoError(t, err)
				copyFile(t, filepath.Join(other.Dir(), "keys", "acme.key"), acme)
				require.NoError(t, other.Close())
			}
			db := f.open()
			defer db.Close()
			requireReported(t, db, "acme")
			_, err := db.tn("acme").Get(bg, f.ids["acme"][0], PartLog)
			require.Error(t, err)
			require.Contains(t, err.Error(), "logstore/", "a typed error")
			_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(2)), 1, t0))
			require.Error(t, err, "no write under a key that is not the tenant's")
			_, statErr := os.Stat(acme)
			if attack == "delete" {
				require.ErrorIs(t, statErr, os.ErrNotExist, "a lost key is never silently recreated")
			}
			f.requireHealthy(db, "globex")
		})
	}
}

// TestForgeryWholeTenantReplaced: deleting a tenant's whole directory and
// index and writing again starts a new tenant; with Options.ExpectedKey the
// embedder's own record of the linked key keeps it from starting under any
// other key, and a forged manifest bound elsewhere is refused.
func TestForgeryWholeTenantReplaced(t *testing.T) {
	f := newForgeryStore(t)
	db := f.open()
	_, err := db.Admin().LinkKey(bg, "acme", "local://acme-cmek")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "segments", "acme")))
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index")))
	expect := func(tenant string) string {
		if tenant == "acme" {
			return "local://acme-cmek"
		}
		return ""
	}
	db, err = Open(f.dir, &Options{RetentionInterval: -1, ExpectedKey: expect})
	require.NoError(t, err)
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(5)), 2, t0))
	require.NoError(t, err)
	uri, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "local://acme-cmek", uri, "a recreated tenant is bound to the expected key, not a new local one")
	_, err = db.Admin().LinkKey(bg, "acme", "local://attacker")
	require.ErrorIs(t, err, ErrManifestAuth)
	require.NoError(t, db.Close())

	// A manifest bound to another key (written by a store without the pin)
	// is refused by one that has it.
	db, err = Open(f.dir, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "acme", "local://attacker")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	db, err = Open(f.dir, &Options{RetentionInterval: -1, ExpectedKey: expect})
	require.NoError(t, err)
	defer db.Close()
	requireReported(t, db, "the embedder expects local://acme-cmek")
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(6)), 2, t0))
	require.ErrorIs(t, err, ErrTenantDamaged)
	f.requireHealthy(db, "globex")
}

// TestForgeryActiveSegmentTruncated: after a crash, and while the writer is
// down, the active segment is cut at a block boundary: it holds fewer blocks
// than the manifest's last checkpoint recorded, which recovery reports as
// loss instead of sealing the shorter file as if it were a torn tail.
func TestForgeryActiveSegmentTruncated(t *testing.T) {
	mem := vfs.NewMem()
	now := t0
	// Every append in blocks of the segment (TestForgeryJournalTruncated
	// cuts the journal instead).
	opts := func(o *Options) {
		o.IndexDir = t.TempDir()
		o.Now = func() time.Time { return now }
		o.NoJournal = true
	}
	db := openTest(t, mem, "/db", opts)
	for i := 0; i < 3; i++ {
		now = now.Add(2 * time.Second) // past the checkpoint interval: each group checkpoints
		_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(int64(i))), 5, t0))
		require.NoError(t, err)
	}
	var path string
	require.NoError(t, db.control(bg, func() error { path = db.tenants["acme"].w.Path(); return nil }))
	mem.Crash()
	_ = db.Close()
	b, err := mem.Bytes(path)
	require.NoError(t, err)
	r, err := segment.Open(path, &segment.ReadOptions{FS: mem})
	require.NoError(t, err)
	require.Len(t, r.Blocks(), 6) // a payload block and a log block per group
	first := r.Blocks()[0]
	require.NoError(t, r.Close())
	require.NoError(t, mem.SetBytes(path, b[:first.Offset+first.Length]))

	db2 := openTest(t, mem, "/db", opts)
	defer db2.Close()
	requireReported(t, db2.DB, "acknowledged segment data is missing")
}

// TestVerifyReportsManifestProblems: Verify finds what Open found, and more:
// a listed segment that is gone, a same-size edit of a sealed segment's
// metadata section (only the digest can tell without a key), a damaged
// manifest.
func TestVerifyReportsManifestProblems(t *testing.T) {
	f := newForgeryStore(t)
	segs := f.segFiles("acme")
	require.NoError(t, os.Remove(segs[0]))
	b, err := os.ReadFile(segs[1])
	require.NoError(t, err)
	r, err := segment.Open(segs[1], &segment.ReadOptions{})
	require.NoError(t, err)
	blk := r.Blocks()[0]
	require.NoError(t, r.Close())
	b[blk.Offset+70] ^= 1 // inside the first block's metadata section; the frame CRC is fixed below
	end := blk.Offset + blk.Length - 4
	c := crc32.Checksum(b[blk.Offset:end], crcTable)
	b[end], b[end+1], b[end+2], b[end+3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	require.NoError(t, os.WriteFile(segs[1], b, 0o600))
	g, err := os.ReadFile(f.manifest("globex"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f.manifest("globex"), g[:len(g)-1], 0o600))

	db := f.open()
	defer db.Close()
	checks, err := db.Admin().Verify(bg, "")
	require.NoError(t, err)
	var all []string
	for _, c := range checks {
		if c.OpenErr != nil {
			all = append(all, c.OpenErr.Error())
		}
		for _, p := range c.Result.Problems {
			all = append(all, p.Err.Error())
		}
	}
	joined := strings.Join(all, "\n")
	require.Contains(t, joined, "is gone")
	require.Contains(t, joined, "digest")
	require.Contains(t, joined, "tenant manifest is corrupt")
}

// TestForgerySwitchKeyWithForgedManifest: the attacker plants a key of their
// own and a manifest, genuinely MACed under it, that binds the tenant to that
// key and lists none of its segments (so nothing it lists can disagree). The
// tenant's real segments are under another key, which does not wrap this
// manifest's key: refused, and no write goes to the attacker's key.
func TestForgerySwitchKeyWithForgedManifest(t *testing.T) {
	f := newForgeryStore(t)
	evil := t.TempDir()
	edb, err := Open(evil, &Options{RetentionInterval: -1})
	require.NoError(t, err)
	_, err = edb.linkKey(bg, "acme", "local://attacker")
	require.NoError(t, err)
	require.NoError(t, edb.Close())
	copyFile(t, filepath.Join(evil, "keys", "attacker.key"), filepath.Join(f.dir, "keys", "attacker.key"))
	copyFile(t, filepath.Join(evil, "segments", "acme", manifestFile), f.manifest("acme"))
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "index"))) // no sequence to compare with

	db := f.open()
	defer db.Close()
	requireReported(t, db, "no manifest key wrapped under local://acme")
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(3)), 2, t0))
	require.ErrorIs(t, err, ErrTenantDamaged)
	f.requireHealthy(db, "globex")
}
