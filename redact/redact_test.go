package redact

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustCompile(t testing.TB, p *Policy) *Redactor {
	t.Helper()
	r, err := p.Compile()
	require.NoError(t, err)
	return r
}

// collect returns a Finding recorder and the findings it saw.
func collect() (func(Finding), *[]Finding) {
	var fs []Finding
	return func(f Finding) { fs = append(fs, f) }, &fs
}

func TestDetectors(t *testing.T) {
	r := mustCompile(t, Default())
	cases := []struct {
		name, in, want string
		kinds          []Kind
	}{
		{"visa", "card 4111111111111111 ok", "card ************1111 ok", []Kind{KindCardNumber}},
		{"visa spaced", "4111 1111 1111 1111", "**** **** **** 1111", []Kind{KindCardNumber}},
		{"amex dashed", "3782-822463-10005", "****-******-*0005", []Kind{KindCardNumber}},
		{"luhn fails", "4111111111111112", "4111111111111112", nil},
		{"too short", "411111111111", "411111111111", nil},
		{"longer digit run", "41111111111111110000000", "41111111111111110000000", nil},
		{"inside a word", "id4111111111111111", "id4111111111111111", nil},
		{"double separator", "4111  1111 1111 1111", "4111  1111 1111 1111", nil},
		{"bearer", "Authorization: Bearer abcdefgh12345", "Authorization: Bearer [REDACTED]", []Kind{KindBearer}},
		{"bearer lower", "bearer   abc.def-ghi_jk==", "bearer   [REDACTED]", []Kind{KindBearer}},
		{"bearer short", "Bearer abc", "Bearer abc", nil},
		{"bearer word", "unbearer abcdefghijk", "unbearer abcdefghijk", nil},
		{"aws", "key=AKIAIOSFODNN7EXAMPLE;", "key=[REDACTED];", []Kind{KindAPIKey}},
		{"aws too long", "AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX", nil},
		{"stripe", `"sk_live_4eC39HqLyjWDarjtT1zdp7dc"`, `"[REDACTED]"`, []Kind{KindAPIKey}},
		{"github", "ghp_" + strings.Repeat("a1", 18), "[REDACTED]", []Kind{KindAPIKey}},
		{"openai needs a digit", "sk-" + strings.Repeat("a", 40), "sk-" + strings.Repeat("a", 40), nil},
		{"openai", "sk-proj-" + strings.Repeat("a9", 20), "[REDACTED]", []Kind{KindAPIKey}},
		{"jwt", "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_nature", "t=[REDACTED]", []Kind{KindAPIKey}},
		{"bearer jwt is one secret", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", "Bearer [REDACTED]", []Kind{KindBearer}},
		{"nothing", "GET /v1/orders/12345?expand=items", "GET /v1/orders/12345?expand=items", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, fs := collect()
			got := r.Text("x", c.in, rec)
			require.Equal(t, c.want, got)
			var kinds []Kind
			for _, f := range *fs {
				kinds = append(kinds, f.Kind)
			}
			require.Equal(t, c.kinds, kinds)
			again, fs2 := collect()
			require.Equal(t, got, r.Text("x", got, again), "redaction is idempotent")
			require.Empty(t, *fs2)
		})
	}
}

func TestHeaderRules(t *testing.T) {
	p := &Policy{Version: Version,
		Headers:   []Rule{{Name: "Authorization", Action: Mask}, {Name: "x-drop", Action: Drop}, {Name: "x-seal", Action: Seal}, {Name: "x-card-ok", Action: Keep}},
		Detectors: Detectors{CardNumber: Mask}}
	r := mustCompile(t, p)
	rec, fs := collect()
	v, drop := r.Header("h", "AUTHORIZATION", "Basic dXNlcjpwYXNz", rec)
	require.Equal(t, Masked, v)
	require.False(t, drop)
	_, drop = r.Header("h", "x-drop", "secret", rec)
	require.True(t, drop)
	v, _ = r.Header("h", "x-seal", "sealed-value", rec)
	require.Equal(t, Masked, v)
	v, _ = r.Header("h", "x-card-ok", "4111111111111111", rec)
	require.Equal(t, "4111111111111111", v, "keep exempts from the detectors")
	v, _ = r.Header("h", "x-other", "4111111111111111", rec)
	require.Equal(t, "************1111", v)
	require.Len(t, *fs, 4)
	require.Equal(t, Finding{Where: "h", Kind: KindRule, Action: Seal, Original: "sealed-value"}, (*fs)[2])
}

func TestQuery(t *testing.T) {
	r := mustCompile(t, Default())
	rec, fs := collect()
	in := "b=1&API_KEY=abc%20def&c=4111111111111111&token&x=%zz&password=hunter2"
	got := r.Query("query", in, rec)
	require.Equal(t, "b=1&API_KEY=%5BREDACTED%5D&c=************1111&token&x=%zz&password=%5BREDACTED%5D", got)
	require.Len(t, *fs, 3)
	require.Equal(t, "query:API_KEY", (*fs)[0].Where)
	again, fs2 := collect()
	require.Equal(t, got, r.Query("query", got, again))
	require.Empty(t, *fs2)
	drop := mustCompile(t, &Policy{Version: Version, QueryParams: []Rule{{Name: "sig", Action: Drop}}})
	require.Equal(t, "a=1&b=2", drop.Query("q", "a=1&sig=xyz&b=2", func(Finding) {}))
	require.Equal(t, "a=1&b=2", drop.Query("q", "a=1&b=2", func(Finding) { t.Fatal("nothing to find") }))
}

func TestJSONBody(t *testing.T) {
	p := &Policy{Version: Version,
		BodyFields: []Rule{{Name: "password", Action: Mask}, {Name: "$.card.number", Action: Seal}, {Name: "nested", Action: Drop}, {Name: "$.keep", Action: Keep}},
		Detectors:  Detectors{CardNumber: Mask, Bearer: Mask}}
	r := mustCompile(t, p)
	in := `{"user": {"PassWord": "hunter2", "name": "Ann"},
  "card": {"number": 4111111111111111, "exp": "12/30"},
  "list": [{"password": ["a", "b"]}, "Bearer abcdefghijkl", 5500000000000004],
  "nested": {"deep": [1, 2, {"x": "y"}]},
  "keep": "4111111111111111",
  "other": {"card": {"number": "4111111111111111"}}}`
	rec, fs := collect()
	out := r.Body("request_body", "application/json; charset=utf-8", []byte(in), rec)
	want := `{"user": {"PassWord": "[REDACTED]", "name": "Ann"},
  "card": {"number": "[REDACTED]", "exp": "12/30"},
  "list": [{"password": "[REDACTED]"}, "Bearer [REDACTED]", "************0004"],
  "nested": null,
  "keep": "4111111111111111",
  "other": {"card": {"number": "************1111"}}}`
	require.Equal(t, want, string(out))
	require.True(t, json.Valid(out))
	var sealed []Finding
	for _, f := range *fs {
		if f.Action == Seal {
			sealed = append(sealed, f)
		}
	}
	require.Equal(t, []Finding{{Where: "request_body:$.card.number", Kind: KindRule, Action: Seal, Original: "4111111111111111"}}, sealed)
	again, fs2 := collect()
	require.Equal(t, string(out), string(r.Body("request_body", "application/json", out, again)))
	require.Empty(t, *fs2, "a redacted body has nothing left to redact")
}

func TestBodyKinds(t *testing.T) {
	r := mustCompile(t, Default())
	nop := func(Finding) {}
	clean := []byte(`{"a": 1, "b": "nothing secret here"}`)
	out := r.Body("b", "application/json", clean, nop)
	require.Equal(t, &clean[0], &out[0], "a clean body is not copied")
	require.Equal(t, "user=ann&password=%5BREDACTED%5D", string(r.Body("b", "application/x-www-form-urlencoded", []byte("user=ann&password=x"), nop)))
	require.Equal(t, "not json {**** **** **** 1111", string(r.Body("b", "application/json", []byte("not json {4111 1111 1111 1111"), nop)))
	require.Equal(t, "pan=************1111", string(r.Body("b", "text/plain", []byte("pan=4111111111111111"), nop)))
	bin := []byte{0, 0xff, '4', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', '1', 0}
	require.Equal(t, "\x00\xff************1111\x00", string(r.Body("b", "application/octet-stream", bin, nop)))
	require.Empty(t, r.Body("b", "application/json", nil, nop))
}

func TestPolicyParse(t *testing.T) {
	b, err := Default().Marshal()
	require.NoError(t, err)
	p, err := Parse(b)
	require.NoError(t, err)
	require.Equal(t, Default(), p)
	for name, in := range map[string]string{
		"unknown field":  `{"version":1,"headerz":[]}`,
		"bad action":     `{"version":1,"headers":[{"name":"a","action":"hide"}]}`,
		"empty name":     `{"version":1,"body_fields":[{"name":" ","action":"mask"}]}`,
		"bad detector":   `{"version":1,"detectors":{"bearer":"yes"}}`,
		"old version":    `{"version":0}`,
		"not json":       `{`,
		"trailing":       `{"version":1} {}`,
		"malformed path": `{"version":1,"body_fields":[{"name":"$.a.","action":"mask"}]}`,
	} {
		_, err := Parse([]byte(in))
		require.ErrorIs(t, err, ErrInvalidPolicy, name)
	}
	_, err = Parse([]byte(`{"version":2}`))
	require.ErrorIs(t, err, ErrUnknownVersion)
	require.NotErrorIs(t, err, ErrInvalidPolicy)
	require.True(t, None().IsNone())
	require.False(t, Default().IsNone())
	none := mustCompile(t, None())
	require.Equal(t, "Bearer abcdefghijk 4111111111111111", none.Text("x", "Bearer abcdefghijk 4111111111111111", func(Finding) { t.Fatal("none finds nothing") }))
}

// FuzzText: the detectors never panic, are idempotent, never grow a
// string by more than the masks they insert, and leave no card number.
func FuzzText(f *testing.F) {
	for _, s := range []string{"4111111111111111", "Bearer abcdefghijk", "AKIAIOSFODNN7EXAMPLE", "4111 1111-1111 1111", "eyJa.eyJb.c", ""} {
		f.Add(s)
	}
	r := mustCompile(f, Default())
	f.Fuzz(func(t *testing.T, s string) {
		out := r.Text("x", s, func(Finding) {})
		require.Equal(t, out, r.Text("x", out, func(Finding) { t.Fatalf("found something in redacted %q", out) }))
		require.Empty(t, findCards(out, nil))
	})
}

// FuzzJSONBody: any body is redacted without panicking, valid JSON stays
// valid, and a second pass finds nothing.
func FuzzJSONBody(f *testing.F) {
	for _, s := range []string{`{"password":"x","a":[4111111111111111]}`, `[1,2,"Bearer abcdefghijk"]`, `{"a":{"b":`, `"4111111111111111"`} {
		f.Add([]byte(s))
	}
	p := Default()
	p.BodyFields = append(p.BodyFields, Rule{Name: "$.a.b", Action: Drop})
	r := mustCompile(f, p)
	f.Fuzz(func(t *testing.T, b []byte) {
		out := r.Body("b", "application/json", b, func(Finding) {})
		if json.Valid(b) {
			require.True(t, json.Valid(out), "%q -> %q", b, out)
		}
		again := r.Body("b", "application/json", out, func(f Finding) {
			if json.Valid(b) {
				t.Fatalf("second pass found %+v in %q", f, out)
			}
		})
		if json.Valid(b) {
			require.Equal(t, string(out), string(again))
		}
	})
}
