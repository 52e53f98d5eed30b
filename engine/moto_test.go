package engine

import (
	"context"
	"math/rand"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/keys/awskms"
	"github.com/logstore/logstore/vfs"
)

// startMoto runs moto_server (a KMS implementation nobody here wrote) on a
// free port of 127.0.0.1, stopped by PID when the test ends; the test skips,
// saying why, where moto_server is not installed.
func startMoto(t *testing.T) string { return s3test.StartMoto(t).URL }

func TestMotoSmoke(t *testing.T) {
	url := startMoto(t)
	creds := credentials.NewStaticCredentialsProvider("testing", "testing", "")
	load := func(ctx context.Context, region string) (aws.Config, error) {
		return aws.Config{Region: region, Credentials: creds, BaseEndpoint: aws.String(url)}, nil
	}
	admin := kms.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(url)})
	mk := func() string {
		out, err := admin.CreateKey(bg, &kms.CreateKeyInput{Description: aws.String("logstore smoke test")})
		require.NoError(t, err)
		return "aws-kms://" + aws.ToString(out.KeyMetadata.Arn)
	}
	k1, k2 := mk(), mk()
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) {
		o.KMS = kmsProviders(&awskms.Options{LoadConfig: load, MaxAttempts: 2, CallTimeout: 10 * time.Second})
	})
	defer db.Close()
	_, err := db.Admin().LinkKey(bg, "acme", k1)
	require.NoError(t, err)
	recs := genRecords(rand.New(rand.NewSource(1)), 50, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	db.cache.Purge()
	got, err := db.tn("acme").Get(bg, ids[7], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[7], ids[7], got)
	rep, err := db.Admin().Rewrap(bg, "acme", k2, nil)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Rewrapped)
	db.cache.Purge()
	got, err = db.tn("acme").Get(bg, ids[7], PartAll)
	require.NoError(t, err)
	requireSameRecord(t, recs[7], ids[7], got)
}
