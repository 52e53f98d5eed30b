package redact

// Review 8: attacks on the redaction before sealing. Tests that FAIL on the
// current code demonstrate a secret the documented policy promises to
// redact reaching the output unredacted; the others pin verified behaviour.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func review8Body(t *testing.T, r *Redactor, ct, in string) string {
	t.Helper()
	out := string(r.Body("request_body", ct, []byte(in), func(Finding) {}))
	if json.Valid([]byte(in)) && strings.Contains(ct, "json") {
		require.True(t, json.Valid([]byte(out)), "valid JSON stays valid: %q", out)
	}
	return out
}

// TestReview8EscapedJSONKeyBypassesFieldRule: a JSON key spelled with an
// escape ("pass\u0077ord" is "password") names the same field to every
// JSON reader, and the walker itself decodes keys before matching rules,
// but the prefilter (mayHaveSecrets) looks for the literal bytes
// `"password"` and lets the body through untouched.
func TestReview8EscapedJSONKeyBypassesFieldRule(t *testing.T) {
	r := mustCompile(t, Default())
	for _, in := range []string{
		`{"pass\u0077ord": "hunter2"}`,
		`{"\u0070assword": "hunter2"}`,
		`{"user": {"cl\u0069ent_secret": "hunter2"}}`,
	} {
		t.Run(in, func(t *testing.T) {
			var decoded map[string]any
			require.NoError(t, json.Unmarshal([]byte(in), &decoded))
			out := review8Body(t, r, "application/json", in)
			require.NotContains(t, out, "hunter2", "a default body rule's field, its key escaped: %s -> %s", in, out)
		})
	}
}

// TestReview8EscapedJSONStringBypassesDetectors: JSON string values are
// prefiltered on their raw bytes, so a card number or bearer token whose
// JSON spelling uses \u escapes (what many encoders emit for non-ASCII
// neighbours, and what any client may send) is never decoded and never
// masked, though every reader of the stored body sees the secret.
func TestReview8EscapedJSONStringBypassesDetectors(t *testing.T) {
	r := mustCompile(t, Default())
	for in, secret := range map[string]string{
		`{"note": "\u0034111111111111111"}`:              "4111111111111111",
		`{"note": "4111\u00201111\u00201111\u00201111"}`: "4111 1111 1111 1111",
		`{"auth": "Bearer\u0020abcdefghijklmnop"}`:       "abcdefghijklmnop",
		`["\u0041KIAIOSFODNN7EXAMPLE"]`:                  "AKIAIOSFODNN7EXAMPLE",
	} {
		t.Run(in, func(t *testing.T) {
			out := review8Body(t, r, "application/json", in)
			var v any
			require.NoError(t, json.Unmarshal([]byte(out), &v))
			b, _ := json.Marshal(v) // what a reader of the stored body sees
			require.NotContains(t, string(b), secret, "%s -> %s", in, out)
		})
	}
}

// TestReview8AdjacentDigitGroupsHideCard: the card detector takes the
// longest run of digits joined by single spaces or dashes and gives up when
// it has more than 19 digits, so a card number that follows another number
// and one space or dash (a date, a quantity, a second card) is never
// checked: "2024-01-15 4111111111111111" and a list of two cards leak.
func TestReview8AdjacentDigitGroupsHideCard(t *testing.T) {
	r := mustCompile(t, Default())
	for _, in := range []string{
		"2024-01-15 4111111111111111",
		"cards: 4111111111111111 5500000000000004",
		"4111111111111111-5500000000000004",
		"qty 12 4111 1111 1111 1111",
	} {
		t.Run(in, func(t *testing.T) {
			out := r.Text("x", in, func(Finding) {})
			require.NotContains(t, strings.ReplaceAll(strings.ReplaceAll(out, " ", ""), "-", ""), "411111111111", "%q -> %q", in, out)
		})
	}
	// The same in a JSON body and a text body.
	out := review8Body(t, r, "application/json", `{"line": "2024-01-15 4111111111111111"}`)
	require.NotContains(t, out, "4111111111111111")
}

// TestReview8URLEncodedQueryValueBypassesDetectors: query values are
// scanned in their encoded form, so a space encoded as %20 or '+' (the only
// way a query can carry "Bearer <token>" or a spaced card number) hides
// the secret from the detectors. docs/redaction.md matches names by their
// decoded form but values only raw.
func TestReview8URLEncodedQueryValueBypassesDetectors(t *testing.T) {
	r := mustCompile(t, Default())
	for in, secret := range map[string]string{
		"auth=Bearer%20abcdefghijklmnop": "abcdefghijklmnop",
		"auth=Bearer+abcdefghijklmnop":   "abcdefghijklmnop",
		"pan=4111+1111+1111+1111":        "4111+1111+1111+1111",
		"pan=4111%201111%201111%201111":  "4111%201111%201111%201111",
		"pan=%34111111111111111":         "%34111111111111111",
		"k=%41KIAIOSFODNN7EXAMPLE":       "%41KIAIOSFODNN7EXAMPLE",
	} {
		t.Run(in, func(t *testing.T) {
			out := r.Query("query", in, func(Finding) {})
			require.NotContains(t, out, secret, "%q -> %q", in, out)
		})
	}
}

// TestReview8JSONObjectKeyNotScanned: docs say the detectors run over
// "every string and number" of a JSON body; an object key is a JSON string
// and maps keyed by card number or token (a wallet, a cache) leak.
func TestReview8JSONObjectKeyNotScanned(t *testing.T) {
	r := mustCompile(t, Default())
	out := review8Body(t, r, "application/json", `{"wallet": {"4111111111111111": {"exp": "12/30"}}}`)
	require.NotContains(t, out, "4111111111111111")
}

// TestReview8JSONRobustness pins verified behaviour: deep nesting (up to
// what json.Valid accepts), huge numbers, duplicate keys, top-level
// scalars and HTML characters beside a replaced value neither panic nor
// break valid JSON, and a second pass changes nothing.
func TestReview8JSONRobustness(t *testing.T) {
	r := mustCompile(t, Default())
	deep := strings.Repeat(`{"a":[`, 4000) + `"4111111111111111"` + strings.Repeat(`]}`, 4000)
	for _, in := range []string{
		deep,
		`{"n": 1e999999, "m": -0.000000000000000000000000000001e-99999}`,
		`{"password": "a", "password": "b", "PASSWORD": {"x": 1}}`,
		`"4111111111111111"`, `4111111111111111`, `null`, `  true `,
		`{"x": "<a&b> 4111111111111111 \u2028"}`,
		`{"":"","\u0000":"\ud800"}`,
	} {
		out := review8Body(t, r, "application/json", in)
		again := review8Body(t, r, "application/json", out)
		require.Equal(t, out, again, "idempotent: %.60q", in)
		require.NotContains(t, out, "4111111111111111")
	}
}

// TestReview8UnmatchablePolicyRulesAccepted: Validate accepts body_fields
// names in JSONPath syntax the walker does not implement ("$..password",
// "$.users[*].password") and names with surrounding spaces; each parses,
// compiles and then never matches, so a demanding user's rule is a silent
// no-op. A policy must either implement or refuse them.
func TestReview8UnmatchablePolicyRulesAccepted(t *testing.T) {
	body := `{"users": [{"password": "hunter2", "pin": "8642"}], "pin": "8642"}`
	for _, rule := range []Rule{
		{Name: "$..pin", Action: Mask},
		{Name: "$.users[*].pin", Action: Mask},
		{Name: "$.users[0].pin", Action: Mask},
		{Name: " pin", Action: Mask},
	} {
		t.Run(rule.Name, func(t *testing.T) {
			b, err := json.Marshal(&Policy{Version: Version, BodyFields: []Rule{rule}})
			require.NoError(t, err)
			p, err := Parse(b)
			if err != nil {
				require.ErrorIs(t, err, ErrInvalidPolicy) // refused: fine
				return
			}
			r := mustCompile(t, p)
			out := review8Body(t, r, "application/json", body)
			require.NotEqual(t, body, out, "rule %q accepted by Parse but matches nothing", rule.Name)
		})
	}
}

// TestReview8ConflictingDuplicateRulesLastWins: two rules for the same
// header name (any case) with different actions are accepted and the last
// silently wins: a policy that appends {"Authorization": "keep"} after the
// default's "mask" stores credentials with no warning. Validate should
// refuse a name given twice.
func TestReview8ConflictingDuplicateRulesLastWins(t *testing.T) {
	p := Default()
	p.Headers = append(p.Headers, Rule{Name: "Authorization", Action: Keep})
	_, err := Parse(mustMarshal(t, p))
	require.ErrorIs(t, err, ErrInvalidPolicy, "a header named twice with different actions")
}

func mustMarshal(t *testing.T, p *Policy) []byte {
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

// TestReview8DropNotIdempotent: with a detector on "drop" the removed
// secret's neighbours join, and a second pass finds a secret the first did
// not: "Bearer <card> <token>" loses the card (the bearer match), then
// "Bearer  <token>" is a bearer credential. Redaction is documented as
// idempotent ("redacting a redacted record changes nothing").
func TestReview8DropNotIdempotent(t *testing.T) {
	r := mustCompile(t, &Policy{Version: Version, Detectors: Detectors{Bearer: Drop, CardNumber: Drop}})
	in := "Bearer 4111111111111111 abcdefghijkl"
	once := r.Text("x", in, func(Finding) {})
	twice := r.Text("x", once, func(Finding) {})
	require.Equal(t, once, twice, "%q -> %q -> %q", in, once, twice)
}

// TestReview8InvalidJSONLosesFieldRules: body_fields apply only to bodies
// json.Valid accepts; anything else falls back to the detectors, which
// know no field names. Debug captures are routinely truncated at a size
// limit, bulk APIs send NDJSON ("application/x-ndjson" contains "json"),
// some clients send a UTF-8 BOM or an anti-XSSI prefix: in each the
// password field of the default policy is stored as is.
func TestReview8InvalidJSONLosesFieldRules(t *testing.T) {
	r := mustCompile(t, Default())
	for name, c := range map[string]struct{ ct, body string }{
		"truncated capture": {"application/json", `{"user": "ann", "password": "hunter2", "items": [{"sku": "A1", "note": "gift wr`},
		"ndjson":            {"application/x-ndjson", "{\"user\": \"ann\", \"password\": \"hunter2\"}\n{\"user\": \"bob\", \"password\": \"hunter2\"}\n"},
		"utf-8 bom":         {"application/json", "\xef\xbb\xbf{\"password\": \"hunter2\"}"},
		"anti-xssi prefix":  {"application/json", ")]}'\n{\"password\": \"hunter2\"}"},
	} {
		t.Run(name, func(t *testing.T) {
			out := string(r.Body("request_body", c.ct, []byte(c.body), func(Finding) {}))
			require.NotContains(t, out, "hunter2", "%q -> %q", c.body, out)
		})
	}
}

// TestReview8QueryRulesOnlyOnTheQuery: the query_params rules (access_token,
// token, api_key, password, ... in the default policy) apply to the
// record's query string and to bodies whose content type says
// x-www-form-urlencoded, nowhere else. The same parameters in a Referer or
// Location header (an OAuth redirect), in a form body captured without
// its content type, or in a multipart form field are stored as is.
func TestReview8QueryRulesOnlyOnTheQuery(t *testing.T) {
	r := mustCompile(t, Default())
	nop := func(Finding) {}
	const tok = "opaque-token-value-1234"
	for name, got := range map[string]func() string{
		"referer header": func() string {
			v, _ := r.Header("request_header:Referer", "Referer", "https://app.example.com/cb?access_token="+tok, nop)
			return v
		},
		"location header": func() string {
			v, _ := r.Header("response_header:Location", "Location", "https://app.example.com/cb#access_token="+tok+"&token_type=bearer", nop)
			return v
		},
		"form body without content type": func() string {
			return string(r.Body("request_body", "", []byte("grant_type=password&password="+tok), nop))
		},
		"multipart form field": func() string {
			body := "--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + tok + "\r\n--XyZ--\r\n"
			return string(r.Body("request_body", "multipart/form-data; boundary=XyZ", []byte(body), nop))
		},
	} {
		t.Run(name, func(t *testing.T) {
			require.NotContains(t, got(), tok)
		})
	}
}

// BenchmarkReview8MatchSortQuadratic demonstrates (no timing assert: the
// review's tests are deterministic) that Text is quadratic in the number
// of matches when detectors interleave: find appends the bearer, then the
// API-key, then the card matches and sortMatches orders them with an
// insertion sort, so each card swaps past every later API key. Measured
// on the review machine: 10k pairs (380 KB) 0.4 s, 20k 1.4 s, 40k (1.5 MB)
// 5.5 s; a body at MaxRecordBytes (8 MiB, ~220k pairs) costs minutes of
// CPU per record in the appending goroutine: one captured request stalls
// an ingest.
func BenchmarkReview8MatchSortQuadratic(b *testing.B) {
	r, err := Default().Compile()
	require.NoError(b, err)
	for _, n := range []int{5000, 10000, 20000} {
		body := []byte(strings.Repeat("AKIAIOSFODNN7EXAMPLE 4111111111111111 ", n))
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				r.Body("b", "text/plain", body, func(Finding) {})
			}
		})
	}
}

// TestReview8DefaultPolicyMissesCommonCredentialCarriers: places a
// demanding user expects the default policy to cover and it does not:
// gateway-forwarded credentials (Envoy/ESPv2 X-Forwarded-Authorization),
// a Basic credential outside the Authorization header, URL userinfo, and
// the common X-Access-Token / X-Refresh-Token headers. (docs/redaction.md
// says it redacts what it recognises; these are recognisable.)
func TestReview8DefaultPolicyMissesCommonCredentialCarriers(t *testing.T) {
	r := mustCompile(t, Default())
	nop := func(Finding) {}
	for name, c := range map[string]struct{ header, value, secret string }{
		"x-forwarded-authorization basic": {"X-Forwarded-Authorization", "Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="},
		"x-access-token":                  {"X-Access-Token", "opaque-access-token-42", "opaque-access-token-42"},
		"x-refresh-token":                 {"X-Refresh-Token", "opaque-refresh-token-42", "opaque-refresh-token-42"},
		"url userinfo":                    {"X-Upstream", "https://svc:p4ssw0rd-42@internal.example.com/v1", "p4ssw0rd-42"},
	} {
		t.Run(name, func(t *testing.T) {
			v, drop := r.Header("request_header:"+c.header, c.header, c.value, nop)
			if drop {
				return
			}
			require.NotContains(t, v, c.secret)
		})
	}
}

// TestReview8BracketedFormParams: Rails/PHP-style nested parameters
// ("user[password]", "api_key[]") are how most server-rendered login forms
// post a password; the query_params rules match the whole decoded name, so
// the default policy's "password" rule misses them.
func TestReview8BracketedFormParams(t *testing.T) {
	r := mustCompile(t, Default())
	for _, in := range []string{
		"user%5Bemail%5D=ann%40example.com&user%5Bpassword%5D=hunter2",
		"user[password]=hunter2",
		"api_key[]=hunter2",
	} {
		t.Run(in, func(t *testing.T) {
			out := string(r.Body("request_body", "application/x-www-form-urlencoded", []byte(in), func(Finding) {}))
			require.NotContains(t, out, "hunter2")
		})
	}
}

// TestReview8DefaultBodyFieldsMissTokens: the default policy masks a
// "token" query parameter but not a "token" (or "id_token", "authorization",
// "private_key") JSON field, and the JWT detector knows only three-part
// JWS: a five-part JWE (an encrypted id token) in a body is stored as is.
func TestReview8DefaultBodyFieldsMissTokens(t *testing.T) {
	r := mustCompile(t, Default())
	jwe := "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGe.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
	for name, c := range map[string]struct{ body, secret string }{
		"token field":         {`{"token": "opaque-session-token-42"}`, "opaque-session-token-42"},
		"authorization field": {`{"headers": {"authorization": "Basic dXNlcjpwYXNzd29yZA=="}}`, "dXNlcjpwYXNzd29yZA=="},
		"private_key field":   {`{"private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}`, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"},
		"jwe id_token":        {`{"id_token": "` + jwe + `"}`, "48V1_ALb6US04U3b"},
	} {
		t.Run(name, func(t *testing.T) {
			out := review8Body(t, r, "application/json", c.body)
			require.NotContains(t, out, c.secret)
		})
	}
}
