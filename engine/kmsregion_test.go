package engine

import (
	"context"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/awskms"
	"github.com/logstore/logstore/keys/kmstest"
	"github.com/logstore/logstore/vfs"
)

// TestKMSRegionDownAppendsContinue (finding 16): a tenant on a multi-Region
// key keeps appending (new segments, new data keys) and reading while the
// key's primary region is down, through a replica discovered from
// DescribeKey; what was written meanwhile reads in the primary region once
// it is back; and a revocation seen in the replica still fails closed.
func TestKMSRegionDownAppendsContinue(t *testing.T) {
	const primaryRegion, replicaRegion = "eu-west-1", "eu-central-1"
	cl, err := kmstest.StartCluster(primaryRegion, replicaRegion)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	primary, replica := cl.Server(primaryRegion), cl.Server(replicaRegion)
	creds := credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", "")
	admin := func(s *kmstest.Server) *kms.Client {
		return kms.NewFromConfig(aws.Config{Region: s.Region, Credentials: creds, BaseEndpoint: aws.String(s.URL())})
	}
	out, err := admin(primary).CreateKey(bg, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	require.NoError(t, err)
	arn := aws.ToString(out.KeyMetadata.Arn)
	_, err = admin(primary).ReplicateKey(bg, &kms.ReplicateKeyInput{KeyId: aws.String(arn), ReplicaRegion: aws.String(replicaRegion)})
	require.NoError(t, err)
	replicaARN := strings.Replace(arn, ":"+primaryRegion+":", ":"+replicaRegion+":", 1)

	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: time.Minute, Now: clk.Now}
	kopts := &awskms.Options{MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond, CallTimeout: 3 * time.Second,
		DiscoverReplicas: true, Now: clk.Now,
		LoadConfig: func(ctx context.Context, region string) (aws.Config, error) {
			cfg := aws.Config{Region: region, Credentials: creds, BaseEndpoint: aws.String("http://127.0.0.1:1")}
			if s := cl.Server(region); s != nil {
				cfg.BaseEndpoint = aws.String(s.URL())
			}
			return cfg, nil
		}}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) {
		o.KMS, o.DEKCache, o.Now, o.RequireLinkedKey = kmsProviders(kopts), &cache, clk.Now, true
	})
	defer db.Close()
	uri := "aws-kms://" + arn // no ?replicas=: the replica is discovered
	_, err = db.Admin().LinkKey(bg, "acme", uri)
	require.NoError(t, err)

	rng := rand.New(rand.NewSource(16))
	var recs []Record
	var ids []ID
	appendN := func(n int) error {
		batch := genRecords(rng, n, t0.Add(time.Duration(len(recs))*time.Second))
		got, err := db.tn("acme").Append(bg, batch)
		if err == nil {
			recs, ids = append(recs, batch...), append(ids, got...)
		}
		return err
	}
	checkAll := func(msg string) {
		t.Helper()
		db.cache.Purge()
		for i, id := range ids {
			got, err := db.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err, msg)
			requireSameRecord(t, recs[i], id, got)
		}
	}
	require.NoError(t, appendN(20))
	before, err := db.Admin().Segments(bg, "acme")
	require.NoError(t, err)

	// The primary region goes down. The DEK cache's max age passes, so the
	// writer must start a new segment with a new data key.
	require.NoError(t, primary.SetDown(true))
	for i := 0; i < 3; i++ {
		clk.Add(time.Minute + time.Second)
		start := time.Now()
		require.NoError(t, appendN(10), "appends keep working while the primary region is down")
		t.Logf("append that started a segment with the primary region down: %v", time.Since(start))
	}
	segs, err := db.Admin().Segments(bg, "acme")
	require.NoError(t, err)
	require.Greater(t, len(segs), len(before), "new segments were started")
	require.Equal(t, 3, replica.Calls("GenerateDataKey"), "their data keys came from the replica")
	for _, s := range segs {
		require.Equal(t, uri, s.KeyURI, "recorded under the key's own URI, not the replica's")
	}
	checkAll("reads while the primary region is down")
	require.Positive(t, replica.Calls("Decrypt"))

	// The primary is back: everything, including the data keys the replica
	// made, unwraps there.
	require.NoError(t, primary.SetDown(false))
	replica.ResetCalls()
	checkAll("reads after the primary region is back")
	require.Zero(t, replica.Calls("Decrypt"), "served by the primary")

	// Fail closed: with the primary down, a replica whose key is disabled
	// (the customer revoked it there) stops writes with a revocation error.
	require.NoError(t, primary.SetDown(true))
	_, err = admin(replica).DisableKey(bg, &kms.DisableKeyInput{KeyId: aws.String(replicaARN)})
	require.NoError(t, err)
	clk.Add(time.Minute + time.Second)
	err = appendN(1)
	require.ErrorIs(t, err, keys.ErrKeyDisabled)
	require.ErrorIs(t, err, keys.ErrKeyUnusable)
	_, err = admin(replica).EnableKey(bg, &kms.EnableKeyInput{KeyId: aws.String(replicaARN)})
	require.NoError(t, err)
	require.NoError(t, appendN(1))
	require.NoError(t, primary.SetDown(false))
	checkAll("at the end")
}
