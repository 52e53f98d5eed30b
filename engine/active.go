package engine

// The write path, stage 3: the life of a tenant's active segment, owned by
// the writer goroutine: created (ensureSegment) under a fresh DEK and listed
// in the manifest, fsynced (syncDirty), sealed (sealActive, sealAll) or,
// after an I/O error, abandoned to recovery (abandon).

import (
	"context"
	"fmt"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// tenantState is the writer goroutine's view of one tenant.
type tenantState struct {
	name    string
	w       *segment.Writer
	info    *SegmentInfo
	keyURI  string
	wrapped []byte
	ec      keys.EncryptionContext
	opened  time.Time
	dirty   bool // written since the last fsync
	// checkpointed is when the manifest last recorded the active segment's
	// synced size (checkpoint).
	checkpointed time.Time
}

// keyURIFor is the key a tenant's next segment is wrapped under: the key
// its manifest binds. Only a tenant with no manifest and no segment at all
// (a new tenant) may get the embedded default, an auto-created
// local://TENANT, and only when Options allow it; a tenant that had any key
// never falls back to it (ensureManifest refuses such a tenant first).
func (db *DB) keyURIFor(ts *tenantState) (uri string, auto bool, err error) {
	if tm := db.manifests.get(ts.name); tm != nil && tm.body != nil {
		return tm.body.Key.URI, false, nil
	}
	files, err := db.listSegmentFiles(ts.name)
	if err != nil {
		return "", false, err
	}
	if len(files) > 0 {
		return "", false, fmt.Errorf("%w: %s has segments but no manifest", ErrManifestMissing, ts.name)
	}
	if db.opts.ExpectedKey != nil {
		if want := db.opts.ExpectedKey(ts.name); want != "" {
			return want, false, nil
		}
	}
	if db.opts.RequireLinkedKey || db.local == nil {
		return "", false, fmt.Errorf("%w: tenant %s has no key: run `logstore keys link --tenant %s --key URI`", ErrNoKey, ts.name, ts.name)
	}
	def := keys.LocalURI(ts.name)
	if err := db.checkKeyNotShared(ts.name, def); err != nil {
		// Another tenant linked a key of this name: never share it.
		return "", false, fmt.Errorf("%w: tenant %s has no key and its default %s is another tenant's: %w", ErrNoKey, ts.name, def, err)
	}
	return def, true, nil
}

// ensureSegment makes sure ts has an active segment that may take writes:
// it rolls at SegmentSize, at SegmentAge, and when the DEK cache's max age
// means the key must be re-validated (so a revoked key stops writes within
// the max age). With caching disabled, it re-validates on every group.
func (db *DB) ensureSegment(ts *tenantState) error {
	now := db.opts.Now()
	if ts.w != nil {
		roll := ts.w.Size() >= db.opts.SegmentSize || now.Sub(ts.opened) >= db.opts.SegmentAge
		if !roll && !db.opts.Plaintext {
			if db.cache.MaxAge() > 0 {
				roll = !db.cache.Fresh(ts.keyURI, ts.wrapped, ts.ec)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
				dek, err := db.cache.Unwrap(ctx, ts.keyURI, ts.wrapped, ts.ec)
				cancel()
				keys.Zero(dek)
				if err != nil {
					_ = db.sealActive(ts)
					return err
				}
			}
		}
		if !roll {
			return nil
		}
		if err := db.sealActive(ts); err != nil {
			return err
		}
	}
	id, err := segment.NewID()
	if err != nil {
		return err
	}
	p := segment.Params{ID: id, Tenant: ts.name, Codec: db.codec, FS: db.fs, Created: now, Cipher: segment.CipherAES256GCM}
	var uri string
	var autoLocal bool
	var ec keys.EncryptionContext
	if db.opts.Plaintext {
		p.Cipher = segment.CipherNone
	} else {
		var auto bool
		if uri, auto, err = db.keyURIFor(ts); err != nil {
			return err
		}
		autoLocal = auto
		ec = keys.SegmentContext(ts.name, segHex(id))
		ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
		dk, err := db.cache.GenerateDataKey(ctx, uri, ec)
		cancel()
		if err != nil {
			return err // fail closed: no segment without a usable key
		}
		defer keys.Zero(dk.Plaintext)
		p.KeyURI, p.Wrapped, p.DEK = uri, dk.Wrapped, dk.Plaintext
	}
	if err := db.fs.MkdirAll(db.segDir(ts.name)); err != nil {
		return err
	}
	w, err := segment.Create(db.segPath(ts.name, id), p)
	if err != nil {
		return err
	}
	if err := db.listActive(ts.name, w, autoLocal); err != nil {
		_ = w.Close()
		_ = db.fs.Remove(w.Path()) // no block was written: nothing is lost
		return err
	}
	db.stats.segmentsCreated.Add(1)
	h := w.Header()
	ts.w, ts.opened, ts.keyURI, ts.wrapped, ts.ec = w, now, uri, p.Wrapped, ec
	ts.info = &SegmentInfo{V: stateVersion, Tenant: ts.name, ID: segHex(id), KeyURI: uri, KeyGen: h.Slot.Generation, Created: h.Created, Size: w.Size()}
	return nil
}

// sealActive seals ts's active segment and records that in the index.
func (db *DB) sealActive(ts *tenantState) error {
	if ts.w == nil {
		return nil
	}
	if err := ts.w.Seal(); err != nil {
		db.abandon(ts)
		return err
	}
	st := ts.info
	st.Sealed, st.Size = true, ts.w.Size()
	path := ts.w.Path()
	_ = ts.w.Close()
	ts.w, ts.info, ts.dirty = nil, nil, false
	k, v, err := stateKV(st)
	if err != nil {
		return err
	}
	db.indexQ <- &indexJob{kvs: []kv{{k, v}}}
	// A failure here leaves the entry "active" with the file sealed: the
	// next Open accepts it as a finished crash recovery.
	return db.recordSealed(ts.name, path)
}

// abandon gives up on ts's active segment after a write or fsync error: the
// writer never appends to it again (its nonces must not repeat); recovery
// truncates what was torn and seals it, and whatever valid blocks remain are
// indexed so the index keeps matching the segments.
func (db *DB) abandon(ts *tenantState) {
	if ts.w == nil {
		return
	}
	path, st := ts.w.Path(), ts.info
	db.indexBarrier() // the persisted state must include every queued group
	_ = ts.w.Close()
	ts.w, ts.info, ts.dirty = nil, nil, false
	db.readers.invalidate(path)
	if _, err := segment.Recover(path, db.readOpts(ts.name)); err != nil {
		return // Open will retry
	}
	_ = db.recordSealed(ts.name, path) // on failure, Open finishes it
	r, err := segment.Open(path, db.readOpts(ts.name))
	if err != nil {
		return
	}
	defer r.Close()
	persisted, err := db.segmentStates(ts.name)
	if err != nil {
		return
	}
	id, _ := st.segID()
	cur := persisted[id]
	if cur == nil {
		cur = &SegmentInfo{V: stateVersion, Tenant: ts.name, ID: st.ID}
	}
	_, _ = db.indexBlocks(r, cur, cur.Blocks)
}

func (db *DB) syncDirty() {
	for _, ts := range db.tenants {
		if ts.w != nil && ts.dirty {
			if err := ts.w.Sync(); err != nil {
				db.abandon(ts)
				continue
			}
			ts.dirty = false
			db.checkpoint(ts)
		}
	}
}

func (db *DB) sealAll() {
	for _, ts := range db.tenants {
		_ = db.sealActive(ts)
	}
}
