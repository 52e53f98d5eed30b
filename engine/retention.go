package engine

// Retention: expired sealed segments are removed whole, by the background job
// (retentionLoop) and by ApplyRetention; the authenticated manifest, not the
// editable index, decides what has expired.

import (
	"context"
	"fmt"
	"time"
)

// setRetention implements Admin.SetRetention (documented there).
func (db *DB) setRetention(ctx context.Context, tenant string, d time.Duration) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("%w: retention %v must be >= 0", ErrInvalidOptions, d)
	}
	return db.control(ctx, func() error {
		return db.updateManifest(ctx, tenant, true, func(b *manifestBody) error {
			b.Retention = d
			b.ConfigDirty = b.ConfigDirty || db.uploader != nil
			return nil
		})
	})
}

// RetentionReport says what ApplyRetention removed.
type RetentionReport struct {
	Segments int
	Records  int
	Bytes    int64
}

// applyRetention implements Admin.ApplyRetention (documented there).
func (db *DB) applyRetention(ctx context.Context) (RetentionReport, error) {
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
			deleted, err := db.deleteExpired(ctx, t, id, st)
			if err != nil {
				return rep, err
			}
			if !deleted {
				continue
			}
			rep.Segments++
			rep.Records += st.Records
			rep.Bytes += st.Size
		}
	}
	return rep, nil
}

// deleteExpired deletes an expired segment on the writer goroutine, unless
// a journal left by a failed write awaits the next Open's replay: its
// records may be durable nowhere else, and a replay after the deletion would
// bring them back (counted, Stats.RetentionDeferred; a later pass deletes).
func (db *DB) deleteExpired(ctx context.Context, tenant string, id [16]byte, st *SegmentInfo) (bool, error) {
	deleted := false
	err := db.control(ctx, func() error {
		if ts := db.tenants[tenant]; (ts != nil && len(ts.orphans) > 0) || len(db.journalsOf(tenant)[id]) > 0 {
			db.stats.retentionDeferred.Add(1)
			return nil
		}
		deleted = true
		return db.deleteSegment(tenant, id, st)
	})
	return deleted, err
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
	// The manifest says "deleting" before the file goes, so the missing
	// file is expected, never reported as loss.
	if err := db.setSegmentState(context.Background(), tenant, id, segDeleting); err != nil {
		return err
	}
	return db.removeSegment(tenant, id)
}

// removeSegment removes a segment the manifest marks "deleting": its index
// entries, its summary file and its file, then its manifest entry.
func (db *DB) removeSegment(tenant string, id [16]byte) error {
	path := db.segPath(tenant, id)
	b := db.index.newBatch()
	defer b.close()
	if err := db.unindexSegment(b, tenant, id); err != nil {
		return err
	}
	if err := b.delete(segmentKey(tenant, id)); err != nil {
		return err
	}
	err := db.index.commit(b)
	db.catalog.reset()
	if err != nil {
		return err
	}
	if err := db.index.flush(); err != nil {
		return err
	}
	db.readers.invalidate(path)
	if err := removeIfExists(db.fs, summaryPathOf(path)); err != nil {
		return err
	}
	if err := removeIfExists(db.fs, path); err != nil {
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
			if _, err := db.applyRetention(ctx); err != nil && ctx.Err() == nil {
				db.stats.retentionFailures.Add(1) // no caller to tell: counted, tried again next tick
			}
			cancel()
		}
	}
}
