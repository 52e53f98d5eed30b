package engine

import "errors"

// Sentinel errors; key errors come from package keys (errors.Is(err,
// keys.ErrKeyUnusable) for a revoked key) and segment errors from package
// segment.
var (
	ErrClosed         = errors.New("logstore/engine: database is closed")
	ErrLocked         = errors.New("logstore/engine: data directory is in use by another process")
	ErrInvalidOptions = errors.New("logstore/engine: invalid options")
	ErrInvalidTenant  = errors.New("logstore/engine: invalid tenant name")
	ErrInvalidRecord  = errors.New("logstore/engine: invalid record")
	ErrRecordTooLarge = errors.New("logstore/engine: record over the configured limits")
	ErrNotFound       = errors.New("logstore/engine: not found")
	ErrNoKey          = errors.New("logstore/engine: tenant has no key")
	ErrCorrupt        = errors.New("logstore/engine: corrupt index or record encoding")
	ErrUnknownVersion = errors.New("logstore/engine: unknown encoding version")
	ErrNoPayload      = errors.New("logstore/engine: record has no payload")
	// ErrIndexMismatch: the index's plaintext copy of a record's metadata
	// (or its locator) disagrees with the copy in the record's block, which
	// AES-GCM authenticates. The index was edited or is stale; `logstore
	// segments reindex` rebuilds it from the segments.
	ErrIndexMismatch = errors.New("logstore/engine: index disagrees with the authenticated segment")
)
