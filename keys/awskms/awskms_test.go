package awskms

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/kmstest"
)

var bg = context.Background()

// endpoints returns a LoadConfig that points each region at its server,
// through the real SDK client over HTTP on 127.0.0.1.
func endpoints(servers map[string]*kmstest.Server) func(context.Context, string) (aws.Config, error) {
	return func(ctx context.Context, region string) (aws.Config, error) {
		cfg := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", "")}
		if s, ok := servers[region]; ok {
			cfg.BaseEndpoint = aws.String(s.URL())
		} else {
			cfg.BaseEndpoint = aws.String("http://127.0.0.1:1") // nothing listens there
		}
		return cfg, nil
	}
}

func start(t *testing.T, region string) *kmstest.Server {
	s, err := kmstest.Start(region)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func fastProvider(servers map[string]*kmstest.Server) *Provider {
	return New(Options{LoadConfig: endpoints(servers), MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond, CallTimeout: 5 * time.Second,
		Principal: "arn:aws:iam::444455556666:role/debugger"})
}

func TestStandardChainAndRoundTrip(t *testing.T) {
	s := start(t, "us-east-1")
	// Only standard variables: the default LoadConfig reads them.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_ENDPOINT_URL_KMS", s.URL())
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	p := New(Options{})
	uri := "aws-kms://" + s.CreateKey()
	ec := keys.SegmentContext("acme", "seg-1")
	dk, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)
	require.Len(t, dk.Plaintext, 32)
	got, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
	st, err := p.Describe(bg, uri)
	require.NoError(t, err)
	require.True(t, st.Enabled)
	require.Equal(t, "SYMMETRIC_DEFAULT", st.Spec)
	require.Equal(t, "us-east-1", st.Region)
	require.Equal(t, 1, s.Calls("GenerateDataKey"))
	require.Equal(t, 1, s.Calls("Decrypt"))
}

func TestParseURI(t *testing.T) {
	r, err := ParseURI("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/mrk-1234?replicas=us-east-1,eu-west-1")
	require.NoError(t, err)
	require.Equal(t, "eu-west-1", r.Region)
	require.Equal(t, []string{"us-east-1"}, r.Replicas)
	require.Equal(t, "arn:aws:kms:us-east-1:111122223333:key/mrk-1234", r.arnIn("us-east-1"))
	_, err = ParseURI("aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/debugger")
	require.NoError(t, err)
	for _, bad := range []string{"aws-kms://", "aws-kms://arn:aws:s3:::bucket", "aws-kms://arn:aws:kms:eu-west-1:1:key/x",
		"aws-kms://arn:aws:kms:eu-west-1:111122223333:user/x", "local://x", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/x?foo=1"} {
		_, err := ParseURI(bad)
		require.ErrorIs(t, err, keys.ErrBadURI, bad)
	}
}

func TestErrorSemantics(t *testing.T) {
	s := start(t, "us-east-1")
	p := fastProvider(map[string]*kmstest.Server{"us-east-1": s})
	uri := "aws-kms://" + s.CreateKey()
	ec := keys.SegmentContext("acme", "seg-1")
	dk, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)

	t.Run("wrong context", func(t *testing.T) {
		_, err := p.Unwrap(bg, uri, dk.Wrapped, keys.SegmentContext("globex", "seg-1"))
		require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
		require.False(t, keys.IsRetryable(err))
	})
	t.Run("tampered", func(t *testing.T) {
		bad := bytes.Clone(dk.Wrapped)
		bad[len(bad)-1] ^= 1
		_, err := p.Unwrap(bg, uri, bad, ec)
		require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
	})
	t.Run("wrong key", func(t *testing.T) {
		other := "aws-kms://" + s.CreateKey()
		_, err := p.Unwrap(bg, other, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrInvalidCiphertext, "IncorrectKeyException")
	})
	t.Run("not found", func(t *testing.T) {
		_, err := p.GenerateDataKey(bg, "aws-kms://arn:aws:kms:us-east-1:111122223333:key/nope", ec)
		require.ErrorIs(t, err, keys.ErrKeyNotFound)
		require.ErrorIs(t, err, keys.ErrKeyUnusable)
	})
	t.Run("access denied names the permission and the policy", func(t *testing.T) {
		s.Deny("Decrypt", true)
		defer s.Deny("Decrypt", false)
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrAccessDenied)
		require.ErrorIs(t, err, keys.ErrKeyUnusable)
		require.Contains(t, err.Error(), "kms:Decrypt")
		require.Contains(t, err.Error(), `"AWS": "arn:aws:iam::444455556666:role/debugger"`)
		require.Contains(t, err.Error(), `"kms:GenerateDataKey*"`)
	})
	t.Run("throttled, retried, then its own error", func(t *testing.T) {
		s.Throttle(1)
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, err, "one throttle is absorbed by the retry")
		s.Throttle(100)
		defer s.Throttle(0)
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrThrottled)
		require.True(t, keys.IsRetryable(err))
	})
	t.Run("disabled, then enabled", func(t *testing.T) {
		id := strings.TrimPrefix(uri, "aws-kms://")
		call(t, s, "DisableKey", id)
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled)
		require.ErrorIs(t, err, keys.ErrKeyUnusable)
		_, err = p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled)
		call(t, s, "EnableKey", id)
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, err)
	})
	t.Run("pending deletion", func(t *testing.T) {
		id := strings.TrimPrefix(uri, "aws-kms://")
		call(t, s, "ScheduleKeyDeletion", id)
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrKeyInvalidState)
		call(t, s, "CancelKeyDeletion", id)
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled, "a cancelled deletion leaves the key disabled, as in AWS")
		call(t, s, "EnableKey", id)
	})
	t.Run("unreachable is retryable", func(t *testing.T) {
		require.NoError(t, s.SetDown(true))
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, s.SetDown(false))
		require.ErrorIs(t, err, keys.ErrUnavailable)
		require.True(t, keys.IsRetryable(err))
		require.False(t, errors.Is(err, keys.ErrKeyUnusable))
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, err)
	})
}

// call invokes an admin operation through the real SDK.
func call(t *testing.T, s *kmstest.Server, op, keyID string) {
	t.Helper()
	require.NoError(t, adminCall(s, op, keyID))
}

func TestRotationKeepsOldCiphertexts(t *testing.T) {
	s := start(t, "us-east-1")
	p := fastProvider(map[string]*kmstest.Server{"us-east-1": s})
	uri := "aws-kms://" + s.CreateKey()
	ec := keys.SegmentContext("acme", "s")
	old, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)
	require.NoError(t, adminCall(s, "RotateKeyOnDemand", strings.TrimPrefix(uri, "aws-kms://")))
	fresh, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)
	for _, dk := range []keys.DataKey{old, fresh} {
		got, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, err)
		require.Equal(t, dk.Plaintext, got)
	}
}

func TestMultiRegionFallback(t *testing.T) {
	primary := start(t, "eu-west-1")
	replica := start(t, "eu-central-1")
	arn := primary.CreateKeyWithID("mrk-0123456789abcdef0123456789abcdef", nil)
	replica.CreateKeyWithID("mrk-0123456789abcdef0123456789abcdef", primary.KeyMaterial("mrk-0123456789abcdef0123456789abcdef"))
	p := fastProvider(map[string]*kmstest.Server{"eu-west-1": primary, "eu-central-1": replica})
	uri := "aws-kms://" + arn + "?replicas=eu-central-1"
	ec := keys.SegmentContext("acme", "s")
	dk, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)
	require.NoError(t, primary.SetDown(true))
	got, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
	require.NoError(t, err, "the replica region decrypts when the primary is unreachable")
	require.Equal(t, dk.Plaintext, got)
	require.Equal(t, 1, replica.Calls("Decrypt"))
	// A key-state error in the primary does not fall back.
	require.NoError(t, primary.SetDown(false))
	require.NoError(t, adminCall(primary, "DisableKey", arn))
	_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
	require.ErrorIs(t, err, keys.ErrKeyDisabled)
	require.Equal(t, 1, replica.Calls("Decrypt"))
}

func TestAliasAndRewrap(t *testing.T) {
	s := start(t, "us-east-1")
	p := fastProvider(map[string]*kmstest.Server{"us-east-1": s})
	a := s.CreateKey()
	b := s.CreateKey()
	require.NoError(t, adminAlias(s, "alias/debugger", a))
	alias := "aws-kms://arn:aws:kms:us-east-1:111122223333:alias/debugger"
	ec := keys.SegmentContext("acme", "s")
	dk, err := p.GenerateDataKey(bg, alias, ec)
	require.NoError(t, err)
	w2, err := p.Rewrap(bg, alias, dk.Wrapped, "aws-kms://"+b, ec)
	require.NoError(t, err)
	require.Equal(t, 1, s.Calls("ReEncrypt"))
	s.DeleteNow(a)
	got, err := p.Unwrap(bg, "aws-kms://"+b, w2, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
	_, err = p.Describe(bg, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/"+strings.TrimPrefix(b, "arn:aws:kms:us-east-1:111122223333:key/"))
	require.Error(t, err)
}
