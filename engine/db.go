package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// DB is an open data directory. Its methods are safe for concurrent use.
// Tenant gives the data plane (Append, Get, Scan, Count), Admin the
// operator plane; the package doc shows both.
//
// Layout of DIR (docs/format/README.md in the repository; every name is
// spelled in filenames.go):
//
//	LOCK                          exclusive lock of the owning process
//	segments/TENANT/HEXID.lss     segment files (the source of truth)
//	segments/TENANT/MANIFEST      the tenant manifest (authenticated)
//	index/                        Pebble: metadata index, derived
//	keys/NAME.key                 local master keys (embedded default)
//	audit/keys.log                key audit trail
type DB struct {
	dir   string
	opts  Options
	fs    vfs.FS
	codec segment.Codec
	lock  io.Closer
	index *index // the Pebble index's owner (indexstore.go)
	// catalog holds the index's block summaries in memory (catalog.go).
	catalog *catalog
	// refreshMu serializes a read-only DB's Refresh calls, so manifests
	// read later are never published before ones read earlier.
	refreshMu sync.Mutex
	cache     *keys.Cache
	local     *keys.Local // nil when Options.Keys was supplied
	audit     *keys.AuditLog

	ids       idSource
	readers   *readerCache
	blocks    *blockCache // decrypted blocks for Get (blockcache.go)
	manifests manifests
	// recovery is what Open found and did (Recovery).
	recovery RecoveryReport
	attestMu sync.Mutex     // guards attested
	attested []AttestReport // re-attestations by LinkKey (Attested)

	// The write path's goroutines (write.go has the map): appends queue on
	// reqs for the writer goroutine (writeLoop), which also runs ctl's
	// functions (control) and hands index jobs on indexQ to the indexer
	// goroutine (indexLoop), which closes indexDone when indexQ is closed.
	reqs      chan *appendReq
	indexQ    chan *indexJob
	indexDone chan struct{}
	ctl       chan func()
	quit      chan struct{}  // closed by Close: the writer drains and stops
	wg        sync.WaitGroup // the writer and the retention goroutine

	closeMu sync.RWMutex // held shared by Append while enqueueing and by enter; exclusively by Close
	closed  bool         // guarded by closeMu
	// inUse counts the reads and operator calls in progress (enter): Close
	// waits for them before it closes the index under them.
	inUse sync.WaitGroup

	// tenants is the writer goroutine's per-tenant state; only that
	// goroutine touches it.
	tenants map[string]*tenantState

	// redact holds the compiled redaction policies (redaction.go).
	redact redactors

	stats dbStats

	// uploader copies sealed segments to Options.Bucket (upload.go); nil
	// without a bucket and in read-only DBs.
	uploader *uploader
	// node is this directory's writer-node id with a bucket (DIR/NODE),
	// written into every manifest; "" without one.
	node string
	// configMu serializes operator configuration changes (with their
	// publish to the bucket) and adoptions of the shared config
	// (tenantconfig.go).
	configMu sync.Mutex
	// remote is a stateless reader's view of the bucket (remote.go); nil
	// unless Options.ReadOnly with Options.Bucket.
	remote *remoteStore
}

// RecoveryReport says what Open repaired.
type RecoveryReport struct {
	SegmentsSealed   int // unsealed segments truncated to their last valid block and sealed
	TruncatedBytes   int64
	BlocksReplayed   int // blocks indexed on open (crash between segment and index write)
	TenantsReindexed int // tenants whose index was ahead of their segments
	TenantsAdopted   int // tenants from before manifests that got their first manifest
	DebrisRemoved    int // segment files a crash left with a header and no block, never listed
	JournalRecords   int // records a crash left only in a journal, appended again (journalreplay.go)
	RollupsAdded     int // sealed segments from before rollups that got one (rollup.go)
	ErasesRolledBack int // erases a crash cut before their commit, undone (erase.go): run them again
	// Damaged lists what Open refused or found missing: tampered, unlisted
	// or truncated segments, lost segments, damaged manifests. Those tenants
	// or segments are refused; everything else works.
	Damaged []string
	// Unverified lists tenants whose manifest could not be authenticated
	// because the key is unusable or unreachable; retried on their next write.
	Unverified []string
}

// Open opens (creating if needed) the data directory dir.
func Open(dir string, o *Options) (*DB, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	codec, _ := segment.ParseCodec(opts.Compression)
	db := &DB{dir: dir, opts: opts, fs: opts.FS, codec: codec, tenants: map[string]*tenantState{},
		reqs: make(chan *appendReq, 1024), ctl: make(chan func()), quit: make(chan struct{}),
		indexQ: make(chan *indexJob, 4), indexDone: make(chan struct{})}
	db.manifests.byTenant = map[string]*tenantManifest{}
	db.redact.fallback, _ = opts.Redaction.Compile() // validate checked it
	if opts.ReadOnly {
		return openReadOnly(db)
	}
	if err := db.fs.MkdirAll(segmentsDirOf(dir)); err != nil {
		return nil, err
	}
	lock, err := vfs.Lock(db.fs, lockPathOf(dir))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return nil, fmt.Errorf("%w: %s: %v", ErrLocked, dir, err)
		}
		return nil, err
	}
	db.lock = lock
	fail := func(err error) (*DB, error) {
		db.closeResources()
		return nil, err
	}
	if db.index, err = openIndex(dir, opts); err != nil {
		return fail(err)
	}
	if opts.Bucket != nil {
		// Before recovery: every manifest written from now on names its node.
		if db.node, err = db.nodeID(); err != nil {
			return fail(err)
		}
	}
	db.catalog = newCatalog(db.loadFromIndex)
	provider := opts.Keys
	if provider == nil {
		local, err := keys.NewLocal(keys.LocalOptions{Dir: keysDirOf(dir), FS: db.fs, AutoCreate: !opts.RequireLinkedKey})
		if err != nil {
			return fail(err)
		}
		db.local = local
		provider = keys.NewRouter(append([]keys.Provider{local}, opts.KMS...)...)
	}
	if !opts.NoAudit {
		if db.audit, err = db.openAudit(); err != nil {
			return fail(err)
		}
		provider = keys.NewAudited(provider, db.audit)
	}
	db.cache = keys.NewCache(provider, *opts.DEKCache)
	db.readers = newReaderCache(db, opts.MaxOpenSegments)
	db.blocks = newBlockCache(int64(opts.BlockCacheBytes), opts.DEKCache.MaxAge, opts.DEKCache.Now)
	damagedAudit := db.recovery.Damaged
	if db.recovery, err = db.recover(); err != nil {
		return fail(db.indexErr(err))
	}
	db.recovery.Damaged = append(damagedAudit, db.recovery.Damaged...)
	if db.audit != nil {
		// The manifests' anchors are checked now, before new manifest writes
		// move them to the current head: a dropped or rewritten tail is
		// reported by the Open that first sees it.
		if _, err := db.verifyAudit(context.Background()); err != nil {
			db.recovery.Damaged = append(db.recovery.Damaged, fmt.Sprintf("audit trail: %v", err))
		}
	}
	go db.indexLoop()
	db.wg.Add(1)
	go db.writeLoop()
	db.replayJournals(&db.recovery)
	if opts.RetentionInterval > 0 {
		db.wg.Add(1)
		go db.retentionLoop()
	}
	if opts.Bucket != nil {
		db.uploader = newUploader(db, opts.Bucket, db.node)
		db.wg.Add(1)
		go db.uploader.loop(opts.UploadInterval)
	}
	return db, nil
}

// Recovery reports what Open found and repaired: sealed crash leftovers,
// replayed index entries, and the tenants or segments it refused (Damaged)
// or could not authenticate yet (Unverified).
func (db *DB) Recovery() RecoveryReport { return db.recovery }

// AttestReport says what a LinkKey on a tenant without a trustworthy
// manifest vouched for: the segment files it listed in the new manifest and
// those it could not read. The operator should check the list (`logstore
// segments verify`): those files are trusted from now on.
type AttestReport struct {
	Tenant   string
	Segments int
	Skipped  []string
}

// attestedReports implements Admin.Attested (documented there).
func (db *DB) attestedReports() []AttestReport {
	db.attestMu.Lock()
	defer db.attestMu.Unlock()
	return append([]AttestReport(nil), db.attested...)
}

// Dir is the data directory.
func (db *DB) Dir() string { return db.dir }

// Close stops the background goroutines (finishing queued appends and
// sealing every active segment), waits for the reads and operator calls in
// progress, closes the index and releases the lock. Afterwards every method
// returns ErrClosed.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return ErrClosed
	}
	db.closed = true
	close(db.quit)
	db.closeMu.Unlock()
	if db.uploader != nil {
		db.uploader.cancel() // a pass in flight stops; the final one below redoes it
	}
	db.wg.Wait()
	db.inUse.Wait()
	db.finalUpload()
	return db.closeResources()
}

// enter registers a read or an operator call, which must call db.leave
// when it no longer touches the index or the files; ErrClosed once Close
// has begun. Close waits for every registered call: a Scan's loop body
// must not call Close.
func (db *DB) enter() error {
	return db.whileOpen(func() error { db.inUse.Add(1); return nil })
}

// leave ends what enter began.
func (db *DB) leave() { db.inUse.Done() }

// whileOpen runs f under the shared close lock, so that Close cannot begin
// during it, unless Close has begun (ErrClosed). f must not block on
// anything Close waits for.
func (db *DB) whileOpen(f func() error) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return ErrClosed
	}
	return f()
}

func (db *DB) closeResources() error {
	var errs []error
	if db.readers != nil {
		db.readers.closeAll()
	}
	db.blocks.purge(true) // zeroes the cached plaintext
	if db.index != nil {
		// Without a Pebble WAL, an unflushed memtable would only cost a
		// replay on the next Open; flushing makes that Open instant. On a
		// full disk it is dropped, and Close never waits without bound.
		errs = append(errs, db.index.close())
	}
	if db.cache != nil {
		db.cache.Purge()
	}
	if db.local != nil {
		errs = append(errs, db.local.Close())
	}
	if db.audit != nil {
		errs = append(errs, db.audit.Close())
	}
	if db.lock != nil {
		errs = append(errs, db.lock.Close())
	}
	return errors.Join(errs...)
}

// auditEvents implements Admin.Audit (documented there).
func (db *DB) auditEvents(tenant string, since time.Time) ([]keys.AuditEvent, error) {
	if db.audit == nil {
		return nil, fmt.Errorf("%w: the audit trail is disabled", ErrInvalidOptions)
	}
	evs, err := keys.ReadAuditLog(db.fs, db.auditPath(), since)
	if err != nil || tenant == "" {
		return evs, err
	}
	out := evs[:0]
	for _, e := range evs {
		if e.Context[keys.CtxTenant] == tenant {
			out = append(out, e)
		}
	}
	return out, nil
}

// keyCallTimeout bounds a key-provider call made by the writer goroutine.
const keyCallTimeout = 30 * time.Second

func (db *DB) readOpts(tenant string) *segment.ReadOptions {
	return &segment.ReadOptions{FS: db.fs, Tenant: tenant, AllowPlaintext: db.opts.Plaintext}
}
