package engine

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// verifyAudit implements Admin.VerifyAudit (documented there).
func (db *DB) verifyAudit(ctx context.Context) (keys.AuditVerifyReport, error) {
	if db.audit == nil {
		return keys.AuditVerifyReport{}, fmt.Errorf("%w: the audit trail is disabled", ErrInvalidOptions)
	}
	// Anchors first: each one is a head the log had already reached.
	anchors, err := db.auditAnchors(ctx)
	if err != nil {
		return keys.AuditVerifyReport{Path: db.audit.Path()}, err
	}
	return db.audit.Verify(anchors)
}

// auditAnchors returns the audit heads recorded in the tenant manifests,
// which Open authenticated (MAC under each tenant's manifest key): an
// attacker who can write DIR/audit cannot move them. A tenant whose manifest
// could not be authenticated contributes no anchor (Open reported it).
func (db *DB) auditAnchors(ctx context.Context) ([]keys.AuditHead, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	db.manifests.mu.RLock()
	defer db.manifests.mu.RUnlock()
	var out []keys.AuditHead
	for _, tm := range db.manifests.byTenant {
		if tm.body == nil || tm.body.Audit == nil || len(tm.body.Audit.Hash) != 32 {
			continue
		}
		h := keys.AuditHead{Seq: tm.body.Audit.Seq}
		copy(h.Hash[:], tm.body.Audit.Hash)
		out = append(out, h)
	}
	return out, nil
}

// openAudit opens the audit trail. A trail that is corrupt (a record edited,
// removed from the middle, reordered) is evidence, not something to append
// to (and neither is a pipe or directory planted in its place): it is
// moved aside unchanged to keys.log.corrupt-UNIXNANO (auditAsidePath), a new
// chain is started, and Open reports both in Recovery().Damaged. VerifyAudit then
// reports the manifests' anchors that the new chain does not meet until each
// tenant's manifest is written again. Refusing to open instead would let one
// flipped byte stop every tenant.
func (db *DB) openAudit() (*keys.AuditLog, error) {
	a, err := keys.OpenAuditLog(db.fs, db.auditPath())
	unusable := errors.Is(err, keys.ErrAuditCorrupt) || errors.Is(err, vfs.ErrNotRegular) || errors.Is(err, syscall.EISDIR)
	if err == nil || !unusable {
		return a, err // an unknown version is a newer build's: never set aside
	}
	aside := auditAsidePath(db.dir, db.opts.Now())
	if rerr := db.fs.Rename(db.auditPath(), aside); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	db.recovery.Damaged = append(db.recovery.Damaged, fmt.Sprintf("audit trail: %v; moved aside to %s and a new chain started", err, aside))
	return keys.OpenAuditLog(db.fs, db.auditPath())
}
