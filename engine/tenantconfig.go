package engine

// A tenant's configuration shared by the writer nodes of a bucket
// (docs/scale-out.md, docs/format/bucket.md): the object
// tenants/TENANT/CONFIG holds the linked key, the retention and the
// redaction policy, in the manifest's format and MAC'd under a config key
// that the linked key wraps (encryption context purpose "config-key", so a
// node manifest is never taken for a config). An operator's change on any
// node (LinkKey, Rewrap, SetRetention, SetRedaction) is applied locally,
// then published with a compare-and-swap: read CONFIG, apply the one change
// to it, put it only if the ETag read is still there (If-Match, or
// If-None-Match for the first), else read again and retry. Every node
// adopts a CONFIG whose sequence is above the one it applied last
// (manifestBody.ConfigSeq), so changes reach every node within a config
// poll, and concurrent changes to different fields both survive.
//
// Trust: a node accepts a CONFIG that moves its tenant to another key only
// if the CONFIG also wraps its config key under the key the node trusts now
// (the previous linked key): someone with write access to the bucket and a
// key of their own cannot point the fleet at it. Options.ExpectedKey applies
// as to manifests. A CONFIG older than the one a node applied is
// ErrManifestRollback.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/redact"
)

const (
	// purposeConfigKey is the encryption-context purpose of a config key.
	purposeConfigKey = "config-key"
	// configMaxBytes bounds a CONFIG read (a policy and a few wraps).
	configMaxBytes = 1 << 20
	// configPublishAttempts bounds the compare-and-swap retries of a publish.
	configPublishAttempts = 16
)

func configContext(tenant string) keys.EncryptionContext {
	return keys.EncryptionContext{keys.CtxTenant: tenant, keys.CtxSegment: "config", keys.CtxPurpose: purposeConfigKey}
}

func bucketConfigOf(tenant string) string { return bucketTenantDir(tenant) + bucketConfigKey }

// sharedConfig is a verified CONFIG.
type sharedConfig struct {
	body *manifestBody
	ck   []byte // the config key (zero it)
	etag string
}

// readSharedConfig reads and authenticates tenant's CONFIG; nil when there
// is none. trusted, when set, is the key the caller trusts now: a CONFIG
// linked to another key must wrap its config key under trusted too.
func (db *DB) readSharedConfig(ctx context.Context, b objstore.Bucket, tenant, trusted string) (*sharedConfig, error) {
	return db.readSharedConfigAs(ctx, b, tenant, trusted, true)
}

// readSharedConfigAs is readSharedConfig; expected says whether
// Options.ExpectedKey applies (to a config to adopt, not to the one a
// publish replaces).
func (db *DB) readSharedConfigAs(ctx context.Context, b objstore.Bucket, tenant, trusted string, expected bool) (*sharedConfig, error) {
	raw, info, err := getSmall(ctx, b, bucketConfigOf(tenant), configMaxBytes)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := decodeManifest(raw, tenant)
	if err != nil {
		return nil, fmt.Errorf("shared config: %w", err)
	}
	ck, err := db.unwrapConfigKey(ctx, tenant, &p.body, p.body.Key.URI)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*sharedConfig, error) { keys.Zero(ck); return nil, err }
	if err := p.verify(ck); err != nil {
		return fail(fmt.Errorf("shared config: %w", err))
	}
	if trusted != "" && trusted != p.body.Key.URI {
		other, err := db.unwrapConfigKey(ctx, tenant, &p.body, trusted)
		if err != nil {
			return fail(fmt.Errorf("%w: %s: the shared config moves the tenant from %s to %s without proof of %s: %w",
				ErrManifestAuth, tenant, trusted, p.body.Key.URI, trusted, err))
		}
		same := bytes.Equal(other, ck)
		keys.Zero(other)
		if !same {
			return fail(fmt.Errorf("%w: %s: the shared config's key under %s differs from the one under %s", ErrManifestAuth, tenant, trusted, p.body.Key.URI))
		}
	}
	if expected {
		if err := db.checkExpectedKey(tenant, p.body.Key); err != nil {
			return fail(err)
		}
	}
	return &sharedConfig{body: &p.body, ck: ck, etag: info.ETag}, nil
}

func (db *DB) unwrapConfigKey(ctx context.Context, tenant string, body *manifestBody, uri string) ([]byte, error) {
	w := body.wrapFor(uri)
	if w == nil {
		return nil, fmt.Errorf("%w: %s: shared config: no key wrapped under %s", ErrManifestAuth, tenant, uri)
	}
	ck, err := db.cache.Unwrap(ctx, uri, w.Wrapped, configContext(tenant))
	if errors.Is(err, keys.ErrInvalidCiphertext) {
		return nil, fmt.Errorf("%w: %s: the shared config's key does not unwrap under %s: %w", ErrManifestAuth, tenant, uri, err)
	}
	return ck, err
}

// lockConfig serializes an operator's configuration change and its publish
// with adoptions (configMu), so an adoption read before the change never
// lands after it; it returns the unlock.
func (db *DB) lockConfig() func() {
	db.configMu.Lock()
	return db.configMu.Unlock
}

// boundKey is the key tenant is linked to here ("" when none).
func (db *DB) boundKey(tenant string) string {
	if b := db.localBinding(tenant); b != nil {
		return b.URI
	}
	return ""
}

// configChange is one operator change to a tenant's configuration.
type configChange struct {
	key       *keyBinding
	retention *time.Duration
	redaction **redact.Policy
	erases    []EraseFilter
	at        time.Time // when (erases)
}

// sealErase seals an erase filter under the config key ck.
func sealErase(ck []byte, tenant string, seq uint64, f EraseFilter) ([]byte, error) {
	g, err := configGCM(ck)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := cryptorand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, eraseAAD(tenant, seq)), nil
}

// openErase opens a sealed erase filter.
func openErase(ck []byte, tenant string, er eraseRequest) (EraseFilter, error) {
	var f EraseFilter
	g, err := configGCM(ck)
	if err != nil {
		return f, err
	}
	if len(er.Filter) < g.NonceSize() {
		return f, fmt.Errorf("%w: %s: a shared erase of %d bytes", ErrManifestCorrupt, tenant, len(er.Filter))
	}
	plain, err := g.Open(nil, er.Filter[:g.NonceSize()], er.Filter[g.NonceSize():], eraseAAD(tenant, er.Seq))
	if err != nil {
		return f, fmt.Errorf("%w: %s: a shared erase does not open under the config key", ErrManifestAuth, tenant)
	}
	if err := json.Unmarshal(plain, &f); err != nil {
		return f, fmt.Errorf("%w: %s: a shared erase: %v", ErrManifestCorrupt, tenant, err)
	}
	return f, nil
}

func configGCM(ck []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(ck)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func eraseAAD(tenant string, seq uint64) []byte {
	return fmt.Appendf(nil, "logstore/v1/erase\x00%s\x00%d", tenant, seq)
}

// sealErasures re-seals b's erases, sealed under from, under to (a new
// config key), and seals the change's erase, if any, under to.
func (c configChange) sealErasures(b *manifestBody, from, to []byte) error {
	if from != nil && !bytes.Equal(from, to) {
		for i, er := range b.Erasures {
			f, err := openErase(from, b.Tenant, er)
			if err != nil {
				return err
			}
			if b.Erasures[i].Filter, err = sealErase(to, b.Tenant, er.Seq, f); err != nil {
				return err
			}
		}
	}
	for _, f := range c.erases {
		sealed, err := sealErase(to, b.Tenant, b.Seq, f)
		if err != nil {
			return err
		}
		b.Erasures = append(b.Erasures, eraseRequest{Seq: b.Seq, Filter: sealed, At: c.at})
	}
	if n := len(b.Erasures); n > maxSharedErasures {
		b.Erasures = b.Erasures[n-maxSharedErasures:]
	}
	return nil
}

// maxSharedErasures bounds the erases a CONFIG keeps (the oldest go): a
// node that falls further behind than that misses the oldest.
const maxSharedErasures = 10000

func (c configChange) apply(b *manifestBody) {
	if c.key != nil {
		b.Key = *c.key
	}
	if c.retention != nil {
		b.Retention = *c.retention
	}
	if c.redaction != nil {
		b.Redaction = *c.redaction
	}
}

// publishConfig applies change to tenant's CONFIG with a compare-and-swap
// (see the file comment), then applies the config it wrote here (it holds
// the other nodes' changes too) and clears ConfigDirty. It runs after the
// change was made locally; an error says the change is not shared yet (the
// config poll retries it). prev is the key the tenant was linked to before
// a key change ("" otherwise). The CONFIG it builds on must pass the
// adoption rules: proven under the key this node trusts, not older than
// the one it applied.
func (db *DB) publishConfig(ctx context.Context, tenant string, change configChange, prev string) error {
	if db.uploader == nil {
		return nil
	}
	b := db.uploader.b
	for attempt := 0; attempt < configPublishAttempts; attempt++ {
		applied, trusted := db.configTrust(tenant, prev)
		cur, err := db.readSharedConfigAs(ctx, b, tenant, trusted, false)
		var next *manifestBody
		var nextCK []byte
		switch {
		case err != nil:
		case cur != nil && cur.body.Seq < applied:
			keys.Zero(cur.ck)
			err = fmt.Errorf("%w: %s: the shared config has sequence %d, this node applied %d (an older copy was put back)",
				ErrManifestRollback, tenant, cur.body.Seq, applied)
		default:
			next, nextCK, err = db.putConfig(ctx, b, tenant, cur, change, db.localBinding(tenant))
			if cur != nil {
				keys.Zero(cur.ck)
			}
		}
		if errors.Is(err, objstore.ErrPrecondition) {
			// Another node changed it since: apply ours to theirs, after a
			// jittered, growing pause so contending nodes spread out.
			pause := time.Duration(rand.Int64N(int64(10*time.Millisecond) << min(attempt, 5)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("logstore/engine: share the configuration of %s: %w", tenant, err)
		}
		defer keys.Zero(nextCK)
		return db.applyConfig(ctx, tenant, next, nextCK, true)
	}
	return fmt.Errorf("logstore/engine: share the configuration of %s: %w after %d attempts", tenant, objstore.ErrPrecondition, configPublishAttempts)
}

// configTrust returns the sequence of the shared config this node applied
// last and the key it trusts the next one under: that config's key, else
// the key the tenant was linked to before (prev), else its binding now.
func (db *DB) configTrust(tenant, prev string) (applied uint64, trusted string) {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return 0, prev
	}
	switch {
	case tm.body.ConfigKey != "":
		return tm.body.ConfigSeq, tm.body.ConfigKey
	case prev != "":
		return tm.body.ConfigSeq, prev
	}
	return tm.body.ConfigSeq, tm.body.Key.URI
}

// publishLocal publishes the operator changes whose publish failed
// (ConfigPending), exactly those fields, on top of the shared config: the
// config poll retries them. Marked dirty with nothing pending (a crash
// between a change and its publish), the node adopts the shared config.
func (db *DB) publishLocal(ctx context.Context, tenant string) error {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	p := tm.body.ConfigPending
	if p == nil {
		return db.control(ctx, func() error {
			return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error { b.ConfigDirty = false; return nil })
		})
	}
	return db.publishConfig(ctx, tenant, p.change(), p.Prev)
}

// pendingConfig is, in a node's manifest, the operator changes not shared
// yet (their publish failed): published again by the config poll.
type pendingConfig struct {
	Key       *keyBinding    `json:"key,omitempty"`
	Prev      string         `json:"prev,omitempty"`
	Retention *time.Duration `json:"retention_ns,omitempty"`
	// Redaction is set when the policy changed (to Policy, nil: the default).
	Redaction *pendingPolicy `json:"redaction,omitempty"`
	// Erases are kept here, in the local manifest only, until shared.
	Erases []EraseFilter `json:"erases,omitempty"`
	At     time.Time     `json:"at,omitempty"`
}

type pendingPolicy struct {
	Policy *redact.Policy `json:"policy,omitempty"`
}

func (p *pendingConfig) change() configChange {
	c := configChange{key: p.Key, retention: p.Retention, erases: p.Erases, at: p.At}
	if p.Redaction != nil {
		pol := p.Redaction.Policy
		c.redaction = &pol
	}
	return c
}

// recordPending adds change, whose publish failed, to tenant's pending
// changes; it is published again by the config poll.
func (db *DB) recordPending(_ context.Context, tenant string, c configChange, prev string) {
	// Its own context: the caller's may be what ended the publish.
	ctx, cancel := context.WithTimeout(context.Background(), keyCallTimeout)
	defer cancel()
	err := db.control(ctx, func() error {
		return db.updateManifest(ctx, tenant, false, func(b *manifestBody) error {
			p := b.ConfigPending
			if p == nil {
				p = &pendingConfig{Prev: prev}
			}
			if c.key != nil {
				k := *c.key
				p.Key = &k
			}
			if c.retention != nil {
				d := *c.retention
				p.Retention = &d
			}
			if c.redaction != nil {
				p.Redaction = &pendingPolicy{Policy: *c.redaction}
			}
			p.Erases = append(p.Erases, c.erases...)
			if !c.at.IsZero() {
				p.At = c.at
			}
			b.ConfigPending, b.ConfigDirty = p, true
			return nil
		})
	})
	if err != nil {
		db.stats.checkpointFailures.Add(1) // the manifest could not be written: counted like a checkpoint
	}
}

// publishBinding shares tenant's key binding as it is here now (after
// LinkKey or Rewrap); prev is the key it was linked to before.
func (db *DB) publishBinding(ctx context.Context, tenant string, prev ...string) error {
	b := db.localBinding(tenant)
	if b == nil || db.uploader == nil {
		return nil
	}
	p := ""
	if len(prev) > 0 {
		p = prev[0]
	}
	return db.publishOrRecord(ctx, tenant, configChange{key: b}, p)
}

// publishOrRecord publishes change, or records it as pending when that
// fails (the config poll publishes it again); the error says it is not
// shared yet.
func (db *DB) publishOrRecord(ctx context.Context, tenant string, c configChange, prev string) error {
	err := db.publishConfig(ctx, tenant, c, prev)
	if err != nil && db.uploader != nil {
		db.recordPending(ctx, tenant, c, prev)
	}
	return err
}

// localBinding is tenant's key binding in this node's manifest.
func (db *DB) localBinding(tenant string) *keyBinding {
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		k := tm.body.Key
		return &k
	}
	return nil
}

// putConfig writes the CONFIG that cur (nil: none yet) becomes with change,
// conditional on cur's ETag, and returns its sequence. A new linked key gets
// a new config key, wrapped under the new key and under the previous one
// (so nodes still on it can verify the move).
func (db *DB) putConfig(ctx context.Context, b objstore.Bucket, tenant string, cur *sharedConfig, change configChange, local *keyBinding) (*manifestBody, []byte, error) {
	next := &manifestBody{Tenant: tenant}
	cond := objstore.Cond{IfNoneMatch: true}
	if cur != nil {
		next = cur.body.clone()
		next.Segments = nil
		cond = objstore.Cond{IfMatch: cur.etag}
	} else if local != nil {
		next.Key = *local
	}
	change.apply(next)
	if next.Key.URI == "" {
		return nil, nil, fmt.Errorf("%w: %s has no linked key to protect its shared configuration", ErrNoKey, tenant)
	}
	var ck []byte
	if cur != nil && cur.body.Key.URI == next.Key.URI {
		ck = append([]byte(nil), cur.ck...)
	} else {
		dk, err := db.cache.Provider().GenerateDataKey(ctx, next.Key.URI, configContext(tenant))
		if err != nil {
			return nil, nil, err
		}
		ck = dk.Plaintext
		next.Wraps = []keyWrap{{URI: next.Key.URI, Wrapped: dk.Wrapped}}
		if cur != nil {
			if w, err := db.cache.Wrap(ctx, cur.body.Key.URI, ck, configContext(tenant)); err == nil {
				next.Wraps = append(next.Wraps, keyWrap{URI: cur.body.Key.URI, Wrapped: w})
			} else if !errors.Is(err, keys.ErrKeyUnusable) {
				keys.Zero(ck)
				return nil, nil, err
			} // a revoked previous key: nodes still on it cannot follow, and say so
		}
	}
	defer keys.Zero(ck)
	if cur != nil && cur.body.Key.URI != next.Key.URI && !slices.Contains(next.KeyHistory, cur.body.Key.URI) {
		next.KeyHistory = append(next.KeyHistory, cur.body.Key.URI)
	}
	next.Seq++
	next.Written = db.opts.Now().UTC()
	var from []byte
	if cur != nil {
		from = cur.ck
	}
	if err := change.sealErasures(next, from, ck); err != nil {
		return nil, nil, err
	}
	raw, err := encodeManifest(next, ck)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(raw)
	if _, err := b.Put(ctx, bucketConfigOf(tenant), bytes.NewReader(raw), int64(len(raw)), sum[:], cond); err != nil {
		return nil, nil, err
	}
	return next, bytes.Clone(ck), nil
}

// adoptConfig applies tenant's CONFIG on this node when it is newer than
// the one applied here. A tenant this node has no manifest for is created
// only when Options.ExpectedKey names the config's key: with nothing to
// trust, a config alone (which anyone with a key of their own and write
// access to the bucket can make) never binds a tenant. A tenant with an
// operator change not yet published publishes it instead (that merges).
func (db *DB) adoptConfig(ctx context.Context, b objstore.Bucket, tenant string) error {
	db.configMu.Lock()
	defer db.configMu.Unlock()
	tm := db.manifests.get(tenant)
	known := tm != nil && tm.body != nil
	if known && tm.body.ConfigDirty {
		return db.publishLocal(ctx, tenant)
	}
	applied, trusted := db.configTrust(tenant, "")
	if !known && (db.opts.ExpectedKey == nil || db.opts.ExpectedKey(tenant) == "") {
		return nil // not ours to create: an operator links it here, or ExpectedKey vouches for it
	}
	cfg, err := db.readSharedConfig(ctx, b, tenant, trusted)
	if err != nil || cfg == nil {
		return err
	}
	defer keys.Zero(cfg.ck)
	if cfg.body.Seq < applied {
		return fmt.Errorf("%w: %s: the shared config has sequence %d, this node applied %d (an older copy was put back)",
			ErrManifestRollback, tenant, cfg.body.Seq, applied)
	}
	return db.applyConfig(ctx, tenant, cfg.body, cfg.ck, false)
}

// applyConfig makes this node's configuration of tenant the verified shared
// config c, unless it applied c or a newer one already, or (for an
// adoption, published false) an operator changed it here since and has not
// published that yet. Callers hold configMu, or run the publish of a
// change made under it.
func (db *DB) applyConfig(ctx context.Context, tenant string, c *manifestBody, ck []byte, published bool) error {
	tm := db.manifests.get(tenant)
	if tm != nil && tm.body != nil && (c.Seq <= tm.body.ConfigSeq || (!published && tm.body.ConfigDirty)) {
		return nil
	}
	if tm == nil || tm.body == nil || tm.body.Key.URI != c.Key.URI {
		if _, err := db.linkKeyAs(ctx, tenant, c.Key.URI, c.Seq, published); err != nil {
			return fmt.Errorf("logstore/engine: adopt the shared key of %s: %w", tenant, err)
		}
	}
	if err := db.applyErasures(ctx, tenant, c, ck, published); err != nil {
		return err // ConfigSeq stays: the next adoption tries them again
	}
	return db.control(ctx, func() error {
		return db.updateManifest(ctx, tenant, true, func(mb *manifestBody) error {
			if c.Seq <= mb.ConfigSeq || (!published && mb.ConfigDirty) {
				return nil // a newer one was applied meanwhile, or an operator's change waits
			}
			mb.Retention, mb.Redaction = c.Retention, c.Redaction
			if c.Key.Alias != "" {
				mb.Key.Alias = c.Key.Alias
			}
			mb.ConfigSeq, mb.ConfigKey, mb.ConfigDirty = c.Seq, c.Key.URI, false
			if published {
				mb.ConfigPending = nil // shared now
			}
			return nil
		})
	})
}

// applyErasures runs on this node's segments the erases of c that another
// node requested since the config this node applied (a publisher has run
// its own already).
func (db *DB) applyErasures(ctx context.Context, tenant string, c *manifestBody, ck []byte, published bool) error {
	var applied uint64
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		applied = tm.body.ConfigSeq
	}
	for _, er := range c.Erasures {
		if er.Seq <= applied || (published && er.Seq == c.Seq) {
			continue
		}
		f, err := openErase(ck, tenant, er)
		if err != nil {
			return err
		}
		if _, err := db.erase(ctx, tenant, f); err != nil {
			return fmt.Errorf("logstore/engine: apply the shared erase of %s (config %d): %w", tenant, er.Seq, err)
		}
		db.stats.sharedErasures.Add(1)
	}
	return nil
}
