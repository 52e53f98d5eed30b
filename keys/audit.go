package keys

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/logstore/logstore/internal/vfs"
)

// Audit log format, version 1 (docs/format/audit.md):
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
// Append-only; a torn last record (crash mid-append) is ignored by readers
// and cut off before the next append.
const (
	auditMagic     = "LSTAUDT1"
	auditVersion   = 1
	auditHeaderLen = 12
	auditMaxRecord = 64 << 10
)

// ErrAuditCorrupt and ErrAuditVersion are the audit log's corruption and
// unknown-version errors.
var (
	ErrAuditCorrupt = errors.New("logstore/keys: corrupt audit log")
	ErrAuditVersion = errors.New("logstore/keys: unknown audit log version")
)

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

// AuditLog is an append-only file of AuditEvents.
type AuditLog struct {
	fs   vfs.FS
	path string
	mu   sync.Mutex // guards f and appends
	f    vfs.File
}

// OpenAuditLog opens (creating) the audit log at path.
func OpenAuditLog(fs vfs.FS, path string) (*AuditLog, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := fs.OpenReadWrite(path)
	if errors.Is(err, vfs.ErrNotExist) {
		if f, err = fs.Create(path); err != nil {
			return nil, err
		}
		hdr := make([]byte, auditHeaderLen)
		copy(hdr, auditMagic)
		binary.LittleEndian.PutUint16(hdr[8:], auditVersion)
		if _, err := f.Write(hdr); err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := fs.SyncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			return nil, err
		}
	} else if err != nil {
		return nil, err
	} else {
		// Cut a torn tail so new records start on a boundary.
		end, err := validEnd(f)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if err := f.Truncate(end); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return &AuditLog{fs: fs, path: path, f: f}, nil
}

// Append writes one event and syncs it.
func (a *AuditLog) Append(e AuditEvent) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	rec := make([]byte, 8, 8+len(b))
	binary.LittleEndian.PutUint32(rec, uint32(len(b)))
	binary.LittleEndian.PutUint32(rec[4:], crc32c(b))
	rec = append(rec, b...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("logstore/keys: audit log closed")
	}
	if _, err := a.f.Write(rec); err != nil {
		return err
	}
	return a.f.Sync()
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

// ReadAuditLog returns the events at path, oldest first, with since as a
// lower bound on time (zero: all). A torn last record is ignored.
func ReadAuditLog(fs vfs.FS, path string, since time.Time) ([]AuditEvent, error) {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	_, err = scanAudit(f, func(b []byte) error {
		var e AuditEvent
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%w: %v", ErrAuditCorrupt, err)
		}
		if since.IsZero() || !e.Time.Before(since) {
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func validEnd(f vfs.File) (int64, error) { return scanAudit(f, func([]byte) error { return nil }) }

// scanAudit walks the records; it returns the offset after the last whole
// record. A checksum mismatch before the tail is corruption.
func scanAudit(f vfs.File, fn func([]byte) error) (int64, error) {
	size, err := f.Size()
	if err != nil {
		return 0, err
	}
	r := bufio.NewReader(io.NewSectionReader(f, 0, size))
	hdr := make([]byte, auditHeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:8]) != auditMagic {
		return 0, fmt.Errorf("%w: bad header", ErrAuditCorrupt)
	}
	if v := binary.LittleEndian.Uint16(hdr[8:]); v != auditVersion {
		return 0, fmt.Errorf("%w: version %d", ErrAuditVersion, v)
	}
	off := int64(auditHeaderLen)
	for {
		var rh [8]byte
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			return off, nil // end, or torn record header
		}
		n := binary.LittleEndian.Uint32(rh[:])
		if n == 0 || n > auditMaxRecord {
			if off+8 >= size {
				return off, nil
			}
			return off, fmt.Errorf("%w: record at %d has length %d", ErrAuditCorrupt, off, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return off, nil // torn tail
		}
		if crc32c(b) != binary.LittleEndian.Uint32(rh[4:]) {
			if off+8+int64(n) >= size {
				return off, nil // torn last record
			}
			return off, fmt.Errorf("%w: checksum mismatch at %d", ErrAuditCorrupt, off)
		}
		if err := fn(b); err != nil {
			return off, err
		}
		off += 8 + int64(n)
	}
}

// Audited wraps a Provider and records every call in an AuditLog. It sits
// below the DEK cache, so there is exactly one entry per call that reaches
// the key service.
type Audited struct {
	p   Provider
	log *AuditLog
	now func() time.Time
	// OnAuditError, if set, receives failures to write the audit log (the key
	// operation's own result is still returned).
	OnAuditError func(error)
}

// NewAudited wraps p.
func NewAudited(p Provider, log *AuditLog) *Audited {
	return &Audited{p: p, log: log, now: time.Now}
}

func (a *Audited) record(op, uri, to string, ec EncryptionContext, start time.Time, err error) {
	e := AuditEvent{Time: start.UTC(), Operation: op, KeyURI: uri, ToKeyURI: to, Context: ec, Outcome: "ok",
		LatencyMs: float64(a.now().Sub(start).Microseconds()) / 1000}
	if err != nil {
		e.Outcome, e.Error = "error", err.Error()
		var ke *Error
		if errors.As(err, &ke) {
			e.Outcome = ke.Kind.Error()
		}
	}
	if werr := a.log.Append(e); werr != nil && a.OnAuditError != nil {
		a.OnAuditError(werr)
	}
}

func (a *Audited) Scheme() string { return a.p.Scheme() }

func (a *Audited) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	start := a.now()
	dk, err := a.p.GenerateDataKey(ctx, uri, ec)
	a.record("GenerateDataKey", uri, "", ec, start, err)
	return dk, err
}

func (a *Audited) Wrap(ctx context.Context, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	w, err := a.p.Wrap(ctx, uri, dek, ec)
	a.record("Encrypt", uri, "", ec, start, err)
	return w, err
}

func (a *Audited) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	dek, err := a.p.Unwrap(ctx, uri, wrapped, ec)
	a.record("Decrypt", uri, "", ec, start, err)
	return dek, err
}

func (a *Audited) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec EncryptionContext) ([]byte, error) {
	start := a.now()
	w, err := a.p.Rewrap(ctx, from, wrapped, to, ec)
	a.record("ReEncrypt", from, to, ec, start, err)
	return w, err
}

func (a *Audited) Describe(ctx context.Context, uri string) (KeyState, error) {
	start := a.now()
	st, err := a.p.Describe(ctx, uri)
	a.record("DescribeKey", uri, "", nil, start, err)
	return st, err
}
