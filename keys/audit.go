package keys

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstore/logstore/vfs"
)

// Audit log formats (docs/format/audit.md describes the same bytes).
// Integers are little-endian. Both versions share the magic; readers
// dispatch on the version field and refuse any other (ErrAuditVersion).
//
// Version 2, written since the audit trail became a hash chain:
//
//	File header, 72 bytes:
//	+------------------------------------------------------+
//	|  0  magic "LSTAUDT1"                           [8]   |
//	|  8  format version (2)                         u16   |
//	| 10  flags: bit 0 = continues a version-1 file  u16   |
//	| 12  log id (random)                            [16]  |
//	| 28  created, unix nanoseconds                  i64   |
//	| 36  predecessor: SHA-256 of the version-1 file [32]  |
//	|     this log continues (zero without flag 0)         |
//	| 68  crc32c of bytes [0,68)                     u32   |
//	+------------------------------------------------------+
//
//	Record, 80 + n bytes, appended and fsynced one at a time:
//	+------------------------------------------------------+
//	|  0  length n of the JSON event (1..65536)      u32   |
//	|  4  crc32c of bytes [0,4) and [8,80+n)         u32   |
//	|  8  seq: 1 for the first record, then +1       u64   |
//	| 16  prev: the previous record's hash; record 1 [32]  |
//	|     links to genesis = SHA-256(header [0,72))        |
//	| 48  hash = SHA-256(seq u64 || prev || JSON)    [32]  |
//	| 80  JSON event                                 [n]   |
//	+------------------------------------------------------+
//
// The head of the chain (seq, hash of the last record) is the value an
// anchor pins: given an anchor the log cannot lose records at its end or be
// rewritten without VerifyAuditLog noticing. A torn tail is only a record
// whose bytes run past the end of the file (a crash mid-append): readers
// ignore it and the next OpenAuditLog cuts it. A complete record with a bad
// checksum or hash, a sequence gap or a broken link is ErrAuditCorrupt, never
// cut.
//
// Version 1 (read only; OpenAuditLog moves such a file aside to
// FILE.v1-HEX16, HEX16 the first 8 bytes of its SHA-256, and starts a
// version-2 file whose header carries that SHA-256):
//
//	+--------------------------------------------+
//	| magic "LSTAUDT1"                     [8]   |
//	| version (1)                          u16   |
//	| reserved (0)                         u16   |
//	+--------------------------------------------+
//	| record: length n                     u32   |
//	|         crc32c of the JSON bytes     u32   |
//	|         JSON event                   [n]   |
//	| ...                                        |
//	+--------------------------------------------+
//
// Version 1 has no chain; its legacy rule treats a bad last record as torn.
const (
	auditMagic       = "LSTAUDT1"
	auditVersion1    = 1
	auditVersion2    = 2
	auditHeaderLenV1 = 12
	auditHeaderLen   = 72
	auditRecordFixed = 80
	auditMaxRecord   = 64 << 10
	// auditFlagPredecessor: the header's predecessor field is set.
	auditFlagPredecessor = 1 << 0
	// auditMaxErrorText bounds an event's error text, so that a provider's
	// long error cannot push an event past auditMaxRecord.
	auditMaxErrorText = 4 << 10
)

// Audit errors. ErrAuditCorrupt is any damage or tampering a reader can see
// (bad checksum or hash, a sequence gap, a broken chain, an anchor whose hash
// differs); ErrAuditVersion an unknown format version, never corruption.
// ErrAuditTruncated means records an anchor proves were written are missing
// (the log's end was dropped, or the log was replaced by a shorter one); every
// error that matches it also matches ErrAuditCorrupt. ErrAuditWrite is the
// failure to write a key operation's audit record, which fails the operation
// closed unless AuditOptions.FailOpen is set.
var (
	ErrAuditCorrupt   = errors.New("logstore/keys: corrupt audit log")
	ErrAuditVersion   = errors.New("logstore/keys: unknown audit log version")
	ErrAuditTruncated = errors.New("logstore/keys: audit log truncated (anchored records are missing)")
	ErrAuditWrite     = errors.New("logstore/keys: audit record could not be written")
)

// auditTruncated matches ErrAuditTruncated and ErrAuditCorrupt.
type auditTruncated struct{ detail string }

func (e *auditTruncated) Error() string { return ErrAuditTruncated.Error() + ": " + e.detail }
func (e *auditTruncated) Is(target error) bool {
	return target == ErrAuditTruncated || target == ErrAuditCorrupt
}

func truncatedf(format string, args ...any) error {
	return &auditTruncated{detail: fmt.Sprintf(format, args...)}
}

// AuditEvent is one key operation as recorded.
type AuditEvent struct {
	Time      time.Time         `json:"time"`
	Operation string            `json:"op"` // GenerateDataKey, Decrypt, Encrypt, ReEncrypt, DescribeKey
	KeyURI    string            `json:"key_uri"`
	ToKeyURI  string            `json:"to_key_uri,omitempty"`
	Context   EncryptionContext `json:"context,omitempty"`
	Outcome   string            `json:"outcome"` // "ok" or the error sentinel's text
	Error     string            `json:"error,omitempty"`
	LatencyMs float64           `json:"latency_ms"`
}

// AuditHead is a position in the chain: the sequence number of a record and
// its hash. Seq 0 is the empty log, whose Hash is the genesis hash (SHA-256
// of the file header). An anchor is an AuditHead kept where an attacker with
// write access to the audit file cannot roll it back (the engine's MACed
// manifest); VerifyAuditLog checks the log against it.
type AuditHead struct {
	Seq  uint64
	Hash [32]byte
}

func (h AuditHead) String() string {
	return fmt.Sprintf("seq %d sha256 %s", h.Seq, hex.EncodeToString(h.Hash[:]))
}

// AuditPredecessor is the version-1 file a version-2 log continues.
type AuditPredecessor struct {
	Path    string
	SHA256  [32]byte
	Records int
}

// AuditVerifyReport says what VerifyAuditLog checked. On error it holds what
// was checked before the problem.
type AuditVerifyReport struct {
	Path    string
	Version int  // 1 or 2
	Chained bool // false for version 1: no tamper evidence at all
	LogID   [16]byte
	Records int       // complete records checked (checksum, and for version 2 hash, sequence and link)
	Head    AuditHead // the last good record (version 1: Seq counts records, Hash is zero)
	Anchors int       // anchors checked and matching
	// TornBytes is an incomplete last record (a crash mid-append) that was
	// ignored, or cut when the log was last opened for appending.
	TornBytes   int64
	Predecessor *AuditPredecessor // nil when the log continues no version-1 file
}

// auditHeader is a parsed file header.
type auditHeader struct {
	version int
	flags   uint16
	logID   [16]byte
	created int64
	pred    [32]byte
	raw     [auditHeaderLen]byte // version 2 only
}

func (h *auditHeader) len() int64 {
	if h.version == auditVersion1 {
		return auditHeaderLenV1
	}
	return auditHeaderLen
}

func (h *auditHeader) hasPredecessor() bool { return h.flags&auditFlagPredecessor != 0 }

func encodeAuditHeader(logID [16]byte, created int64, pred *[32]byte) [auditHeaderLen]byte {
	var b [auditHeaderLen]byte
	copy(b[:], auditMagic)
	binary.LittleEndian.PutUint16(b[8:], auditVersion2)
	if pred != nil {
		binary.LittleEndian.PutUint16(b[10:], auditFlagPredecessor)
		copy(b[36:68], pred[:])
	}
	copy(b[12:28], logID[:])
	binary.LittleEndian.PutUint64(b[28:], uint64(created))
	binary.LittleEndian.PutUint32(b[68:], crc32c(b[:68]))
	return b
}

// readAuditHeader parses the header of the size bytes at r (size -1: as
// many as there are).
func readAuditHeader(r io.ReaderAt, size int64) (auditHeader, error) {
	var h auditHeader
	b := h.raw[:]
	if size >= 0 {
		b = b[:min(size, auditHeaderLen)]
	}
	n, err := r.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return h, err
	}
	b = b[:n]
	if len(b) < auditHeaderLenV1 || string(b[:8]) != auditMagic {
		return h, fmt.Errorf("%w: bad header", ErrAuditCorrupt)
	}
	switch v := binary.LittleEndian.Uint16(b[8:]); v {
	case auditVersion1:
		h.version = auditVersion1
		return h, nil
	case auditVersion2:
		h.version = auditVersion2
	default:
		return h, fmt.Errorf("%w: version %d (this build reads 1 and 2)", ErrAuditVersion, v)
	}
	if len(b) < auditHeaderLen {
		return h, fmt.Errorf("%w: short header (%d bytes)", ErrAuditCorrupt, len(b))
	}
	if crc32c(b[:68]) != binary.LittleEndian.Uint32(b[68:]) {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrAuditCorrupt)
	}
	h.flags = binary.LittleEndian.Uint16(b[10:])
	copy(h.logID[:], b[12:28])
	h.created = int64(binary.LittleEndian.Uint64(b[28:]))
	copy(h.pred[:], b[36:68])
	if h.flags&^auditFlagPredecessor != 0 {
		return h, fmt.Errorf("%w: unknown header flags %#x", ErrAuditCorrupt, h.flags)
	}
	if !h.hasPredecessor() && h.pred != ([32]byte{}) {
		return h, fmt.Errorf("%w: predecessor hash without the predecessor flag", ErrAuditCorrupt)
	}
	return h, nil
}

// auditRecordHash is SHA-256(seq || prev || JSON).
func auditRecordHash(seq uint64, prev *[32]byte, js []byte) [32]byte {
	h := sha256.New()
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	h.Write(s[:])
	h.Write(prev[:])
	h.Write(js)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// appendAuditRecord appends the version-2 record (seq, prev, js) to dst and
// returns it with the record's hash.
func appendAuditRecord(dst []byte, seq uint64, prev *[32]byte, js []byte) ([]byte, [32]byte) {
	hash := auditRecordHash(seq, prev, js)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(js)))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // crc, below
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = append(dst, prev[:]...)
	dst = append(dst, hash[:]...)
	dst = append(dst, js...)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:], auditRecordCRC(rec[:auditRecordFixed], js))
	return dst, hash
}

// auditRecordCRC is the crc32c of a record's bytes but its crc field.
func auditRecordCRC(fixed, js []byte) uint32 {
	c := crc32.Update(0, castagnoli, fixed[:4])
	c = crc32.Update(c, castagnoli, fixed[8:auditRecordFixed])
	return crc32.Update(c, castagnoli, js)
}

// auditRecord is one record as scanned; JSON is owned by the callee.
type auditRecord struct {
	Off  int64
	Seq  uint64 // version 1: the record's position, from 1
	Hash [32]byte
	JSON []byte
}

// auditScan is what a walk over a log found.
type auditScan struct {
	hdr     auditHeader
	genesis [32]byte // version 2
	size    int64    // bytes walked
	end     int64    // offset after the last complete record
	records int
	head    AuditHead
}

func (s *auditScan) torn() int64 { return s.size - s.end }

// scanAudit walks the first size bytes at r, calling fn (when not nil) for
// every complete, verified record. It returns what it found up to the first
// problem along with the problem.
func scanAudit(r io.ReaderAt, size int64, fn func(auditRecord) error) (auditScan, error) {
	s := auditScan{size: size}
	var err error
	if s.hdr, err = readAuditHeader(r, size); err != nil {
		return s, err
	}
	s.end = s.hdr.len()
	if s.hdr.version == auditVersion1 {
		return s, scanAuditV1(r, &s, fn)
	}
	s.genesis = sha256.Sum256(s.hdr.raw[:])
	s.head = AuditHead{Hash: s.genesis}
	off := s.end
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 64<<10)
	var fixed [auditRecordFixed]byte
	for off < size {
		seq := s.head.Seq + 1
		corrupt := func(format string, args ...any) error {
			return fmt.Errorf("%w: record %d at offset %d: %s", ErrAuditCorrupt, seq, off, fmt.Sprintf(format, args...))
		}
		rem := size - off
		if rem < 4 {
			break // torn: not even the length
		}
		k := min(rem, auditRecordFixed)
		if _, err := io.ReadFull(br, fixed[:k]); err != nil {
			return s, fmt.Errorf("logstore/keys: read audit log: %w", err)
		}
		n := binary.LittleEndian.Uint32(fixed[:])
		if n == 0 || n > auditMaxRecord {
			return s, corrupt("length %d outside 1..%d", n, auditMaxRecord)
		}
		total := auditRecordFixed + int64(n)
		if rem < total {
			// Torn: the record runs past the end. What is there must still
			// be the record that belongs here.
			if k >= 16 && binary.LittleEndian.Uint64(fixed[8:]) != seq {
				return s, corrupt("incomplete last record has seq %d", binary.LittleEndian.Uint64(fixed[8:]))
			}
			if k >= 48 && !bytes.Equal(fixed[16:48], s.head.Hash[:]) {
				return s, corrupt("incomplete last record does not link to its predecessor")
			}
			break
		}
		js := make([]byte, n)
		if _, err := io.ReadFull(br, js); err != nil {
			return s, fmt.Errorf("logstore/keys: read audit log: %w", err)
		}
		if auditRecordCRC(fixed[:], js) != binary.LittleEndian.Uint32(fixed[4:]) {
			return s, corrupt("checksum mismatch")
		}
		if got := binary.LittleEndian.Uint64(fixed[8:]); got != seq {
			return s, corrupt("sequence number %d (records dropped, reordered or inserted)", got)
		}
		if !bytes.Equal(fixed[16:48], s.head.Hash[:]) {
			return s, corrupt("does not link to the previous record (chain broken: a record was removed, replaced or spliced in)")
		}
		hash := auditRecordHash(seq, &s.head.Hash, js)
		if !bytes.Equal(fixed[48:80], hash[:]) {
			return s, corrupt("hash mismatch (the record was altered)")
		}
		if fn != nil {
			if err := fn(auditRecord{Off: off, Seq: seq, Hash: hash, JSON: js}); err != nil {
				return s, err
			}
		}
		s.head = AuditHead{Seq: seq, Hash: hash}
		s.records++
		off += total
		s.end = off
	}
	return s, nil
}

// scanAuditV1 is the version-1 walk, with its legacy rules: a bad last record
// counts as torn.
func scanAuditV1(r io.ReaderAt, s *auditScan, fn func(auditRecord) error) error {
	size := s.size
	br := bufio.NewReader(io.NewSectionReader(r, s.end, size-s.end))
	off := s.end
	for {
		var rh [8]byte
		if _, err := io.ReadFull(br, rh[:]); err != nil {
			return nil // end, or torn record header
		}
		n := binary.LittleEndian.Uint32(rh[:])
		if n == 0 || n > auditMaxRecord {
			if off+8 >= size {
				return nil
			}
			return fmt.Errorf("%w: version-1 record at %d has length %d", ErrAuditCorrupt, off, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil // torn tail
		}
		if crc32c(b) != binary.LittleEndian.Uint32(rh[4:]) {
			if off+8+int64(n) >= size {
				return nil // torn last record
			}
			return fmt.Errorf("%w: version-1 checksum mismatch at %d", ErrAuditCorrupt, off)
		}
		seq := uint64(s.records + 1)
		if fn != nil {
			if err := fn(auditRecord{Off: off, Seq: seq, JSON: b}); err != nil {
				return err
			}
		}
		s.records++
		s.head.Seq = seq
		off += 8 + int64(n)
		s.end = off
	}
}

// auditPredecessorPath is where the version-1 file with the given SHA-256
// is kept next to the log at path.
func auditPredecessorPath(path string, sum [32]byte) string {
	return path + ".v1-" + hex.EncodeToString(sum[:8])
}

// AuditLog is an append-only, hash-chained file of AuditEvents.
type AuditLog struct {
	fs   vfs.FS
	path string

	mu      sync.Mutex // guards everything below
	f       vfs.File
	end     int64     // offset after the last appended record
	head    AuditHead // the last appended record
	broken  error     // a failed append could not be undone: appends fail until reopened
	tornCut int64     // bytes of a torn tail cut by OpenAuditLog
	buf     []byte
}

// OpenAuditLog opens (creating) the audit log at path for appending. It walks
// the whole chain: a corrupt log is ErrAuditCorrupt (the file is left as it
// is), a torn last record is cut. A version-1 file is moved aside to
// path.v1-HEX16 and continued by a new version-2 file whose header carries
// its SHA-256 (ReadAuditLog and VerifyAuditLog read both).
func OpenAuditLog(fs vfs.FS, path string) (*AuditLog, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := fs.OpenReadWrite(path)
	if errors.Is(err, vfs.ErrNotExist) {
		if err := createAuditLog(fs, path, nil); err != nil {
			return nil, err
		}
		f, err = fs.OpenReadWrite(path)
	}
	if err != nil {
		return nil, err
	}
	hdr, err := readAuditHeader(f, -1)
	if err == nil && hdr.version == auditVersion1 {
		if err = f.Close(); err != nil {
			return nil, err
		}
		if err := migrateAuditV1(fs, path); err != nil {
			return nil, err
		}
		if f, err = fs.OpenReadWrite(path); err != nil {
			return nil, err
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	a, err := openAuditFile(fs, path, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return a, nil
}

// openAuditFile walks the version-2 log f and cuts its torn tail.
func openAuditFile(fs vfs.FS, path string, f vfs.File) (*AuditLog, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	s, err := scanAudit(f, size, nil)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	if s.hdr.version != auditVersion2 {
		return nil, fmt.Errorf("%w: %s: version %d changed under the open", ErrAuditCorrupt, path, s.hdr.version)
	}
	a := &AuditLog{fs: fs, path: path, f: f, end: s.end, head: s.head}
	if s.torn() > 0 {
		// Cut the torn tail so new records start on a boundary.
		if err := f.Truncate(s.end); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		a.tornCut = s.torn()
	}
	return a, nil
}

// createAuditLog atomically writes a new version-2 log holding only its
// header (replacing the file at path, if any).
func createAuditLog(fs vfs.FS, path string, pred *[32]byte) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	hdr := encodeAuditHeader(id, time.Now().UnixNano(), pred)
	return vfs.WriteFileAtomic(fs, path, hdr[:])
}

// auditV1MaxFile bounds the version-1 logs read whole (migration and the
// predecessor check), so a planted huge file cannot exhaust memory.
const auditV1MaxFile = 1 << 30

// migrateAuditV1 moves the version-1 log at path aside (torn tail cut) and
// replaces it by a version-2 log continuing it. A crash in between leaves the
// version-1 log in place, and the next open does it again.
func migrateAuditV1(fs vfs.FS, path string) error {
	b, err := vfs.ReadFileLimit(fs, path, auditV1MaxFile)
	if err != nil {
		return err
	}
	s, err := scanAudit(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, path)
	}
	if s.hdr.version != auditVersion1 {
		return nil // raced with another migration
	}
	b = b[:s.end]
	sum := sha256.Sum256(b)
	if err := vfs.WriteFileAtomic(fs, auditPredecessorPath(path, sum), b); err != nil {
		return err
	}
	return createAuditLog(fs, path, &sum)
}

// Append writes one event and fsyncs it.
func (a *AuditLog) Append(e AuditEvent) error { return a.append(e, true) }

// append writes one event, fsyncing it when sync is set. A failed write or
// fsync is undone (the file cut back to the last record) so the chain stays
// whole; when even that fails, every later append fails.
func (a *AuditLog) append(e AuditEvent, sync bool) error {
	js, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(js) > auditMaxRecord {
		return fmt.Errorf("logstore/keys: audit event of %d bytes over the %d-byte limit", len(js), auditMaxRecord)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("logstore/keys: audit log closed")
	}
	if a.broken != nil {
		return fmt.Errorf("logstore/keys: audit log unusable until reopened after a failed append: %w", a.broken)
	}
	seq := a.head.Seq + 1
	var hash [32]byte
	a.buf, hash = appendAuditRecord(a.buf[:0], seq, &a.head.Hash, js)
	if _, err := a.f.Write(a.buf); err != nil {
		a.undo(err)
		return err
	}
	if sync {
		if err := a.f.Sync(); err != nil {
			a.undo(err)
			return err
		}
	}
	a.end += int64(len(a.buf))
	a.head = AuditHead{Seq: seq, Hash: hash}
	if cap(a.buf) > 4*auditRecordFixed+4096 {
		a.buf = nil // do not pin a large event's buffer
	}
	return nil
}

// undo cuts the file back to the last record after a failed append, so the
// next record starts on a boundary and links to the last one. The cut is made
// durable by the next append's fsync; a crash before that may leave the
// failed record in the file, whole (a true record of an operation that was
// attempted, then refused) or torn. When the cut itself fails the file's end
// is unknown, and the log refuses appends until reopened. Caller holds mu.
func (a *AuditLog) undo(cause error) {
	if err := a.f.Truncate(a.end); err != nil {
		a.broken = errors.Join(cause, err)
	}
}

// Head is the chain's head after the last append that returned nil (fsynced
// unless appended by an Audited with NoSync): the value to anchor.
func (a *AuditLog) Head() AuditHead {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// Verify is VerifyAuditLog over the records appended so far, safe while
// appends go on: it reads only up to the last completed append, and reports
// a torn tail cut when the log was opened.
func (a *AuditLog) Verify(anchors []AuditHead) (AuditVerifyReport, error) {
	a.mu.Lock()
	end, torn := a.end, a.tornCut
	a.mu.Unlock()
	f, err := a.fs.Open(a.path)
	if err != nil {
		return AuditVerifyReport{Path: a.path}, err
	}
	defer f.Close()
	rep, err := verifyAudit(a.fs, a.path, f, end, anchors)
	rep.TornBytes += torn
	return rep, err
}

// Close closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// Path is the file path.
func (a *AuditLog) Path() string { return a.path }

// VerifyAuditLog walks the log at path: every record's checksum, sequence
// number, link to its predecessor and hash (version 2), then every anchor.
// An anchor inside the log whose hash differs means the log was rewritten
// (ErrAuditCorrupt); an anchor past the log's last record means records were
// dropped (ErrAuditTruncated, which also matches ErrAuditCorrupt). A
// version-1 log is reported unchained (Chained false) and passes only without
// anchors. The version-1 file a version-2 log continues must be present and
// match the hash in the header. A torn last record is reported (TornBytes),
// not an error. Without anchors only damage inside the file is detectable: a
// dropped tail or a rewritten chain needs an anchor.
func VerifyAuditLog(fs vfs.FS, path string, anchors []AuditHead) (AuditVerifyReport, error) {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.Open(path)
	if err != nil {
		return AuditVerifyReport{Path: path}, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return AuditVerifyReport{Path: path}, err
	}
	return verifyAudit(fs, path, f, size, anchors)
}

func verifyAudit(fs vfs.FS, path string, r io.ReaderAt, size int64, anchors []AuditHead) (AuditVerifyReport, error) {
	rep := AuditVerifyReport{Path: path}
	sorted := append([]AuditHead(nil), anchors...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Seq < sorted[j].Seq })
	next := 0
	checkAnchors := func(seq uint64, hash [32]byte) error {
		for ; next < len(sorted) && sorted[next].Seq <= seq; next++ {
			if sorted[next].Hash != hash {
				return fmt.Errorf("%w: anchored record %d has hash %x..., the anchor says %x...: the log was rewritten",
					ErrAuditCorrupt, seq, hash[:8], sorted[next].Hash[:8])
			}
			rep.Anchors++
		}
		return nil
	}
	hdr, err := readAuditHeader(r, size)
	if err == nil && hdr.version == auditVersion2 {
		// Anchors at seq 0 pin the header (the empty log).
		err = checkAnchors(0, sha256.Sum256(hdr.raw[:]))
	}
	if err != nil {
		rep.Version = hdr.version
		return rep, err
	}
	s, err := scanAudit(r, size, func(rec auditRecord) error {
		var e AuditEvent
		if err := json.Unmarshal(rec.JSON, &e); err != nil {
			return fmt.Errorf("%w: record %d at offset %d: %v", ErrAuditCorrupt, rec.Seq, rec.Off, err)
		}
		if hdr.version != auditVersion2 {
			return nil // anchors are refused below
		}
		return checkAnchors(rec.Seq, rec.Hash)
	})
	rep.Version, rep.Chained, rep.LogID = s.hdr.version, s.hdr.version == auditVersion2, s.hdr.logID
	rep.Records, rep.Head = s.records, s.head
	if err != nil {
		return rep, err
	}
	rep.TornBytes = s.torn()
	if !rep.Chained {
		if len(anchors) > 0 {
			return rep, fmt.Errorf("%w: the log is version 1 (unchained) but %d anchor(s) were recorded: it was replaced",
				ErrAuditCorrupt, len(anchors))
		}
		return rep, nil
	}
	if next < len(sorted) {
		last := sorted[len(sorted)-1]
		return rep, truncatedf("an anchor records seq %d but the log ends at seq %d: %d record(s) dropped or the log replaced by a shorter one",
			last.Seq, s.head.Seq, last.Seq-s.head.Seq)
	}
	if s.hdr.hasPredecessor() {
		p, err := readAuditPredecessor(fs, path, s.hdr.pred, nil)
		rep.Predecessor = p
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// readAuditPredecessor reads and checks the version-1 file with the given
// SHA-256 next to path, passing its events to fn (when not nil). A missing
// file is ErrAuditTruncated.
func readAuditPredecessor(fs vfs.FS, path string, sum [32]byte, fn func(AuditEvent)) (*AuditPredecessor, error) {
	p := &AuditPredecessor{Path: auditPredecessorPath(path, sum), SHA256: sum}
	b, err := vfs.ReadFileLimit(fs, p.Path, auditV1MaxFile)
	if errors.Is(err, vfs.ErrNotExist) {
		return p, truncatedf("the version-1 log this log continues (%s) is missing", p.Path)
	}
	if err != nil {
		return p, err
	}
	if sha256.Sum256(b) != sum {
		return p, fmt.Errorf("%w: %s: the version-1 log this log continues was altered (SHA-256 differs from the one recorded)", ErrAuditCorrupt, p.Path)
	}
	s, err := scanAudit(bytes.NewReader(b), int64(len(b)), func(rec auditRecord) error {
		var e AuditEvent
		if err := json.Unmarshal(rec.JSON, &e); err != nil {
			return fmt.Errorf("%w: %s: record %d: %v", ErrAuditCorrupt, p.Path, rec.Seq, err)
		}
		if fn != nil {
			fn(e)
		}
		return nil
	})
	p.Records = s.records
	if err == nil && (s.hdr.version != auditVersion1 || s.torn() > 0) {
		err = fmt.Errorf("%w: %s: not a whole version-1 log", ErrAuditCorrupt, p.Path)
	}
	return p, err
}

// ReadAuditLog returns the events at path, oldest first (those of the
// version-1 file it continues first, when that file is present), with since
// as a lower bound on time (zero: all). It checks what VerifyAuditLog checks
// but anchors and the presence of the version-1 file; a torn last record is
// ignored.
func ReadAuditLog(fs vfs.FS, path string, since time.Time) ([]AuditEvent, error) {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	var out []AuditEvent
	keep := func(e AuditEvent) {
		if since.IsZero() || !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	hdr, err := readAuditHeader(f, size)
	if err != nil {
		return nil, err
	}
	if hdr.hasPredecessor() {
		if _, err := readAuditPredecessor(fs, path, hdr.pred, keep); err != nil && !errors.Is(err, ErrAuditTruncated) {
			return nil, err
		}
	}
	_, err = scanAudit(f, size, func(rec auditRecord) error {
		var e AuditEvent
		if err := json.Unmarshal(rec.JSON, &e); err != nil {
			return fmt.Errorf("%w: record %d at offset %d: %v", ErrAuditCorrupt, rec.Seq, rec.Off, err)
		}
		keep(e)
		return nil
	})
	return out, err
}

// AuditOptions configure an Audited.
type AuditOptions struct {
	// FailOpen returns a key operation's result even when its audit record
	// could not be written; the failure is counted (AuditFailures) and passed
	// to OnAuditError. Default false: fail closed, the operation returns an
	// ErrAuditWrite error and no key material.
	FailOpen bool
	// NoSync appends records without an fsync each: a power loss may lose
	// records of operations that completed. Default false: every record is
	// durable before its operation returns.
	NoSync bool
}

// Audited wraps a Provider and records every call in an AuditLog. It sits
// below the DEK cache, so there is exactly one entry per call that reaches
// the key service. A call's record is written (and by default fsynced)
// before the call returns; if it cannot be, the call fails closed with an
// ErrAuditWrite error, any DEK it produced zeroed and withheld, unless
// AuditOptions.FailOpen is set.
type Audited struct {
	p        Provider
	log      *AuditLog
	opts     AuditOptions
	now      func() time.Time
	failures atomic.Uint64
	// OnAuditError, if set, receives every failure to write a record
	// (whether or not FailOpen lets the operation proceed). Setting it does
	// not relax fail-closed.
	OnAuditError func(error)
}

// NewAudited wraps p with the defaults: fail closed, fsync per record.
func NewAudited(p Provider, log *AuditLog) *Audited { return NewAuditedWith(p, log, AuditOptions{}) }

// NewAuditedWith wraps p with options.
func NewAuditedWith(p Provider, log *AuditLog, o AuditOptions) *Audited {
	return &Audited{p: p, log: log, opts: o, now: time.Now}
}

// AuditFailures counts the records that could not be written.
func (a *Audited) AuditFailures() uint64 { return a.failures.Load() }

// Log is the audit log written to.
func (a *Audited) Log() *AuditLog { return a.log }

// record appends the event of one call. It returns nil, or the error that
// fails the call closed.
func (a *Audited) record(op, uri, to string, ec EncryptionContext, start time.Time, err error) error {
	e := AuditEvent{Time: start.UTC(), Operation: op, KeyURI: uri, ToKeyURI: to, Context: ec, Outcome: "ok",
		LatencyMs: float64(a.now().Sub(start).Microseconds()) / 1000}
	if err != nil {
		e.Outcome, e.Error = "error", err.Error()
		if len(e.Error) > auditMaxErrorText {
			e.Error = e.Error[:auditMaxErrorText] + "..."
		}
		var ke *Error
		if errors.As(err, &ke) {
			e.Outcome = ke.Kind.Error()
		}
	}
	werr := a.log.append(e, !a.opts.NoSync)
	if werr == nil {
		return nil
	}
	a.failures.Add(1)
	verdict := "operation refused"
	if a.opts.FailOpen {
		verdict = "operation allowed: FailOpen"
	}
	werr = fmt.Errorf("%w (%s %s, %s): %w", ErrAuditWrite, op, uri, verdict, werr)
	if a.OnAuditError != nil {
		a.OnAuditError(werr)
	}
	if a.opts.FailOpen {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w; %w", err, werr)
	}
	return werr
}

func (a *Audited) Scheme() string { return a.p.Scheme() }

func (a *Audited) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	start := a.now()
	dk, err := a.p.GenerateDataKey(ctx, uri, ec)
	if aerr := a.record("GenerateDataKey", uri, "", ec, start, err); aerr != nil {
		Zero(dk.Plaintext)
		return DataKey{}, aerr
	}
	return dk, err
}

func (a *Audited) Wrap(ctx context.Context, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	w, err := a.p.Wrap(ctx, uri, dek, ec)
	if aerr := a.record("Encrypt", uri, "", ec, start, err); aerr != nil {
		return nil, aerr
	}
	return w, err
}

func (a *Audited) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	dek, err := a.p.Unwrap(ctx, uri, wrapped, ec)
	if aerr := a.record("Decrypt", uri, "", ec, start, err); aerr != nil {
		Zero(dek)
		return nil, aerr
	}
	return dek, err
}

func (a *Audited) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	w, err := a.p.Rewrap(ctx, from, wrapped, to, ec)
	if aerr := a.record("ReEncrypt", from, to, ec, start, err); aerr != nil {
		return nil, aerr
	}
	return w, err
}

func (a *Audited) Describe(ctx context.Context, uri string) (KeyState, error) {
	start := a.now()
	st, err := a.p.Describe(ctx, uri)
	if aerr := a.record("DescribeKey", uri, "", nil, start, err); aerr != nil {
		return KeyState{}, aerr
	}
	return st, err
}
