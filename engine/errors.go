package engine

import (
	"errors"
	"fmt"
)

// Every sentinel error of the package. Key errors come from package keys
// (errors.Is(err, keys.ErrKeyUnusable) for a revoked key) and segment errors
// from package segment.

// Store, options and record errors.
var (
	ErrClosed = errors.New("logstore/engine: database is closed")
	ErrLocked = errors.New("logstore/engine: data directory is in use by another process")
	// ErrReadOnly: a write or an operator call on a DB opened with
	// Options.ReadOnly.
	ErrReadOnly       = errors.New("logstore/engine: the store is open read-only")
	ErrInvalidOptions = errors.New("logstore/engine: invalid options")
	ErrInvalidTenant  = errors.New("logstore/engine: invalid tenant name")
	ErrInvalidRecord  = errors.New("logstore/engine: invalid record")
	ErrRecordTooLarge = errors.New("logstore/engine: record over the configured limits")
	ErrNotFound       = errors.New("logstore/engine: not found")
	ErrNoKey          = errors.New("logstore/engine: tenant has no key")
	ErrCorrupt        = errors.New("logstore/engine: corrupt index or record encoding")
	ErrUnknownVersion = errors.New("logstore/engine: unknown encoding version")
	ErrNoPayload      = errors.New("logstore/engine: record has no payload")
	// ErrExists: Append was given a Record.ID the tenant already has (or
	// twice in one call); nothing of the call was written.
	ErrExists = errors.New("logstore/engine: record id already stored")
)

// errNilContext is what a call given a nil context returns (the context
// package's rule is never to pass one; a panic here would leak locks).
var errNilContext = fmt.Errorf("%w: nil context.Context", ErrInvalidOptions)

// Index errors: the Pebble index disagrees with the segments, is out of
// space, damaged or failed.
var (
	// ErrIndexMismatch: a block's index entry (its summary: place, record
	// count, ranges, filter) disagrees with the block, or points at
	// nothing. The index was edited or is stale; `logstore segments
	// reindex` rebuilds it from the segments.
	ErrIndexMismatch = errors.New("logstore/engine: index disagrees with the authenticated segment")

	// ErrDiskFull: a segment or index write met ENOSPC (or a quota), or the
	// index is still out of space. Nothing acknowledged is lost; retry once
	// space has been freed. An append that fails with it wrote nothing,
	// except when the index learned of the full disk after the append's
	// blocks had reached their segment and could not take their entries:
	// then the next Open indexes them. A retry that sets Record.ID is
	// refused with ErrExists once the first attempt is indexed; before
	// that Open, it stores a second copy.
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

// Manifest errors. Each is also reported per tenant by Open and Verify; a
// damaged manifest stops that tenant's writes, never other tenants.
var (
	// ErrManifestCorrupt: the manifest file fails its checksum or structure.
	ErrManifestCorrupt = errors.New("logstore/engine: tenant manifest is corrupt")
	// ErrManifestAuth: the manifest's MAC or key wraps do not verify: it was
	// not written by a holder of the tenant's keys (forged, copied from
	// another tenant, or its key binding switched).
	ErrManifestAuth = errors.New("logstore/engine: tenant manifest failed authentication")
	// ErrManifestMissing: the tenant has version-2 segments but no manifest
	// (deleted); its key binding is unknown, so writes are refused until an
	// operator links the key again (`logstore keys link`).
	ErrManifestMissing = errors.New("logstore/engine: tenant manifest is missing")
	// ErrManifestRollback: the manifest is older than one this index saw.
	ErrManifestRollback = errors.New("logstore/engine: tenant manifest rolled back")
	// ErrSegmentLoss: a segment the manifest lists is missing, shorter than
	// recorded, or holds fewer blocks than were acknowledged.
	ErrSegmentLoss = errors.New("logstore/engine: acknowledged segment data is missing")
	// ErrSegmentTampered: a segment differs from what the manifest recorded
	// (size, digest, identity, cipher suite), or is a file the manifest does
	// not list. It is not indexed and not served.
	ErrSegmentTampered = errors.New("logstore/engine: segment does not match the tenant manifest")
	// ErrTenantDamaged wraps why a tenant refuses writes after Open.
	ErrTenantDamaged = errors.New("logstore/engine: tenant is damaged")
)

// Key errors of the engine's own (the providers' are package keys').
var (
	// ErrKeyValidation wraps every reason LinkKey refuses a key.
	ErrKeyValidation = errors.New("logstore/engine: key validation failed")
	// ErrKeySlotRollback: a segment's active key slot is older than the one the
	// index recorded (an old copy of the header was put back, e.g. to bring back
	// a retired key). Reads of that segment are refused.
	ErrKeySlotRollback = errors.New("logstore/engine: segment key slot rolled back")
	// ErrKeyInUse: a local key belongs to, or is in use by, another tenant.
	// Tenants never share a local master key: deleting one tenant would then
	// either shred the other's data or leave its own DEKs recoverable. (KMS keys
	// are the customer's; several tenants of one customer may share one, the
	// encryption context keeps their DEKs apart.)
	ErrKeyInUse = errors.New("logstore/engine: local key belongs to another tenant")
	// ErrBucketCorrupt: the bucket's format marker (docs/format/bucket.md)
	// is damaged or another program's.
	ErrBucketCorrupt = errors.New("logstore/engine: the bucket's format marker is damaged or another program's")
	// ErrNodeConflict: another data directory uploads under this one's
	// writer-node id (a copied DIR/NODE); this one stops uploading that
	// tenant rather than overwrite, or delete, the other's objects.
	ErrNodeConflict = errors.New("logstore/engine: another data directory uses this node id in the bucket")
)
