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
package awskms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
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
}

// Provider implements keys.Provider on AWS KMS.
type Provider struct {
	opts Options

	mu      sync.Mutex // guards clients
	clients map[string]*kms.Client
}

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
	return &Provider{opts: opts, clients: map[string]*kms.Client{}}
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
					if reg = strings.TrimSpace(reg); reg != "" && reg != r.Region {
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

func (p *Provider) client(ctx context.Context, region string) (*kms.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[region]; ok {
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
		})
	}
	c := kms.NewFromConfig(cfg)
	p.clients[region] = c
	return c, nil
}

// call runs f against the key's region and, when that region is unreachable
// and the key lists replicas, against each replica in turn (fallback is for
// network failures only: a key-state error in the primary is final).
func (p *Provider) call(ctx context.Context, op, uri string, fallback bool, f func(ctx context.Context, c *kms.Client, arn string) error) error {
	ref, err := ParseURI(uri)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.CallTimeout)
	defer cancel()
	regions := []string{ref.Region}
	if fallback {
		regions = append(regions, ref.Replicas...)
	}
	var last error
	for i, region := range regions {
		c, err := p.client(ctx, region)
		if err != nil {
			return err
		}
		arn := ref.ARN
		if i > 0 {
			arn = ref.arnIn(region)
		}
		err = f(ctx, c, arn)
		if err == nil {
			return nil
		}
		last = p.mapError(op, uri, ref, err)
		if !errors.Is(last, keys.ErrUnavailable) {
			return last
		}
	}
	return last
}

func (p *Provider) GenerateDataKey(ctx context.Context, uri string, ec keys.EncryptionContext) (keys.DataKey, error) {
	var dk keys.DataKey
	err := p.call(ctx, "GenerateDataKey", uri, false, func(ctx context.Context, c *kms.Client, arn string) error {
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
	err := p.call(ctx, "Encrypt", uri, false, func(ctx context.Context, c *kms.Client, arn string) error {
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

// Rewrap uses ReEncrypt: the DEK never leaves KMS.
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

func (p *Provider) Describe(ctx context.Context, uri string) (keys.KeyState, error) {
	var st keys.KeyState
	ref, err := ParseURI(uri)
	if err != nil {
		return st, err
	}
	err = p.call(ctx, "DescribeKey", uri, false, func(ctx context.Context, c *kms.Client, arn string) error {
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
		if err != nil {
			return err
		}
		m := out.KeyMetadata
		st = keys.KeyState{URI: uri, Provider: Scheme, KeyID: aws.ToString(m.Arn), Enabled: m.Enabled,
			State: string(m.KeyState), Spec: string(m.KeySpec), Region: ref.Region}
		if parsed, err := ParseURI(Scheme + "://" + aws.ToString(m.Arn)); err == nil {
			st.Region = parsed.Region
		}
		return nil
	})
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
