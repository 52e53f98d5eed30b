package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

const auditTestPath = "/a/keys.log"

var auditT0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func auditEvent(i int) AuditEvent {
	return AuditEvent{Time: auditT0.Add(time.Duration(i) * time.Second), Operation: "GenerateDataKey", KeyURI: LocalURI("acme"),
		Context: SegmentContext("acme", fmt.Sprintf("%032x", i)), Outcome: "ok", LatencyMs: float64(i) / 10}
}

// newAuditLog makes a log of n records on a MemFS and returns the log
// (open), the file system and the heads after every record (heads[0] is the
// empty log's).
func newAuditLog(t testing.TB, n int) (*AuditLog, *vfs.MemFS, []AuditHead) {
	t.Helper()
	mem := vfs.NewMem()
	l, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	heads := []AuditHead{l.Head()}
	for i := 1; i <= n; i++ {
		require.NoError(t, l.Append(auditEvent(i)))
		heads = append(heads, l.Head())
		require.Equal(t, uint64(i), heads[i].Seq)
	}
	return l, mem, heads
}

// auditRecords returns the [start, end) byte ranges of the records of b.
func auditRecords(t testing.TB, b []byte) [][2]int {
	t.Helper()
	var out [][2]int
	s, err := scanAudit(bytes.NewReader(b), int64(len(b)), func(r auditRecord) error {
		out = append(out, [2]int{int(r.Off), int(r.Off) + auditRecordFixed + len(r.JSON)})
		return nil
	})
	require.NoError(t, err)
	require.Zero(t, s.torn())
	return out
}

func fileBytes(t testing.TB, mem *vfs.MemFS) []byte {
	t.Helper()
	b, err := mem.Bytes(auditTestPath)
	require.NoError(t, err)
	return b
}

// setFile replaces the log's bytes (the log must be closed).
func setFile(t testing.TB, mem *vfs.MemFS, b []byte) {
	t.Helper()
	require.NoError(t, mem.SetBytes(auditTestPath, b))
}

// reseal recomputes the CRC of the record at rng, as an attacker who knows
// the format would after editing it, and optionally its hash.
func reseal(b []byte, rng [2]int, hash bool) {
	rec := b[rng[0]:rng[1]]
	if hash {
		var prev [32]byte
		copy(prev[:], rec[16:48])
		h := auditRecordHash(binary.LittleEndian.Uint64(rec[8:]), &prev, rec[auditRecordFixed:])
		copy(rec[48:80], h[:])
	}
	binary.LittleEndian.PutUint32(rec[4:], auditRecordCRC(rec[:auditRecordFixed], rec[auditRecordFixed:]))
}

func TestAuditChainAppendReopenVerify(t *testing.T) {
	l, mem, heads := newAuditLog(t, 5)
	rep, err := VerifyAuditLog(mem, auditTestPath, heads)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Version)
	require.True(t, rep.Chained)
	require.Equal(t, 5, rep.Records)
	require.Equal(t, heads[5], rep.Head)
	require.Equal(t, 6, rep.Anchors, "every head, the empty log's included")
	require.Zero(t, rep.TornBytes)

	// The live variant agrees.
	live, err := l.Verify(heads[2:3])
	require.NoError(t, err)
	require.Equal(t, heads[5], live.Head)

	// Reopening continues the chain.
	require.NoError(t, l.Close())
	l2, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	defer l2.Close()
	require.Equal(t, heads[5], l2.Head())
	require.NoError(t, l2.Append(auditEvent(6)))
	require.Equal(t, uint64(6), l2.Head().Seq)
	rep, err = VerifyAuditLog(mem, auditTestPath, append(heads, l2.Head()))
	require.NoError(t, err)
	require.Equal(t, 6, rep.Records)

	evs, err := ReadAuditLog(mem, auditTestPath, time.Time{})
	require.NoError(t, err)
	require.Len(t, evs, 6)
	for i, e := range evs {
		require.Equal(t, auditEvent(i+1).Context, e.Context)
	}
	evs, err = ReadAuditLog(mem, auditTestPath, auditT0.Add(4*time.Second))
	require.NoError(t, err)
	require.Len(t, evs, 3)
}

// The review's finding: dropping the last records went unnoticed.
func TestAuditDroppedTailDetectedByAnchor(t *testing.T) {
	for _, drop := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(drop), func(t *testing.T) {
			l, mem, heads := newAuditLog(t, 5)
			require.NoError(t, l.Close())
			b := fileBytes(t, mem)
			recs := auditRecords(t, b)
			cut := recs[len(recs)-drop][0]
			setFile(t, mem, b[:cut])

			// A clean boundary: the file alone cannot tell...
			rep, err := VerifyAuditLog(mem, auditTestPath, nil)
			require.NoError(t, err)
			require.Equal(t, 5-drop, rep.Records)
			// ...the anchor can.
			rep, err = VerifyAuditLog(mem, auditTestPath, []AuditHead{heads[5]})
			require.ErrorIs(t, err, ErrAuditTruncated)
			require.ErrorIs(t, err, ErrAuditCorrupt, "truncation is also corruption")
			require.Contains(t, err.Error(), fmt.Sprintf("%d record(s) dropped", drop))
			require.Equal(t, 5-drop, rep.Records)
			// Anchors inside what is left still match.
			_, err = VerifyAuditLog(mem, auditTestPath, heads[:6-drop])
			require.NoError(t, err)
		})
	}
}

// The review's finding: a corrupt last record was taken for a torn write and
// cut. Now it is corruption, and the file is left as it is.
func TestAuditCorruptLastRecordIsNotCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(rec [2]int) int // byte to flip
	}{
		{"json", func(r [2]int) int { return r[1] - 3 }},
		{"crc", func(r [2]int) int { return r[0] + 5 }},
		{"seq", func(r [2]int) int { return r[0] + 8 }},
		{"prev", func(r [2]int) int { return r[0] + 20 }},
		{"hash", func(r [2]int) int { return r[0] + 60 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, mem, _ := newAuditLog(t, 4)
			require.NoError(t, l.Close())
			b := fileBytes(t, mem)
			recs := auditRecords(t, b)
			b[tc.at(recs[3])] ^= 0x40
			setFile(t, mem, b)

			rep, err := VerifyAuditLog(mem, auditTestPath, nil)
			require.ErrorIs(t, err, ErrAuditCorrupt)
			require.NotErrorIs(t, err, ErrAuditTruncated)
			require.Equal(t, 3, rep.Records)
			require.Zero(t, rep.TornBytes)
			_, err = ReadAuditLog(mem, auditTestPath, time.Time{})
			require.ErrorIs(t, err, ErrAuditCorrupt)
			_, err = OpenAuditLog(mem, auditTestPath)
			require.ErrorIs(t, err, ErrAuditCorrupt)
			require.Equal(t, b, fileBytes(t, mem), "the corrupt record is kept as evidence, not cut")
		})
	}
}

func TestAuditCorruptMiddleRecord(t *testing.T) {
	for _, tc := range []struct {
		name      string
		crc, hash bool // what the attacker recomputes
		want      string
	}{
		{"bit flip", false, false, "checksum mismatch"},
		{"crc recomputed", true, false, "hash mismatch"},
		{"crc and hash recomputed", true, true, "does not link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, mem, heads := newAuditLog(t, 5)
			require.NoError(t, l.Close())
			b := fileBytes(t, mem)
			recs := auditRecords(t, b)
			i := bytes.Index(b[recs[2][0]:recs[2][1]], []byte(`"ok"`))
			require.Positive(t, i)
			copy(b[recs[2][0]+i:], `"OK"`)
			if tc.crc {
				reseal(b, recs[2], tc.hash)
			}
			setFile(t, mem, b)
			rep, err := VerifyAuditLog(mem, auditTestPath, nil)
			require.ErrorIs(t, err, ErrAuditCorrupt)
			require.Contains(t, err.Error(), tc.want)
			require.Less(t, rep.Records, 5)
			rep, err = VerifyAuditLog(mem, auditTestPath, heads)
			require.ErrorIs(t, err, ErrAuditCorrupt)
			require.Contains(t, err.Error(), "record ")
			require.Less(t, rep.Records, 5)
		})
	}
}

// Rewriting the last record consistently (CRC and hash) is invisible to the
// file alone; an anchor catches it.
func TestAuditRewrittenLastRecordDetectedByAnchor(t *testing.T) {
	l, mem, heads := newAuditLog(t, 3)
	require.NoError(t, l.Close())
	b := fileBytes(t, mem)
	recs := auditRecords(t, b)
	i := bytes.Index(b[recs[2][0]:], []byte(`"ok"`))
	copy(b[recs[2][0]+i:], `"OK"`)
	reseal(b, recs[2], true)
	setFile(t, mem, b)
	_, err := VerifyAuditLog(mem, auditTestPath, nil)
	require.NoError(t, err)
	_, err = VerifyAuditLog(mem, auditTestPath, heads[3:])
	require.ErrorIs(t, err, ErrAuditCorrupt)
	require.Contains(t, err.Error(), "rewritten")
}

func TestAuditReorderedRecords(t *testing.T) {
	l, mem, _ := newAuditLog(t, 5)
	require.NoError(t, l.Close())
	b := fileBytes(t, mem)
	recs := auditRecords(t, b)
	var out []byte
	out = append(out, b[:recs[1][0]]...)
	out = append(out, b[recs[2][0]:recs[2][1]]...) // 3 before 2
	out = append(out, b[recs[1][0]:recs[1][1]]...)
	out = append(out, b[recs[3][0]:]...)
	require.Len(t, out, len(b))
	setFile(t, mem, out)
	rep, err := VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
	require.Contains(t, err.Error(), "sequence number 3")
	require.Equal(t, 1, rep.Records)
}

func TestAuditSplicedRecordFromAnotherLog(t *testing.T) {
	la, memA, _ := newAuditLog(t, 4)
	lb, memB, _ := newAuditLog(t, 4) // same events, another log id
	require.NoError(t, la.Close())
	require.NoError(t, lb.Close())
	a, b := fileBytes(t, memA), fileBytes(t, memB)
	ra, rb := auditRecords(t, a), auditRecords(t, b)
	require.NotEqual(t, a[ra[0][0]:ra[0][1]], b[rb[0][0]:rb[0][1]], "the chains differ from the genesis on")
	for _, i := range []int{0, 2, 3} {
		out := append([]byte(nil), a[:ra[i][0]]...)
		out = append(out, b[rb[i][0]:rb[i][1]]...) // a valid record, of another chain
		out = append(out, a[ra[i][1]:]...)
		setFile(t, memA, out)
		rep, err := VerifyAuditLog(memA, auditTestPath, nil)
		require.ErrorIs(t, err, ErrAuditCorrupt, "record %d", i+1)
		require.Contains(t, err.Error(), "does not link")
		require.Equal(t, i, rep.Records)
	}
	// A record appended from another log is caught the same way.
	out := append(append([]byte(nil), a...), b[rb[3][0]:rb[3][1]]...)
	setFile(t, memA, out)
	_, err := VerifyAuditLog(memA, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
}

func TestAuditReplacedByAnotherChain(t *testing.T) {
	l, mem, heads := newAuditLog(t, 5)
	require.NoError(t, l.Close())
	for _, n := range []int{0, 3, 5, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// A whole, valid log of n records written by the attacker.
			ol, omem, _ := newAuditLog(t, n)
			require.NoError(t, ol.Close())
			setFile(t, mem, fileBytes(t, omem))
			rep, err := VerifyAuditLog(mem, auditTestPath, nil)
			require.NoError(t, err, "valid on its own")
			require.Equal(t, n, rep.Records)
			_, err = VerifyAuditLog(mem, auditTestPath, []AuditHead{heads[5]})
			require.ErrorIs(t, err, ErrAuditCorrupt)
			if n < 5 {
				require.ErrorIs(t, err, ErrAuditTruncated)
			} else {
				require.NotErrorIs(t, err, ErrAuditTruncated)
				require.Contains(t, err.Error(), "rewritten")
			}
			// The empty log's anchor pins the header: a new log id fails at once.
			_, err = VerifyAuditLog(mem, auditTestPath, heads[:1])
			require.ErrorIs(t, err, ErrAuditCorrupt)
		})
	}
}

// A crash mid-append leaves an incomplete last record: reported, tolerated,
// and cut before the next append.
func TestAuditTornTailTolerated(t *testing.T) {
	l, mem, heads := newAuditLog(t, 3)
	require.NoError(t, l.Close())
	whole := fileBytes(t, mem)
	recs := auditRecords(t, whole)
	last := recs[2]
	for cut := last[0] + 1; cut < last[1]; cut++ {
		setFile(t, mem, whole[:cut])
		rep, err := VerifyAuditLog(mem, auditTestPath, heads[:3])
		require.NoError(t, err, "cut at %d", cut)
		require.Equal(t, 2, rep.Records)
		require.Equal(t, int64(cut-last[0]), rep.TornBytes)
		evs, err := ReadAuditLog(mem, auditTestPath, time.Time{})
		require.NoError(t, err)
		require.Len(t, evs, 2)
	}
	// Reopening cuts it; the chain goes on from record 2.
	setFile(t, mem, whole[:last[0]+50])
	l2, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	defer l2.Close()
	require.Equal(t, heads[2], l2.Head())
	require.NoError(t, l2.Append(auditEvent(9)))
	rep, err := l2.Verify([]AuditHead{heads[2], l2.Head()})
	require.NoError(t, err)
	require.Equal(t, 3, rep.Records)
	require.Equal(t, int64(50), rep.TornBytes, "the cut is reported")
	// The anchor of the lost record now fails: it was never durable, or it was dropped.
	_, err = l2.Verify(heads[3:])
	require.ErrorIs(t, err, ErrAuditCorrupt)

	// An incomplete record that does not belong there is corruption.
	bad := append([]byte(nil), whole[:last[0]+60]...)
	bad[last[0]+8] ^= 1 // its seq
	setFile(t, mem, bad)
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
	bad = append([]byte(nil), whole[:last[0]+60]...)
	bad[last[0]+30] ^= 1 // its link
	setFile(t, mem, bad)
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
	// So is an impossible length, complete or not.
	bad = append([]byte(nil), whole[:last[0]+4]...)
	binary.LittleEndian.PutUint32(bad[last[0]:], auditMaxRecord+1)
	setFile(t, mem, bad)
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
}

func TestAuditUnknownVersionIsNotCorruption(t *testing.T) {
	l, mem, _ := newAuditLog(t, 2)
	require.NoError(t, l.Close())
	b := fileBytes(t, mem)
	binary.LittleEndian.PutUint16(b[8:], 3)
	setFile(t, mem, b)
	_, err := VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditVersion)
	require.NotErrorIs(t, err, ErrAuditCorrupt)
	_, err = OpenAuditLog(mem, auditTestPath)
	require.ErrorIs(t, err, ErrAuditVersion)
	_, err = ReadAuditLog(mem, auditTestPath, time.Time{})
	require.ErrorIs(t, err, ErrAuditVersion)

	// A damaged header is corruption.
	b = fileBytes(t, mem)
	binary.LittleEndian.PutUint16(b[8:], 2)
	b[20] ^= 1
	setFile(t, mem, b)
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
	require.NotErrorIs(t, err, ErrAuditVersion)
}

// testdata/audit-v1.log was written by the version-1 code.
func TestAuditVersion1StillReadable(t *testing.T) {
	v1, err := os.ReadFile("testdata/audit-v1.log")
	require.NoError(t, err)
	mem := vfs.NewMem()
	require.NoError(t, mem.MkdirAll("/a"))
	require.NoError(t, vfs.WriteFileAtomic(mem, auditTestPath, v1))

	evs, err := ReadAuditLog(mem, auditTestPath, time.Time{})
	require.NoError(t, err)
	require.Len(t, evs, 3)
	require.Equal(t, "DescribeKey", evs[2].Operation)
	rep, err := VerifyAuditLog(mem, auditTestPath, nil)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Version)
	require.False(t, rep.Chained, "version 1 is reported unchained")
	require.Equal(t, 3, rep.Records)
	_, err = VerifyAuditLog(mem, auditTestPath, []AuditHead{{Seq: 1}})
	require.ErrorIs(t, err, ErrAuditCorrupt, "an anchored log replaced by a version-1 file")

	// Opening for appends moves it aside and continues it in version 2.
	l, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	require.Equal(t, uint64(0), l.Head().Seq)
	require.NoError(t, l.Append(auditEvent(1)))
	require.NoError(t, l.Close())
	sum := sha256.Sum256(v1)
	arch := auditPredecessorPath(auditTestPath, sum)
	got, err := mem.Bytes(arch)
	require.NoError(t, err)
	require.Equal(t, v1, got, "the version-1 file is kept byte for byte")

	evs, err = ReadAuditLog(mem, auditTestPath, time.Time{})
	require.NoError(t, err)
	require.Len(t, evs, 4, "version-1 events first, then version 2")
	require.Equal(t, "DescribeKey", evs[2].Operation)
	rep, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Version)
	require.Equal(t, 1, rep.Records)
	require.NotNil(t, rep.Predecessor)
	require.Equal(t, 3, rep.Predecessor.Records)
	require.Equal(t, arch, rep.Predecessor.Path)

	// The version-1 file is pinned by the chain.
	tampered := append([]byte(nil), v1...)
	tampered[40] ^= 1
	require.NoError(t, mem.SetBytes(arch, tampered))
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditCorrupt)
	_, err = ReadAuditLog(mem, auditTestPath, time.Time{})
	require.ErrorIs(t, err, ErrAuditCorrupt)
	require.NoError(t, mem.Remove(arch))
	_, err = VerifyAuditLog(mem, auditTestPath, nil)
	require.ErrorIs(t, err, ErrAuditTruncated)
	evs, err = ReadAuditLog(mem, auditTestPath, time.Time{})
	require.NoError(t, err, "listing still works; verify reports the loss")
	require.Len(t, evs, 1)
}

// The version-1 file's torn tail is cut before it is archived; a crash during
// the move leaves the version-1 file, moved again on the next open.
func TestAuditVersion1MigrationCrash(t *testing.T) {
	v1, err := os.ReadFile("testdata/audit-v1.log")
	require.NoError(t, err)
	torn := append(append([]byte(nil), v1...), 0x20, 0, 0, 0, 1, 2)
	mem := vfs.NewMem()
	require.NoError(t, mem.MkdirAll("/a"))
	require.NoError(t, vfs.WriteFileAtomic(mem, auditTestPath, torn))
	var renames atomic.Int64
	efs := vfs.NewErrorFS(mem, vfs.FailNth(vfs.OpRename, "keys.log", 2, vfs.ErrIO, &renames))
	_, err = OpenAuditLog(efs, auditTestPath)
	require.ErrorIs(t, err, vfs.ErrIO, "archived, but the new file not in place")
	require.Equal(t, torn, fileBytes(t, mem))
	l, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	rep, err := VerifyAuditLog(mem, auditTestPath, nil)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Predecessor.Records)
	require.Equal(t, sha256.Sum256(v1), rep.Predecessor.SHA256)
}

// testdata/audit-v2.log, the fuzz seed, stays valid.
// LOGSTORE_UPDATE_TESTDATA=1 rewrites it.
func TestAuditTestdataVersion2(t *testing.T) {
	path := filepath.Join("testdata", "audit-v2.log")
	if os.Getenv("LOGSTORE_UPDATE_TESTDATA") != "" {
		_ = os.Remove(path)
		l, err := OpenAuditLog(vfs.Default, path)
		require.NoError(t, err)
		for i := 1; i <= 3; i++ {
			require.NoError(t, l.Append(auditEvent(i)))
		}
		require.NoError(t, l.Close())
	}
	rep, err := VerifyAuditLog(vfs.Default, path, nil)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Version)
	require.Equal(t, 3, rep.Records)
}

// spyProvider remembers the last key material it returned.
type spyProvider struct {
	Provider
	last []byte
}

func (s *spyProvider) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	dk, err := s.Provider.GenerateDataKey(ctx, uri, ec)
	s.last = dk.Plaintext
	return dk, err
}

func (s *spyProvider) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	dek, err := s.Provider.Unwrap(ctx, uri, wrapped, ec)
	s.last = dek
	return dek, err
}

func newAuditedTest(t *testing.T, o AuditOptions) (*Audited, *spyProvider, *vfs.ErrorFS, *vfs.MemFS) {
	local, _ := newLocal(t, true)
	spy := &spyProvider{Provider: local}
	mem := vfs.NewMem()
	efs := vfs.NewErrorFS(mem, nil)
	l, err := OpenAuditLog(efs, auditTestPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return NewAuditedWith(spy, l, o), spy, efs, mem
}

// The review's finding: a failed audit write was swallowed and the key
// operation went ahead. Now no key material leaves without its record.
func TestAuditedFailsClosed(t *testing.T) {
	ctx := context.Background()
	uri, ec := LocalURI("acme"), SegmentContext("acme", "seg-1")
	for _, fault := range []struct {
		op    vfs.Op
		err   error
		errno syscall.Errno
	}{{vfs.OpWrite, vfs.ErrNoSpace, syscall.ENOSPC}, {vfs.OpSync, vfs.ErrIO, syscall.EIO}} {
		t.Run(fault.op.String(), func(t *testing.T) {
			a, spy, efs, mem := newAuditedTest(t, AuditOptions{})
			var hooked []error
			a.OnAuditError = func(err error) { hooked = append(hooked, err) }
			good, err := a.GenerateDataKey(ctx, uri, ec)
			require.NoError(t, err)
			head := a.Log().Head()
			require.Equal(t, uint64(1), head.Seq)

			var n atomic.Int64
			efs.SetInjector(vfs.FailNth(fault.op, "keys.log", 1, fault.err, &n))
			dk, err := a.GenerateDataKey(ctx, uri, ec)
			require.ErrorIs(t, err, ErrAuditWrite)
			require.ErrorIs(t, err, fault.errno, "the cause is kept")
			require.Contains(t, err.Error(), "logstore/keys: audit record could not be written (GenerateDataKey local://acme, operation refused)")
			require.Equal(t, DataKey{}, dk, "no DEK is returned")
			require.Equal(t, make([]byte, DEKSize), spy.last, "the DEK the provider made is zeroed")

			n.Store(0)
			dek, err := a.Unwrap(ctx, uri, good.Wrapped, ec)
			require.ErrorIs(t, err, ErrAuditWrite)
			require.Nil(t, dek)
			require.Equal(t, make([]byte, DEKSize), spy.last)

			n.Store(0)
			_, err = a.Wrap(ctx, uri, good.Plaintext, ec)
			require.ErrorIs(t, err, ErrAuditWrite)
			n.Store(0)
			_, err = a.Describe(ctx, uri)
			require.ErrorIs(t, err, ErrAuditWrite)
			require.Equal(t, uint64(4), a.AuditFailures())
			require.Len(t, hooked, 4)
			require.Equal(t, head, a.Log().Head(), "no failed record counts")

			// A failed operation whose record fails too reports both.
			n.Store(0)
			_, err = a.Unwrap(ctx, uri, good.Wrapped, SegmentContext("acme", "other"))
			require.ErrorIs(t, err, ErrInvalidCiphertext)
			require.ErrorIs(t, err, ErrAuditWrite)

			// Once the disk recovers, the chain goes on whole: nothing of the
			// failed appends is left in the file.
			efs.SetInjector(nil)
			dek, err = a.Unwrap(ctx, uri, good.Wrapped, ec)
			require.NoError(t, err)
			require.Equal(t, good.Plaintext, dek)
			rep, err := VerifyAuditLog(mem, auditTestPath, []AuditHead{head, a.Log().Head()})
			require.NoError(t, err)
			require.Equal(t, 2, rep.Records)
		})
	}
}

func TestAuditedFailOpen(t *testing.T) {
	ctx := context.Background()
	uri, ec := LocalURI("acme"), SegmentContext("acme", "seg-1")
	a, _, efs, _ := newAuditedTest(t, AuditOptions{FailOpen: true})
	var hooked []error
	a.OnAuditError = func(err error) { hooked = append(hooked, err) }
	efs.SetInjector(func(op vfs.Op, name string) error {
		if op == vfs.OpWrite {
			return vfs.ErrNoSpace
		}
		return nil
	})
	dk, err := a.GenerateDataKey(ctx, uri, ec)
	require.NoError(t, err)
	require.Len(t, dk.Plaintext, DEKSize)
	dek, err := a.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, dek)
	require.Equal(t, uint64(2), a.AuditFailures())
	require.Len(t, hooked, 2)
	require.ErrorIs(t, hooked[0], ErrAuditWrite)
	require.Contains(t, hooked[0].Error(), "operation allowed: FailOpen")
}

// An append that cannot even be undone leaves the log refusing appends (and
// so key operations failing closed) until it is reopened.
func TestAuditBrokenLogStaysClosed(t *testing.T) {
	ctx := context.Background()
	a, _, efs, mem := newAuditedTest(t, AuditOptions{})
	efs.SetInjector(func(op vfs.Op, name string) error {
		if op == vfs.OpSync || op == vfs.OpTruncate {
			return vfs.ErrIO
		}
		return nil
	})
	_, err := a.GenerateDataKey(ctx, LocalURI("acme"), SegmentContext("acme", "s"))
	require.ErrorIs(t, err, ErrAuditWrite)
	efs.SetInjector(nil)
	_, err = a.GenerateDataKey(ctx, LocalURI("acme"), SegmentContext("acme", "s"))
	require.ErrorIs(t, err, ErrAuditWrite)
	require.Contains(t, err.Error(), "unusable until reopened")
	require.NoError(t, a.Log().Close())
	// The record that was written but not synced is whole, so reopening keeps
	// it (the operation failed, but the record of the attempt is true).
	l, err := OpenAuditLog(mem, auditTestPath)
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, uint64(1), l.Head().Seq)
}

func TestAuditEventSizeBounded(t *testing.T) {
	ctx := context.Background()
	a, _, _, _ := newAuditedTest(t, AuditOptions{})
	long := string(bytes.Repeat([]byte("x"), 2*auditMaxRecord))
	_, err := a.Describe(ctx, "local://"+long[:60])
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrAuditWrite)
	e := auditEvent(1)
	e.Error = long
	require.Error(t, a.Log().Append(e), "an event over the limit is refused, not written unreadable")
	require.Equal(t, uint64(1), a.Log().Head().Seq)
	// A provider's long error is shortened to fit.
	require.NoError(t, a.record("DescribeKey", "local://x", "", nil, time.Now(), errors.New(long)))
	require.Equal(t, uint64(2), a.Log().Head().Seq)
}

// FuzzAuditScan feeds arbitrary bytes to the record scanner: it never panics,
// reports only typed errors, and a log it accepts re-scans to the same head,
// can be opened and appended to, and stays verifiable.
func FuzzAuditScan(f *testing.F) {
	for _, name := range []string{"audit-v2.log", "audit-v1.log"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(f, err)
		f.Add(b)
		f.Add(b[:len(b)-7])
		f.Add(b[:len(b)/2])
		c := append([]byte(nil), b...)
		c[len(c)-10] ^= 0x10
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := scanAudit(bytes.NewReader(b), int64(len(b)), func(r auditRecord) error {
			if int(r.Off)+len(r.JSON) > len(b) {
				t.Fatalf("record past the end")
			}
			return nil
		})
		if err != nil {
			if !errorsIsAny(err, ErrAuditCorrupt, ErrAuditVersion) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if s.end > int64(len(b)) || s.end < s.hdr.len() {
			t.Fatalf("end %d outside the file (%d bytes)", s.end, len(b))
		}
		prefix := b[:s.end]
		s2, err := scanAudit(bytes.NewReader(prefix), s.end, nil)
		if err != nil || s2.head != s.head || s2.torn() != 0 || s2.records != s.records {
			t.Fatalf("the whole-record prefix scans differently: %v", err)
		}
		if s.hdr.version != auditVersion2 {
			return
		}
		mem := vfs.NewMem()
		if err := mem.MkdirAll("/a"); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(mem, auditTestPath, b); err != nil {
			t.Fatal(err)
		}
		l, err := OpenAuditLog(mem, auditTestPath)
		if err != nil {
			t.Fatalf("a log the scanner accepts does not open: %v", err)
		}
		defer l.Close()
		if l.Head() != s.head {
			t.Fatalf("open head %v, scan head %v", l.Head(), s.head)
		}
		if err := l.Append(auditEvent(1)); err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyAuditLog(mem, auditTestPath, []AuditHead{s.head, l.Head()})
		if err != nil && !errorsIsAny(err, ErrAuditCorrupt) {
			t.Fatalf("untyped error: %v", err)
		}
		if err == nil && rep.Head.Seq != s.head.Seq+1 {
			t.Fatalf("head %d after one append to %d", rep.Head.Seq, s.head.Seq)
		}
	})
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// BenchmarkAuditedProvider measures what the audit trail adds to a key
// operation: the unaudited local provider as the baseline, then a record
// appended without and with an fsync. The engine makes these calls once per
// segment (GenerateDataKey) and once per DEK-cache miss (Unwrap), not per
// record. LOGSTORE_BENCH_DIR puts the log on another file system.
func BenchmarkAuditedProvider(b *testing.B) {
	ctx := context.Background()
	uri, ec := LocalURI("acme"), SegmentContext("acme", "0123456789abcdef0123456789abcdef")
	dir := b.TempDir()
	if d := os.Getenv("LOGSTORE_BENCH_DIR"); d != "" {
		var err error
		dir, err = os.MkdirTemp(d, "auditbench")
		require.NoError(b, err)
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	local, err := NewLocal(LocalOptions{Dir: filepath.Join(dir, "keys"), AutoCreate: true})
	require.NoError(b, err)
	defer local.Close()
	dk, err := local.GenerateDataKey(ctx, uri, ec)
	require.NoError(b, err)
	variants := []struct {
		name string
		p    func(b *testing.B) Provider
	}{
		{"unaudited", func(*testing.B) Provider { return local }},
		{"sync=off", func(b *testing.B) Provider { return auditedBench(b, dir, local, true) }},
		{"sync=on", func(b *testing.B) Provider { return auditedBench(b, dir, local, false) }},
	}
	for _, v := range variants {
		b.Run("GenerateDataKey/"+v.name, func(b *testing.B) {
			p := v.p(b)
			b.ReportAllocs()
			for b.Loop() {
				k, err := p.GenerateDataKey(ctx, uri, ec)
				if err != nil {
					b.Fatal(err)
				}
				Zero(k.Plaintext)
			}
		})
	}
	for _, v := range variants {
		b.Run("Unwrap/"+v.name, func(b *testing.B) {
			p := v.p(b)
			b.ReportAllocs()
			for b.Loop() {
				dek, err := p.Unwrap(ctx, uri, dk.Wrapped, ec)
				if err != nil {
					b.Fatal(err)
				}
				Zero(dek)
			}
		})
	}
}

var benchLogs atomic.Int64

func auditedBench(b *testing.B, dir string, p Provider, noSync bool) Provider {
	l, err := OpenAuditLog(vfs.Default, filepath.Join(dir, "audit", fmt.Sprintf("keys-%d.log", benchLogs.Add(1))))
	require.NoError(b, err)
	b.Cleanup(func() { _ = l.Close() })
	return NewAuditedWith(p, l, AuditOptions{NoSync: noSync})
}
