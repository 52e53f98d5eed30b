package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/redact"
)

// Admin is the operator plane of a DB: key management, retention, deletion,
// verification, index rebuilds, the audit trail and segment listings. None
// of it is needed on a request path, and much of it is slow (it reads whole
// segments or calls the KMS once per segment). Every method is safe for
// concurrent use with the data plane; those that change a tenant's segments
// pause the writer only while they swap files. Close waits for the calls in
// progress (cancel their context to cut a long Verify or Rewrap short);
// afterwards every call returns ErrClosed. A nil context or an Admin that
// did not come from DB.Admin fails with ErrInvalidOptions; a tenant name is
// validated (ErrInvalidTenant) by every call that takes one.
type Admin struct{ db *DB }

// Admin returns the operator plane of db.
func (db *DB) Admin() *Admin { return &Admin{db: db} }

// Tenants lists the tenants that have data (on a read-only DB too).
func (a *Admin) Tenants(ctx context.Context) ([]string, error) {
	return readCall(a, ctx, func() ([]string, error) { return a.db.listTenants() })
}

// Segments lists a tenant's segments as the index knows them.
func (a *Admin) Segments(ctx context.Context, tenant string) ([]SegmentInfo, error) {
	return tenantCall(a, ctx, tenant, false, func() ([]SegmentInfo, error) { return a.db.segments(tenant) })
}

// LinkKey validates uri for tenant and makes it the key of the tenant's new
// segments. Validation: the key exists, is enabled and symmetric
// (SYMMETRIC_DEFAULT), and a GenerateDataKey + unwrap round trip with the
// tenant's encryption context succeeds. A failed validation changes nothing.
// Existing segments keep their key until Rewrap moves them.
//
// The tenant is bound to the key's identity, not to the string given: an
// alias is resolved to the ARN of the key it names now (keys.KeyState.URI),
// which is what new segments record, so repointing the alias later strands
// no segment; the alias is kept as a display name (KeyAlias). On a tenant
// whose manifest was lost, LinkKey re-attests its segment files (Attested).
func (a *Admin) LinkKey(ctx context.Context, tenant, uri string) (keys.KeyState, error) {
	return tenantCall(a, ctx, tenant, false, func() (keys.KeyState, error) {
		defer a.db.lockConfig()()
		prev := a.db.boundKey(tenant)
		st, err := a.db.linkKey(ctx, tenant, uri)
		if err == nil {
			err = a.db.publishBinding(ctx, tenant, prev)
		}
		return st, err
	})
}

// KeyURI returns the key linked to tenant ("" when none is linked).
func (a *Admin) KeyURI(ctx context.Context, tenant string) (string, error) {
	return tenantCall(a, ctx, tenant, false, func() (string, error) { return a.db.keyURI(tenant) })
}

// CheckKey proves that tenant's data under uri can be read now, bypassing
// the DEK cache: it unwraps the DEK of one of the tenant's segments wrapped
// under uri and checks it against the segment's key commitment. For a key
// no segment uses yet it asks Describe (local keys) or runs LinkKey's
// GenerateDataKey + Decrypt round trip (KMS keys, whose policy may allow
// DescribeKey but not Decrypt). Errors are the keys package's typed errors.
func (a *Admin) CheckKey(ctx context.Context, tenant, uri string) error {
	return tenantCallErr(a, ctx, tenant, func() error { return a.db.checkKey(ctx, tenant, uri) })
}

// Rewrap moves every segment DEK of tenant under toURI without rewriting any
// data block: it links toURI (validating it), then for each segment re-wraps
// the DEK, proves the new wrapped key opens the segment (key commitment), and
// rewrites the segment's spare key slot (segment.RewriteKeySlot), which is
// crash-safe. Re-running it after a crash resumes; segments already under
// toURI are skipped. When it returns nil, the old key may be deleted.
// progress, when not nil, is called after each segment.
func (a *Admin) Rewrap(ctx context.Context, tenant, toURI string, progress func(RewrapProgress)) (RewrapReport, error) {
	return tenantCall(a, ctx, tenant, false, func() (RewrapReport, error) {
		defer a.db.lockConfig()()
		prev := a.db.boundKey(tenant)
		rep, err := a.db.rewrap(ctx, tenant, toURI, progress)
		if err == nil {
			err = a.db.publishBinding(ctx, tenant, prev)
		}
		return rep, err
	})
}

// SetLocalKeyEnabled disables or re-enables a key of the embedded local
// provider (local://NAME), the local counterpart of disabling a KMS key:
// while disabled, reads and writes under it fail closed once the DEK cache's
// max age has passed. ErrInvalidOptions when the DB was opened with its own
// Options.Keys (there is no embedded provider).
func (a *Admin) SetLocalKeyEnabled(ctx context.Context, uri string, enabled bool) error {
	if a.db.local == nil {
		return fmt.Errorf("%w: Options.Keys replaced the embedded local key provider", ErrInvalidOptions)
	}
	return callErr(a, ctx, func() error { return a.db.local.SetEnabled(uri, enabled) })
}

// SetRetention keeps a tenant's records for d (0: forever). Expired data is
// removed by whole segments, by the background job and by ApplyRetention.
func (a *Admin) SetRetention(ctx context.Context, tenant string, d time.Duration) error {
	return tenantCallErr(a, ctx, tenant, func() error {
		defer a.db.lockConfig()()
		if err := a.db.setRetention(ctx, tenant, d); err != nil {
			return err
		}
		return a.db.publishOrRecord(ctx, tenant, configChange{retention: &d}, "")
	})
}

// SetRedaction makes p tenant's redaction policy, applied by Append to
// every record from now on (records already stored are not rewritten); nil
// returns the tenant to the store's default (Options.Redaction). The policy
// is kept in the tenant's authenticated manifest. An invalid policy is
// ErrInvalidOptions wrapping redact.ErrInvalidPolicy, and changes nothing.
func (a *Admin) SetRedaction(ctx context.Context, tenant string, p *redact.Policy) error {
	return tenantCallErr(a, ctx, tenant, func() error {
		defer a.db.lockConfig()()
		if err := a.db.setRedaction(ctx, tenant, p); err != nil {
			return err
		}
		return a.db.publishOrRecord(ctx, tenant, configChange{redaction: &p}, "")
	})
}

// RedactionPolicy is a tenant's redaction policy as Admin.Redaction reports it.
type RedactionPolicy struct {
	Policy *redact.Policy
	// Own says the tenant set it (SetRedaction); otherwise it is the
	// store's default.
	Own bool
}

// Redaction returns the policy tenant's appends are redacted under (on a
// read-only DB too).
func (a *Admin) Redaction(ctx context.Context, tenant string) (RedactionPolicy, error) {
	if err := ValidateTenant(tenant); err != nil {
		return RedactionPolicy{}, err
	}
	return readCall(a, ctx, func() (RedactionPolicy, error) {
		p, own := a.db.redaction(tenant)
		return RedactionPolicy{Policy: p, Own: own}, nil
	})
}

// Erase removes every record f selects (one debug session, or one
// consumer) from tenant before retention would: each sealed segment holding
// one is rewritten without them under a new DEK, or removed when nothing
// is left, and the old files and index entries are removed, so nothing of
// an erased record stays in the store's files. The active segment is sealed
// first. Crash-safe: an erase cut short by a crash is either finished or
// undone by the next Open (RecoveryReport.ErasesRolledBack), never half
// applied; re-running it is always safe. It pauses appends while it writes
// each replacement segment; reads go on, and see each kept record once (the
// index swaps the old segment for its replacement in one batch).
func (a *Admin) Erase(ctx context.Context, tenant string, f EraseFilter) (EraseReport, error) {
	return tenantCall(a, ctx, tenant, false, func() (EraseReport, error) {
		defer a.db.lockConfig()()
		rep, err := a.db.erase(ctx, tenant, f)
		if err == nil {
			// Every other writer node erases its own segments when it adopts
			// this (tenantconfig.go); an error here says they were not told.
			c := configChange{erases: []EraseFilter{f}, at: a.db.opts.Now().UTC()}
			if err = a.db.publishConfig(ctx, tenant, c, ""); err != nil {
				a.db.recordPending(ctx, tenant, c, "")
			}
		}
		return rep, err
	})
}

// ApplyRetention removes every sealed segment whose newest record is older
// than its tenant's retention, with its index entries.
func (a *Admin) ApplyRetention(ctx context.Context) (RetentionReport, error) {
	return call(a, ctx, func() (RetentionReport, error) { return a.db.applyRetention(ctx) })
}

// DeleteTenant crypto-shreds a tenant: its segments, the wrapped DEKs in
// them, its index entries and configuration, and every local master key its
// data was ever wrapped under: its default local://TENANT, the key linked in
// its configuration, the key of every segment's key slot, and every key its
// key operations in the audit trail used (earlier rotations). A local key
// another tenant uses is kept (destroying it would shred that tenant) and
// reported in KeysKept. A customer-managed KMS key is the customer's to
// delete; logstore only forgets it (KeysKept says so).
func (a *Admin) DeleteTenant(ctx context.Context, tenant string) (DeleteReport, error) {
	return tenantCall(a, ctx, tenant, false, func() (DeleteReport, error) { return a.db.deleteTenant(ctx, tenant) })
}

// Verify checks every segment of tenant (all tenants when empty): checksums
// always, authentication of every block when the key is available, and the
// index against the segments: every readable block has an index entry equal
// to the summary its (authenticated, when the key is available) metadata
// yields, and no index entry points at nothing.
func (a *Admin) Verify(ctx context.Context, tenant string) ([]SegmentCheck, error) {
	return tenantCall(a, ctx, tenant, true, func() ([]SegmentCheck, error) { return a.db.verify(ctx, tenant) })
}

// VerifyIndex reads every entry of the index, which makes Pebble check the
// checksum of every block: nil, or an error matching ErrIndexCorrupt (the
// repair is `logstore segments reindex`). It takes time proportional to the
// index's size.
func (a *Admin) VerifyIndex(ctx context.Context) error {
	return callErr(a, ctx, func() error { return a.db.verifyIndex(ctx) })
}

// VerifyAudit checks the key audit trail: every record's checksum, sequence
// number, hash and link to the one before, and every anchor the tenants'
// manifests recorded, which is what detects a dropped tail
// (keys.ErrAuditTruncated) or a rewritten log (keys.ErrAuditCorrupt). It
// reads only the records appended before it was called, so appends may go on.
func (a *Admin) VerifyAudit(ctx context.Context) (keys.AuditVerifyReport, error) {
	return call(a, ctx, func() (keys.AuditVerifyReport, error) { return a.db.verifyAudit(ctx) })
}

// Audit returns the key operations recorded for tenant (all tenants when
// empty) since the given time (zero: all), oldest first.
func (a *Admin) Audit(ctx context.Context, tenant string, since time.Time) ([]keys.AuditEvent, error) {
	return tenantCall(a, ctx, tenant, true, func() ([]keys.AuditEvent, error) { return a.db.auditEvents(tenant, since) })
}

// Reindex rebuilds the whole index from the segments alone; no key is needed
// because it reads only the blocks' plaintext metadata sections. Tenant
// configuration (linked keys, retention) is kept.
func (a *Admin) Reindex(ctx context.Context) (RecoveryReport, error) {
	return call(a, ctx, func() (RecoveryReport, error) { return a.db.reindex() })
}

// IndexHealth reports whether the index can take writes: nil, or an error
// matching ErrDiskFull (retry when space has been freed), ErrIndexCorrupt
// (rebuild it: `logstore segments reindex`, Options.RebuildIndex) or
// ErrIndexFailed. Reads of undamaged parts of the index keep working in
// every case.
func (a *Admin) IndexHealth() error {
	return callErr(a, context.Background(), func() error { return a.db.index.writable() })
}

// IndexRebuild is what Open did with Options.RebuildIndex (nil without it).
func (a *Admin) IndexRebuild() *IndexRebuild {
	if a == nil || a.db == nil {
		return nil
	}
	return a.db.index.rebuild
}

// Attested lists the re-attestations LinkKey made since Open: the segment
// files a tenant without a trustworthy manifest was vouched for with.
func (a *Admin) Attested() []AttestReport {
	if a == nil || a.db == nil {
		return nil
	}
	return a.db.attestedReports()
}

// DescribeKey reports a key's state as its provider sees it now (enabled,
// disabled, pending deletion...), bypassing the DEK cache. Errors are the
// keys package's typed errors.
func (a *Admin) DescribeKey(ctx context.Context, uri string) (keys.KeyState, error) {
	return call(a, ctx, func() (keys.KeyState, error) { return a.db.cache.Describe(ctx, uri) })
}

// DEKCacheMaxAge is how long an unwrapped DEK is reused without asking the
// key provider: the longest a revocation takes to bite.
func (a *Admin) DEKCacheMaxAge() time.Duration {
	if a == nil || a.db == nil {
		return 0
	}
	return a.db.cache.MaxAge()
}

// call runs an operator call registered with enter: ErrClosed after Close,
// and Close waits for it. A nil context, an Admin that did not come from
// DB.Admin or an ended context fail it before it starts.
func call[T any](a *Admin, ctx context.Context, f func() (T, error)) (T, error) {
	if a != nil && a.db != nil && a.db.opts.ReadOnly {
		var zero T
		return zero, ErrReadOnly
	}
	return readCall(a, ctx, f)
}

// readCall is call for the few calls a read-only DB serves.
func readCall[T any](a *Admin, ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	switch {
	case a == nil || a.db == nil:
		return zero, fmt.Errorf("%w: an Admin comes from DB.Admin", ErrInvalidOptions)
	case ctx == nil:
		return zero, errNilContext
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if err := a.db.enter(); err != nil {
		return zero, err
	}
	defer a.db.leave()
	return f()
}

// callErr is call for a call that returns only an error.
func callErr(a *Admin, ctx context.Context, f func() error) error {
	_, err := call(a, ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// tenantCall is call for a call about one tenant, whose name it validates
// first ("" means every tenant where all is set).
func tenantCall[T any](a *Admin, ctx context.Context, tenant string, all bool, f func() (T, error)) (T, error) {
	if tenant != "" || !all {
		if err := ValidateTenant(tenant); err != nil {
			var zero T
			return zero, err
		}
	}
	return call(a, ctx, f)
}

// tenantCallErr is tenantCall for a call that returns only an error.
func tenantCallErr(a *Admin, ctx context.Context, tenant string, f func() error) error {
	_, err := tenantCall(a, ctx, tenant, false, func() (struct{}, error) { return struct{}{}, f() })
	return err
}
