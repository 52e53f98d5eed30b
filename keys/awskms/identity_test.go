package awskms

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/kmstest"
)

// TestDescribeAliasReportsKeyIdentity (finding 15): Describe through an
// alias reports the URI of the key the alias names (its ARN), keeping the
// URI's options; that URI parses, describes to itself, and keeps opening
// what it wrapped after the alias is repointed, which the alias URI does not.
func TestDescribeAliasReportsKeyIdentity(t *testing.T) {
	s := start(t, "us-east-1")
	p := fastProvider(map[string]*kmstest.Server{"us-east-1": s})
	a, b := s.CreateKey(), s.CreateKey()
	require.NoError(t, adminAlias(s, "alias/dbg", a))
	alias := "aws-kms://arn:aws:kms:us-east-1:" + kmstest.Account + ":alias/dbg"

	st, err := p.Describe(bg, alias)
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+a, st.URI)
	require.Equal(t, a, st.KeyID)
	st2, err := p.Describe(bg, st.URI)
	require.NoError(t, err, "the canonical URI is accepted")
	require.Equal(t, st.URI, st2.URI, "and is its own canonical form")

	st, err = p.Describe(bg, alias+"?replicas=us-west-2,us-east-1,us-west-2")
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+a+"?replicas=us-west-2", st.URI, "options kept, normalised")
	ref, err := ParseURI(st.URI)
	require.NoError(t, err)
	require.Equal(t, []string{"us-west-2"}, ref.Replicas)
	require.Equal(t, st.URI, ref.URI())

	ec := keys.SegmentContext("acme", "s")
	dk, err := p.GenerateDataKey(bg, "aws-kms://"+a, ec)
	require.NoError(t, err)
	_, err = adminClient(s).UpdateAlias(bg, &kms.UpdateAliasInput{AliasName: aws.String("alias/dbg"), TargetKeyId: aws.String(b)})
	require.NoError(t, err)
	got, err := p.Unwrap(bg, "aws-kms://"+a, dk.Wrapped, ec)
	require.NoError(t, err, "the key's URI still opens it")
	require.Equal(t, dk.Plaintext, got)
	_, err = p.Unwrap(bg, alias, dk.Wrapped, ec)
	require.ErrorIs(t, err, keys.ErrInvalidCiphertext, "the alias now names another key: why callers must record the key, not the alias")
	st, err = p.Describe(bg, alias)
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+b, st.URI)
}

// TestTestKMSAliases: kmstest's alias operations behave as AWS's.
func TestTestKMSAliases(t *testing.T) {
	s := start(t, "us-east-1")
	c, ctx := adminClient(s), context.Background()
	a, b := s.CreateKey(), s.CreateKey()
	require.NoError(t, adminAlias(s, "alias/x", a))
	require.Error(t, adminAlias(s, "alias/x", b), "CreateAlias refuses an existing alias")
	_, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/missing"), TargetKeyId: aws.String(b)})
	require.Error(t, err, "UpdateAlias refuses a missing alias")
	_, err = c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/x"), TargetKeyId: aws.String(b)})
	require.NoError(t, err)
	out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/x")})
	require.NoError(t, err)
	require.Equal(t, b, aws.ToString(out.KeyMetadata.Arn))
	require.NoError(t, s.UpdateAlias("alias/x", a))
	out, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:us-east-1:" + kmstest.Account + ":alias/x")})
	require.NoError(t, err)
	require.Equal(t, a, aws.ToString(out.KeyMetadata.Arn))
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:eu-west-1:" + kmstest.Account + ":alias/x")})
	require.Error(t, err, "an alias ARN of another region names nothing here")
	_, err = c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/x")})
	require.NoError(t, err)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/x")})
	require.Error(t, err)
}
