package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// SetRetention keeps a tenant's records for d (0: forever). Expired data is
// removed by whole segments, by the background job and by ApplyRetention.
func (db *DB) SetRetention(ctx context.Context, tenant string, d time.Duration) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("%w: retention %v must be >= 0", ErrInvalidOptions, d)
	}
	return db.control(ctx, func() error {
		return db.updateManifest(ctx, tenant, true, func(b *manifestBody) error { b.Retention = d; return nil })
	})
}

// RetentionReport says what ApplyRetention removed.
type RetentionReport struct {
	Segments int
	Records  int
	Bytes    int64
}

// ApplyRetention removes every sealed segment whose newest record is older
// than its tenant's retention, with its index entries.
func (db *DB) ApplyRetention(ctx context.Context) (RetentionReport, error) {
	var rep RetentionReport
	tenants, err := db.listTenants()
	if err != nil {
		return rep, err
	}
	now := db.opts.Now()
	for _, t := range tenants {
		cfg, err := db.config(t)
		if err != nil {
			continue // a damaged or unverified tenant keeps its data; Open and Verify report why
		}
		if cfg.Retention <= 0 {
			continue
		}
		cutoff := now.Add(-cfg.Retention)
		// Seal an active segment that has expired entirely, so it can go too.
		if err := db.control(ctx, func() error {
			if ts := db.tenants[t]; ts != nil && ts.info != nil && ts.info.Records > 0 && ts.info.MaxTime.Before(cutoff) {
				db.sealTolerated(ts)
				db.indexBarrier()
			}
			return nil
		}); err != nil {
			return rep, err
		}
		states, err := db.segmentStates(t)
		if err != nil {
			return rep, err
		}
		tm := db.manifests.get(t)
		for id, st := range states {
			if !st.Sealed || st.MaxTime.IsZero() && st.Records > 0 || !st.MaxTime.Before(cutoff) {
				continue
			}
			if !expiredInManifest(tm, id, cutoff) {
				continue // the index says expired, the authenticated manifest does not
			}
			if err := db.control(ctx, func() error { return db.deleteSegment(t, id, st) }); err != nil {
				return rep, err
			}
			rep.Segments++
			rep.Records += st.Records
			rep.Bytes += st.Size
		}
	}
	return rep, nil
}

// expiredInManifest reports whether the manifest (when the tenant has one)
// agrees that segment id is sealed and holds nothing newer than cutoff, so
// an edited index cannot make retention delete live data.
func expiredInManifest(tm *tenantManifest, id [16]byte, cutoff time.Time) bool {
	if tm == nil || tm.body == nil {
		return tm == nil // a store without manifests (plaintext, not yet adopted)
	}
	e := tm.entry(segHex(id))
	return e != nil && e.State == segSealed && (e.Records == 0 || time.Unix(0, e.MaxTime).Before(cutoff))
}

// deleteSegment removes a sealed segment's index entries, then its file.
// A crash in between leaves a file without index entries, which the next
// Open indexes again and the next retention pass removes again.
func (db *DB) deleteSegment(tenant string, id [16]byte, st *SegmentInfo) error {
	path := db.segPath(tenant, id)
	// The manifest says "deleting" before the file goes, so the missing
	// file is expected, never reported as loss.
	if err := db.setSegmentState(context.Background(), tenant, id, segDeleting); err != nil {
		return err
	}
	b := db.index.newBatch()
	defer b.close()
	r, err := segment.Open(path, db.readOpts(tenant))
	switch {
	case errors.Is(err, vfs.ErrNotExist):
	case err != nil:
		return err
	default:
		for i := range r.Blocks() {
			blk, err := r.ReadMeta(i)
			if err != nil {
				_ = r.Close()
				return err
			}
			for _, raw := range blk.Meta {
				var m Meta
				kind, err := decodeMeta(raw, &m)
				if err != nil {
					_ = r.Close()
					return err
				}
				if kind == kindPayload {
					_ = b.delete(payloadKey(tenant, m.ID))
					continue
				}
				_ = b.delete(recordKey(tenant, m.ID))
				indexEntries(tenant, &m, func(k []byte) { _ = b.delete(k) })
			}
		}
		_ = r.Close()
	}
	if err := b.delete(segmentKey(tenant, id)); err != nil {
		return err
	}
	if err := db.index.commit(b); err != nil {
		return err
	}
	if err := db.index.flush(); err != nil {
		return err
	}
	db.readers.invalidate(path)
	if err := db.fs.Remove(path); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	if err := db.fs.SyncDir(db.segDir(tenant)); err != nil {
		return err
	}
	return db.setSegmentState(context.Background(), tenant, id, "")
}

func (db *DB) retentionLoop() {
	defer db.wg.Done()
	t := time.NewTicker(db.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-db.quit:
			return
		case <-t.C:
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-db.quit:
					cancel()
				case <-ctx.Done():
				}
			}()
			if _, err := db.ApplyRetention(ctx); err != nil && ctx.Err() == nil {
				db.stats.retentionFailures.Add(1) // no caller to tell: counted, tried again next tick
			}
			cancel()
		}
	}
}

// DeleteReport says what DeleteTenant removed.
type DeleteReport struct {
	Segments      int
	Records       int
	Bytes         int64
	KeysDestroyed []string
	// KeysKept are keys the tenant's data was wrapped under that were not
	// destroyed, with the reason: a local key another tenant uses, or a
	// customer-managed KMS key.
	KeysKept []KeptKey
}

// KeptKey is a key DeleteTenant did not destroy, and why.
type KeptKey struct {
	URI    string
	Reason string
}

// DeleteTenant crypto-shreds a tenant: its segments, the wrapped DEKs in
// them, its index entries and configuration, and every local master key its
// data was ever wrapped under: its default local://TENANT, the key linked in
// its configuration, the key of every segment's key slot, and every key its
// key operations in the audit trail used (earlier rotations). A local key
// another tenant uses is kept (destroying it would shred that tenant) and
// reported in KeysKept. A customer-managed KMS key is the customer's to
// delete; logstore only forgets it (KeysKept says so).
func (db *DB) DeleteTenant(ctx context.Context, tenant string) (DeleteReport, error) {
	var rep DeleteReport
	if err := ValidateTenant(tenant); err != nil {
		return rep, err
	}
	err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; ts != nil {
			db.sealTolerated(ts)
			delete(db.tenants, tenant)
			db.indexBarrier()
		}
		return db.deleteTenantLocked(tenant, &rep)
	})
	return rep, err
}

func (db *DB) deleteTenantLocked(tenant string, rep *DeleteReport) error {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	uris, err := db.tenantKeyURIs(tenant, states)
	if err != nil {
		return err
	}
	users, err := db.localKeyUsers(tenant)
	if err != nil {
		return err
	}
	for _, st := range states {
		rep.Segments++
		rep.Records += st.Records
		rep.Bytes += st.Size
	}
	if err := db.deleteTenantIndex(tenant, true); err != nil {
		return err
	}
	for _, k := range []byte{keyConfig, keySegment, keyRecord, keyTime, keyIndex, keyPayload} {
		p := tenantPrefix(k, tenant)
		if err := db.index.compact(p, prefixEnd(p)); err != nil {
			return err
		}
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	if len(files) > rep.Segments {
		rep.Segments = len(files)
	}
	for _, id := range files {
		p := db.segPath(tenant, id)
		db.readers.invalidate(p)
		if err := db.fs.Remove(p); err != nil && !errors.Is(err, vfs.ErrNotExist) {
			return err
		}
	}
	// The manifest goes last: a crash before this leaves it naming gone
	// segments (reported as loss) until the delete is run again.
	if err := db.fs.Remove(db.manifestPath(tenant)); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	db.manifests.set(tenant, nil)
	if err := db.fs.SyncDir(db.segDir(tenant)); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	if err := db.removeTenantDir(tenant); err != nil {
		db.stats.cleanupFailures.Add(1) // an empty directory left: the tenant's data is gone
	}
	for _, uri := range uris {
		db.cache.PurgeKey(uri)
		switch {
		case !isLocal(uri):
			rep.KeysKept = append(rep.KeysKept, KeptKey{URI: uri,
				Reason: "customer-managed key: logstore forgets it; revoke or schedule its deletion in the key service"})
		case len(users[uri]) > 0:
			rep.KeysKept = append(rep.KeysKept, KeptKey{URI: uri,
				Reason: "also used by tenant " + strings.Join(users[uri], ", ") + "; it goes with the last tenant using it"})
		case db.local != nil:
			_, err := db.local.Describe(context.Background(), uri)
			if errors.Is(err, keys.ErrKeyNotFound) || errors.Is(err, keys.ErrBadURI) {
				continue // never created (or nothing a local key could be)
			}
			if err := db.local.Destroy(uri); err != nil {
				return err
			}
			rep.KeysDestroyed = append(rep.KeysDestroyed, uri)
		}
	}
	return nil
}

// removeTenantDir removes a deleted tenant's directory, empty by now. A
// file system without directories (vfs.MemFS) has none to remove.
func (db *DB) removeTenantDir(tenant string) error {
	var err error
	if rm, ok := db.fs.(interface{ RemoveDir(string) error }); ok {
		err = rm.RemoveDir(db.segDir(tenant))
	} else {
		err = db.fs.Remove(db.segDir(tenant))
	}
	if errors.Is(err, vfs.ErrNotExist) {
		return nil
	}
	return err
}

// tenantKeyURIs lists every key tenant's data was wrapped under, its default
// local key first: the linked key, the key slot of every segment (the file
// is the source of truth, the index state is read too), and the keys of its
// successful key operations in the audit trail, which remembers rotations
// no segment names any more.
func (db *DB) tenantKeyURIs(tenant string, states map[[16]byte]*SegmentInfo) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(uri string) {
		if uri != "" && !seen[uri] {
			seen[uri] = true
			out = append(out, uri)
		}
	}
	add(keys.LocalURI(tenant))
	configured, err := db.configuredKeyURIs(tenant)
	if err != nil {
		return nil, err
	}
	for _, uri := range configured {
		add(uri)
	}
	for _, st := range states {
		add(st.KeyURI)
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return nil, err
	}
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			continue // unreadable: deleted all the same
		}
		add(r.Header().Slot.KeyURI)
		_ = r.Close()
	}
	if db.audit != nil {
		evs, err := db.Audit(tenant, time.Time{})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.Outcome == "ok" {
				add(e.KeyURI)
				add(e.ToKeyURI)
			}
		}
	}
	return out, nil
}

// Segments lists a tenant's segments as the index knows them.
func (db *DB) Segments(tenant string) ([]SegmentInfo, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	states, err := db.segmentStates(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]SegmentInfo, 0, len(states))
	for _, st := range states {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Tenants lists the tenants that have data.
func (db *DB) Tenants() ([]string, error) { return db.listTenants() }

// SegmentCheck is the verification result of one segment file.
type SegmentCheck struct {
	Tenant  string
	Path    string
	KeyURI  string // the key the segment's DEK is wrapped under
	Result  segment.VerifyResult
	KeyErr  error // why bodies could not be authenticated (checksums still checked)
	OpenErr error // also set, for a segment file that is missing, when index entries point into it
	// IndexChecked counts the segment's entries (request logs and
	// payloads) compared with the index.
	IndexChecked int
	// IndexProblems lists where the index disagrees with the segment's
	// metadata, authenticated unless KeyErr is set: a record without an
	// index entry, or whose entry has other metadata bytes or another
	// locator; a secondary index entry missing or stale; an index entry
	// that points into this segment at nothing.
	IndexProblems []IndexProblem
}

// IndexProblem is one disagreement between the index and a segment. Err
// matches ErrIndexMismatch.
type IndexProblem struct {
	ID    ID
	Block int // the block of the segment involved, -1 if none
	Err   error
}

// Verify checks every segment of tenant (all tenants when empty): checksums
// always, authentication of every block when the key is available, and the
// index against the segments: every record of every readable block has an
// index entry with identical metadata bytes and locator and its secondary
// index entries, and no index entry points at nothing.
func (db *DB) Verify(ctx context.Context, tenant string) ([]SegmentCheck, error) {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = db.listTenants(); err != nil {
			return nil, err
		}
	}
	var out []SegmentCheck
	for _, t := range tenants {
		checks, err := db.verifyTenant(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, checks...)
	}
	return out, nil
}

func (db *DB) verifyTenant(ctx context.Context, t string) ([]SegmentCheck, error) {
	// The index as of a moment when every block written so far is indexed;
	// blocks the active segment gets later are not compared.
	iv := &indexVerifier{db: db, tenant: t, seed: maphash.MakeSeed(), log: map[ID]bool{}, payload: map[ID]bool{},
		damaged: map[[16]byte]map[int64]bool{}, tails: map[[16]byte]int64{}, ends: map[[16]byte]int64{}, segs: map[[16]byte]int{}, activeBlocks: -1, keyBuf: make([]byte, 0, 1024)}
	if err := db.control(ctx, func() error {
		iv.snap = db.index.snapshot()
		if ts := db.tenants[t]; ts != nil && ts.info != nil {
			if id, err := ts.info.segID(); err == nil {
				iv.active, iv.activeBlocks = id, ts.info.Blocks
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	defer iv.snap.close()
	files, err := db.listSegmentFiles(t)
	if err != nil {
		return nil, err
	}
	for _, id := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		iv.segs[id] = len(iv.checks)
		iv.checks = append(iv.checks, SegmentCheck{Tenant: t, Path: db.segPath(t, id)})
		c := &iv.checks[len(iv.checks)-1]
		r, err := segment.Open(c.Path, db.readOpts(t))
		if err != nil {
			c.OpenErr = err
			iv.damaged[id] = nil // the whole segment
			continue
		}
		h := r.Header()
		c.KeyURI = h.Slot.KeyURI
		// What reads refuse, and what the manifest says the file must be,
		// verify reports; a manifest that could not be authenticated for
		// want of its key is a key error, not damage.
		err = db.manifestCheck(t, r)
		var ke *keys.Error
		if errors.As(err, &ke) {
			c.KeyErr, err = err, nil
		}
		if err == nil {
			err = db.checkSlotGeneration(t, r)
		}
		if err != nil {
			c.OpenErr = err
			iv.damaged[id] = nil
			_ = r.Close()
			continue
		}
		if h.Cipher != segment.CipherNone && c.KeyErr == nil {
			dek, err := db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, keys.SegmentContext(t, segHex(h.ID)))
			if err == nil {
				err = r.Unlock(dek)
				keys.Zero(dek)
			}
			c.KeyErr = err
		}
		c.Result = r.Verify()
		err = iv.segment(id, r, c)
		_ = r.Close()
		if err != nil {
			return nil, err
		}
	}
	// What the manifest lists but no file holds (gone segments, lost
	// blocks, the manifest itself): index entries pointing into a gone
	// segment are covered by its report.
	for _, g := range db.manifestGaps(t) {
		// Blocks a crash cut off an active segment: their records are
		// reported lost here, not one by one.
		if id, ok := segmentIDOfLostBlocks(g.Path); ok {
			if end, ok := iv.ends[id]; ok {
				iv.tails[id] = end
			}
		}
		if id, ok := segmentIDOfPath(g.Path); ok {
			if _, dup := iv.segs[id]; !dup {
				iv.segs[id] = len(iv.checks)
				iv.damaged[id] = nil
				iv.checks = append(iv.checks, g)
				continue
			}
		}
		iv.checks = append(iv.checks, g)
	}
	if err := iv.orphans(); err != nil {
		return nil, err
	}
	if err := iv.secondary(); err != nil {
		return nil, err
	}
	for _, c := range iv.checks {
		sort.SliceStable(c.IndexProblems, func(i, j int) bool {
			a, b := c.IndexProblems[i], c.IndexProblems[j]
			return a.Block < b.Block || a.Block == b.Block && bytes.Compare(a.ID[:], b.ID[:]) < 0
		})
	}
	return iv.checks, nil
}

// indexVerifier compares one tenant's index with its segments.
type indexVerifier struct {
	db           *DB
	tenant       string
	snap         indexSnapshot
	active       [16]byte // the active segment, whose first activeBlocks blocks were indexed
	activeBlocks int
	checks       []SegmentCheck
	segs         map[[16]byte]int // segment -> its check
	// log and payload hold the ids found in readable blocks, true when
	// the index entry matched.
	log, payload map[ID]bool
	// damaged holds the unreadable blocks (by offset) of each segment, nil
	// for a segment that could not be opened at all.
	damaged map[[16]byte]map[int64]bool
	// tails holds, for a damaged segment, the end of its last readable
	// block: what lies beyond (a torn or truncated tail) is its problem.
	tails map[[16]byte]int64
	ends  map[[16]byte]int64 // the end of each segment's last readable block
	// Secondary index entries: a keyed hash sum of the ones the
	// authenticated records need (want) is compared with that of the ones
	// present; only when they differ is each entry looked up.
	seed   maphash.Seed
	want   uint64
	keyBuf []byte // scratch for the keys of one record
}

func (iv *indexVerifier) problem(c *SegmentCheck, id ID, block int, format string, args ...any) {
	c.IndexProblems = append(c.IndexProblems, IndexProblem{ID: id, Block: block,
		Err: fmt.Errorf("%w: record %s: %s", ErrIndexMismatch, id, fmt.Sprintf(format, args...))})
}

func (iv *indexVerifier) get(key []byte) ([]byte, bool, error) { return iv.snap.get(key) }

// segment compares the entries of every readable block of r with the index.
func (iv *indexVerifier) segment(id [16]byte, r *segment.Reader, c *SegmentCheck) error {
	bad := map[int64]bool{}
	iv.damaged[id] = bad
	for _, p := range c.Result.Problems {
		if p.Block >= 0 {
			bad[p.Offset] = true
		}
	}
	end := int64(segment.HeaderSize)
	for _, b := range r.Blocks() {
		end = max(end, b.Offset+b.Length)
	}
	iv.ends[id] = end
	if len(c.Result.Problems) > 0 {
		iv.tails[id] = end
	}
	for i, b := range r.Blocks() {
		if bad[b.Offset] {
			continue
		}
		if id == iv.active && i >= iv.activeBlocks {
			break // written after the snapshot
		}
		var blk *segment.Block
		var err error
		if r.Unlocked() {
			blk, err = r.ReadBlock(i) // the metadata authenticated with the body
		} else {
			blk, err = r.ReadMeta(i) // checksums only: KeyErr says so
		}
		if err != nil {
			bad[b.Offset] = true
			continue
		}
		for j, raw := range blk.Meta {
			if err := iv.entry(c, Locator{Segment: id, Offset: b.Offset, Seq: uint64(i), Index: j}, raw); err != nil {
				blk.Release()
				return err
			}
		}
		blk.Release()
	}
	return nil
}

// entry checks one record (or payload) of a block against the index.
func (iv *indexVerifier) entry(c *SegmentCheck, loc Locator, raw []byte) error {
	c.IndexChecked++
	var m Meta
	kind, err := decodeMeta(raw, &m)
	if err != nil {
		iv.problem(c, m.ID, int(loc.Seq), "block %d entry %d: its metadata does not decode: %v", loc.Seq, loc.Index, err)
		return nil
	}
	if kind == kindPayload {
		v, ok, err := iv.get(payloadKey(iv.tenant, m.ID))
		switch {
		case err != nil:
			return err
		case !ok:
			iv.problem(c, m.ID, int(loc.Seq), "payload in block %d has no index entry", loc.Seq)
		default:
			got, rest, derr := decodeLocator(v)
			if derr != nil || len(rest) != 0 || got != loc {
				iv.problem(c, m.ID, int(loc.Seq), "payload entry points at %s, the payload is at %s", describeLoc(got, derr), describeLoc(loc, nil))
			} else {
				iv.payload[m.ID] = true
				return nil
			}
		}
		if _, seen := iv.payload[m.ID]; !seen {
			iv.payload[m.ID] = false
		}
		return nil
	}
	appendIndexKeys(iv.keyBuf[:0], iv.tenant, &m, func(k []byte) { iv.want += maphash.Bytes(iv.seed, k) })
	v, ok, err := iv.get(recordKey(iv.tenant, m.ID))
	switch {
	case err != nil:
		return err
	case !ok:
		iv.problem(c, m.ID, int(loc.Seq), "request log in block %d has no index entry", loc.Seq)
	default:
		got, rest, derr := decodeLocator(v)
		switch {
		case derr != nil || got != loc:
			iv.problem(c, m.ID, int(loc.Seq), "index entry points at %s, the request log is at %s", describeLoc(got, derr), describeLoc(loc, nil))
		case !bytes.Equal(rest, raw):
			iv.problem(c, m.ID, int(loc.Seq), "%v", strings.Join(metaDiffRaw(rest, raw), ", "))
		default:
			iv.log[m.ID] = true
			return nil
		}
	}
	if _, seen := iv.log[m.ID]; !seen {
		iv.log[m.ID] = false
	}
	return nil
}

func metaDiffRaw(indexed, authenticated []byte) []string {
	var im, am Meta
	if _, err := decodeMeta(indexed, &im); err != nil {
		return []string{fmt.Sprintf("the index copy of its metadata does not decode (%v)", err)}
	}
	_, _ = decodeMeta(authenticated, &am)
	return metaDiff(&im, &am)
}

func describeLoc(l Locator, err error) string {
	if err != nil {
		return fmt.Sprintf("nothing decodable (%v)", err)
	}
	return fmt.Sprintf("segment %s block %d entry %d", segHex(l.Segment), l.Seq, l.Index)
}

// checkFor returns the check of segment id, adding one for a segment file
// that does not exist, or, for the zero id (an index entry naming no
// segment), one for the tenant's segment directory.
func (iv *indexVerifier) checkFor(id [16]byte) *SegmentCheck {
	if i, ok := iv.segs[id]; ok {
		return &iv.checks[i]
	}
	c := SegmentCheck{Tenant: iv.tenant, Path: iv.db.segPath(iv.tenant, id)}
	if id == ([16]byte{}) {
		c.Path = iv.db.segDir(iv.tenant)
	} else {
		c.OpenErr = fmt.Errorf("%w: the index points into segment %s, which does not exist", ErrIndexMismatch, c.Path)
	}
	iv.segs[id] = len(iv.checks)
	iv.checks = append(iv.checks, c)
	iv.damaged[id] = map[int64]bool{}
	return &iv.checks[len(iv.checks)-1]
}

// unverifiable reports whether loc is in a segment or block that could not
// be read (its problem is reported already).
func (iv *indexVerifier) unverifiable(loc Locator) bool {
	bad, ok := iv.damaged[loc.Segment]
	if !ok {
		return false
	}
	if tail, ok := iv.tails[loc.Segment]; ok && loc.Offset >= tail {
		return true
	}
	return bad == nil || bad[loc.Offset]
}

// orphans reports the index entries that no readable block holds.
func (iv *indexVerifier) orphans() error {
	for _, k := range []struct {
		kind byte
		seen map[ID]bool
		what string
	}{{keyRecord, iv.log, "request log"}, {keyPayload, iv.payload, "payload"}} {
		p := tenantPrefix(k.kind, iv.tenant)
		err := iv.snap.scanPrefix(p, func(key, v []byte) error {
			var id ID
			copy(id[:], key[len(p):])
			if _, seen := k.seen[id]; seen {
				return nil // compared (and reported) from the block's side
			}
			loc, _, err := decodeLocator(v)
			if err == nil && iv.unverifiable(loc) {
				return nil
			}
			block := -1
			if err == nil {
				block = int(loc.Seq)
			}
			iv.problem(iv.checkFor(loc.Segment), id, block, "the %s index entry points at %s, which holds no such record", k.what, describeLoc(loc, err))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// secondary compares the time and field index entries with the ones the
// records need: a keyed hash sum first, entry by entry only when it differs.
func (iv *indexVerifier) secondary() error {
	prefixes := [][]byte{tenantPrefix(keyTime, iv.tenant), tenantPrefix(keyIndex, iv.tenant)}
	var have uint64
	for _, p := range prefixes {
		if err := iv.snap.scanPrefix(p, func(k, _ []byte) error { have += maphash.Bytes(iv.seed, k); return nil }); err != nil {
			return err
		}
	}
	if have == iv.want {
		return nil
	}
	for id, ok := range iv.log {
		if !ok {
			continue
		}
		if err := iv.missingSecondary(id); err != nil {
			return err
		}
	}
	for _, p := range prefixes {
		if err := iv.snap.scanPrefix(p, iv.staleSecondary); err != nil {
			return err
		}
	}
	return nil
}

// missingSecondary reports the secondary entries missing for record id,
// whose index entry matched its block (so the entry's metadata is the
// authenticated one).
func (iv *indexVerifier) missingSecondary(id ID) error {
	v, found, err := iv.get(recordKey(iv.tenant, id))
	if err != nil || !found {
		return err
	}
	var m Meta
	if err := decodeRecordValue(v, &m); err != nil {
		return err
	}
	var missing []string
	var gerr error
	indexEntries(iv.tenant, &m, func(k []byte) {
		if _, found, err := iv.get(k); err != nil {
			gerr = err
		} else if !found {
			missing = append(missing, describeIndexKey(k))
		}
	})
	if gerr != nil {
		return gerr
	}
	if len(missing) > 0 {
		iv.problem(iv.checkFor(m.Loc.Segment), id, int(m.Loc.Seq), "missing secondary index entries: %s", strings.Join(missing, ", "))
	}
	return nil
}

// staleSecondary reports the secondary entry k if no record's
// authenticated metadata produces it.
func (iv *indexVerifier) staleSecondary(k, _ []byte) error {
	if len(k) < 16 {
		return nil
	}
	var id ID
	copy(id[:], k[len(k)-16:])
	ok, seen := iv.log[id]
	if seen && !ok {
		return nil // the record's own problem is reported
	}
	v, found, err := iv.get(recordKey(iv.tenant, id))
	if err != nil {
		return err
	}
	if !seen && found {
		return nil // an orphan (reported) or a record in a damaged block
	}
	var loc Locator // none: the entry names a record the index does not have
	stale := true
	var m Meta
	if seen && decodeRecordValue(v, &m) == nil {
		loc = m.Loc
		indexEntries(iv.tenant, &m, func(wk []byte) { stale = stale && !bytes.Equal(wk, k) })
	}
	if stale {
		iv.problem(iv.checkFor(loc.Segment), id, -1, "stale secondary index entry %s", describeIndexKey(k))
	}
	return nil
}

func describeIndexKey(k []byte) string {
	ik, err := DecodeIndexKey(k)
	if err != nil {
		return fmt.Sprintf("%x", k)
	}
	switch {
	case ik.Kind == keyTime:
		return "time " + ik.Time.Format(time.RFC3339Nano)
	case ik.Field == FieldStatus:
		return fmt.Sprintf("status %d", ik.Status)
	default:
		names := map[byte]string{FieldSessionID: "session_id", FieldTraceID: "trace_id", FieldMethod: "method",
			FieldRouteID: "route_id", FieldServiceID: "service_id", FieldHost: "host"}
		return fmt.Sprintf("%s %q", names[ik.Field], ik.Value)
	}
}

// CheckKey proves that tenant's data under uri can be read now, bypassing
// the DEK cache: it unwraps the DEK of one of the tenant's segments wrapped
// under uri and checks it against the segment's key commitment. For a key
// no segment uses yet it asks Describe (local keys) or runs LinkKey's
// GenerateDataKey + Decrypt round trip (KMS keys, whose policy may allow
// DescribeKey but not Decrypt). Errors are the keys package's typed errors.
func (db *DB) CheckKey(ctx context.Context, tenant, uri string) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	p := db.cache.Provider()
	for _, id := range files {
		r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
		if err != nil {
			continue // verify reports it
		}
		h := r.Header()
		_ = r.Close()
		if h.Cipher == segment.CipherNone || h.Slot.KeyURI != uri {
			continue
		}
		dek, err := p.Unwrap(ctx, uri, h.Slot.Wrapped, keys.SegmentContext(tenant, segHex(h.ID)))
		if err != nil {
			return err
		}
		err = h.CheckKey(dek)
		keys.Zero(dek)
		return err
	}
	if isLocal(uri) {
		st, err := p.Describe(ctx, uri)
		if err == nil && !st.Enabled {
			err = &keys.Error{Op: "describe", KeyURI: uri, Kind: keys.ErrKeyDisabled, Detail: "state " + st.State}
		}
		return err
	}
	ec := keys.EncryptionContext{keys.CtxTenant: tenant, keys.CtxSegment: "key-link-check", keys.CtxPurpose: keys.PurposeKeyCheck}
	dk, err := p.GenerateDataKey(ctx, uri, ec)
	if err != nil {
		return err
	}
	defer keys.Zero(dk.Plaintext)
	back, err := p.Unwrap(ctx, uri, dk.Wrapped, ec)
	if err != nil {
		return err
	}
	same := bytes.Equal(back, dk.Plaintext)
	keys.Zero(back)
	if !same {
		return &keys.Error{Op: "unwrap", KeyURI: uri, Kind: keys.ErrInvalidCiphertext, Detail: "the round trip returned a different data key"}
	}
	return nil
}

// Stats are per-tenant and engine-wide figures.
type Stats struct {
	Tenants         map[string]TenantStats
	DEKCache        keys.CacheStats
	AppendedRecords uint64
	GroupCommits    uint64
	BlocksWritten   uint64
	SegmentsCreated uint64
	BlocksReplayed  uint64
	// CheckpointFailures counts manifest checkpoints of active segments that
	// could not be written (disk full, key unreachable): the records were
	// durable, but a truncation of the active segment's tail since the last
	// checkpoint would go unreported.
	CheckpointFailures uint64
	// Failures the engine tolerates on purpose, counted so none goes
	// unnoticed:
	//
	// SegmentsAbandoned counts active segments given up after a write or
	// fsync error (the appends of that group failed; recovery seals what
	// the segment holds). AbandonRepairsDeferred counts those the writer
	// could not truncate, seal and index at once: the next Open does.
	SegmentsAbandoned      uint64
	AbandonRepairsDeferred uint64
	// SealFailures counts seals of an active segment that failed where the
	// caller went on (Close, a failed key check, retention, DeleteTenant):
	// the next Open finishes them.
	SealFailures uint64
	// ManifestSeqFailures counts manifest sequence numbers the index could
	// not record: its check against an older manifest put back is weaker
	// until the next manifest write (docs/security.md).
	ManifestSeqFailures uint64
	// RetentionFailures counts background retention passes that failed;
	// the next pass tries again (ApplyRetention returns the error).
	RetentionFailures uint64
	// CleanupFailures counts files a cleanup could not remove: a new
	// segment file whose manifest listing failed (Open removes it as
	// debris), a deleted tenant's directory.
	CleanupFailures uint64
}

// TenantStats summarise one tenant's storage.
type TenantStats struct {
	Segments    int
	Records     int
	Payloads    int
	RawBytes    int64 // before compression
	StoredBytes int64 // segment files on disk
	KeysInUse   []string
}

// Stats reads the figures from the index and the counters.
func (db *DB) Stats() (Stats, error) {
	s := Stats{Tenants: map[string]TenantStats{}, DEKCache: db.cache.Stats(),
		AppendedRecords: db.stats.appendedRecords.Load(), GroupCommits: db.stats.groupCommits.Load(),
		BlocksWritten: db.stats.blocksWritten.Load(), SegmentsCreated: db.stats.segmentsCreated.Load(),
		BlocksReplayed: db.stats.replayedBlocks.Load(), CheckpointFailures: db.stats.checkpointFailures.Load(),
		SegmentsAbandoned: db.stats.segmentsAbandoned.Load(), AbandonRepairsDeferred: db.stats.abandonRepairsDeferred.Load(),
		SealFailures: db.stats.sealFailures.Load(), ManifestSeqFailures: db.stats.manifestSeqFailures.Load(),
		RetentionFailures: db.stats.retentionFailures.Load(), CleanupFailures: db.stats.cleanupFailures.Load()}
	tenants, err := db.listTenants()
	if err != nil {
		return s, err
	}
	for _, t := range tenants {
		states, err := db.segmentStates(t)
		if err != nil {
			return s, err
		}
		var ts TenantStats
		uris := map[string]bool{}
		for _, st := range states {
			ts.Segments++
			ts.Records += st.Records
			ts.Payloads += st.Payloads
			ts.RawBytes += st.RawBytes
			ts.StoredBytes += st.Size
			if st.KeyURI != "" && !uris[st.KeyURI] {
				uris[st.KeyURI] = true
				ts.KeysInUse = append(ts.KeysInUse, st.KeyURI)
			}
		}
		sort.Strings(ts.KeysInUse)
		s.Tenants[t] = ts
	}
	return s, nil
}

// DataFiles lists every file under the data directory (for leak scans and
// `segments list`).
func (db *DB) DataFiles() ([]string, error) {
	var out []string
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := db.fs.List(dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			p := filepath.Join(dir, n)
			fi, err := db.fs.Stat(p)
			if errors.Is(err, vfs.ErrNotExist) {
				continue // removed meanwhile (Pebble deletes obsolete files)
			}
			if err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			out = append(out, p)
		}
		return nil
	}
	return out, walk(db.dir)
}
