package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/logstore/logstore/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/redact"
)

// shared is where the team's real-world captures live (../shared/testdata
// beside the module root); needShared says whether a test may use them.
var shared = testenv.Path()

// needShared checks that the captures are there: ../shared/testdata, or
// outside CI the repository's copy, testdata/shared (testenv).
func needShared(t testing.TB) {
	t.Helper()
	testenv.SharedTestdata(t)
}

type sink struct{ recs []engine.Record }

func (s *sink) Append(_ context.Context, recs []engine.Record) ([]engine.ID, error) {
	for _, r := range recs {
		s.recs = append(s.recs, r)
	}
	return make([]engine.ID, len(recs)), nil
}

func ingestFile(t *testing.T, path string, o Options) (*sink, Result, error) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	s := &sink{}
	res, err := Ingest(context.Background(), s, path, f, o)
	return s, res, err
}

func TestBadInputsNameThePlace(t *testing.T) {
	needShared(t)
	cases := map[string]struct {
		where  string
		stored int
	}{
		"bad-line.jsonl":      {"bad-line.jsonl:4:", 3},
		"bad-status.har":      {"HAR entry 2:", 2},
		"bad-time.har":        {"HAR entry 0: startedDateTime", 0},
		"missing-request.har": {"HAR entry 1: entry has no request", 1},
		"truncated.har":       {"unexpected end of file", 1},
		"brokenfile.har":      {"brokenfile.har", 0},
		"binary-junk.log":     {"unrecognised input format", 0},
	}
	for name, c := range cases {
		s, res, err := ingestFile(t, filepath.Join(shared, "har-bad", name), Options{})
		require.Error(t, err, name)
		require.Contains(t, err.Error(), c.where, name)
		require.Equal(t, c.stored, res.Stored, "%s: records before the error are stored", name)
		require.Len(t, s.recs, c.stored)
	}
	// --skip-invalid goes on and counts.
	s, res, err := ingestFile(t, filepath.Join(shared, "har-bad", "bad-line.jsonl"), Options{SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Skipped)
	require.Greater(t, len(s.recs), 3)
}

// harBodies decodes a HAR independently of the ingest code, to compare.
type harDoc struct {
	Log struct {
		Entries []struct {
			Request struct {
				Headers  []engine.Header `json:"headers"`
				PostData *struct {
					Text string `json:"text"`
				} `json:"postData"`
			} `json:"request"`
			Response struct {
				Headers []engine.Header `json:"headers"`
				Content struct {
					Text     string `json:"text"`
					Encoding string `json:"encoding"`
				} `json:"content"`
			} `json:"response"`
		} `json:"entries"`
	} `json:"log"`
}

// TestHARRoundTripThroughEngine ingests every real HAR capture into a real
// engine and reads each record back: headers (order and duplicates) and
// bodies byte-identical to the HAR (with redaction off: it is tested on its
// own, and would mask the captures' credentials).
func TestHARRoundTripThroughEngine(t *testing.T) {
	needShared(t)
	db, err := engine.Open(t.TempDir(), &engine.Options{RetentionInterval: -1, Redaction: redact.None()})
	require.NoError(t, err)
	defer db.Close()
	files, _ := filepath.Glob(filepath.Join(shared, "har", "*.har"))
	require.NotEmpty(t, files)
	total := 0
	for _, path := range files {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var doc harDoc
		require.NoError(t, json.Unmarshal(bytes.TrimPrefix(raw, bom), &doc), path)
		s, _, err := ingestFile(t, path, Options{})
		require.NoError(t, err, path)
		require.Len(t, s.recs, len(doc.Log.Entries), path)
		ids, err := mustTenant(db, "acme").Append(context.Background(), s.recs)
		require.NoError(t, err)
		for i, e := range doc.Log.Entries {
			got, err := mustTenant(db, "acme").Get(context.Background(), ids[i], engine.PartAll)
			require.NoError(t, err)
			require.Equal(t, nilIfEmpty(e.Request.Headers), got.RequestHeaders, "%s entry %d", path, i)
			require.Equal(t, nilIfEmpty(e.Response.Headers), got.ResponseHeaders, "%s entry %d", path, i)
			var wantReq, wantResp []byte
			if e.Request.PostData != nil && e.Request.PostData.Text != "" {
				wantReq = []byte(e.Request.PostData.Text)
			}
			if e.Response.Content.Text != "" {
				wantResp = []byte(e.Response.Content.Text)
				if strings.EqualFold(e.Response.Content.Encoding, "base64") {
					wantResp, err = base64.StdEncoding.DecodeString(e.Response.Content.Text)
					require.NoError(t, err)
				}
			}
			var gotReq, gotResp []byte
			if got.Payload != nil {
				gotReq, gotResp = got.Payload.RequestBody, got.Payload.ResponseBody
			}
			require.True(t, bytes.Equal(wantReq, gotReq), "%s entry %d: request body differs", path, i)
			require.True(t, bytes.Equal(wantResp, gotResp), "%s entry %d: response body differs", path, i)
			total++
		}
	}
	require.Equal(t, 60, total)
}

func nilIfEmpty(h []engine.Header) []engine.Header {
	if len(h) == 0 {
		return nil
	}
	return h
}

func TestCombinedLog(t *testing.T) {
	needShared(t)
	s, res, err := ingestFile(t, filepath.Join(shared, "access", "apache_logs"), Options{})
	require.NoError(t, err)
	require.Equal(t, FormatCombined, res.Format)
	require.Equal(t, 10000, res.Stored)
	r := s.recs[0]
	require.NotEmpty(t, r.ClientIP)
	require.NotEmpty(t, r.Method)
	require.NotZero(t, r.Status)
}

func TestJSONLRoundTrip(t *testing.T) {
	rec := engine.Record{
		Meta: engine.Meta{
			Method: "POST",
			Status: 201,
		},
		Path:           "/v1/x",
		RequestHeaders: []engine.Header{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}},
		Payload:        &engine.Payload{RequestBody: []byte("text body"), ResponseBody: []byte{0, 1, 2, 0xff}},
	}
	rec.Time = rec.Time.AddDate(2026, 0, 0)
	line, err := MarshalJSONL(rec)
	require.NoError(t, err)
	require.Contains(t, string(line), `"request_body":"text body"`)
	require.Contains(t, string(line), `"response_body_base64":"AAEC/w=="`)
	got, err := jsonlRecordFrom(line)
	require.NoError(t, err)
	require.Equal(t, rec.Payload, got.Payload)
	require.Equal(t, rec.RequestHeaders, got.RequestHeaders)
	_, err = jsonlRecordFrom([]byte(`{"time":"2026-01-01T00:00:00Z","method":"GET","bogus":1}`))
	require.ErrorContains(t, err, "bogus")
}

func TestDetect(t *testing.T) {
	for in, want := range map[string]Format{
		"{\n  \"log\": {}": FormatHAR, "\xef\xbb\xbf{\"log\":{}}": FormatHAR, `{"time":"x","method":"GET"}` + "\n": FormatJSONL,
		`1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 200 7697 "-" "curl"`: FormatCombined,
	} {
		got, err := Detect([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := Detect([]byte("\x00\x01\x02"))
	require.ErrorIs(t, err, ErrUnknownFormat)
}

// mustTenant is the handle of a valid tenant name.
func mustTenant(db *engine.DB, name string) *engine.Tenant {
	t, err := db.Tenant(name)
	if err != nil {
		panic(err)
	}
	return t
}
