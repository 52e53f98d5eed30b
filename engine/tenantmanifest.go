package engine

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// manifests holds each tenant's manifest as last verified or written, and
// why a tenant or one of its segments is refused. Only the writer goroutine
// (and Open, before it starts it) writes manifests; readers take the
// *tenantManifest snapshot, which is never modified once published.
type manifests struct {
	mu       sync.RWMutex // guards byTenant
	byTenant map[string]*tenantManifest
}

type tenantManifest struct {
	// body is the verified manifest; nil when the tenant has none (a new
	// tenant, or a store written before manifests, until it is adopted).
	body *manifestBody
	// damaged is why the tenant refuses writes (manifest missing, forged,
	// corrupt or rolled back); reads of authenticated blocks go on.
	damaged error
	// unverified is the key error that kept the manifest from being
	// authenticated; the writer retries when it next needs the tenant, but
	// not before retryAt, so a tenant whose KMS is down does not hold the
	// single writer goroutine in a key call on every group commit.
	unverified error
	retryAt    time.Time
	// problems maps a segment id (hex) to why it is not served.
	problems map[string]error
	// lost maps a segment id to acknowledged blocks it no longer holds
	// (reported; what remains is served).
	lost map[string]error
	// byID indexes body.Segments by id (built when published), so a Get
	// does not scan a long segment list.
	byID map[string]int
}

// entry returns the published manifest's entry for a segment id, or nil.
func (tm *tenantManifest) entry(id string) *manifestEntry {
	if tm.body == nil {
		return nil
	}
	if i, ok := tm.byID[id]; ok {
		return &tm.body.Segments[i]
	}
	return nil
}

func (m *manifests) get(tenant string) *tenantManifest {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.byTenant[tenant]
}

func (m *manifests) set(tenant string, tm *tenantManifest) {
	if tm != nil && tm.body != nil {
		tm.byID = make(map[string]int, len(tm.body.Segments))
		for i, e := range tm.body.Segments {
			tm.byID[e.ID] = i
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tm == nil {
		delete(m.byTenant, tenant)
		return
	}
	m.byTenant[tenant] = tm
}

// readManifest reads and authenticates a tenant's manifest, returning the
// body and the manifest key (zero it). vfs.ErrNotExist: there is none.
func (db *DB) readManifest(ctx context.Context, tenant string) (*manifestBody, []byte, error) {
	if db.remote != nil {
		body, _, err := db.readRemoteManifest(ctx, tenant)
		if errors.Is(err, errNoRemoteManifest) {
			return nil, nil, fmt.Errorf("%w: %w", vfs.ErrNotExist, err)
		}
		return body, nil, err // merged: no one manifest key
	}
	raw, err := vfs.ReadFileLimit(db.fs, db.manifestPath(tenant), manifestFileMax)
	if errors.Is(err, vfs.ErrTooLarge) || errors.Is(err, vfs.ErrNotRegular) {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrManifestCorrupt, tenant, err)
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := decodeManifest(raw, tenant)
	if err != nil {
		return nil, nil, err
	}
	mk, err := db.unwrapManifestKey(ctx, tenant, &p.body, p.body.Key.URI)
	if err != nil {
		return nil, nil, err
	}
	if err := p.verify(mk); err != nil {
		keys.Zero(mk)
		return nil, nil, err
	}
	if err := db.checkExpectedKey(tenant, p.body.Key); err != nil {
		keys.Zero(mk)
		return nil, nil, err
	}
	if seq, ok := db.indexedManifestSeq(tenant, mk); ok && p.body.Seq < seq {
		keys.Zero(mk)
		return nil, nil, fmt.Errorf("%w: %s: manifest sequence %d, the index saw %d (an older copy was put back)",
			ErrManifestRollback, tenant, p.body.Seq, seq)
	}
	return &p.body, mk, nil
}

// unwrapManifestKey unwraps the manifest key stored under uri. A wrap that
// does not decrypt (wrong key, other tenant's context, altered bytes) is
// ErrManifestAuth; an unusable key is returned as the key error it is.
func (db *DB) unwrapManifestKey(ctx context.Context, tenant string, body *manifestBody, uri string) ([]byte, error) {
	w := body.wrapFor(uri)
	if w == nil {
		return nil, fmt.Errorf("%w: %s: no manifest key wrapped under %s", ErrManifestAuth, tenant, uri)
	}
	mk, err := db.cache.Unwrap(ctx, uri, w.Wrapped, manifestContext(tenant))
	if errors.Is(err, keys.ErrInvalidCiphertext) {
		return nil, fmt.Errorf("%w: %s: the manifest key does not unwrap under %s: %w", ErrManifestAuth, tenant, uri, err)
	}
	return mk, err
}

// checkWraps enforces the rule that makes a key switch impossible without the
// keys in use: every key proven to wrap one of the tenant's segment DEKs
// (provenKeys), and every key the index recorded for a segment that has
// vanished, must also wrap this manifest's key. A forged manifest that binds
// the tenant to a key the attacker owns cannot carry such a wrap. A key that
// is revoked (disabled, deleted, access denied) cannot be checked and is
// tolerated: the segments under it are unreadable anyway.
func (db *DB) checkWraps(ctx context.Context, tenant string, body *manifestBody, mk []byte, proven map[string]bool) error {
	for uri := range proven {
		if uri == body.Key.URI {
			continue
		}
		other, err := db.unwrapManifestKey(ctx, tenant, body, uri)
		if err != nil {
			if errors.Is(err, keys.ErrKeyUnusable) {
				continue
			}
			return fmt.Errorf("%w (segments are under %s)", err, uri)
		}
		same := bytes.Equal(other, mk)
		keys.Zero(other)
		if !same {
			return fmt.Errorf("%w: %s: the manifest key wrapped under %s differs from the one under the linked key %s",
				ErrManifestAuth, tenant, uri, body.Key.URI)
		}
	}
	return nil
}

// newManifestBody starts a manifest for tenant bound to b, with a fresh
// manifest key generated by b's key.
func (db *DB) newManifestBody(ctx context.Context, tenant string, b keyBinding) (*manifestBody, error) {
	dk, err := db.cache.Provider().GenerateDataKey(ctx, b.URI, manifestContext(tenant))
	if err != nil {
		return nil, err
	}
	keys.Zero(dk.Plaintext)
	return &manifestBody{Tenant: tenant, Key: b, Wraps: []keyWrap{{URI: b.URI, Wrapped: dk.Wrapped}}}, nil
}

// commitManifest writes body as the tenant's next manifest: it wraps the
// manifest key under every key now needed (the linked key and each listed
// segment's key), drops wraps no longer needed, records the audit head,
// MACs, replaces the file atomically and publishes the result. Callers run
// on the writer goroutine or in Open.
func (db *DB) commitManifest(ctx context.Context, tenant string, body *manifestBody) error {
	if len(body.Wraps) == 0 {
		return fmt.Errorf("%w: %s: manifest without a key", ErrManifestAuth, tenant)
	}
	// The manifest key is whichever the current wraps hold: the linked key's
	// wrap when it exists, else the first (the previous binding's) one.
	from := body.Key.URI
	if body.wrapFor(from) == nil {
		from = body.Wraps[0].URI
	}
	mk, err := db.unwrapManifestKey(ctx, tenant, body, from)
	if err != nil {
		return err
	}
	defer keys.Zero(mk)
	needed := map[string]bool{body.Key.URI: true}
	for _, e := range body.Segments {
		if e.KeyURI != "" && e.State != segDeleting {
			needed[e.KeyURI] = true
		}
	}
	var wraps []keyWrap
	for uri := range needed {
		if w := body.wrapFor(uri); w != nil {
			wraps = append(wraps, *w)
			continue
		}
		wrapped, err := db.cache.Wrap(ctx, uri, mk, manifestContext(tenant))
		if err != nil {
			return fmt.Errorf("logstore/engine: wrap the manifest key of %s under %s: %w", tenant, uri, err)
		}
		wraps = append(wraps, keyWrap{URI: uri, Wrapped: wrapped})
	}
	sortWraps(wraps, body.Key.URI)
	body.Wraps = wraps
	body.Seq++
	if db.node != "" {
		body.Node = db.node // a copy in another node's directory of the bucket is refused
	}
	body.Written = db.opts.Now().UTC()
	if db.audit != nil {
		h := db.audit.Head()
		body.Audit = &auditAnchor{Seq: h.Seq, Hash: h.Hash[:]}
	}
	raw, err := encodeManifest(body, mk)
	if err != nil {
		return err
	}
	if err := db.fs.MkdirAll(db.segDir(tenant)); err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(db.fs, db.manifestPath(tenant), raw); err != nil {
		return fmt.Errorf("logstore/engine: write manifest of %s: %w", tenant, err)
	}
	db.recordManifestSeq(tenant, body.Seq, mk)
	prev := db.manifests.get(tenant)
	next := &tenantManifest{body: body.clone()}
	if prev != nil {
		next.problems, next.lost = prev.problems, prev.lost
	}
	db.manifests.set(tenant, next)
	if db.uploader != nil {
		db.uploader.notify(tenant) // a seal, a retention or erase removal, a key or policy change
	}
	return nil
}

// sortWraps puts the linked key's wrap first, the rest by URI, so equal
// manifests encode equally.
func sortWraps(w []keyWrap, first string) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && wrapLess(w[j], w[j-1], first); j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}

func wrapLess(a, b keyWrap, first string) bool {
	if (a.URI == first) != (b.URI == first) {
		return a.URI == first
	}
	return a.URI < b.URI
}

// The index remembers the newest manifest sequence it saw per tenant, so an
// older manifest copied back is noticed while the index survives. ('m' keys
// are outside the tenant's derived entries and survive a reindex.) The value
// is the sequence and a MAC under the manifest key, so a value planted in
// the index (a huge sequence, to make every manifest look rolled back) is
// ignored rather than believed.
func manifestSeqKey(tenant string) []byte { return tenantPrefix(keyManifestSeq, tenant) }

func manifestSeqValue(tenant string, seq uint64, mk []byte) []byte {
	v := binary.LittleEndian.AppendUint64(nil, seq)
	m := hmac.New(sha256.New, mk)
	m.Write([]byte("logstore/v1/manifest-seq\x00" + tenant + "\x00"))
	m.Write(v)
	return m.Sum(v)[:8+16]
}

// indexedManifestSeq returns the sequence the index recorded for tenant,
// if its MAC verifies under mk (nil mk: presence only, unauthenticated).
func (db *DB) indexedManifestSeq(tenant string, mk []byte) (uint64, bool) {
	if db.index == nil {
		return 0, false // a read-only DB has no index
	}
	v, found, err := db.index.get(manifestSeqKey(tenant))
	if err != nil || !found {
		return 0, false // read as missing: the check is an extra line of defence
	}
	if len(v) != 8+16 {
		return 0, false
	}
	seq := binary.LittleEndian.Uint64(v)
	if mk != nil && !hmac.Equal(manifestSeqValue(tenant, seq, mk), v) {
		return 0, false
	}
	return seq, true
}

func (db *DB) recordManifestSeq(tenant string, seq uint64, mk []byte) {
	// Best effort: the index is derived and may be lost; the rollback check
	// is an extra line of defence, not the guarantee (docs/security.md).
	if err := db.index.set(manifestSeqKey(tenant), manifestSeqValue(tenant, seq, mk)); err != nil {
		db.stats.manifestSeqFailures.Add(1)
	}
}

// segmentAllowed says whether the segment with header h may be served for
// tenant: it must be listed in the verified manifest, without a recorded
// problem, with the key-slot generation the manifest recorded (version 1
// slots: exactly; version 2 slots carry a MAC, so a newer generation is a
// rewrap whose manifest update a crash interrupted).
func (db *DB) segmentAllowed(tenant, path string, h segment.Header) error {
	if id, ok := segmentIDOfPath(path); !ok || id != h.ID {
		// A copy under another name would borrow that name's manifest entry.
		return fmt.Errorf("%w: %s holds segment %s", ErrSegmentTampered, path, segHex(h.ID))
	}
	if db.opts.Plaintext {
		return nil
	}
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		if tm != nil && tm.unverified != nil {
			return tm.unverified
		}
		if tm != nil && tm.damaged != nil && h.Version >= segment.Version2 {
			return tm.damaged
		}
		return nil // a store from before manifests: the index's generation check applies
	}
	id := segHex(h.ID)
	if err := tm.problems[id]; err != nil {
		return err
	}
	e := tm.entry(id)
	if e == nil {
		return fmt.Errorf("%w: segment %s of %s is not in the tenant manifest", ErrSegmentTampered, id, tenant)
	}
	switch {
	case h.Slot.Generation < e.KeyGen:
		return fmt.Errorf("%w: segment %s has key slot generation %d, the manifest recorded %d (%s)", ErrKeySlotRollback,
			id, h.Slot.Generation, e.KeyGen, e.KeyURI)
	case h.Version < segment.Version2 && h.Slot.Generation != e.KeyGen:
		return fmt.Errorf("%w: segment %s has key slot generation %d, the manifest recorded %d", ErrKeySlotRollback,
			id, h.Slot.Generation, e.KeyGen)
	}
	return nil
}

// checkExpectedKey compares a binding with the key the embedder expects.
func (db *DB) checkExpectedKey(tenant string, b keyBinding) error {
	if db.opts.ExpectedKey == nil {
		return nil
	}
	want := db.opts.ExpectedKey(tenant)
	if want == "" || want == b.URI || want == b.Alias {
		return nil
	}
	return fmt.Errorf("%w: %s is bound to %s, the embedder expects %s", ErrManifestAuth, tenant, b.URI, want)
}

// tenantWritable returns why tenant refuses writes, or nil.
func (db *DB) tenantWritable(tenant string) error {
	tm := db.manifests.get(tenant)
	if tm == nil {
		return nil
	}
	if tm.damaged != nil {
		return fmt.Errorf("%w: %s: %w", ErrTenantDamaged, tenant, tm.damaged)
	}
	return nil
}

// ensureManifest makes sure the writer may write for tenant: a manifest
// whose key was unusable at Open is authenticated again (and the tenant
// reconciled), a store from before manifests is adopted, and a damaged
// tenant is refused. Runs on the writer goroutine.
func (db *DB) ensureManifest(tenant string) error {
	if db.opts.Plaintext {
		return nil
	}
	tm := db.manifests.get(tenant)
	if tm != nil && tm.unverified != nil {
		if db.opts.Now().Before(tm.retryAt) {
			return tm.unverified
		}
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		defer cancel()
		var rep RecoveryReport
		if err := db.recoverTenant(ctx, tenant, &rep); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrTenantDamaged, tenant, err)
		}
		if tm = db.manifests.get(tenant); tm != nil && tm.unverified != nil {
			return tm.unverified
		}
	}
	if err := db.tenantWritable(tenant); err != nil {
		return err
	}
	if tm != nil && tm.body != nil {
		return nil
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil || len(files) == 0 {
		return err // a new tenant: its first segment writes the manifest
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	var rep RecoveryReport
	if err := db.recoverUnmanifested(ctx, tenant, files, &rep); err != nil {
		return err
	}
	if tm := db.manifests.get(tenant); tm == nil || tm.body == nil {
		return fmt.Errorf("%w: %s: could not adopt its segments: %v", ErrTenantDamaged, tenant, rep.Unverified)
	}
	return nil
}

// listActive records a new segment in the manifest as active (the file
// exists first, so a crash in between leaves removable debris, never a
// listed segment without a file). A new tenant's first segment creates the
// manifest, bound to the key the segment is wrapped under.
func (db *DB) listActive(tenant string, w *segment.Writer, autoLocal bool) error {
	if db.opts.Plaintext {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	h := w.Header()
	var body *manifestBody
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		body = tm.body.clone()
	} else {
		var err error
		b := keyBinding{URI: h.Slot.KeyURI, LinkedAt: db.opts.Now().UTC(), AutoLocal: autoLocal}
		if body, err = db.newManifestBody(ctx, tenant, b); err != nil {
			return err
		}
	}
	body.Segments = append(body.Segments, manifestEntry{ID: segHex(h.ID), State: segActive, Version: h.Version,
		Size: w.Size(), KeyURI: h.Slot.KeyURI, KeyGen: h.Slot.Generation})
	return db.commitManifest(ctx, tenant, body)
}

// recordSealed records the sealed segment at path in the manifest with its
// final size, block count and digest.
func (db *DB) recordSealed(tenant, path string, written []*blockSummary, journalFlushed bool) error {
	if db.opts.Plaintext {
		return nil
	}
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return err
	}
	defer r.Close()
	body := tm.body.clone()
	e := body.entry(segHex(r.Header().ID))
	if e == nil {
		return fmt.Errorf("%w: segment %s is not in the manifest", ErrSegmentTampered, segHex(r.Header().ID))
	}
	if err := db.sealEntry(r, e, written); err != nil {
		return err
	}
	if journalFlushed {
		e.JournalID, e.JournalSize = "", 0 // the journal's records are all in the segment
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	return db.commitManifest(ctx, tenant, body)
}

// updateManifest applies f to a copy of tenant's verified manifest and
// commits it. A tenant without a manifest gets one when create is set (bound
// as its first segment would be: keyURIFor); otherwise the call does
// nothing (a plaintext store, or one from before manifests). Runs on the
// writer goroutine.
func (db *DB) updateManifest(ctx context.Context, tenant string, create bool, f func(*manifestBody) error) error {
	if db.opts.Plaintext {
		return nil
	}
	ts, err := db.tenant(tenant)
	if err != nil {
		return err
	}
	var body *manifestBody
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		body = tm.body.clone()
	} else if !create {
		return nil
	} else {
		uri, auto, err := db.keyURIFor(ts)
		if err != nil {
			return err
		}
		if body, err = db.newManifestBody(ctx, tenant, keyBinding{URI: uri, LinkedAt: db.opts.Now().UTC(), AutoLocal: auto}); err != nil {
			return err
		}
	}
	if err := f(body); err != nil {
		return err
	}
	return db.commitManifest(ctx, tenant, body)
}

// setSegmentState marks a listed segment (deleting) or drops it (state "").
func (db *DB) setSegmentState(ctx context.Context, tenant string, id [16]byte, state string) error {
	hexID := segHex(id)
	return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error {
		for i := range b.Segments {
			if b.Segments[i].ID != hexID {
				continue
			}
			if state == "" {
				b.Segments = append(b.Segments[:i], b.Segments[i+1:]...)
			} else {
				b.Segments[i].State = state
			}
			return nil
		}
		return nil
	})
}

// unverifiedRetry is how long a tenant whose manifest could not be
// authenticated (key unusable or unreachable) waits before the writer tries
// again; meanwhile its writes fail at once with that key error.
const unverifiedRetry = 5 * time.Second

// checkpointEvery bounds how much of an active segment's acknowledged tail
// the manifest does not vouch for: recovery reports as loss an active
// segment holding fewer blocks than the last checkpoint, so an attacker who
// truncates it at a block boundary while the writer is down can remove
// undetected at most what was synced in the last checkpointEvery.
const checkpointEvery = time.Second

// checkpoint records, at most every checkpointEvery, the active segment's
// synced size and block count in the manifest. Called right after an fsync
// on the writer goroutine. A failure is counted, not returned: the records
// are durable; only the bound above is weaker until the next checkpoint.
func (db *DB) checkpoint(ts *tenantState) {
	if db.opts.Plaintext || ts.w == nil {
		return
	}
	now := db.opts.Now()
	if now.Sub(ts.checkpointed) < checkpointEvery {
		return
	}
	ts.checkpointed = now
	if err := db.checkpointNow(ts); err != nil {
		db.stats.checkpointFailures.Add(1)
	}
}

// checkpointNow records ts's synced sizes in the manifest now: the active
// segment's, and its journal's (none: the manifest stops expecting one).
func (db *DB) checkpointNow(ts *tenantState) error {
	if db.opts.Plaintext || ts.w == nil {
		return nil
	}
	h := ts.w.Header()
	size, blocks := ts.w.Size(), ts.w.BlockCount()
	var journal int64
	var journalID string
	if ts.j != nil {
		journal, journalID = ts.j.Size(), segHex(ts.j.Header().ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	return db.updateManifest(ctx, ts.name, false, func(b *manifestBody) error {
		if e := b.entry(segHex(h.ID)); e != nil && e.State == segActive {
			e.Size, e.Blocks = size, blocks
			if e.JournalID != journalID {
				e.JournalID, e.JournalSize = journalID, 0
			}
			e.JournalSize = max(e.JournalSize, journal)
		}
		return nil
	})
}
