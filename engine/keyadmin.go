package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// linkKey implements Admin.LinkKey (documented there).
func (db *DB) linkKey(ctx context.Context, tenant, uri string) (keys.KeyState, error) {
	return db.linkKeyAs(ctx, tenant, uri, 0, false)
}

// linkKeyAs links uri. adoptSeq > 0 says the shared config with that
// sequence asks for it: the link is then skipped, on the writer goroutine,
// if this node applied that config or a newer one meanwhile, or an
// operator changed the configuration here and has not published it (unless
// published: the config is the one this node's publish wrote). Else an
// operator links it, and with a bucket the change is marked unpublished.
func (db *DB) linkKeyAs(ctx context.Context, tenant, uri string, adoptSeq uint64, published bool) (keys.KeyState, error) {
	st, uri, display, err := db.validateLink(ctx, tenant, uri)
	if err != nil {
		return st, err
	}
	return st, db.control(ctx, func() error {
		if tm := db.manifests.get(tenant); adoptSeq > 0 && tm != nil && tm.body != nil && ((tm.body.ConfigDirty && !published) || tm.body.ConfigSeq >= adoptSeq) {
			return nil // an operator's change, or a newer config, came first
		}
		if err := db.bindKey(ctx, tenant, keyBinding{URI: uri, Alias: aliasOf(display, uri), LinkedAt: db.opts.Now().UTC()}); err != nil {
			return err
		}
		if adoptSeq > 0 || db.uploader == nil {
			return nil
		}
		return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error { b.ConfigDirty = true; return nil })
	})
}

// validateLink checks that uri can be tenant's key: a known scheme, not
// another tenant's local key, enabled, symmetric, and a GenerateDataKey +
// Decrypt round trip in the tenant's context. It returns the key's state,
// the URI to bind (an alias resolved to the key) and the name given.
func (db *DB) validateLink(ctx context.Context, tenant, uri string) (st keys.KeyState, canonical, display string, err error) {
	if err := ValidateTenant(tenant); err != nil {
		return keys.KeyState{}, "", "", err
	}
	if _, err := keys.Scheme(uri); err != nil {
		return keys.KeyState{}, "", "", err
	}
	if err := db.checkKeyNotShared(tenant, uri); err != nil {
		return keys.KeyState{}, "", "", err
	}
	if db.local != nil && isLocal(uri) {
		if err := db.local.Create(uri); err != nil {
			return keys.KeyState{}, "", "", err
		}
	}
	st, err = db.cache.Describe(ctx, uri)
	if err != nil {
		return st, "", "", fmt.Errorf("%w: describe %s: %w", ErrKeyValidation, uri, err)
	}
	if !st.Enabled {
		return st, "", "", fmt.Errorf("%w: key %s is in state %s, not Enabled", ErrKeyValidation, uri, st.State)
	}
	if st.Spec != "" && st.Spec != "SYMMETRIC_DEFAULT" {
		return st, "", "", fmt.Errorf("%w: key %s has spec %s; logstore needs a symmetric key (SYMMETRIC_DEFAULT)", ErrKeyValidation, uri, st.Spec)
	}
	canonical, display = canonicalKeyURI(st, uri), uri // validate and bind the key itself
	ec := keys.EncryptionContext{keys.CtxTenant: tenant, keys.CtxSegment: "key-link-check", keys.CtxPurpose: keys.PurposeKeyCheck}
	dk, err := db.cache.Provider().GenerateDataKey(ctx, canonical, ec)
	if err != nil {
		return st, "", "", fmt.Errorf("%w: GenerateDataKey with %s: %w", ErrKeyValidation, canonical, err)
	}
	defer keys.Zero(dk.Plaintext)
	back, err := db.cache.Provider().Unwrap(ctx, canonical, dk.Wrapped, ec)
	if err != nil {
		return st, "", "", fmt.Errorf("%w: Decrypt with %s: %w", ErrKeyValidation, canonical, err)
	}
	same := bytes.Equal(back, dk.Plaintext)
	keys.Zero(back)
	if !same {
		return st, "", "", fmt.Errorf("%w: round trip through %s returned a different data key", ErrKeyValidation, canonical)
	}
	return st, canonical, display, nil
}

func aliasOf(display, uri string) string {
	if display == uri {
		return ""
	}
	return display
}

// bindKey records b as tenant's key binding in its manifest (on the writer
// goroutine). The manifest key is wrapped under the new key beside the old
// ones still wrapping segments. A tenant without a trustworthy manifest (new,
// from before manifests, or whose manifest was lost or damaged) gets a new
// one that re-attests the segment files present: this explicit operator
// action is the only way such a tenant writes again. If the old key is
// unusable (revoked before the link), the manifest key is replaced.
func (db *DB) bindKey(ctx context.Context, tenant string, b keyBinding) error {
	if db.opts.Plaintext {
		return fmt.Errorf("%w: a plaintext store has no keys to link", ErrInvalidOptions)
	}
	if err := db.checkExpectedKey(tenant, b); err != nil {
		return err
	}
	tm := db.manifests.get(tenant)
	if tm != nil && tm.body != nil {
		body := tm.body.clone()
		body.Key = b
		err := db.commitManifest(ctx, tenant, body)
		if err == nil || !errors.Is(err, keys.ErrKeyUnusable) {
			return db.afterBind(tenant, b.URI, err)
		}
	}
	body, err := db.newManifestBody(ctx, tenant, b)
	if err != nil {
		return err
	}
	if tm != nil && tm.body != nil {
		body.Segments, body.Retention = tm.body.clone().Segments, tm.body.Retention
	} else {
		files, err := db.listSegmentFiles(tenant)
		if err != nil {
			return err
		}
		if ts := db.tenants[tenant]; ts != nil && ts.w != nil {
			return fmt.Errorf("%w: %s has an active segment but no manifest", ErrTenantDamaged, tenant)
		}
		skipped, err := db.attest(ctx, tenant, files, body)
		if err != nil {
			return err
		}
		if cfg, err := db.loadLegacyConfig(tenant); err == nil && body.Retention == 0 {
			body.Retention = cfg.Retention
		}
		db.attestMu.Lock()
		db.attested = append(db.attested, AttestReport{Tenant: tenant, Segments: len(body.Segments), Skipped: skipped})
		db.attestMu.Unlock()
	}
	return db.afterBind(tenant, b.URI, db.commitManifest(ctx, tenant, body))
}

// afterBind seals the active segment when its key is not the new one, so the
// next segment is wrapped under the linked key.
func (db *DB) afterBind(tenant, uri string, err error) error {
	if err != nil {
		return err
	}
	if ts := db.tenants[tenant]; ts != nil && ts.w != nil && ts.keyURI != uri {
		return db.sealActive(ts)
	}
	return nil
}

// canonicalKeyURI is the URI to bind and record for the key described by st,
// which was reached through uri: the provider's canonical form (an alias
// resolved to its key's ARN), or uri itself when the provider gave none.
func canonicalKeyURI(st keys.KeyState, uri string) string {
	want, _ := keys.Scheme(uri)
	if got, err := keys.Scheme(st.URI); err != nil || got != want {
		return uri
	}
	return st.URI
}

func isLocal(uri string) bool {
	s, _ := keys.Scheme(uri)
	return s == keys.LocalScheme
}

// keyURI implements Admin.KeyURI (documented there).
func (db *DB) keyURI(tenant string) (string, error) {
	cfg, err := db.config(tenant)
	return cfg.KeyURI, err
}

// RewrapProgress is reported after each segment.
type RewrapProgress struct {
	Done, Total int
	Segment     string
	Skipped     bool // already under the target key
}

// RewrapReport sums up a rewrap.
type RewrapReport struct {
	Segments  int
	Rewrapped int
	Skipped   int
	Duration  time.Duration
}

// rewrap implements Admin.Rewrap (documented there).
func (db *DB) rewrap(ctx context.Context, tenant, toURI string, progress func(RewrapProgress)) (RewrapReport, error) {
	start := time.Now()
	var rep RewrapReport
	st, err := db.linkKey(ctx, tenant, toURI)
	if err != nil {
		return rep, err
	}
	toURI = canonicalKeyURI(st, toURI) // segments record the key, not an alias of it
	files, err := db.listSegmentFiles(tenant)
	if err != nil {
		return rep, err
	}
	rep.Segments = len(files)
	for i, id := range files {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		skipped, err := db.rewrapSegment(ctx, tenant, id, toURI)
		if errors.Is(err, vfs.ErrNotExist) {
			skipped, err = true, nil // removed by retention meanwhile
		}
		if err != nil {
			return rep, fmt.Errorf("logstore/engine: rewrap segment %s: %w", segHex(id), err)
		}
		if skipped {
			rep.Skipped++
		} else {
			rep.Rewrapped++
		}
		if progress != nil {
			progress(RewrapProgress{Done: i + 1, Total: len(files), Segment: segHex(id), Skipped: skipped})
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

func (db *DB) rewrapSegment(ctx context.Context, tenant string, id [16]byte, toURI string) (bool, error) {
	path := db.segPath(tenant, id)
	r, err := segment.Open(path, db.readOpts(tenant))
	if err != nil {
		return false, err
	}
	h := r.Header()
	_ = r.Close()
	if h.Cipher == segment.CipherNone {
		return true, nil
	}
	if err := db.segmentAllowed(tenant, path, h); err != nil {
		return false, err // never re-key a segment the manifest does not vouch for
	}
	ec := keys.SegmentContext(tenant, segHex(id))
	wrapped := h.Slot.Wrapped
	if h.Slot.KeyURI != toURI {
		if wrapped, err = db.cache.Rewrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, toURI, ec); err != nil {
			return false, err
		}
	}
	// Prove the new wrapped key opens this segment (commitment and slot MAC)
	// before writing it; the DEK also keys the new slot's MAC.
	dek, err := db.cache.Provider().Unwrap(ctx, toURI, wrapped, ec)
	if err != nil {
		return false, fmt.Errorf("logstore/engine: the rewrapped key does not unwrap: %w", err)
	}
	defer keys.Zero(dek)
	if h.Slot.KeyURI != toURI {
		if err := h.CheckKey(dek); err != nil {
			return false, err
		}
	}
	// When the slot already names toURI this only erases the old slot (a
	// crash may have come between the two steps).
	slot, err := segment.RewriteKeySlot(path, db.fs, toURI, wrapped, dek)
	if err != nil {
		return false, err
	}
	db.readers.invalidate(path)
	if db.uploader != nil {
		db.uploader.forget(tenant, segHex(id)) // same size, new slot: upload it again
	}
	// Record the new slot in the manifest (what readers check) and in the
	// index's segment state (display): the slot as written, never as re-read
	// from the file. Done on the writer goroutine, which owns the manifest
	// and the state of an active segment.
	err = db.control(ctx, func() error { return db.recordSlot(ctx, tenant, id, slot) })
	return h.Slot.KeyURI == toURI, err
}

func (db *DB) recordSlot(ctx context.Context, tenant string, id [16]byte, slot segment.KeySlot) error {
	hexID := segHex(id)
	err := db.updateManifest(ctx, tenant, false, func(b *manifestBody) error {
		if e := b.entry(hexID); e != nil {
			e.KeyURI, e.KeyGen = slot.KeyURI, slot.Generation
		}
		return nil
	})
	if err != nil {
		return err
	}
	states, err := db.segmentStates(tenant)
	if err != nil {
		return err
	}
	st := states[id]
	if st == nil {
		return nil
	}
	if ts := db.tenants[tenant]; ts != nil && ts.info != nil && ts.info.ID == st.ID {
		ts.info.KeyURI, ts.info.KeyGen = slot.KeyURI, slot.Generation
	}
	st.KeyURI, st.KeyGen = slot.KeyURI, slot.Generation
	b := db.index.newBatch()
	defer b.close()
	if err := putState(b, st); err != nil {
		return err
	}
	if err := db.index.commit(b); err != nil {
		return err
	}
	return db.index.flush() // a rewrap is not replayed from the segments
}

// checkSlotGeneration compares a segment's active key-slot generation with
// the generation the index recorded when it was last written or rewrapped.
func (db *DB) checkSlotGeneration(tenant string, r *segment.Reader) error {
	h := r.Header()
	if h.Cipher == segment.CipherNone || db.index == nil {
		return nil // a read-only DB has no index: the manifest's generation (segmentAllowed) applies
	}
	v, found, err := db.index.get(segmentKey(tenant, h.ID))
	if err != nil {
		return err
	}
	if !found {
		return nil // not indexed yet (recovery will record it)
	}
	var st SegmentInfo
	if err := decodeJSONValue(v, &st, "segment state"); err != nil {
		return err
	}
	if h.Slot.Generation < st.KeyGen {
		return fmt.Errorf("%w: %s has key slot generation %d, the index recorded %d (%s)", ErrKeySlotRollback,
			r.Path(), h.Slot.Generation, st.KeyGen, st.KeyURI)
	}
	return nil
}

// checkKey implements Admin.CheckKey (documented there).
func (db *DB) checkKey(ctx context.Context, tenant, uri string) error {
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
