package engine

import (
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/redact"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// SyncMode says when appended records are made durable.
type SyncMode struct {
	kind     syncKind
	interval time.Duration // syncInterval only
}

// syncKind is SyncMode's kind; the zero value is the default, syncAlways.
type syncKind int

const (
	syncAlways   syncKind = iota // fsync before acknowledging (writer.go commitGroup)
	syncInterval                 // fsync dirty segments on a ticker (writer.go writeLoop)
	syncNever                    // never fsync; the OS flushes
)

var (
	// SyncAlways fsyncs every touched segment before any caller of a group
	// commit is acknowledged. The default.
	SyncAlways = SyncMode{kind: syncAlways}
	// SyncNever leaves flushing to the OS: an acknowledged record survives a
	// process crash but not a power loss.
	SyncNever = SyncMode{kind: syncNever}
)

// SyncInterval fsyncs dirty segments every d: a power loss may lose up to d
// of acknowledged records.
func SyncInterval(d time.Duration) SyncMode { return SyncMode{kind: syncInterval, interval: d} }

func (m SyncMode) String() string {
	switch m.kind {
	case syncAlways:
		return "always"
	case syncInterval:
		return "interval(" + m.interval.String() + ")"
	}
	return "never"
}

// Options configure a DB. The zero value of every field means its default.
type Options struct {
	// FS holds the segments, the lock and the local keys (default: the OS).
	FS vfs.FS
	// Bucket, when set, is where sealed segments go (docs/scale-out.md;
	// default nil: the store is local only). A writer uploads every sealed
	// segment, its summary file and then the tenant's manifest to its own
	// node directory there, in the background; records are acknowledged by
	// the local write as without a bucket. With ReadOnly the DB is a
	// stateless reader of the bucket: it reads every writer node's
	// manifests and segments from it, with ranged reads, and keeps only a
	// bounded cache (BucketCacheBytes) and, for local:// keys, DIR/keys.
	Bucket objstore.Bucket
	// UploadInterval is how often a writer retries uploads that failed
	// (default 10s); a seal or any manifest change starts a pass at once.
	UploadInterval time.Duration
	// UploadOnClose bounds the upload pass Close runs after sealing the
	// active segments (default 30s; negative: none, the next Open uploads).
	UploadOnClose time.Duration
	// ConfigPollInterval is how often a writer reads the tenants' shared
	// configurations in the bucket (tenantconfig.go) to adopt other nodes'
	// changes (default 30s; the first upload pass after Open reads them).
	ConfigPollInterval time.Duration
	// BucketCacheBytes bounds a stateless reader's in-memory cache of
	// object ranges (default 64 MiB).
	BucketCacheBytes int
	// IndexInMemory keeps the Pebble index in memory (tests, benchmarks);
	// default false: on disk in IndexDir.
	IndexInMemory bool
	// IndexDir is where Pebble keeps the index (default DIR/index). Pebble
	// uses the OS file system, whatever FS is.
	IndexDir string
	// ReadOnly opens the store for reading beside a writer (another
	// process that has it open, or none), or on a read-only copy (default
	// false: open for writing, taking the exclusive lock). Such a DB takes
	// no lock and writes nothing: no index, no audit records (key calls go
	// unaudited; a KMS logs them on its side), no recovery. Scan, Count,
	// GetMeta and Get serve what was acknowledged as of Open or the last
	// DB.Refresh; Append, every Admin call but Tenants, and Open of a
	// directory that is not a store fail (ErrReadOnly, ErrNotFound).
	// RebuildIndex is refused with it.
	ReadOnly bool
	// RebuildIndex deletes the index and rebuilds it from the segments on
	// Open, keeping the entries that are not derived from them when it can
	// read them (DB.IndexRebuild says what it did). The repair for
	// ErrIndexCorrupt; `logstore segments reindex` sets it.
	RebuildIndex bool
	// Keys replaces the whole key provider (default nil: a keys.Router over
	// the local provider in DIR/keys plus KMS). The engine imports no cloud
	// SDK: the application composes the providers it wants.
	Keys keys.Provider
	// KMS are the providers for key URIs that are not local://, routed by
	// scheme beside the built-in local provider; for AWS KMS pass
	// awskms.New(awskms.Options{...}). Default none: such a URI is refused
	// with keys.ErrUnsupported. Ignored when Keys is set.
	KMS []keys.Provider
	// NoAudit disables the key audit trail (default: every call that reaches
	// a key provider is appended to DIR/audit/keys.log).
	NoAudit bool
	// DEKCache configures the DEK cache in front of Keys (default:
	// keys.DefaultCacheOptions(), a 5-minute max age; MaxAge 0 disables
	// caching). The max age is how long a revocation takes to bite.
	DEKCache *keys.CacheOptions
	// RequireLinkedKey refuses appends for tenants without a linked key
	// (ErrNoKey). Default false: such a tenant gets local://TENANT, created on
	// first use, the embedded development default.
	RequireLinkedKey bool
	// ExpectedKey, when set, returns the key URI the embedder's own control
	// plane has linked for tenant ("" when it has none). A tenant manifest
	// bound to any other key is refused (ErrManifestAuth), and a new tenant
	// is bound to it instead of an auto-created local key. It is the answer
	// to an attacker who destroys a tenant's whole data set and starts it
	// again under a key of their own (docs/security.md). Default nil: the
	// manifest alone decides.
	ExpectedKey func(tenant string) string
	// Sync is the durability mode (default SyncAlways).
	Sync SyncMode
	// BlockSize is the target uncompressed size of a block (default 64 KiB).
	// Appends too small to fill one wait in the active segment's journal
	// until enough have come (journal.go), so blocks are this size
	// whatever the callers' batch size.
	BlockSize int
	// NoJournal writes every group of appends straight to blocks of the
	// active segment, however small (default false: small appends are
	// journaled and flushed as full blocks). Small blocks compress worse
	// and cost more per record; it exists to measure that, and for tests
	// of the segment path.
	NoJournal bool
	// Compression is the block codec: "zstd" (default), "s2" or "none".
	Compression string
	// Plaintext disables encryption: bodies are compressed but not sealed.
	// For the benchmark baseline only; never set it for real data.
	Plaintext bool
	// SegmentSize rolls the active segment past this size (default 64 MiB).
	SegmentSize int64
	// SegmentAge rolls the active segment past this age (default 1 h).
	SegmentAge time.Duration
	// Limits bound records (defaults in Limits).
	Limits Limits
	// RetentionInterval is how often the background job applies retention
	// (default 1 min; negative disables the background job).
	RetentionInterval time.Duration
	// MaxOpenSegments bounds the cached segment readers (default 256).
	MaxOpenSegments int
	// BlockCacheBytes bounds the cache of decrypted, decompressed blocks
	// that lets Gets of neighbouring records decrypt their block once
	// (default 8 MiB; negative disables it). It holds plaintext: an entry
	// is never served past the DEK cache's max age (nothing is cached when
	// that is 0), every Get still asks the DEK cache for the key first, and
	// entries are zeroed when dropped. Stats.BlockCache* report it.
	BlockCacheBytes int
	// Redaction is the redaction policy of tenants that have not set their
	// own (Admin.SetRedaction): applied by Append to every record before it
	// is sealed. Default (nil) redact.Default(), which masks credentials,
	// API keys and card numbers; redact.None() turns redaction off.
	Redaction *redact.Policy
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.DEKCache == nil {
		d := keys.DefaultCacheOptions()
		c.DEKCache = &d
	}
	if c.BlockSize == 0 {
		c.BlockSize = 64 << 10
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = 64 << 20
	}
	if c.SegmentAge == 0 {
		c.SegmentAge = time.Hour
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Minute
	}
	if c.MaxOpenSegments == 0 {
		c.MaxOpenSegments = 256
	}
	if c.BlockCacheBytes == 0 {
		c.BlockCacheBytes = 8 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.UploadInterval == 0 {
		c.UploadInterval = 10 * time.Second
	}
	if c.ConfigPollInterval == 0 {
		c.ConfigPollInterval = 30 * time.Second
	}
	if c.UploadOnClose == 0 {
		c.UploadOnClose = 30 * time.Second
	}
	if c.BucketCacheBytes == 0 {
		c.BucketCacheBytes = 64 << 20
	}
	c.Limits.setDefaults()
	return c, c.validate()
}

// validate refuses options Open cannot honour (defaults already applied).
func (c *Options) validate() error {
	if _, err := segment.ParseCodec(c.Compression); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	switch {
	case c.BlockSize < 1<<10 || c.BlockSize > 16<<20:
		return fmt.Errorf("%w: BlockSize %d outside 1 KiB..16 MiB", ErrInvalidOptions, c.BlockSize)
	case c.SegmentSize < 1<<20:
		return fmt.Errorf("%w: SegmentSize %d below 1 MiB", ErrInvalidOptions, c.SegmentSize)
	case c.SegmentAge < time.Second:
		return fmt.Errorf("%w: SegmentAge %v below 1s", ErrInvalidOptions, c.SegmentAge)
	case c.Sync.kind == syncInterval && c.Sync.interval <= 0:
		return fmt.Errorf("%w: SyncInterval needs a positive interval", ErrInvalidOptions)
	case c.Limits.MaxRecordBytes > segment.MaxBlockRaw/2:
		return fmt.Errorf("%w: MaxRecordBytes %d over %d", ErrInvalidOptions, c.Limits.MaxRecordBytes, segment.MaxBlockRaw/2)
	case c.Bucket != nil && c.Plaintext:
		return fmt.Errorf("%w: Plaintext with a Bucket (only sealed, encrypted segments leave the machine)", ErrInvalidOptions)
	case c.UploadInterval < 0 || c.BucketCacheBytes < 0:
		return fmt.Errorf("%w: UploadInterval and BucketCacheBytes must not be negative", ErrInvalidOptions)
	case c.ReadOnly && c.RebuildIndex:
		return fmt.Errorf("%w: ReadOnly with RebuildIndex", ErrInvalidOptions)
	case c.BlockCacheBytes > 0 && c.BlockCacheBytes < 256<<10:
		// Blocks over a quarter of the bound are not cached: below this a
		// 64 KiB block never would be.
		return fmt.Errorf("%w: BlockCacheBytes %d below 256 KiB (negative disables the cache)", ErrInvalidOptions, c.BlockCacheBytes)
	case c.DEKCache.MaxAge < 0:
		return fmt.Errorf("%w: DEK cache max age must be >= 0", ErrInvalidOptions)
	}
	if _, err := c.Redaction.Compile(); err != nil {
		return fmt.Errorf("%w: Redaction: %w", ErrInvalidOptions, err)
	}
	return nil
}
