package query

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

func TestParseAndPrint(t *testing.T) {
	for in, want := range map[string]string{
		"status=5xx": "status = 5xx",
		"status = 500 AND method IN (get, 'POST')":              `(status = 500 AND method IN ("GET", "POST"))`,
		"NOT (host = 'a' OR host = \"b\") AND latency_ms > 1.5": `(NOT (host = "a" OR host = "b") AND latency_ms > 1.5)`,
		"session_id NOT IN (x, y)":                              `session_id NOT IN ("x", "y")`,
		"time >= '2026-11-01T00:00:00Z'":                        "time >= '2026-11-01T00:00:00Z'",
		"a_b = 1 OR status != 4xx":                              "",
	} {
		e, err := Parse(in)
		if want == "" {
			require.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want, e.String(), in)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]error{
		"path = '/login'":          ErrSealedField,
		"request_headers.auth = x": ErrSealedField,
		"client_ip = 1.2.3.4":      ErrSealedField,
		"stauts = 500":             ErrUnknownField,
		"status = 500 500":         ErrSyntax,
		"(status = 500":            ErrSyntax,
		"status IN (":              ErrSyntax,
		"status = 'abc'":           ErrBadValue,
		"method > GET":             ErrBadValue,
		"status > 5xx":             ErrBadValue,
		"host = 'unterminated":     ErrSyntax,
		"status ! 5":               ErrSyntax,
		"time > yesterday":         ErrBadValue,
	}
	for in, want := range cases {
		_, err := Parse(in)
		require.ErrorIs(t, err, want, in)
	}
	_, err := Parse("stauts = 500")
	require.Contains(t, err.Error(), `did you mean "status"`)
	_, err = Parse("path = '/login'")
	require.Contains(t, err.Error(), "encrypted and not searchable")
}

// TestLex pins each token class: white space, punctuation, operators,
// quoted strings with backslash escapes, and bare words (number or ident).
func TestLex(t *testing.T) {
	for in, want := range map[string]string{
		"a=1":                 "ident:a op:= num:1 eof:",
		" (x,y)\t\r\n":        "(:( ident:x ,:, ident:y ):) eof:",
		"a != b<=c>=d<e>f":    "ident:a op:!= ident:b op:<= ident:c op:>= ident:d op:< ident:e op:> ident:f eof:",
		"a == b":              "ident:a op:= op:= ident:b eof:",
		`'it\'s' "a\"b\\" ''`: `str:it's str:a"b\ str: eof:`,
		"-1.5e3 .5 5xx 1e 10": "num:-1.5e3 num:.5 ident:5xx ident:1e num:10 eof:",
		"Inf +1 NaN":          "ident:Inf ident:+1 ident:NaN eof:",
	} {
		toks, err := lex(in)
		require.NoError(t, err, in)
		got := make([]string, len(toks))
		for i, tk := range toks {
			got[i] = tk.kind + ":" + tk.text
		}
		require.Equal(t, want, strings.Join(got, " "), in)
	}
	for in, want := range map[string]string{
		"a ! b":   "at 2: '!' must be followed by '='",
		"a = 'b":  "at 4: unterminated string",
		`a = "b\`: "at 4: unterminated string",
	} {
		_, err := lex(in)
		require.ErrorIs(t, err, ErrSyntax, in)
		require.Contains(t, err.Error(), want, in)
	}
}

func newDB(t *testing.T) (*engine.Tenant, []engine.Record, []engine.ID) {
	db, err := engine.Open(t.TempDir(), &engine.Options{RetentionInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	rng := rand.New(rand.NewSource(1))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]engine.Record, 2000)
	for i := range recs {
		recs[i] = engine.Record{
			Meta: engine.Meta{
				Time:      t0.Add(time.Duration(i) * time.Second),
				Method:    []string{"GET", "POST", "PUT"}[rng.Intn(3)],
				Status:    []int{200, 200, 200, 201, 404, 500, 503}[rng.Intn(7)],
				SessionID: fmt.Sprintf("s%d", rng.Intn(50)),
				Host:      "api.example.com",
				RouteID:   fmt.Sprintf("r%d", rng.Intn(4)),
				LatencyMs: float64(rng.Intn(1000)),
			},
			Path: "/x",
		}
	}
	acme, err := db.Tenant("acme")
	require.NoError(t, err)
	ids, err := acme.Append(context.Background(), recs)
	require.NoError(t, err)
	return acme, recs, ids
}

func TestRunMatchesBruteForce(t *testing.T) {
	db, recs, ids := newDB(t)
	ctx := context.Background()
	for _, where := range []string{
		"", "status = 5xx", "status >= 404", "status < 201", "method = POST AND status = 5xx",
		"session_id IN (s1, s2, s3) AND NOT method = GET", "route_id = r2 OR status = 404",
		"latency_ms > 500 AND status != 2xx", "time >= '2026-11-01T00:10:00Z' AND time < '2026-11-01T00:20:00Z'",
		"session_id = s7", "status NOT IN (200, 201)",
		// Numeric comparisons the engine tests on encoded metadata (Ranges).
		"latency_ms > 300", "latency_ms <= 120 AND status = 4xx", "status = 5xx AND latency_ms >= 10 AND latency_ms < 400",
		"latency_ms = 250", "method = GET AND latency_ms > 100", "NOT latency_ms > 300", "latency_ms > 300 OR status = 404",
	} {
		expr, err := Parse(where)
		require.NoError(t, err)
		want := 0
		for i := range recs {
			m := engine.Meta{ID: ids[i], Time: recs[i].Time, Method: recs[i].Method, Status: recs[i].Status, SessionID: recs[i].SessionID,
				Host: recs[i].Host, RouteID: recs[i].RouteID, LatencyMs: recs[i].LatencyMs}
			if match(expr, &m) {
				want++
			}
		}
		res, err := Run(ctx, db, Request{Where: where, Count: true})
		require.NoError(t, err, where)
		require.Equal(t, want, res.Count, "count of %q (index %s)", where, res.Plan.Index)

		// Page with cursors until exhaustion: no record missed or repeated,
		// newest first across pages.
		seen := map[engine.ID]bool{}
		cursor := ""
		var prev *engine.Meta
		for pages := 0; ; pages++ {
			require.Less(t, pages, 1000)
			r, err := Run(ctx, db, Request{Where: where, Limit: 37, Cursor: cursor})
			require.NoError(t, err)
			for i := range r.Rows {
				m := &r.Rows[i]
				require.False(t, seen[m.ID], "repeated %s", m.ID)
				seen[m.ID] = true
				if prev != nil {
					require.False(t, m.Time.After(prev.Time), "newest first")
				}
				prev = m
			}
			if r.Next == "" {
				break
			}
			cursor = r.Next
		}
		require.Len(t, seen, want, where)
	}
}

func TestPlannerPicksTheMostSelectiveIndex(t *testing.T) {
	db, _, _ := newDB(t)
	res, err := Run(context.Background(), db, Request{Where: "host = 'api.example.com' AND session_id = s3 AND method = GET", Count: true})
	require.NoError(t, err)
	require.Equal(t, "session_id", res.Plan.Index)
	require.True(t, res.Plan.Residual)
	require.Less(t, res.Plan.Scanned, 100, "scanned only the session's records")
	res, err = Run(context.Background(), db, Request{Where: "latency_ms > 10", Limit: 5})
	require.NoError(t, err)
	require.Equal(t, "time", res.Plan.Index)
	// A numeric comparison is the engine's to test (a Range): no residual.
	res, err = Run(context.Background(), db, Request{Where: "status = 5xx AND latency_ms > 300", Count: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Plan.Ranges)
	require.False(t, res.Plan.Residual)
}

func TestCursorIsBoundToItsQuery(t *testing.T) {
	db, _, _ := newDB(t)
	r, err := Run(context.Background(), db, Request{Where: "status = 200", Limit: 10})
	require.NoError(t, err)
	require.NotEmpty(t, r.Next)
	_, err = Run(context.Background(), db, Request{Where: "status = 404", Cursor: r.Next})
	require.ErrorIs(t, err, ErrBadCursor)
	_, err = Run(context.Background(), db, Request{Cursor: "garbage!"})
	require.ErrorIs(t, err, ErrBadCursor)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"status=5xx", "a = 'b' AND (c IN (1,2) OR NOT d != \"x\")", "((((", "time > '2026-01-01'", "status NOT IN (4xx)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil || e == nil {
			return
		}
		// A parsed expression prints to something that parses to the same thing.
		e2, err := Parse(e.String())
		if err != nil {
			t.Fatalf("%q printed as %q which does not parse: %v", s, e.String(), err)
		}
		if e2.String() != e.String() {
			t.Fatalf("%q: round trip %q != %q", s, e2.String(), e.String())
		}
		_ = match(e, &engine.Meta{})
	})
}
