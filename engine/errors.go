package engine

import (
	"errors"
	"fmt"
)

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

	// ErrDiskFull: a segment or index write met ENOSPC (or a quota), or the
	// index is still out of space. Nothing acknowledged is lost; retry once
	// space has been freed. An append that fails with it wrote nothing,
	// except when the index learned of the full disk after the append's
	// blocks had reached their segment and could not take their entries:
	// then the next Open indexes them (set Record.ID to make a retry
	// idempotent).
	ErrDiskFull = errors.New("logstore/engine: disk full")
	// ErrIndexCorrupt: the Pebble index failed a checksum or cannot be
	// opened. It is derived from the segments: rebuild it with `logstore
	// segments reindex` (Options.RebuildIndex). errors.Is(err, ErrCorrupt)
	// holds too.
	ErrIndexCorrupt = fmt.Errorf("%w: the index is damaged; rebuild it from the segments with `logstore segments reindex`", ErrCorrupt)
	// ErrIndexFailed: Pebble reported a fatal error other than corruption or
	// a full disk; the index takes no more writes until the store is
	// reopened.
	ErrIndexFailed = errors.New("logstore/engine: index failed; close and reopen the store (if Open fails, run `logstore segments reindex`)")
	// ErrIndexUnclosed: Close gave up waiting for the index (a goroutine of
	// Pebble's is stuck or was stopped after a fatal error). Acknowledged
	// records are in the segments; the index's files stay locked until the
	// process exits.
	ErrIndexUnclosed = errors.New("logstore/engine: index could not be closed")
)
