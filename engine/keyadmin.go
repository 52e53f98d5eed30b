package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/logstore/logstore/internal/vfs"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// ErrKeyValidation wraps every reason LinkKey refuses a key.
var ErrKeyValidation = errors.New("logstore/engine: key validation failed")

// LinkKey validates uri for tenant and makes it the key of the tenant's new
// segments. Validation: the key exists, is enabled and symmetric
// (SYMMETRIC_DEFAULT), and a GenerateDataKey + unwrap round trip with the
// tenant's encryption context succeeds. A failed validation changes nothing.
// Existing segments keep their key until Rewrap moves them.
func (db *DB) LinkKey(ctx context.Context, tenant, uri string) (keys.KeyState, error) {
	if err := ValidateTenant(tenant); err != nil {
		return keys.KeyState{}, err
	}
	if _, err := keys.Scheme(uri); err != nil {
		return keys.KeyState{}, err
	}
	if db.local != nil && isLocal(uri) {
		if err := db.local.Create(uri); err != nil {
			return keys.KeyState{}, err
		}
	}
	st, err := db.cache.Describe(ctx, uri)
	if err != nil {
		return st, fmt.Errorf("%w: describe %s: %w", ErrKeyValidation, uri, err)
	}
	if !st.Enabled {
		return st, fmt.Errorf("%w: key %s is in state %s, not Enabled", ErrKeyValidation, uri, st.State)
	}
	if st.Spec != "" && st.Spec != "SYMMETRIC_DEFAULT" {
		return st, fmt.Errorf("%w: key %s has spec %s; logstore needs a symmetric key (SYMMETRIC_DEFAULT)", ErrKeyValidation, uri, st.Spec)
	}
	ec := keys.EncryptionContext{keys.CtxTenant: tenant, keys.CtxSegment: "key-link-check", keys.CtxPurpose: keys.PurposeKeyCheck}
	dk, err := db.cache.Provider().GenerateDataKey(ctx, uri, ec)
	if err != nil {
		return st, fmt.Errorf("%w: GenerateDataKey with %s: %w", ErrKeyValidation, uri, err)
	}
	defer keys.Zero(dk.Plaintext)
	back, err := db.cache.Provider().Unwrap(ctx, uri, dk.Wrapped, ec)
	if err != nil {
		return st, fmt.Errorf("%w: Decrypt with %s: %w", ErrKeyValidation, uri, err)
	}
	same := bytes.Equal(back, dk.Plaintext)
	keys.Zero(back)
	if !same {
		return st, fmt.Errorf("%w: round trip through %s returned a different data key", ErrKeyValidation, uri)
	}
	var serr error
	cerr := db.control(ctx, func() {
		ts, err := db.tenant(tenant)
		if err != nil {
			serr = err
			return
		}
		cfg := ts.cfg
		cfg.KeyURI, cfg.LinkedAt = uri, db.opts.Now().UTC()
		if serr = db.saveConfig(tenant, cfg); serr != nil {
			return
		}
		ts.cfg = cfg
		if ts.keyURI != uri {
			serr = db.sealActive(ts) // the next segment uses the new key
		}
	})
	return st, errors.Join(cerr, serr)
}

func isLocal(uri string) bool {
	s, _ := keys.Scheme(uri)
	return s == keys.LocalScheme
}

// KeyURI returns the key linked to tenant ("" when none is linked).
func (db *DB) KeyURI(tenant string) (string, error) {
	cfg, err := db.loadConfig(tenant)
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

// Rewrap moves every segment DEK of tenant under toURI without rewriting any
// data block: it links toURI (validating it), then for each segment re-wraps
// the DEK, proves the new wrapped key opens the segment (key commitment), and
// rewrites the segment's spare key slot (segment.RewriteKeySlot), which is
// crash-safe. Re-running it after a crash resumes; segments already under
// toURI are skipped. When it returns nil, the old key may be deleted.
func (db *DB) Rewrap(ctx context.Context, tenant, toURI string, progress func(RewrapProgress)) (RewrapReport, error) {
	start := time.Now()
	var rep RewrapReport
	if _, err := db.LinkKey(ctx, tenant, toURI); err != nil {
		return rep, err
	}
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
			return rep, fmt.Errorf("rewrap segment %s: %w", segHex(id), err)
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
	r, err := segment.Open(path, &segment.ReadOptions{FS: db.fs, Tenant: tenant})
	if err != nil {
		return false, err
	}
	h := r.Header()
	_ = r.Close()
	if h.Cipher == segment.CipherNone {
		return true, nil
	}
	ec := keys.SegmentContext(tenant, segHex(id))
	if h.Slot.KeyURI != toURI {
		wrapped, err := db.cache.Rewrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, toURI, ec)
		if err != nil {
			return false, err
		}
		dek, err := db.cache.Provider().Unwrap(ctx, toURI, wrapped, ec)
		if err != nil {
			return false, fmt.Errorf("the rewrapped key does not unwrap: %w", err)
		}
		err = h.CheckKey(dek)
		keys.Zero(dek)
		if err != nil {
			return false, err
		}
		if _, err := segment.RewriteKeySlot(path, db.fs, toURI, wrapped); err != nil {
			return false, err
		}
	} else if _, err := segment.RewriteKeySlot(path, db.fs, toURI, h.Slot.Wrapped); err != nil {
		// Already active: only make sure the old slot is erased (a crash
		// may have come between the two steps).
		return false, err
	}
	db.readers.invalidate(path)
	r, err = segment.Open(path, &segment.ReadOptions{FS: db.fs, Tenant: tenant})
	if err != nil {
		return false, err
	}
	nh := r.Header()
	_ = r.Close()
	// Record the new slot in the segment state (only for display; the file
	// is the source of truth). Done on the writer goroutine, which owns the
	// state of an active segment.
	var serr error
	cerr := db.control(ctx, func() {
		states, err := db.segmentStates(tenant)
		if err != nil {
			serr = err
			return
		}
		st := states[id]
		if st == nil {
			return
		}
		if ts := db.tenants[tenant]; ts != nil && ts.info != nil && ts.info.ID == st.ID {
			ts.info.KeyURI, ts.info.KeyGen = nh.Slot.KeyURI, nh.Slot.Generation
		}
		st.KeyURI, st.KeyGen = nh.Slot.KeyURI, nh.Slot.Generation
		b := db.idx.NewBatch()
		defer b.Close()
		if serr = putState(b, st); serr == nil {
			if serr = b.Commit(pebble.NoSync); serr == nil {
				serr = db.durableIndex()
			}
		}
	})
	return h.Slot.KeyURI == toURI, errors.Join(cerr, serr)
}

// ErrKeySlotRollback: a segment's active key slot is older than the one the
// index recorded (an old copy of the header was put back, e.g. to bring back
// a retired key). Reads of that segment are refused.
var ErrKeySlotRollback = errors.New("logstore/engine: segment key slot rolled back")

// checkSlotGeneration compares a segment's active key-slot generation with
// the generation the index recorded when it was last written or rewrapped.
func (db *DB) checkSlotGeneration(tenant string, r *segment.Reader) error {
	h := r.Header()
	if h.Cipher == segment.CipherNone {
		return nil
	}
	v, closer, err := db.idx.Get(segmentKey(tenant, h.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil // not indexed yet (recovery will record it)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
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
