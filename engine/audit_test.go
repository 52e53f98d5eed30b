package engine

import (
	"math/rand"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

func TestVerifyAuditAfterAppends(t *testing.T) {
	mem := vfs.NewMem()
	db := openTest(t, mem, "/db", func(o *Options) { o.IndexInMemory = true })
	recs := genRecords(rand.New(rand.NewSource(1)), 20, t0)
	_, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	rep, err := db.Admin().VerifyAudit(bg)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Version)
	require.True(t, rep.Chained)
	require.Positive(t, rep.Records, "at least the segment's GenerateDataKey")
	require.Equal(t, db.audit.Head(), rep.Head)
	require.Equal(t, AuditPath("/db"), rep.Path)
	require.NoError(t, db.Close())

	// The whole trail verifies offline too, with its head as anchor.
	rep2, err := keys.VerifyAuditLog(mem, AuditPath("/db"), []keys.AuditHead{rep.Head})
	require.NoError(t, err)
	require.GreaterOrEqual(t, rep2.Records, rep.Records)
}

// The review's finding: a failed audit write was swallowed and the key
// operation went ahead. Now a segment needs its DEK's record on disk first.
func TestAuditWriteFailureFailsAppendClosed(t *testing.T) {
	for _, fault := range []struct {
		op    vfs.Op
		err   error
		errno syscall.Errno
	}{{vfs.OpWrite, vfs.ErrNoSpace, syscall.ENOSPC}, {vfs.OpSync, vfs.ErrIO, syscall.EIO}} {
		t.Run(fault.op.String(), func(t *testing.T) {
			mem := vfs.NewMem()
			efs := vfs.NewErrorFS(mem, nil)
			db := openTest(t, efs, "/db", func(o *Options) { o.IndexInMemory = true })
			defer db.Close()
			efs.SetInjector(func(op vfs.Op, name string) error {
				if op == fault.op && name == AuditPath("/db") {
					return fault.err
				}
				return nil
			})
			recs := genRecords(rand.New(rand.NewSource(2)), 5, t0)
			_, err := db.tn("acme").Append(bg, recs)
			require.ErrorIs(t, err, keys.ErrAuditWrite)
			require.ErrorIs(t, err, fault.errno)
			segs, err := db.listSegmentFiles("acme")
			require.NoError(t, err)
			require.Empty(t, segs, "no segment without an audited DEK")

			// The disk recovers: writes go on and the trail is whole.
			efs.SetInjector(nil)
			_, err = db.tn("acme").Append(bg, recs)
			require.NoError(t, err)
			_, err = db.Admin().VerifyAudit(bg)
			require.NoError(t, err)
		})
	}
}

// testdata written by the version-1 code opens, is continued in version 2,
// and its events are still listed.
func TestOpenContinuesVersion1AuditLog(t *testing.T) {
	v1, err := os.ReadFile("../keys/testdata/audit-v1.log")
	require.NoError(t, err)
	mem := vfs.NewMem()
	require.NoError(t, mem.MkdirAll("/db/audit"))
	require.NoError(t, vfs.WriteFileAtomic(mem, AuditPath("/db"), v1))
	db := openTest(t, mem, "/db", func(o *Options) { o.IndexInMemory = true })
	defer db.Close()
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(3)), 3, t0))
	require.NoError(t, err)
	evs, err := db.Admin().Audit(bg, "acme", t0.AddDate(-1, 0, 0))
	require.NoError(t, err)
	require.Greater(t, len(evs), 2, "the version-1 events of acme and the new ones")
	require.Equal(t, "GenerateDataKey", evs[0].Operation)
	rep, err := db.Admin().VerifyAudit(bg)
	require.NoError(t, err)
	require.NotNil(t, rep.Predecessor)
	require.Equal(t, 3, rep.Predecessor.Records)
}

// A corrupt last record used to be cut as a torn write; now Open refuses the
// store and leaves the evidence in place.
// TestOpenSetsCorruptAuditLogAside: a corrupt trail is kept unchanged as
// evidence, reported by Open, and a new chain started; the manifests'
// anchors then show the break (VerifyAudit fails) instead of one flipped byte
// stopping every tenant.
func TestOpenSetsCorruptAuditLogAside(t *testing.T) {
	mem := vfs.NewMem()
	db := openTest(t, mem, "/db", func(o *Options) { o.IndexInMemory = true })
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 3, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	b, err := mem.Bytes(AuditPath("/db"))
	require.NoError(t, err)
	b[len(b)-3] ^= 0x20
	require.NoError(t, mem.SetBytes(AuditPath("/db"), b))
	db2, err := Open("/db", &Options{FS: mem, IndexInMemory: true, RetentionInterval: -1})
	require.NoError(t, err)
	defer db2.Close()
	require.Contains(t, strings.Join(db2.Recovery().Damaged, "\n"), "corrupt audit log")
	names, err := mem.List("/db/audit")
	require.NoError(t, err)
	var aside string
	for _, n := range names {
		if strings.HasPrefix(n, "keys.log.corrupt-") {
			aside = "/db/audit/" + n
		}
	}
	require.NotEmpty(t, aside, "the damaged trail is kept: %v", names)
	got, err := mem.Bytes(aside)
	require.NoError(t, err)
	require.Equal(t, b, got, "kept unchanged")
	_, err = db2.Admin().VerifyAudit(bg)
	require.ErrorIs(t, err, keys.ErrAuditCorrupt, "the manifest's anchor no longer matches the new chain")
}

func TestVerifyAuditDisabled(t *testing.T) {
	db := openTest(t, vfs.NewMem(), "/db", func(o *Options) { o.IndexInMemory = true; o.NoAudit = true })
	defer db.Close()
	_, err := db.Admin().VerifyAudit(bg)
	require.ErrorIs(t, err, ErrInvalidOptions)
}

// TestAuditDroppedTailReportedOnOpen: records cut from the end of the trail
// (at a record boundary, so the chain itself is whole) are caught by the
// anchor in the tenant manifest, on the next Open and by VerifyAudit.
func TestAuditDroppedTailReportedOnOpen(t *testing.T) {
	mem := vfs.NewMem()
	db := openTest(t, mem, "/db", func(o *Options) { o.IndexInMemory = true })
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 3, t0))
	require.NoError(t, err)
	before, err := mem.Bytes(AuditPath("/db"))
	require.NoError(t, err)
	_, err = db.tn("globex").Append(bg, genRecords(rand.New(rand.NewSource(5)), 3, t0))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.NoError(t, mem.SetBytes(AuditPath("/db"), before)) // globex's key operations are gone

	db2, err := Open("/db", &Options{FS: mem, IndexInMemory: true, RetentionInterval: -1})
	require.NoError(t, err)
	defer db2.Close()
	require.Contains(t, strings.Join(db2.Recovery().Damaged, "\n"), "audit")
	// Open's own key operations (authenticating the manifests) may already
	// have appended past the cut: then the anchor sees a rewritten record
	// rather than a missing one. Either way the chain fails its anchor.
	_, err = db2.Admin().VerifyAudit(bg)
	require.ErrorIs(t, err, keys.ErrAuditCorrupt)
}
