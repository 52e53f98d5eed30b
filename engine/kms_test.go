package engine

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"sync/atomic"
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

type kmsEnv struct {
	srv   *kmstest.Server
	admin *kms.Client
	kopts *awskms.Options
}

func newKMS(t testing.TB) *kmsEnv {
	s, err := kmstest.Start("us-east-1")
	require.NoError(t, err)
	t.Cleanup(s.Close)
	creds := credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", "")
	load := func(ctx context.Context, region string) (aws.Config, error) {
		return aws.Config{Region: region, Credentials: creds, BaseEndpoint: aws.String(s.URL())}, nil
	}
	return &kmsEnv{srv: s, admin: kms.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(s.URL())}),
		kopts: &awskms.Options{LoadConfig: load, MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond, CallTimeout: 3 * time.Second}}
}

func (k *kmsEnv) newKey(t testing.TB) string { return "aws-kms://" + k.srv.CreateKey() }

func keyID(uri string) *string { return aws.String(strings.TrimPrefix(uri, "aws-kms://")) }

func TestKMSRevocationRotationAndCalls(t *testing.T) {
	env := newKMS(t)
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: 5 * time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) {
		o.KMS, o.DEKCache, o.Now, o.RequireLinkedKey = kmsProviders(env.kopts), &cache, clk.Now, true
	})
	defer db.Close()
	uri := env.newKey(t)
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 1, t0))
	require.ErrorIs(t, err, ErrNoKey)
	require.Contains(t, err.Error(), "keys link")
	_, err = db.Admin().LinkKey(bg, "acme", uri)
	require.NoError(t, err)
	linkCalls, linkDecrypts := env.srv.Calls("GenerateDataKey"), env.srv.Calls("Decrypt")

	// 10,000 records written then read: one GenerateDataKey per segment and
	// one Decrypt per segment per cache max age.
	recs := genRecords(rand.New(rand.NewSource(2)), 10_000, t0)
	var ids []ID
	for i := 0; i < len(recs); i += 1000 {
		got, err := db.tn("acme").Append(bg, recs[i:i+1000])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	for _, id := range ids {
		_, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
	}
	segs, err := db.Admin().Segments(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, len(segs), env.srv.Calls("GenerateDataKey")-linkCalls, "exactly one GenerateDataKey per segment")
	require.Equal(t, linkDecrypts, env.srv.Calls("Decrypt"), "the DEK of a segment written here is cached")
	t.Logf("KMS calls for 10,000 records written and read: %v over %d segment(s)", env.srv.TotalCalls(), len(segs))

	// Revoke: reads keep working until the max age, then fail closed.
	_, err = env.admin.DisableKey(bg, &kms.DisableKeyInput{KeyId: keyID(uri)})
	require.NoError(t, err)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err, "served from cache within the max age")
	clk.Add(5*time.Minute + time.Second)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, keys.ErrKeyDisabled)
	_, err = db.tn("acme").Append(bg, recs[:1])
	require.ErrorIs(t, err, keys.ErrKeyUnusable, "no new segment under a revoked key")
	m, err := db.tn("acme").GetMeta(bg, ids[0])
	require.NoError(t, err, "metadata stays queryable")
	require.Equal(t, recs[0].Status, m.Status)
	n, err := db.tn("acme").Count(bg, ScanOptions{})
	require.NoError(t, err)
	require.Equal(t, 10_000, n)

	// Re-enable: everything works again.
	_, err = env.admin.EnableKey(bg, &kms.EnableKeyInput{KeyId: keyID(uri)})
	require.NoError(t, err)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err)

	// Backing-key rotation: old segments still decrypt, new ones are written.
	_, err = env.admin.RotateKeyOnDemand(bg, &kms.RotateKeyOnDemandInput{KeyId: keyID(uri)})
	require.NoError(t, err)
	db.cache.Purge()
	newIDs, err := db.tn("acme").Append(bg, recs[:10])
	require.NoError(t, err)
	for _, id := range []ID{ids[0], ids[9999], newIDs[0]} {
		_, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err)
	}

	// Pending deletion: invalid state.
	_, err = env.admin.ScheduleKeyDeletion(bg, &kms.ScheduleKeyDeletionInput{KeyId: keyID(uri), PendingWindowInDays: aws.Int32(7)})
	require.NoError(t, err)
	db.cache.Purge()
	_, err = db.tn("acme").Get(bg, ids[1], PartLog)
	require.ErrorIs(t, err, keys.ErrKeyInvalidState)

	// The audit trail holds one entry per KMS call.
	evs, err := db.Admin().Audit(bg, "", time.Time{})
	require.NoError(t, err)
	total := 0
	for _, op := range []string{"GenerateDataKey", "Decrypt", "Encrypt", "ReEncrypt", "DescribeKey"} {
		total += env.srv.Calls(op) // the engine's calls; the test's admin calls are not audited
	}
	kmsEvents := 0
	for _, e := range evs {
		if strings.HasPrefix(e.KeyURI, "aws-kms://") {
			kmsEvents++
		}
	}
	require.Equal(t, total, kmsEvents)
}

func TestKMSDownFailsWritesClosedAndServesCachedReads(t *testing.T) {
	env := newKMS(t)
	clk := &fakeClock{now: t0}
	cache := keys.CacheOptions{MaxAge: time.Minute, Now: clk.Now}
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS, o.DEKCache, o.Now = kmsProviders(env.kopts), &cache, clk.Now })
	defer db.Close()
	uri := env.newKey(t)
	_, err := db.Admin().LinkKey(bg, "acme", uri)
	require.NoError(t, err)
	ids, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(3)), 20, t0))
	require.NoError(t, err)
	require.NoError(t, env.srv.SetDown(true))
	defer env.srv.SetDown(false)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.NoError(t, err, "cached DEK serves reads while KMS is down")
	clk.Add(time.Minute + time.Second)
	_, err = db.tn("acme").Get(bg, ids[0], PartAll)
	require.ErrorIs(t, err, keys.ErrUnavailable, "not beyond the max age")
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 1, t0))
	require.ErrorIs(t, err, keys.ErrUnavailable)
	require.True(t, keys.IsRetryable(err), "writes fail closed with a retryable error")
	require.NoError(t, env.srv.SetDown(false))
	_, err = db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(4)), 1, t0))
	require.NoError(t, err)
}

// TestRewrapAcrossProvidersWithCrashes moves local -> KMS -> KMS -> local,
// crashing (an injected fsync failure) after each segment on the first pass,
// then deletes the old keys: everything still decrypts.
func TestRewrapAcrossProvidersWithCrashes(t *testing.T) {
	env := newKMS(t)
	mem := vfs.NewMem()
	var syncs atomic.Int64
	var failAt atomic.Int64
	efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
		if op == vfs.OpSync && strings.HasSuffix(name, ".lss") && failAt.Load() > 0 && syncs.Add(1) == failAt.Load() {
			return vfs.ErrIO
		}
		return nil
	})
	indexDir := t.TempDir()
	db := openTest(t, efs, "/db", func(o *Options) { o.KMS, o.IndexDir = kmsProviders(env.kopts), indexDir })
	defer db.Close()
	recs := genRecords(rand.New(rand.NewSource(5)), 120, t0)
	var ids []ID
	for i := 0; i < len(recs); i += 30 {
		got, err := db.tn("acme").Append(bg, recs[i:i+30])
		require.NoError(t, err)
		ids = append(ids, got...)
		require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	}
	checkAll := func(msg string) {
		db.cache.Purge()
		for i, id := range ids {
			got, err := db.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err, msg)
			requireSameRecord(t, recs[i], id, got)
		}
	}
	k1, k2 := env.newKey(t), env.newKey(t)
	for _, to := range []string{k1, k2, keys.LocalURI("acme-next")} {
		// Fail the n-th slot fsync until the rewrap gets through: each failure
		// leaves every segment readable under the old or the new key.
		for n := int64(1); ; n++ {
			syncs.Store(0)
			failAt.Store(n)
			_, err := db.Admin().Rewrap(bg, "acme", to, nil)
			failAt.Store(0)
			checkAll("after an interrupted rewrap")
			if err == nil {
				break
			}
			require.ErrorIs(t, err, vfs.ErrIO)
		}
		checkAll("after rewrap to " + to)
	}
	require.Positive(t, env.srv.Calls("ReEncrypt"), "KMS -> KMS uses ReEncrypt")
	env.srv.DeleteNow(*keyID(k1))
	env.srv.DeleteNow(*keyID(k2))
	require.NoError(t, db.local.Destroy(keys.LocalURI("acme")))
	checkAll("after the old keys were deleted")
}

func TestKMSWrongTenantContextRejected(t *testing.T) {
	env := newKMS(t)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS = kmsProviders(env.kopts) })
	defer db.Close()
	uri := env.newKey(t)
	for _, tenant := range []string{"acme", "beta"} {
		_, err := db.Admin().LinkKey(bg, tenant, uri)
		require.NoError(t, err)
		_, err = db.tn(tenant).Append(bg, genRecords(rand.New(rand.NewSource(6)), 3, t0))
		require.NoError(t, err)
	}
	segs, err := db.Admin().Segments(bg, "beta")
	require.NoError(t, err)
	r := openSegment(t, db.DB, "beta", segs[0])
	h := r.Header()
	require.NoError(t, r.Close())
	_, err = db.cache.Provider().Unwrap(bg, uri, h.Slot.Wrapped, keys.SegmentContext("acme", segs[0].ID))
	require.ErrorIs(t, err, keys.ErrInvalidCiphertext, "beta's DEK does not unwrap under acme's context, even with a shared key")
	require.False(t, errors.Is(err, keys.ErrKeyUnusable))
}

func TestLinkKeyRejectsUnusableKMSKeys(t *testing.T) {
	env := newKMS(t)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS = kmsProviders(env.kopts) })
	defer db.Close()
	uri := env.newKey(t)
	_, err := env.admin.DisableKey(bg, &kms.DisableKeyInput{KeyId: keyID(uri)})
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "acme", uri)
	require.ErrorIs(t, err, ErrKeyValidation)
	require.Contains(t, err.Error(), "Disabled")
	out, err := env.admin.CreateKey(bg, &kms.CreateKeyInput{KeySpec: "RSA_2048"})
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "acme", "aws-kms://"+aws.ToString(out.KeyMetadata.Arn))
	require.ErrorIs(t, err, ErrKeyValidation)
	require.Contains(t, err.Error(), "SYMMETRIC_DEFAULT")
	env.srv.Deny("GenerateDataKey", true)
	good := env.newKey(t)
	_, err = db.Admin().LinkKey(bg, "acme", good)
	require.ErrorIs(t, err, keys.ErrAccessDenied)
	require.Contains(t, err.Error(), "kms:GenerateDataKey")
	env.srv.Deny("GenerateDataKey", false)
	wrongRegion := strings.Replace(good, "us-east-1", "eu-west-1", 1)
	_, err = db.Admin().LinkKey(bg, "acme", wrongRegion)
	require.Error(t, err)
	uriNow, _ := db.Admin().KeyURI(bg, "acme")
	require.Empty(t, uriNow, "failed validations change nothing")
	_, err = db.Admin().LinkKey(bg, "acme", good)
	require.NoError(t, err)
}

// kmsProviders is the application's composition of AWS KMS, as the CLI does it.
func kmsProviders(o *awskms.Options) []keys.Provider { return []keys.Provider{awskms.New(*o)} }
