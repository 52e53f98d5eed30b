package engine

import (
	"math/rand"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/kmstest"
	"github.com/logstore/logstore/vfs"
)

// TestKMSAliasRepointKeepsOldRecords is the regression test of finding 15 of
// the security review (issue 10): a tenant linked through an alias, with the
// alias then pointed at a new key (AWS's documented manual rotation), must
// keep reading its old records and be able to rewrap them. Segments record
// the key the alias named at link time (its ARN), not the alias.
func TestKMSAliasRepointKeepsOldRecords(t *testing.T) {
	env := newKMS(t)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS, o.RequireLinkedKey = kmsProviders(env.kopts), true })
	defer db.Close()
	oldARN, newARN := env.srv.CreateKey(), env.srv.CreateKey()
	_, err := env.admin.CreateAlias(bg, &kms.CreateAliasInput{AliasName: aws.String("alias/dbg"), TargetKeyId: aws.String(oldARN)})
	require.NoError(t, err)
	alias := "aws-kms://arn:aws:kms:us-east-1:" + kmstest.Account + ":alias/dbg"

	st, err := db.Admin().LinkKey(bg, "acme", alias)
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+oldARN, st.URI, "Describe reports the key the alias names")
	linked, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+oldARN, linked, "the binding is the key's identity, not the alias")

	recs := genRecords(rand.New(rand.NewSource(15)), 40, t0)
	ids, err := db.tn("acme").Append(bg, recs[:20])
	require.NoError(t, err)
	require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	more, err := db.tn("acme").Append(bg, recs[20:])
	require.NoError(t, err)
	ids = append(ids, more...)
	requireSegmentKeys(t, db, "acme", "aws-kms://"+oldARN)

	// Manual rotation: the alias now names the new key.
	_, err = env.admin.UpdateAlias(bg, &kms.UpdateAliasInput{AliasName: aws.String("alias/dbg"), TargetKeyId: aws.String(newARN)})
	require.NoError(t, err)
	checkAll := func(msg string) {
		t.Helper()
		db.cache.Purge() // every read goes to KMS
		for i, id := range ids {
			got, err := db.tn("acme").Get(bg, id, PartAll)
			require.NoError(t, err, msg)
			requireSameRecord(t, recs[i], id, got)
		}
	}
	checkAll("old records after the alias was repointed")

	// Appends keep using the linked key (its identity) until a new link.
	later := genRecords(rand.New(rand.NewSource(16)), 5, t0.Add(1e9))
	laterIDs, err := db.tn("acme").Append(bg, later)
	require.NoError(t, err)
	recs, ids = append(recs, later...), append(ids, laterIDs...)
	requireSegmentKeys(t, db, "acme", "aws-kms://"+oldARN)

	// Rewrap to the alias: moves every segment to the key it names now.
	env.srv.ResetCalls()
	rep, err := db.Admin().Rewrap(bg, "acme", alias, nil)
	require.NoError(t, err)
	require.Equal(t, rep.Segments, rep.Rewrapped)
	require.Positive(t, env.srv.Calls("ReEncrypt"))
	linked, err = db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+newARN, linked)
	requireSegmentKeys(t, db, "acme", "aws-kms://"+newARN)
	env.srv.DeleteNow(oldARN) // the old key may go once the rewrap completed
	checkAll("after rewrap to the repointed alias and deleting the old key")

	// New segments are wrapped under the new key's ARN.
	require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	newest := genRecords(rand.New(rand.NewSource(17)), 3, t0.Add(2e9))
	newestIDs, err := db.tn("acme").Append(bg, newest)
	require.NoError(t, err)
	recs, ids = append(recs, newest...), append(ids, newestIDs...)
	requireSegmentKeys(t, db, "acme", "aws-kms://"+newARN)
	checkAll("after appending under the new key")
	// A rewrap to the same key, named by ARN this time, has nothing to do.
	rep, err = db.Admin().Rewrap(bg, "acme", "aws-kms://"+newARN, nil)
	require.NoError(t, err)
	require.Equal(t, rep.Segments, rep.Skipped)
}

// TestKMSLinkKeepsURIOptions: the canonical URI of an alias keeps the
// options of the URI it came from (here the explicit replica list).
func TestKMSLinkKeepsURIOptions(t *testing.T) {
	env := newKMS(t)
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS = kmsProviders(env.kopts) })
	defer db.Close()
	arn := env.srv.CreateKey()
	_, err := env.admin.CreateAlias(bg, &kms.CreateAliasInput{AliasName: aws.String("alias/dbg"), TargetKeyId: aws.String(arn)})
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "acme", "aws-kms://arn:aws:kms:us-east-1:"+kmstest.Account+":alias/dbg?replicas=us-west-2")
	require.NoError(t, err)
	linked, err := db.Admin().KeyURI(bg, "acme")
	require.NoError(t, err)
	require.Equal(t, "aws-kms://"+arn+"?replicas=us-west-2", linked)
	cfg, err := db.config("acme")
	require.NoError(t, err)
	require.Equal(t, "aws-kms://arn:aws:kms:us-east-1:"+kmstest.Account+":alias/dbg?replicas=us-west-2", cfg.KeyAlias, "the alias stays as a display name")
	// Local keys are their own canonical form.
	_, err = db.Admin().LinkKey(bg, "beta", keys.LocalURI("beta"))
	require.NoError(t, err)
	linked, err = db.Admin().KeyURI(bg, "beta")
	require.NoError(t, err)
	require.Equal(t, keys.LocalURI("beta"), linked)
}

// requireSegmentKeys checks that every segment of tenant is wrapped under uri,
// in the index and in the segment file's active key slot.
func requireSegmentKeys(t *testing.T, db *testDB, tenant, uri string) {
	t.Helper()
	segs, err := db.Admin().Segments(bg, tenant)
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	for _, s := range segs {
		require.Equal(t, uri, s.KeyURI, "segment %s in the index", s.ID)
		r := openSegment(t, db.DB, tenant, s)
		require.Equal(t, uri, r.Header().Slot.KeyURI, "segment %s key slot", s.ID)
		require.NoError(t, r.Close())
	}
}
