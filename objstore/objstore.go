// Package objstore is the engine's view of an object store: a flat bucket of
// immutable-by-convention objects with ranged reads, conditional writes and
// listing. The engine keeps sealed segments, their summaries and the tenants'
// manifests there (docs/scale-out.md); package s3store implements Bucket over
// the S3 API (AWS S3, MinIO, Ceph RGW, SeaweedFS, moto, gofakes3).
//
// This package holds only the interface and its errors, so the engine never
// imports a cloud SDK: the application composes one.
package objstore

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// Bucket is one bucket under one key prefix. Keys are slash-separated and
// relative to the prefix. Every method is safe for concurrent use and
// returns a *Error (matching one of the Err* kinds below) on failure.
type Bucket interface {
	// Put stores size bytes read from body under key and returns the new
	// object's info. The caller passes the SHA-256 of those bytes: Put sends
	// it for the server to check on receipt where the server supports
	// checksums, and returns ErrChecksum when the object stored is not those
	// bytes (VerifyPut says how that is checked). body is read from its
	// start again when a request is retried. cond makes the write
	// conditional (ErrPrecondition when the condition does not hold).
	// A successful Put is durable as the store defines it (S3: read-after-
	// write consistent).
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sha256 []byte, cond Cond) (ObjectInfo, error)
	// GetRange reads n bytes of key from off (n < 0: to the end). Fewer
	// bytes than asked for, when the object is that long, is ErrTruncated.
	// With etag set, an object that changed since is ErrPrecondition.
	GetRange(ctx context.Context, key string, off, n int64, etag string) ([]byte, ObjectInfo, error)
	// Head returns key's info; ErrNotFound when it does not exist.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix, sorted by key,
	// and, when delimiter is set, the common prefixes up to it (the
	// "directories") in Prefixes. It pages through the whole listing.
	List(ctx context.Context, prefix, delimiter string) (Listing, error)
	// Delete removes key, and on a versioned bucket every version of it
	// (nothing deleted stays readable); deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
	// String names the bucket and prefix, as s3://BUCKET/PREFIX.
	String() string
}

// Cond is the condition of a conditional Put. The zero value is none.
type Cond struct {
	// IfNoneMatch: create only; the put fails if key exists.
	IfNoneMatch bool
	// IfMatch: replace only the object with this ETag.
	IfMatch string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string // relative to the bucket's prefix
	Size     int64
	ETag     string // as the server gives it, quotes removed
	Modified time.Time
}

// Listing is what List found.
type Listing struct {
	Objects  []ObjectInfo
	Prefixes []string // common prefixes, relative to the bucket's prefix, each ending in the delimiter
}

// Error kinds. A *Error matches its Kind with errors.Is.
var (
	// ErrNotFound: the object (or the bucket) does not exist.
	ErrNotFound = errors.New("logstore/objstore: object not found")
	// ErrPrecondition: a conditional write or read found another version.
	ErrPrecondition = errors.New("logstore/objstore: precondition failed (the object changed)")
	// ErrAccessDenied: the credentials may not do this.
	ErrAccessDenied = errors.New("logstore/objstore: access denied")
	// ErrUnavailable: the store did not answer, or answered with a server
	// error or throttling after the retries; trying again later may work.
	ErrUnavailable = errors.New("logstore/objstore: object store unavailable")
	// ErrTruncated: fewer bytes came back than the object holds.
	ErrTruncated = errors.New("logstore/objstore: object truncated")
	// ErrChecksum: the object stored is not the bytes sent.
	ErrChecksum = errors.New("logstore/objstore: checksum mismatch")
	// ErrInvalid: a request the store refused as malformed (bad key, bad
	// bucket name, bad configuration).
	ErrInvalid = errors.New("logstore/objstore: invalid request")
)

// Error is a typed object-store error.
type Error struct {
	Op        string // "put", "get", "head", "list", "delete"
	Key       string
	Kind      error
	Retryable bool
	Err       error // the cause, as the SDK reported it
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	b.WriteString(": ")
	b.WriteString(e.Op)
	if e.Key != "" {
		b.WriteString(" ")
		b.WriteString(e.Key)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is matches the error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err is an object-store error that trying
// again may cure.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}
