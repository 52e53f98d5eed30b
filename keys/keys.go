// Package keys wraps and unwraps per-segment data keys (DEKs) under a tenant's
// key-encryption key. A Provider serves one URI scheme: local:// (a master key
// file, the embedded default) or aws-kms:// (package keys/awskms). Router
// dispatches by scheme and rewraps across providers.
package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// DEKSize is the size of every data key: AES-256.
const DEKSize = 32

// Sentinel errors. Providers wrap the matching one so callers use errors.Is;
// the "revoked" family (disabled, pending deletion, not found, access denied)
// additionally matches ErrKeyUnusable, which is what fails writes closed.
var (
	ErrKeyNotFound       = errors.New("logstore/keys: key not found")
	ErrKeyDisabled       = errors.New("logstore/keys: key disabled")
	ErrKeyInvalidState   = errors.New("logstore/keys: key in an invalid state (pending deletion or unavailable)")
	ErrAccessDenied      = errors.New("logstore/keys: access to key denied")
	ErrInvalidCiphertext = errors.New("logstore/keys: wrapped key rejected (wrong key, wrong context or tampered)")
	ErrThrottled         = errors.New("logstore/keys: key service throttled the request")
	ErrUnavailable       = errors.New("logstore/keys: key service unreachable")
	ErrBadURI            = errors.New("logstore/keys: bad key URI")
	ErrUnsupported       = errors.New("logstore/keys: operation not supported")
	ErrWrongRegion       = errors.New("logstore/keys: key is in another region")
	// ErrKeyUnusable matches every error that means "the customer has revoked
	// or removed access to this key": no DEK may be served and no segment started.
	ErrKeyUnusable = errors.New("logstore/keys: key unusable")
)

// Error is a typed key error. It matches its Kind and, for revocation kinds,
// ErrKeyUnusable; Retryable says whether trying again may succeed.
type Error struct {
	Op     string // "generate", "unwrap", "rewrap", "describe", ...
	KeyURI string
	Kind   error
	Detail string
	Err    error // the underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	fmt.Fprintf(&b, " (%s %s)", e.Op, e.KeyURI)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Is(target error) bool {
	if target == e.Kind {
		return true
	}
	return target == ErrKeyUnusable && IsRevocation(e.Kind)
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the failure is transient.
func (e *Error) Retryable() bool { return e.Kind == ErrThrottled || e.Kind == ErrUnavailable }

// IsRevocation reports whether kind is one of the revocation sentinels.
func IsRevocation(kind error) bool {
	return kind == ErrKeyDisabled || kind == ErrKeyInvalidState || kind == ErrKeyNotFound || kind == ErrAccessDenied
}

// IsRetryable reports whether err is a transient key-service failure.
func IsRetryable(err error) bool {
	var ke *Error
	return errors.As(err, &ke) && ke.Retryable()
}

// EncryptionContext is authenticated (never secret) data bound to a wrapped
// DEK: unwrapping with a different context fails. logstore always sets
// tenant, segment and purpose, so a KMS audit log shows which segment a call
// was for.
type EncryptionContext map[string]string

// Context keys.
const (
	CtxTenant  = "logstore:tenant"
	CtxSegment = "logstore:segment"
	CtxPurpose = "logstore:purpose"
	// PurposeSegmentDEK is the purpose of a segment's data key.
	PurposeSegmentDEK = "segment-dek"
	// PurposeKeyCheck is the purpose of the round trip run by key linking.
	PurposeKeyCheck = "key-link-check"
)

// SegmentContext is the encryption context of a segment's DEK.
func SegmentContext(tenant, segmentID string) EncryptionContext {
	return EncryptionContext{CtxTenant: tenant, CtxSegment: segmentID, CtxPurpose: PurposeSegmentDEK}
}

// Canonical returns a deterministic encoding (sorted, length-prefixed).
func (c EncryptionContext) Canonical() []byte {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b []byte
	for _, k := range ks {
		b = fmt.Appendf(b, "%d:%s=%d:%s;", len(k), k, len(c[k]), c[k])
	}
	return b
}

// DataKey is a fresh DEK and its wrapped form.
type DataKey struct {
	Plaintext []byte // DEKSize bytes; zero it when done (Zero)
	Wrapped   []byte
	KeyURI    string
}

// KeyState is what Describe reports about a key.
type KeyState struct {
	// URI is the key's canonical URI: the one to record next to what it
	// wraps. It names the key itself, not an alias of it (aws-kms: the key
	// ARN the alias resolved to, keeping the URI's options such as
	// ?replicas=); a provider without aliases reports the URI it was given
	// (local://NAME). Repointing an alias must not change what a recorded
	// URI opens.
	URI      string
	Provider string
	KeyID    string // provider's id (ARN for KMS)
	Enabled  bool
	State    string // "Enabled", "Disabled", "PendingDeletion", ...
	Spec     string // "SYMMETRIC_DEFAULT" for usable KMS keys
	Region   string
	Rotation bool
}

// Provider wraps DEKs under key-encryption keys it can reach by URI.
type Provider interface {
	// Scheme is the URI scheme served, e.g. "local" or "aws-kms".
	Scheme() string
	// GenerateDataKey returns a fresh DEK wrapped under keyURI for ec.
	GenerateDataKey(ctx context.Context, keyURI string, ec EncryptionContext) (DataKey, error)
	// Wrap encrypts an existing DEK under keyURI (used to move across providers).
	Wrap(ctx context.Context, keyURI string, dek []byte, ec EncryptionContext) ([]byte, error)
	// Unwrap returns the DEK inside wrapped.
	Unwrap(ctx context.Context, keyURI string, wrapped []byte, ec EncryptionContext) ([]byte, error)
	// Rewrap re-encrypts wrapped from fromURI to toURI, both of this scheme,
	// ideally without the DEK leaving the provider.
	Rewrap(ctx context.Context, fromURI string, wrapped []byte, toURI string, ec EncryptionContext) ([]byte, error)
	// Describe reports the key's state.
	Describe(ctx context.Context, keyURI string) (KeyState, error)
}

// Scheme returns the scheme of a key URI ("local" for "local://x").
func Scheme(uri string) (string, error) {
	i := strings.Index(uri, "://")
	if i <= 0 || i+3 == len(uri) {
		return "", fmt.Errorf("%w: %q (want local://NAME or aws-kms://arn:aws:kms:...)", ErrBadURI, uri)
	}
	return uri[:i], nil
}

// Router dispatches to the provider registered for a URI's scheme.
type Router struct {
	providers map[string]Provider
}

// NewRouter registers providers by scheme.
func NewRouter(ps ...Provider) *Router {
	r := &Router{providers: map[string]Provider{}}
	for _, p := range ps {
		r.providers[p.Scheme()] = p
	}
	return r
}

// Register adds or replaces a provider.
func (r *Router) Register(p Provider) { r.providers[p.Scheme()] = p }

// For returns the provider of uri.
func (r *Router) For(uri string) (Provider, error) {
	s, err := Scheme(uri)
	if err != nil {
		return nil, err
	}
	p, ok := r.providers[s]
	if !ok {
		// Also ErrBadURI: the caller named a scheme this process cannot use.
		return nil, &Error{Op: "route", KeyURI: uri, Kind: ErrUnsupported, Err: ErrBadURI, Detail: fmt.Sprintf("no provider for scheme %q is configured", s)}
	}
	return p, nil
}

func (r *Router) Scheme() string { return "*" }

func (r *Router) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	p, err := r.For(uri)
	if err != nil {
		return DataKey{}, err
	}
	return p.GenerateDataKey(ctx, uri, ec)
}

func (r *Router) Wrap(ctx context.Context, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	p, err := r.For(uri)
	if err != nil {
		return nil, err
	}
	return p.Wrap(ctx, uri, dek, ec)
}

func (r *Router) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	p, err := r.For(uri)
	if err != nil {
		return nil, err
	}
	return p.Unwrap(ctx, uri, wrapped, ec)
}

// Rewrap uses the provider's own rewrap within one scheme, and unwrap + wrap
// across schemes (the DEK is zeroed right after).
func (r *Router) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec EncryptionContext) ([]byte, error) {
	pf, err := r.For(from)
	if err != nil {
		return nil, err
	}
	pt, err := r.For(to)
	if err != nil {
		return nil, err
	}
	if pf.Scheme() == pt.Scheme() {
		return pf.Rewrap(ctx, from, wrapped, to, ec)
	}
	dek, err := pf.Unwrap(ctx, from, wrapped, ec)
	if err != nil {
		return nil, err
	}
	defer Zero(dek)
	return pt.Wrap(ctx, to, dek, ec)
}

func (r *Router) Describe(ctx context.Context, uri string) (KeyState, error) {
	p, err := r.For(uri)
	if err != nil {
		return KeyState{}, err
	}
	return p.Describe(ctx, uri)
}

// NewDEK returns DEKSize random bytes.
func NewDEK() ([]byte, error) {
	dek := make([]byte, DEKSize)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	return dek, nil
}

// Zero overwrites b. Go may have copied key bytes elsewhere (GC moves, CPU
// registers), so this is "as far as Go allows".
func Zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
