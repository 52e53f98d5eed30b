package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/testenv"
)

// Secrets the inputs below carry, one per ingest path and place.
var e2eSecrets = []string{
	"tok-har-bearer-0123456789",  // HAR: Authorization: Bearer
	"4111111111111111",           // HAR: card number in a JSON body
	"AKIAIOSFODNN7EXAMPLE",       // JSONL: API key in the query string
	"hunter2-jsonl-password",     // JSONL: password body field
	"5500000000000004",           // JSONL: card number in an attribute
	"sk_live_4eC39HqLyjWDarjtT1", // combined log: API key in the URL
	"378282246310005",            // combined log: card number in the path
}

const secretHAR = `{"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [
 {"startedDateTime": "2026-11-01T10:00:00.000Z", "time": 12.5,
  "request": {"method": "POST", "url": "https://api.example.com/v1/pay", "httpVersion": "HTTP/1.1",
   "headers": [{"name": "Authorization", "value": "Bearer tok-har-bearer-0123456789"}, {"name": "Accept", "value": "application/json"}],
   "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 60,
   "postData": {"mimeType": "application/json", "text": "{\"card\": {\"pan\": \"4111111111111111\"}, \"amount\": 12}"}},
  "response": {"status": 201, "statusText": "Created", "httpVersion": "HTTP/1.1", "headers": [], "cookies": [],
   "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}, "redirectURL": "", "headersSize": -1, "bodySize": 2},
  "cache": {}, "timings": {"send": 0, "wait": 10, "receive": 2.5}}]}}`

const secretJSONL = `{"time": "2026-11-01T10:00:01Z", "method": "POST", "path": "/v1/login", "query": "aws=AKIAIOSFODNN7EXAMPLE", "status": 200, "latency_ms": 3, "attributes": {"note": "card 5500000000000004"}, "payload": {"request_content_type": "application/json", "request_body": "{\"user\": \"ann\", \"password\": \"hunter2-jsonl-password\"}"}}
`

const secretCombined = `203.0.113.9 - - [01/Nov/2026:10:00:02 +0000] "GET /v1/cards/378282246310005?key=sk_live_4eC39HqLyjWDarjtT1 HTTP/1.1" 200 512 "-" "curl/8.0"
`

func writeInputs(t *testing.T) []string {
	in := t.TempDir()
	var files []string
	for _, f := range [][2]string{{"a.har", secretHAR}, {"b.jsonl", secretJSONL}, {"c.log", secretCombined}} { // files[0] is the HAR
		p := filepath.Join(in, f[0])
		require.NoError(t, os.WriteFile(p, []byte(f[1]), 0o600))
		files = append(files, p)
	}
	return files
}

// TestRedactionEveryIngestPath ingests HAR, JSONL and a combined access
// log carrying secrets under the default policy: no secret is in the
// decrypted export, and none anywhere on disk. The same inputs under
// `redaction set --none` come back whole, which proves the checks can fail.
func TestRedactionEveryIngestPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	files := writeInputs(t)
	r := cli(t, dir, append([]string{"ingest", "-t", "acme"}, files...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "ingested 3 record(s)")
	require.Contains(t, r.stderr, "redacted 7 value(s) before sealing")

	exp := cli(t, dir, "export", "-t", "acme")
	require.Equal(t, 0, exp.code, exp.stderr)
	require.Equal(t, 3, strings.Count(exp.stdout, "\n"))
	for _, s := range e2eSecrets {
		require.NotContains(t, exp.stdout, s)
	}
	require.Contains(t, exp.stdout, `"Authorization","value":"[REDACTED]"`)
	require.Contains(t, exp.stdout, `************1111`)
	require.Contains(t, exp.stdout, `/v1/cards/***********0005`)
	require.Empty(t, testenv.FilesContaining(t, dir, e2eSecrets...), "a secret reached the disk")

	show := cli(t, dir, "redaction", "show", "-t", "acme")
	require.Equal(t, 0, show.code, show.stderr)
	require.Contains(t, show.stderr, "store's default")
	require.Contains(t, show.stdout, `"card_number": "mask"`)

	// Opting out stores the secrets (sealed): the export shows them.
	r = cli(t, dir, "redaction", "set", "-t", "open", "--none")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, dir, append([]string{"ingest", "-t", "open"}, files...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stderr, "redacted")
	exp = cli(t, dir, "export", "-t", "open")
	for _, s := range e2eSecrets {
		require.Contains(t, exp.stdout, s)
	}
}

// TestRedactionSealKeepsOriginals: a policy with "seal" masks the normal
// view and keeps the original sealed; `show --reveal` prints it, `show`
// says it withheld it.
func TestRedactionSealKeepsOriginals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	policy := filepath.Join(t.TempDir(), "policy.json")
	require.NoError(t, os.WriteFile(policy, []byte(`{"version": 1,
  "headers": [{"name": "authorization", "action": "seal"}],
  "detectors": {"card_number": "mask"}}`), 0o600))
	r := cli(t, dir, "redaction", "set", "-t", "acme", policy)
	require.Equal(t, 0, r.code, r.stderr)
	har := filepath.Join(t.TempDir(), "a.har")
	require.NoError(t, os.WriteFile(har, []byte(secretHAR), 0o600))
	r = cli(t, dir, "ingest", "-t", "acme", har)
	require.Equal(t, 0, r.code, r.stderr)
	q := cli(t, dir, "query", "-t", "acme", "-o", "json")
	require.Equal(t, 0, q.code, q.stderr)
	id := strings.SplitN(strings.SplitN(q.stdout, `"id":"`, 2)[1], `"`, 2)[0]

	s := cli(t, dir, "show", "-t", "acme", id)
	require.Equal(t, 0, s.code, s.stderr)
	require.Contains(t, s.stdout, "Authorization: [REDACTED]")
	require.NotContains(t, s.stdout, "tok-har-bearer")
	require.Contains(t, s.stderr, "1 value(s) are shown masked")
	s = cli(t, dir, "show", "-t", "acme", "--reveal", id)
	require.Equal(t, 0, s.code, s.stderr)
	require.Contains(t, s.stdout, "request_header:Authorization: Bearer tok-har-bearer-0123456789")
	require.Empty(t, testenv.FilesContaining(t, dir, "tok-har-bearer-0123456789", "4111111111111111"))

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version": 1, "headers": [{"name": "x", "action": "hide"}]}`), 0o600))
	r = cli(t, dir, "redaction", "set", "-t", "acme", bad)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `action "hide" (want keep, mask, drop or seal)`)
	r = cli(t, dir, "redaction", "set", "-t", "acme", "--none", bad)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "exactly one of FILE, --none or --default")
}

// TestExportRedaction: records stored unredacted (a tenant that opted out)
// are redacted on the way out by --redact-policy and --redact; sealed
// originals leave only with --reveal, in JSONL and in HAR, and a HAR
// exported with them reads back with them.
func TestExportRedaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	files := writeInputs(t)
	require.Equal(t, 0, cli(t, dir, "redaction", "set", "-t", "open", "--none").code)
	r := cli(t, dir, append([]string{"ingest", "-t", "open"}, files...)...)
	require.Equal(t, 0, r.code, r.stderr)
	policy := filepath.Join(t.TempDir(), "p.json")
	require.NoError(t, os.WriteFile(policy, []byte(`{"version": 1, "detectors": {"card_number": "mask", "bearer": "mask", "api_key": "mask"},
  "body_fields": [{"name": "password", "action": "mask"}]}`), 0o600))
	for _, format := range []string{"jsonl", "har"} {
		e := cli(t, dir, "export", "-t", "open", "-o", format, "--redact-policy", policy)
		require.Equal(t, 0, e.code, e.stderr)
		for _, s := range e2eSecrets {
			require.NotContains(t, e.stdout, s, format)
		}
	}
	e := cli(t, dir, "export", "-t", "open", "--redact")
	require.Equal(t, 0, e.code, e.stderr)
	require.Contains(t, e.stdout, "4111111111111111", "--redact applies the tenant's policy, which is none")
	e = cli(t, dir, "export", "-t", "open", "--redact", "--redact-policy", policy)
	require.Equal(t, 2, e.code)

	// Sealed originals: withheld by default, exported with --reveal.
	seal := filepath.Join(t.TempDir(), "seal.json")
	require.NoError(t, os.WriteFile(seal, []byte(`{"version": 1, "headers": [{"name": "authorization", "action": "seal"}]}`), 0o600))
	require.Equal(t, 0, cli(t, dir, "redaction", "set", "-t", "sealed", seal).code)
	require.Equal(t, 0, cli(t, dir, "ingest", "-t", "sealed", files[0]).code)
	for _, format := range []string{"jsonl", "har"} {
		e = cli(t, dir, "export", "-t", "sealed", "-o", format)
		require.Equal(t, 0, e.code, e.stderr)
		require.NotContains(t, e.stdout, "tok-har-bearer-0123456789")
		e = cli(t, dir, "export", "-t", "sealed", "-o", format, "--reveal")
		require.Equal(t, 0, e.code, e.stderr)
		require.Contains(t, e.stdout, "tok-har-bearer-0123456789")
		out := filepath.Join(t.TempDir(), "export."+format)
		require.NoError(t, os.WriteFile(out, []byte(e.stdout), 0o600))
		require.Equal(t, 0, cli(t, dir, "redaction", "set", "-t", "copy-"+format, seal).code) // the same policy
		require.Equal(t, 0, cli(t, dir, "ingest", "-t", "copy-"+format, out).code)
		back := cli(t, dir, "export", "-t", "copy-"+format, "-o", format, "--reveal")
		require.Equal(t, e.stdout, back.stdout, "an export with originals reads back with them")
	}
}

// TestEraseSessionCLI: `logstore erase` removes one session's records;
// the others stay, and no file of the store holds the erased session's id
// or trace ids afterwards.
func TestEraseSessionCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var b strings.Builder
	for i := 0; i < 60; i++ {
		session := "keep-session"
		if i%3 == 0 {
			session = "gone-session-4f1c"
		}
		fmt.Fprintf(&b, `{"time": "2026-11-01T10:%02d:00Z", "session_id": %q, "trace_id": "%s-trace-%d", "method": "GET", "path": "/v1/x", "status": 200, "latency_ms": 1}`+"\n",
			i, session, session, i)
	}
	in := filepath.Join(t.TempDir(), "in.jsonl")
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o600))
	require.Equal(t, 0, cli(t, dir, "ingest", "-t", "acme", in).code)
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "gone-session-4f1c"), "the session id is plaintext metadata: on disk before the erase")

	r := cli(t, dir, "erase", "-t", "acme", "--session", "gone-session-4f1c")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--yes")
	r = cli(t, dir, "erase", "-t", "acme", "--session", "gone-session-4f1c", "--consumer", "c", "--yes")
	require.Equal(t, 2, r.code)
	r = cli(t, dir, "erase", "-t", "nosuch", "--session", "x", "--yes")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "tenants: acme")

	r = cli(t, dir, "erase", "-t", "acme", "--session", "gone-session-4f1c", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "erased 20 record(s) of tenant acme")
	q := cli(t, dir, "query", "-t", "acme", "--count")
	require.Equal(t, 0, q.code, q.stderr)
	require.Contains(t, q.stdout, "40")
	require.Empty(t, testenv.FilesContaining(t, dir, "gone-session-4f1c"))
	require.NotEmpty(t, testenv.FilesContaining(t, dir, "keep-session"))
}
