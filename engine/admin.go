package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/internal/vfs"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
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
	var err error
	cerr := db.control(ctx, func() {
		err = db.updateManifest(ctx, tenant, true, func(b *manifestBody) error { b.Retention = d; return nil })
	})
	return errors.Join(cerr, err)
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
		if err := db.control(ctx, func() {
			if ts := db.tenants[t]; ts != nil && ts.info != nil && ts.info.Records > 0 && ts.info.MaxTime.Before(cutoff) {
				_ = db.sealActive(ts)
				db.indexBarrier()
			}
		}); err != nil {
			return rep, err
		}
		states, err := db.segmentStates(t)
		if err != nil {
			return rep, err
		}
		for id, st := range states {
			if !st.Sealed || st.MaxTime.IsZero() && st.Records > 0 || !st.MaxTime.Before(cutoff) {
				continue
			}
			var derr error
			if err := db.control(ctx, func() { derr = db.deleteSegment(t, id, st) }); err != nil {
				return rep, err
			}
			if derr != nil {
				return rep, derr
			}
			rep.Segments++
			rep.Records += st.Records
			rep.Bytes += st.Size
		}
	}
	return rep, nil
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
	b := db.idx.NewBatch()
	defer b.Close()
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
					_ = b.Delete(payloadKey(tenant, m.ID), nil)
					continue
				}
				_ = b.Delete(recordKey(tenant, m.ID), nil)
				indexEntries(tenant, &m, func(k []byte) { _ = b.Delete(k, nil) })
			}
		}
		_ = r.Close()
	}
	if err := b.Delete(segmentKey(tenant, id), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	if err := db.durableIndex(); err != nil {
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
			_, _ = db.ApplyRetention(ctx)
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
}

// DeleteTenant crypto-shreds a tenant: its segments, the wrapped DEKs in
// them, its index entries and configuration, and its local master key if it
// has one (local://TENANT). A customer-managed KMS key is the customer's to
// delete; logstore only forgets it.
func (db *DB) DeleteTenant(ctx context.Context, tenant string) (DeleteReport, error) {
	var rep DeleteReport
	if err := ValidateTenant(tenant); err != nil {
		return rep, err
	}
	var derr error
	cerr := db.control(ctx, func() {
		if ts := db.tenants[tenant]; ts != nil {
			_ = db.sealActive(ts)
			delete(db.tenants, tenant)
			db.indexBarrier()
		}
		derr = db.deleteTenantLocked(tenant, &rep)
	})
	return rep, errors.Join(cerr, derr)
}

func (db *DB) deleteTenantLocked(tenant string, rep *DeleteReport) error {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	uris := map[string]bool{}
	cfg, _ := db.config(tenant)
	if cfg.KeyURI != "" {
		uris[cfg.KeyURI] = true
	}
	for _, st := range states {
		rep.Segments++
		rep.Records += st.Records
		rep.Bytes += st.Size
		if st.KeyURI != "" {
			uris[st.KeyURI] = true
		}
	}
	if err := db.deleteTenantIndex(tenant, true); err != nil {
		return err
	}
	for _, k := range []byte{keyConfig, keySegment, keyRecord, keyTime, keyIndex, keyPayload} {
		p := tenantPrefix(k, tenant)
		if err := db.idx.Compact(context.Background(), p, prefixEnd(p), false); err != nil {
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
	if rm, ok := db.fs.(interface{ RemoveDir(string) error }); ok {
		_ = rm.RemoveDir(db.segDir(tenant))
	} else {
		_ = db.fs.Remove(db.segDir(tenant))
	}
	own := keys.LocalURI(tenant)
	for uri := range uris {
		db.cache.PurgeKey(uri)
	}
	if db.local != nil {
		if _, err := db.local.Describe(context.Background(), own); err == nil {
			if err := db.local.Destroy(own); err != nil {
				return err
			}
			rep.KeysDestroyed = append(rep.KeysDestroyed, own)
		}
	}
	return nil
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
	Result  segment.VerifyResult
	KeyErr  error // why bodies could not be authenticated (checksums still checked)
	OpenErr error
}

// Verify checks every segment of tenant (all tenants when empty): checksums
// always, and authentication of every block when the key is available.
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
		files, err := db.listSegmentFiles(t)
		if err != nil {
			return nil, err
		}
		for _, id := range files {
			c := SegmentCheck{Tenant: t, Path: db.segPath(t, id)}
			r, err := segment.Open(c.Path, db.readOpts(t))
			if err != nil {
				c.OpenErr = err
				out = append(out, c)
				continue
			}
			h := r.Header()
			if err := db.manifestCheck(t, r); err != nil {
				c.OpenErr = err
				_ = r.Close()
				out = append(out, c)
				continue
			}
			if err := db.checkSlotGeneration(t, r); err != nil {
				c.OpenErr = err
				_ = r.Close()
				out = append(out, c)
				continue
			}
			if h.Cipher != segment.CipherNone {
				dek, err := db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, keys.SegmentContext(t, segHex(h.ID)))
				if err == nil {
					err = r.Unlock(dek)
					keys.Zero(dek)
				}
				c.KeyErr = err
			}
			c.Result = r.Verify()
			_ = r.Close()
			out = append(out, c)
		}
		out = append(out, db.manifestGaps(t)...)
	}
	return out, nil
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
		BlocksReplayed: db.stats.replayedBlocks.Load(), CheckpointFailures: db.stats.checkpointFailures.Load()}
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
