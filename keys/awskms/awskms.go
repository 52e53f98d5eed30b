// Package awskms is the AWS KMS key provider: customer-managed keys (CMEK).
// Key URIs:
//
//	aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID
//	aws-kms://arn:aws:kms:REGION:ACCOUNT:alias/NAME
//	aws-kms://arn:aws:kms:REGION:ACCOUNT:key/mrk-ID?replicas=eu-west-1,us-west-2
//
// The region comes from the ARN. Credentials and endpoints come from the
// standard AWS configuration chain (environment, shared config and
// credentials files, AWS_ENDPOINT_URL_KMS, instance roles), so pointing it
// at a test server takes standard variables only.
//
// Identity: an alias names whatever key it points at now, so Describe
// resolves it and reports the key's own URI (KeyState.URI, the key ARN with
// the URI's options kept); that is what callers record next to a wrapped key,
// so repointing the alias later (manual rotation) strands nothing.
//
// Multi-Region keys (key/mrk-...): when the key's region is unreachable
// (connection failures, timeouts, HTTP 5xx, KMSInternal, KeyUnavailable,
// DependencyTimeout), GenerateDataKey, Encrypt and Decrypt are retried
// against the related keys of other regions: those listed in ?replicas= and,
// with Options.DiscoverReplicas, those DescribeKey reports. Related keys
// share key material, so a wrapped key made in a replica region unwraps in
// the primary one and back. Every other error (access denied, disabled,
// pending deletion, invalid ciphertext, throttling, bad requests) is final
// and never retried elsewhere: a revocation in the key's region fails closed.
// Each region keeps its own key state and key policy, as in AWS: to revoke a
// multi-Region key, disable (or deny) every replica, not only the primary.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/logstore/logstore/keys"
)

// Scheme is the URI scheme served.
const Scheme = "aws-kms"

// Options configure the provider. Zero values mean the defaults.
type Options struct {
	// LoadConfig builds the SDK configuration for a region (default:
	// config.LoadDefaultConfig with that region: the standard chain).
	LoadConfig func(ctx context.Context, region string) (aws.Config, error)
	// MaxAttempts bounds attempts per call, throttling and transient
	// failures retried with exponential backoff (default 4).
	MaxAttempts int
	// MaxBackoff caps the backoff between attempts (default 2s).
	MaxBackoff time.Duration
	// CallTimeout bounds one call including retries (default 15s).
	CallTimeout time.Duration
	// Principal is the IAM principal ARN that logstore runs as, printed in
	// the key-policy statement of access-denied errors (default a placeholder).
	Principal string
	// DiscoverReplicas lets the provider learn the replica regions of a
	// multi-Region key (key/mrk-...) from DescribeKey's
	// MultiRegionConfiguration and fall back to them, besides the URI's
	// ?replicas= list (default false: only the regions the URI lists). The
	// list is asked for once per ReplicaMaxAge, after a call that succeeded
	// (one DescribeKey, not in the caller's audit trail), or, when the key's
	// region is down and the list is stale, from a region it named.
	DiscoverReplicas bool
	// ReplicaMaxAge bounds how long a discovered replica list is used
	// (default 1h); after it the list is asked for again and, until that
	// succeeds, only ?replicas= regions serve as fallbacks.
	ReplicaMaxAge time.Duration
	// Now is the clock of the replica list's age (default time.Now).
	Now func() time.Time
}

// Provider implements keys.Provider on AWS KMS.
type Provider struct {
	opts Options

	mu       sync.Mutex // guards clients, fast and replicas
	clients  map[string]*kms.Client
	fast     map[string]*kms.Client // the same, without retries of region failures (a fallback follows)
	replicas map[string]*replicaList
}

// replicaList is what DescribeKey said about a multi-Region key's regions.
type replicaList struct {
	members    map[string]string // region -> key ARN, the primary and every replica
	fetched    time.Time         // last successful discovery (zero: never)
	tried      time.Time         // last attempt
	refreshing bool
}

// discoveryRetry is the least time between two discoveries of a key (capped
// by ReplicaMaxAge), so a failing DescribeKey is not asked on every call.
const discoveryRetry = time.Minute

// New returns a provider. It makes no call until used.
func New(opts Options) *Provider {
	if opts.LoadConfig == nil {
		opts.LoadConfig = func(ctx context.Context, region string) (aws.Config, error) {
			return config.LoadDefaultConfig(ctx, config.WithRegion(region))
		}
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 4
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 15 * time.Second
	}
	if opts.Principal == "" {
		opts.Principal = "arn:aws:iam::ACCOUNT_ID:role/YOUR-LOGSTORE-ROLE"
	}
	if opts.ReplicaMaxAge <= 0 {
		opts.ReplicaMaxAge = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Provider{opts: opts, clients: map[string]*kms.Client{}, fast: map[string]*kms.Client{}, replicas: map[string]*replicaList{}}
}

func (p *Provider) Scheme() string { return Scheme }

// KeyRef is a parsed aws-kms:// URI.
type KeyRef struct {
	ARN      string
	Region   string
	Account  string
	Resource string // "key/ID" or "alias/NAME"
	Replicas []string
}

// MultiRegion reports whether r names a multi-Region key by its key id
// (key/mrk-...): only those fall back to other regions. An alias may name
// a different key in every region, so it never does.
func (r KeyRef) MultiRegion() bool { return strings.HasPrefix(r.Resource, "key/mrk-") }

// URI is the canonical aws-kms:// form of r: its ARN and, when it has
// replicas, ?replicas=R1,R2 (ParseURI accepts it and returns r).
func (r KeyRef) URI() string {
	u := Scheme + "://" + r.ARN
	if len(r.Replicas) > 0 {
		u += "?replicas=" + strings.Join(r.Replicas, ",")
	}
	return u
}

// ParseURI parses an aws-kms:// key URI.
func ParseURI(uri string) (KeyRef, error) {
	var r KeyRef
	rest, ok := strings.CutPrefix(uri, Scheme+"://")
	if !ok {
		return r, fmt.Errorf("%w: %q does not start with aws-kms://", keys.ErrBadURI, uri)
	}
	arn, query, _ := strings.Cut(rest, "?")
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[2] != "kms" || parts[3] == "" || len(parts[4]) != 12 {
		return r, fmt.Errorf("%w: %q: want aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID or :alias/NAME", keys.ErrBadURI, uri)
	}
	if !(strings.HasPrefix(parts[5], "key/") && len(parts[5]) > 4) && !(strings.HasPrefix(parts[5], "alias/") && len(parts[5]) > 6) {
		return r, fmt.Errorf("%w: %q: the resource must be key/ID or alias/NAME", keys.ErrBadURI, uri)
	}
	r = KeyRef{ARN: arn, Region: parts[3], Account: parts[4], Resource: parts[5]}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return r, fmt.Errorf("%w: %q: %v", keys.ErrBadURI, uri, err)
		}
		for k, vs := range q {
			if k != "replicas" {
				return r, fmt.Errorf("%w: %q: unknown parameter %q", keys.ErrBadURI, uri, k)
			}
			for _, v := range vs {
				for _, reg := range strings.Split(v, ",") {
					if reg = strings.TrimSpace(reg); reg != "" && reg != r.Region && !slices.Contains(r.Replicas, reg) {
						r.Replicas = append(r.Replicas, reg)
					}
				}
			}
		}
	}
	return r, nil
}

// arnIn is the ARN of the same key in another region (a multi-Region replica).
func (r KeyRef) arnIn(region string) string {
	parts := strings.SplitN(r.ARN, ":", 6)
	parts[3] = region
	return strings.Join(parts, ":")
}

// client returns the region's client. A fast client does not retry region
// failures (connection errors, timeouts, 5xx) itself: it is used when
// another region will be tried next, so the fallback is not delayed by
// backoff. Both retry throttling.
func (p *Provider) client(ctx context.Context, region string, fast bool) (*kms.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.clients
	if fast {
		m = p.fast
	}
	if c, ok := m[region]; ok {
		return c, nil
	}
	cfg, err := p.opts.LoadConfig(ctx, region)
	if err != nil {
		return nil, &keys.Error{Op: "config", KeyURI: region, Kind: keys.ErrUnavailable, Detail: "loading the AWS configuration", Err: err}
	}
	cfg.Region = region
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = p.opts.MaxAttempts
			o.MaxBackoff = p.opts.MaxBackoff
			if fast {
				o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
					if regionFailure(err) {
						return aws.FalseTernary
					}
					return aws.UnknownTernary
				})}, o.Retryables...)
			}
		})
	}
	c := kms.NewFromConfig(cfg)
	m[region] = c
	return c, nil
}

// regionFailure reports whether err says the region (not the key, the
// request or the caller) failed: the only errors that fall back to another
// region of a multi-Region key.
func regionFailure(err error) bool {
	var (
		unavail  *types.KeyUnavailableException
		depTO    *types.DependencyTimeoutException
		internal *types.KMSInternalException
		conn     interface{ ConnectionError() bool }
		status   interface{ HTTPStatusCode() int }
		netErr   net.Error
	)
	switch {
	case errors.As(err, &unavail), errors.As(err, &depTO), errors.As(err, &internal):
		return true
	case errors.As(err, &conn) && conn.ConnectionError(), errors.As(err, &netErr):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &status) && status.HTTPStatusCode() >= 500:
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "use of closed network connection")
}

// target is one region's key of a call.
type target struct {
	region, arn string
}

// call runs f against the key's region and, when that region fails (see
// regionFailure) and the key is a multi-Region key with replicas, against
// each replica in turn. Any other error is final: it is never retried
// elsewhere. While another region remains, an attempt gets a fair share of
// what is left of CallTimeout, so a region that hangs leaves time for the
// next one.
func (p *Provider) call(ctx context.Context, op, uri string, fallback bool, f func(ctx context.Context, c *kms.Client, arn string) error) error {
	ref, err := ParseURI(uri)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
	defer cancel()
	fallback = fallback && ref.MultiRegion()
	var replicas, candidates []target
	if fallback {
		replicas = p.replicaTargets(ref, true)
		candidates = p.replicaTargets(ref, false) // a stale list may be refreshed after a failure
	}
	raw := p.attempt(ctx, target{ref.Region, ref.ARN}, 1+len(candidates), f)
	if raw == nil {
		if fallback && p.discovers(ref) {
			p.discover(ctx, ref, []string{ref.Region})
		}
		return nil
	}
	first := p.mapError(op, uri, ref, raw)
	if !fallback || ctx.Err() != nil || !regionFailure(raw) {
		return first
	}
	if p.discovers(ref) && !p.fresh(ref) {
		// The list is stale or missing: ask the regions it (or the URI) named.
		var regions []string
		for _, t := range candidates {
			regions = append(regions, t.region)
		}
		p.discover(ctx, ref, regions)
		replicas = p.replicaTargets(ref, true)
	}
	tried := []string{ref.Region}
	var final error
	for i, t := range replicas {
		if ctx.Err() != nil {
			break
		}
		raw := p.attempt(ctx, t, len(replicas)-i, f)
		if raw == nil {
			return nil
		}
		tried = append(tried, t.region)
		rref := ref
		rref.ARN, rref.Region = t.arn, t.region
		e := p.mapError(op, uri, rref, raw)
		var notFound *types.NotFoundException
		switch {
		case regionFailure(raw), errors.As(raw, &notFound), errors.Is(e, keys.ErrThrottled):
			// This replica cannot serve now (or does not exist): the next one may.
		default:
			// The replica's own key state, policy or a bad ciphertext: final.
			if ke, ok := e.(*keys.Error); ok {
				ke.Detail = fmt.Sprintf("%s (from the replica in %s; %s is unreachable)", ke.Detail, t.region, ref.Region)
			}
			final = e
		}
		if final != nil {
			return final
		}
	}
	if ke, ok := first.(*keys.Error); ok && len(tried) > 1 {
		ke.Detail = fmt.Sprintf("AWS KMS is unreachable in %s and no replica could serve (tried %s); retry", ref.Region, strings.Join(tried[1:], ", "))
	}
	return first
}

// attempt runs f once against t (with the SDK's retries), with a share of
// the time left when left regions (this one included) remain to be tried.
func (p *Provider) attempt(ctx context.Context, t target, left int, f func(ctx context.Context, c *kms.Client, arn string) error) error {
	c, err := p.client(ctx, t.region, left > 1)
	if err != nil {
		return err
	}
	if left > 1 {
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(left))
			defer cancel()
		}
	}
	return f(ctx, c, t.arn)
}

// discovers reports whether replicas of ref may be discovered.
func (p *Provider) discovers(ref KeyRef) bool { return p.opts.DiscoverReplicas && ref.MultiRegion() }

// groupKey names a multi-Region key across regions: its account and key id.
func groupKey(ref KeyRef) string { return ref.Account + "/" + ref.Resource }

// fresh reports whether ref's discovered replica list is younger than
// ReplicaMaxAge, or was tried too recently to ask again.
func (p *Provider) fresh(ref KeyRef) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.replicas[groupKey(ref)]
	if l == nil {
		return false
	}
	now := p.opts.Now()
	return (!l.fetched.IsZero() && now.Sub(l.fetched) < p.opts.ReplicaMaxAge) || now.Sub(l.tried) < p.retryDiscoveryAfter() || l.refreshing
}

// retryDiscoveryAfter is the least time between two discoveries of a key.
func (p *Provider) retryDiscoveryAfter() time.Duration {
	return min(discoveryRetry, p.opts.ReplicaMaxAge)
}

// replicaTargets lists the regions other than ref's to fall back to: the
// URI's replicas, then the discovered ones (when usable is set, only a list
// younger than ReplicaMaxAge; else any list ever seen, to know whom to ask).
func (p *Provider) replicaTargets(ref KeyRef, usable bool) []target {
	var out []target
	seen := map[string]bool{ref.Region: true}
	for _, r := range ref.Replicas {
		if !seen[r] {
			seen[r] = true
			out = append(out, target{r, ref.arnIn(r)})
		}
	}
	if !p.discovers(ref) {
		return out
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.replicas[groupKey(ref)]
	if l == nil || (usable && (l.fetched.IsZero() || p.opts.Now().Sub(l.fetched) >= p.opts.ReplicaMaxAge)) {
		return out
	}
	regions := make([]string, 0, len(l.members))
	for r := range l.members {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, r := range regions {
		if !seen[r] {
			seen[r] = true
			out = append(out, target{r, l.members[r]})
		}
	}
	return out
}

// discover asks DescribeKey in regions, in turn, for ref's related keys and
// records them, unless the list is fresh or being asked for already.
// Failures only leave the list as it was: discovery is best effort.
func (p *Provider) discover(ctx context.Context, ref KeyRef, regions []string) {
	k := groupKey(ref)
	p.mu.Lock()
	l := p.replicas[k]
	if l == nil {
		l = &replicaList{}
		p.replicas[k] = l
	}
	now := p.opts.Now()
	if l.refreshing || (!l.fetched.IsZero() && now.Sub(l.fetched) < p.opts.ReplicaMaxAge) || (!l.tried.IsZero() && now.Sub(l.tried) < p.retryDiscoveryAfter()) {
		p.mu.Unlock()
		return
	}
	l.refreshing, l.tried = true, now
	p.mu.Unlock()
	var members map[string]string
	for i, region := range regions {
		if ctx.Err() != nil {
			break
		}
		var out *kms.DescribeKeyOutput
		err := p.attempt(ctx, target{region, ref.arnIn(region)}, len(regions)-i+1, func(ctx context.Context, c *kms.Client, arn string) error {
			var err error
			out, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
			return err
		})
		if err == nil {
			members = relatedKeys(out.KeyMetadata, ref)
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l.refreshing = false
	if members != nil {
		l.members, l.fetched = members, p.opts.Now()
	}
}

// relatedKeys returns region -> ARN of a multi-Region key's primary and
// replicas (nil when m says nothing about them). Only the ARNs of ref's key
// (same partition, account and key id) are taken: related multi-Region keys
// share them, and a data key must never be made under any other key.
func relatedKeys(m *types.KeyMetadata, ref KeyRef) map[string]string {
	if m == nil || m.MultiRegionConfiguration == nil {
		return nil
	}
	c := m.MultiRegionConfiguration
	out := map[string]string{}
	add := func(k *types.MultiRegionKey) {
		if k == nil {
			return
		}
		region, arn := aws.ToString(k.Region), aws.ToString(k.Arn)
		if region != "" && arn == ref.arnIn(region) {
			out[region] = arn
		}
	}
	add(c.PrimaryKey)
	for i := range c.ReplicaKeys {
		add(&c.ReplicaKeys[i])
	}
	return out
}

func (p *Provider) GenerateDataKey(ctx context.Context, uri string, ec keys.EncryptionContext) (keys.DataKey, error) {
	var dk keys.DataKey
	// A data key made by a replica unwraps in every region of the key.
	err := p.call(ctx, "GenerateDataKey", uri, true, func(ctx context.Context, c *kms.Client, arn string) error {
		out, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
		if err != nil {
			return err
		}
		if len(out.Plaintext) != keys.DEKSize {
			return fmt.Errorf("KMS returned a %d-byte data key", len(out.Plaintext))
		}
		dk = keys.DataKey{Plaintext: out.Plaintext, Wrapped: out.CiphertextBlob, KeyURI: uri}
		return nil
	})
	return dk, err
}

func (p *Provider) Wrap(ctx context.Context, uri string, dek []byte, ec keys.EncryptionContext) ([]byte, error) {
	var w []byte
	err := p.call(ctx, "Encrypt", uri, true, func(ctx context.Context, c *kms.Client, arn string) error {
		out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: dek, EncryptionContext: ec})
		if err != nil {
			return err
		}
		w = out.CiphertextBlob
		return nil
	})
	return w, err
}

func (p *Provider) Unwrap(ctx context.Context, uri string, wrapped []byte, ec keys.EncryptionContext) ([]byte, error) {
	var dek []byte
	err := p.call(ctx, "Decrypt", uri, true, func(ctx context.Context, c *kms.Client, arn string) error {
		// KeyId pins the key: a ciphertext of another key is IncorrectKeyException.
		out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wrapped, EncryptionContext: ec, KeyId: aws.String(arn)})
		if err != nil {
			return err
		}
		dek = out.Plaintext
		return nil
	})
	return dek, err
}

// Rewrap uses ReEncrypt: the DEK never leaves KMS. ReEncrypt does not fall
// back to a replica region (rewrap is an administrative run: rerun it when
// the region is back); across regions it goes through Unwrap and Wrap, which do.
func (p *Provider) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec keys.EncryptionContext) ([]byte, error) {
	fromRef, err := ParseURI(from)
	if err != nil {
		return nil, err
	}
	toRef, err := ParseURI(to)
	if err != nil {
		return nil, err
	}
	if fromRef.Region != toRef.Region {
		// ReEncrypt runs in the destination region and cannot read another
		// region's ciphertext: go through the DEK.
		dek, err := p.Unwrap(ctx, from, wrapped, ec)
		if err != nil {
			return nil, err
		}
		defer keys.Zero(dek)
		return p.Wrap(ctx, to, dek, ec)
	}
	var w []byte
	err = p.call(ctx, "ReEncrypt", to, false, func(ctx context.Context, c *kms.Client, arn string) error {
		out, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: wrapped, SourceEncryptionContext: ec,
			SourceKeyId: aws.String(fromRef.ARN), DestinationKeyId: aws.String(arn), DestinationEncryptionContext: ec})
		if err != nil {
			return err
		}
		w = out.CiphertextBlob
		return nil
	})
	return w, err
}

// Describe reports the key's state in its own region (no fallback: linking
// validates the key where it lives). KeyState.URI is the key's canonical
// URI: an alias resolved to the ARN of the key it names now, with the URI's
// ?replicas= kept. With DiscoverReplicas, a multi-Region key's related keys
// are recorded on the way.
func (p *Provider) Describe(ctx context.Context, uri string) (keys.KeyState, error) {
	var st keys.KeyState
	ref, err := ParseURI(uri)
	if err != nil {
		return st, err
	}
	var members map[string]string
	err = p.call(ctx, "DescribeKey", uri, false, func(ctx context.Context, c *kms.Client, arn string) error {
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
		if err != nil {
			return err
		}
		m := out.KeyMetadata
		st = keys.KeyState{URI: uri, Provider: Scheme, KeyID: aws.ToString(m.Arn), Enabled: m.Enabled,
			State: string(m.KeyState), Spec: string(m.KeySpec), Region: ref.Region}
		if parsed, err := ParseURI(Scheme + "://" + aws.ToString(m.Arn)); err == nil && strings.HasPrefix(parsed.Resource, "key/") {
			st.Region = parsed.Region
			parsed.Replicas = ref.Replicas
			st.URI = parsed.URI()
			members = relatedKeys(m, parsed)
		}
		return nil
	})
	if err == nil && members != nil {
		if canon, perr := ParseURI(st.URI); perr == nil && p.discovers(canon) {
			p.mu.Lock()
			l := p.replicas[groupKey(canon)]
			if l == nil {
				l = &replicaList{}
				p.replicas[groupKey(canon)] = l
			}
			now := p.opts.Now()
			l.members, l.fetched, l.tried = members, now, now
			p.mu.Unlock()
		}
	}
	if err == nil && st.Region != ref.Region {
		return st, &keys.Error{Op: "describe", KeyURI: uri, Kind: keys.ErrWrongRegion,
			Detail: fmt.Sprintf("the key lives in region %s, not %s", st.Region, ref.Region)}
	}
	return st, err
}

// permission names the IAM action an operation needs.
var permission = map[string]string{
	"GenerateDataKey": "kms:GenerateDataKey", "Decrypt": "kms:Decrypt", "Encrypt": "kms:Encrypt",
	"ReEncrypt": "kms:ReEncrypt*", "DescribeKey": "kms:DescribeKey",
}

// PolicyStatement is the key-policy statement a customer adds so that
// principal can use their key with logstore.
func PolicyStatement(principal string) string {
	return fmt.Sprintf(`{
  "Sid": "Allow logstore to use the key",
  "Effect": "Allow",
  "Principal": { "AWS": "%s" },
  "Action": [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey"
  ],
  "Resource": "*"
}`, principal)
}

// mapError turns SDK errors into keys sentinels.
func (p *Provider) mapError(op, uri string, ref KeyRef, err error) error {
	e := &keys.Error{Op: op, KeyURI: uri, Err: err}
	var (
		disabled *types.DisabledException
		invalid  *types.KMSInvalidStateException
		notFound *types.NotFoundException
		badCT    *types.InvalidCiphertextException
		wrongKey *types.IncorrectKeyException
		unavail  *types.KeyUnavailableException
		depTO    *types.DependencyTimeoutException
		internal *types.KMSInternalException
		limit    *types.LimitExceededException
		usage    *types.InvalidKeyUsageException
		apiErr   smithy.APIError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &disabled):
		e.Kind, e.Detail = keys.ErrKeyDisabled, "the key is disabled in AWS KMS (revoked); enable it to restore access"
	case errors.As(err, &invalid):
		e.Kind, e.Detail = keys.ErrKeyInvalidState, "the key is pending deletion or otherwise unusable; cancel the deletion and enable it to restore access"
	case errors.As(err, &notFound):
		e.Kind, e.Detail = keys.ErrKeyNotFound, "no such key in "+ref.Region+" (deleted, wrong account or region)"
	case errors.As(err, &badCT), errors.As(err, &wrongKey):
		e.Kind, e.Detail = keys.ErrInvalidCiphertext, "KMS rejected the wrapped key: wrong key, wrong encryption context or tampered"
	case errors.As(err, &usage):
		e.Kind, e.Detail = keys.ErrUnsupported, "the key cannot encrypt: logstore needs a symmetric ENCRYPT_DECRYPT key"
	case errors.As(err, &unavail), errors.As(err, &depTO), errors.As(err, &internal):
		e.Kind, e.Detail = keys.ErrUnavailable, "AWS KMS is temporarily unavailable; retry"
	case errors.As(err, &limit):
		e.Kind, e.Detail = keys.ErrThrottled, "AWS KMS request quota exceeded after retries"
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDeniedException":
		perm := permission[op]
		e.Kind = keys.ErrAccessDenied
		e.Detail = fmt.Sprintf("the caller lacks %s on %s. Add this statement to the key policy:\n%s", perm, ref.ARN, PolicyStatement(p.opts.Principal))
	case errors.As(err, &apiErr) && (apiErr.ErrorCode() == "ThrottlingException" || apiErr.ErrorCode() == "TooManyRequestsException"):
		e.Kind, e.Detail = keys.ErrThrottled, "AWS KMS throttled the request after retries"
	case errors.As(err, &apiErr):
		e.Kind, e.Detail = keys.ErrUnavailable, "unexpected KMS error "+apiErr.ErrorCode()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		e.Kind, e.Detail = keys.ErrUnavailable, "AWS KMS in "+ref.Region+" is unreachable"
	default:
		e.Kind, e.Detail = keys.ErrUnavailable, "AWS KMS call failed"
	}
	return e
}
