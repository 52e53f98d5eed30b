package engine

import (
	"context"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/testenv"
	"github.com/logstore/logstore/redact"
	"github.com/logstore/logstore/vfs"
)

// Secrets of secretRecord; none may reach the disk under the default policy.
var testSecrets = []string{
	"s3cr3t-bearer-token-9f8e7d", // Authorization: Bearer
	"4111111111111111",           // card number in the body
	"AKIAIOSFODNN7EXAMPLE",       // API key in a query string
	"hunter2-password",           // password field of a JSON body
	"5500000000000004",           // card number in an attribute
	"Basic dXNlcjpwYXNzd29yZA==", // Authorization header (rule)
}

func secretRecord() Record {
	return Record{
		Meta: Meta{Time: t0, SessionID: "sess-1", Method: "POST", Host: "api.example.com", Status: 201, LatencyMs: 12.5},
		Path: "/v1/pay", Query: "aws=AKIAIOSFODNN7EXAMPLE&page=2",
		RequestHeaders: []Header{{"Authorization", "Bearer s3cr3t-bearer-token-9f8e7d"}, {"Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZA=="},
			{"accept", "application/json"}},
		Attributes: map[string]string{"note": "paid with 5500000000000004", "region": "eu"},
		Payload: &Payload{RequestContentType: "application/json",
			RequestBody:  []byte(`{"card": {"pan": "4111111111111111", "exp": "12/30"}, "user": {"password": "hunter2-password"}}`),
			ResponseBody: []byte(`ok`)},
	}
}

func TestRedactionDefaultPolicy(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	ctx := context.Background()
	in := secretRecord()
	before := secretRecord()
	ids, err := db.tn("acme").Append(ctx, []Record{in})
	require.NoError(t, err)
	require.Equal(t, before, in, "Append does not modify the caller's record")
	got, err := db.tn("acme").Get(ctx, ids[0], PartAll)
	require.NoError(t, err)
	require.Equal(t, "aws=[REDACTED]&page=2", got.Query)
	require.Equal(t, []Header{{"Authorization", "[REDACTED]"}, {"Proxy-Authorization", "[REDACTED]"}, {"accept", "application/json"}}, got.RequestHeaders)
	require.Equal(t, "paid with ************0004", got.Attributes["note"])
	require.JSONEq(t, `{"card": {"pan": "************1111", "exp": "12/30"}, "user": {"password": "[REDACTED]"}}`, string(got.Payload.RequestBody))
	require.Empty(t, got.Originals, "the default policy masks: no original is kept")
	require.EqualValues(t, 6, mustStats(t, db.DB).RedactedValues)
	p, err := db.Admin().Redaction(ctx, "acme")
	require.NoError(t, err)
	require.False(t, p.Own)
	require.Equal(t, redact.Default(), p.Policy)
}

// TestRedactionLeakScan stores records on a store that neither compresses
// nor encrypts (the benchmark baseline), so that every byte a record
// leaves is readable on disk, and scans every file for the secrets: none
// may be there, in segments, journals, summaries, the index or the
// manifest. The same scan of a store without redaction finds them, which
// proves the scan can fail.
func TestRedactionLeakScan(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy *redact.Policy
		leaks  bool
	}{{"default", nil, false}, {"none", redact.None(), true}} {
		t.Run("policy="+c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openTest(t, vfs.Default, dir, func(o *Options) {
				o.Plaintext, o.Compression, o.Redaction = true, "none", c.policy
			})
			recs := genRecords(rand.New(rand.NewSource(1)), 300, t0)
			for i := 0; i < 3; i++ {
				recs = append(recs, secretRecord())
			}
			appendSealed(t, db, "acme", recs, len(recs))
			_, err := db.tn("acme").Append(context.Background(), []Record{secretRecord()}) // one left in the journal
			require.NoError(t, err)
			require.NoError(t, db.Close())
			hits := testenv.FilesContaining(t, dir, testSecrets...)
			if c.leaks {
				require.NotEmpty(t, hits, "without redaction the secrets are on disk: the scan works")
				return
			}
			require.Empty(t, hits)
		})
	}
}

func TestRedactionTenantPolicySealsOriginals(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	ctx := context.Background()
	p := redact.Default()
	p.Headers[0].Action = redact.Seal // authorization
	p.Detectors.CardNumber = redact.Seal
	p.BodyFields = append(p.BodyFields, redact.Rule{Name: "$.card.exp", Action: redact.Drop})
	require.NoError(t, db.Admin().SetRedaction(ctx, "acme", p))
	p.Detectors.CardNumber = redact.Drop // the stored policy is a copy
	ids, err := db.tn("acme").Append(ctx, []Record{secretRecord()})
	require.NoError(t, err)
	other, err := db.tn("other").Append(ctx, []Record{secretRecord()})
	require.NoError(t, err)
	check := func(db *testDB) {
		got, err := db.tn("acme").Get(ctx, ids[0], PartAll)
		require.NoError(t, err)
		require.Equal(t, "[REDACTED]", got.RequestHeaders[0].Value)
		require.JSONEq(t, `{"card": {"pan": "************1111", "exp": null}, "user": {"password": "[REDACTED]"}}`, string(got.Payload.RequestBody))
		require.Equal(t, []Original{
			{Where: "request_header:Authorization", Value: "Bearer s3cr3t-bearer-token-9f8e7d"},
			{Where: "attribute:note", Value: "5500000000000004"},
			{Where: "request_body:$.card.pan", Value: "4111111111111111"},
		}, got.Originals)
		rp, err := db.Admin().Redaction(ctx, "acme")
		require.NoError(t, err)
		require.True(t, rp.Own)
		require.Equal(t, redact.Seal, rp.Policy.Detectors.CardNumber)
		o, err := db.tn("other").Get(ctx, other[0], PartAll)
		require.NoError(t, err)
		require.Empty(t, o.Originals, "another tenant keeps the default")
	}
	check(db)
	require.NoError(t, db.Close())
	ro := openTest(t, vfs.Default, dir, func(o *Options) { o.ReadOnly = true })
	check(ro)
	require.NoError(t, ro.Close())
	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	check(db) // kept in the manifest across reopen
	require.NoError(t, db.Admin().SetRedaction(ctx, "acme", nil))
	rp, err := db.Admin().Redaction(ctx, "acme")
	require.NoError(t, err)
	require.False(t, rp.Own)
	err = db.Admin().SetRedaction(ctx, "acme", &redact.Policy{Version: 1, Headers: []redact.Rule{{Name: "a", Action: "hide"}}})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorIs(t, err, redact.ErrInvalidPolicy)
	_, err = Open(t.TempDir(), &Options{Redaction: &redact.Policy{Version: 9}})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorIs(t, err, redact.ErrUnknownVersion)
}

func TestSealedLogV2RoundTrip(t *testing.T) {
	r := secretRecord()
	v1 := appendSealedLog(nil, &r)
	require.Equal(t, byte(encodingV1), v1[0], "records without originals keep version 1")
	r.Originals = []Original{{Where: "request_header:Authorization", Value: "Bearer x"}, {Where: "path", Value: ""}}
	v2 := appendSealedLog(nil, &r)
	require.Equal(t, byte(sealedLogV2), v2[0])
	require.Equal(t, v1[1:], v2[1:len(v1)], "version 2 is version 1 plus the originals")
	var got Record
	require.NoError(t, decodeSealedLog(v2, &got))
	require.Equal(t, r.Originals, got.Originals)
	require.Equal(t, r.RequestHeaders, got.RequestHeaders)
	bad := append(append([]byte{}, v1...), 0) // version 1 with a trailing byte
	require.ErrorIs(t, decodeSealedLog(bad, &got), ErrCorrupt)
	empty := append([]byte{sealedLogV2}, v1[1:]...)
	require.ErrorIs(t, decodeSealedLog(append(empty, 0), &got), ErrCorrupt, "version 2 with no originals")
	require.ErrorIs(t, decodeSealedLog(append([]byte{3}, v1[1:]...), &got), ErrUnknownVersion)
}

func mustStats(t *testing.T, db *DB) Stats {
	t.Helper()
	s, err := db.Stats(context.Background())
	require.NoError(t, err)
	return s
}
