package segment

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns wraps exactly one of them,
// so callers tell them apart with errors.Is: disk corruption (ErrCorrupt), a
// wrong key (ErrWrongKey) and tampering (ErrAuth) are distinct on purpose.
var (
	// ErrCorrupt: a checksum or structural check failed; the bytes on disk are
	// not what was written. *CorruptionError carries where.
	ErrCorrupt = errors.New("logstore/segment: corrupt")
	// ErrNotSegment: the file does not start with the segment magic.
	ErrNotSegment = errors.New("logstore/segment: not a segment file")
	// ErrUnknownVersion: the format version or cipher suite is newer than this build.
	ErrUnknownVersion = errors.New("logstore/segment: unknown format version")
	// ErrWrongKey: the DEK does not match the segment's key commitment.
	ErrWrongKey = errors.New("logstore/segment: wrong data key")
	// ErrAuth: checksums are intact but AES-GCM authentication failed: the
	// ciphertext or its authenticated metadata was altered.
	ErrAuth = errors.New("logstore/segment: authentication failed (tampered)")
	// ErrBlockOrder: a block's sequence number is not the one expected at
	// its position (blocks swapped, dropped or replayed).
	ErrBlockOrder = errors.New("logstore/segment: block out of sequence")
	// ErrForeignBlock: a block frame belongs to another segment.
	ErrForeignBlock = errors.New("logstore/segment: block from another segment")
	// ErrTenantMismatch: the segment belongs to another tenant.
	ErrTenantMismatch = errors.New("logstore/segment: segment belongs to another tenant")
	// ErrSealed: the writer was sealed or closed; segments are never reopened
	// for append.
	ErrSealed = errors.New("logstore/segment: segment is sealed")
	// ErrLocked: a block was read before Unlock supplied the DEK.
	ErrLocked = errors.New("logstore/segment: segment is locked (no data key)")
	// ErrInvalidArgument: the caller passed something unusable.
	ErrInvalidArgument = errors.New("logstore/segment: invalid argument")
	// ErrKeySlot: the key slots are unusable or rolled back.
	ErrKeySlot = errors.New("logstore/segment: key slot")
	// ErrPlaintext: the segment is not encrypted (cipher suite none) and the
	// reader did not allow plaintext. Nothing in such a file is authenticated.
	ErrPlaintext = errors.New("logstore/segment: unencrypted segment refused")
	// ErrNotFound: a block or record index is out of range.
	ErrNotFound = errors.New("logstore/segment: not found")
)

// CorruptionError says where a bad frame or region was found. It matches its
// Kind with errors.Is (ErrCorrupt, ErrAuth, ErrBlockOrder or ErrForeignBlock),
// and only that: a tampered block is not reported as disk corruption.
type CorruptionError struct {
	Path   string
	Offset int64 // file offset of the frame or region
	Block  int   // block sequence, or -1 for the header, footer or trailer
	Kind   error // the sentinel (ErrCorrupt, ErrAuth, ...)
	Reason string
}

func (e *CorruptionError) Error() string {
	where := "header"
	if e.Block >= 0 {
		where = fmt.Sprintf("block %d", e.Block)
	}
	return fmt.Sprintf("%v: %s at offset %d of %s: %s", e.Kind, where, e.Offset, e.Path, e.Reason)
}

func (e *CorruptionError) Is(target error) bool { return target == e.Kind }

// Unwrap lets errors.Is see through to the sentinel.
func (e *CorruptionError) Unwrap() error { return e.Kind }

func corruptf(kind error, path string, off int64, block int, format string, args ...any) error {
	return &CorruptionError{Path: path, Offset: off, Block: block, Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}
