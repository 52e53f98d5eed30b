package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// recover runs on Open. Per tenant it authenticates the manifest, checks
// every segment file against it (sealed ones must be exactly as recorded;
// only a crashed writer's active segment may lose its torn tail), seals what
// a crash left open, and brings the index up to date with the segments that
// passed. A fault in one tenant is recorded for that tenant (its writes are
// refused, its reads stay authenticated) and never stops the others.
func (db *DB) recover() (RecoveryReport, error) {
	var rep RecoveryReport
	tenants, err := db.listTenants()
	if err != nil {
		return rep, err
	}
	for _, t := range tenants {
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		err := db.recoverTenant(ctx, t, &rep)
		cancel()
		if err != nil {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s: %v", t, err))
			continue
		}
		db.ensureSummaryFiles(t)
		ctx, cancel = context.WithTimeout(context.Background(), keyCallTimeout)
		rep.RollupsAdded += db.addRollups(ctx, t)
		cancel()
	}
	db.stats.recovered.Add(uint64(rep.SegmentsSealed))
	db.stats.replayedBlocks.Add(uint64(rep.BlocksReplayed))
	return rep, nil
}

// manifestDamage reports whether err means the manifest itself is bad
// (forged, corrupt, rolled back, unknown) rather than its key unusable.
func manifestDamage(err error) bool {
	for _, e := range []error{ErrManifestAuth, ErrManifestCorrupt, ErrManifestRollback, ErrUnknownVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (db *DB) recoverTenant(ctx context.Context, tenant string, rep *RecoveryReport) error {
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return err
	}
	if db.opts.Plaintext {
		// The benchmark baseline: nothing is authenticated, so there is no
		// manifest; every file is recovered and indexed.
		return db.syncIndex(tenant, files, true, rep, nil)
	}
	body, mk, err := db.readManifest(ctx, tenant)
	switch {
	case errors.Is(err, vfs.ErrNotExist):
		return db.recoverUnmanifested(ctx, tenant, files, rep)
	case manifestDamage(err):
		db.manifests.set(tenant, &tenantManifest{damaged: err})
		return err
	case err != nil:
		// The key is unusable or unreachable: nothing can be authenticated
		// now, so nothing is changed; the writer retries when it needs the
		// tenant, and reads fail with this key error.
		db.manifests.set(tenant, &tenantManifest{unverified: err, retryAt: db.opts.Now().Add(unverifiedRetry)})
		rep.Unverified = append(rep.Unverified, fmt.Sprintf("tenant %s: %v", tenant, err))
		// Its metadata still answers queries (the blocks' plaintext, as
		// the index had it): index what the index lacks (after a rebuild
		// or a format migration, everything), changing no file.
		return db.syncIndex(tenant, files, false, rep, nil)
	}
	defer keys.Zero(mk)
	return db.reconcile(ctx, tenant, body, mk, files, rep)
}

// syncIndex brings the index up to date with the given segment files, which
// passed the manifest checks (or, with recoverFirst, are recovered here: a
// store without manifests). Blocks the index lacks are replayed; if the index
// is ahead of the segments (a file shorter than indexed, or indexed segments
// gone), the tenant is reindexed from its segments. The index entries of
// refused segments are kept: their records stay visible to queries (and a
// Get says why it cannot serve them) rather than vanish without a word.
func (db *DB) syncIndex(tenant string, files [][16]byte, recoverFirst bool, rep *RecoveryReport, refused map[string]error) error {
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	ahead := false
	seen := map[[16]byte]bool{}
	for _, id := range files {
		seen[id] = true
		st := states[id]
		if st == nil {
			st = &SegmentInfo{V: stateVersion, Tenant: tenant, ID: segHex(id)}
		}
		if recoverFirst && !db.recoverSegment(tenant, id, st, rep) {
			continue
		}
		behind, err := db.replaySegment(tenant, id, st, rep)
		if err != nil {
			return err
		}
		ahead = ahead || behind
	}
	for id := range states {
		if !seen[id] && refused[segHex(id)] == nil {
			ahead = true // the index names a segment that is gone
		}
	}
	if ahead {
		rep.TenantsReindexed++
		return db.reindexTenant(tenant)
	}
	return nil
}

// recoverSegment truncates a segment of a store without manifests to its
// last valid block and seals it; false when it cannot be recovered at all
// (reported, not indexed). A damaged tail is recorded in st.
func (db *DB) recoverSegment(tenant string, id [16]byte, st *SegmentInfo, rep *RecoveryReport) bool {
	res, err := segment.Recover(db.segPath(tenant, id), db.readOpts(tenant))
	if err != nil && !errors.Is(err, segment.ErrCorrupt) {
		rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), err))
		return false
	}
	if res.Sealed {
		rep.SegmentsSealed++
		rep.TruncatedBytes += res.TruncatedBytes
	}
	if err != nil {
		st.Damaged = err.Error()
		rep.Damaged = append(rep.Damaged, err.Error())
	}
	return true
}

// replaySegment indexes the blocks of segment id that the index (st) lacks,
// and its seal. It reports whether the file holds fewer blocks than the
// index claims (the tenant is then reindexed).
func (db *DB) replaySegment(tenant string, id [16]byte, st *SegmentInfo, rep *RecoveryReport) (shorter bool, err error) {
	r, err := segment.Open(db.segPath(tenant, id), db.readOpts(tenant))
	if err != nil {
		rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), err))
		return false, nil
	}
	defer r.Close()
	n := len(r.Blocks())
	switch {
	case st.Blocks > n:
		return true, nil
	case st.Blocks == n && (st.Sealed || !r.Sealed()):
		return false, nil // up to date
	}
	// Metadata about to be indexed without a key: a sealed segment must
	// match its manifest digest first.
	if err := db.checkSealedDigest(tenant, id, r); err != nil {
		rep.Damaged = append(rep.Damaged, fmt.Sprintf("tenant %s segment %s: %v", tenant, segHex(id), err))
		return false, nil
	}
	replayed, err := db.indexBlocks(r, st, st.Blocks)
	rep.BlocksReplayed += replayed
	return false, err
}

// checkSealedDigest checks a segment the manifest lists as sealed against
// the digest the manifest recorded; any other segment passes.
func (db *DB) checkSealedDigest(tenant string, id [16]byte, r *segment.Reader) error {
	tm := db.manifests.get(tenant)
	if tm == nil {
		return nil
	}
	if e := tm.entry(segHex(id)); e != nil && e.State == segSealed {
		return checkDigest(r, e)
	}
	return nil
}

func checkDigest(r *segment.Reader, e *manifestEntry) error {
	d, err := r.Digest()
	if err != nil {
		return err
	}
	if !bytes.Equal(d[:], e.Digest) {
		return fmt.Errorf("%w: segment %s's content differs from the digest the manifest recorded", ErrSegmentTampered, e.ID)
	}
	return nil
}
