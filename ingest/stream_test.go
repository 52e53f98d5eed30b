package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

// testEntry is a HAR entry spread over several lines; n numbers it (the
// request path is /e/n) and extra is spliced into the request object.
func testEntry(n int, extra string) string {
	return fmt.Sprintf(`{
        "startedDateTime": "2026-11-20T10:00:%02d.000Z", "time": 5,
        "request": {"method": "GET", "url": "https://api.example.com/e/%d?k=v", "headers": [
          {"name": "traceparent", "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        ]%s},
        "response": {"status": 200, "headers": [], "content": {"mimeType": "text/plain", "text": "ok %d"}},
        "timings": {"wait": 4}
      }`, n%60, n, extra, n)
}

func testHAR(sep string, entries ...string) string {
	return "\ufeff{\"log\": {\"version\": \"1.2\", \"pages\": [{\"id\": \"p\", \"title\": \"" + strings.Repeat("t", 1000) + "\"}],\n  \"entries\": [\n      " +
		strings.Join(entries, sep) + "\n  ]}}\n"
}

func ingestString(t *testing.T, in string, o Options) (*sink, Result, error) {
	t.Helper()
	s := &sink{}
	res, err := Ingest(context.Background(), s, "in.har", strings.NewReader(in), o)
	return s, res, err
}

func paths(recs []engine.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Path)
	}
	return out
}

// lineOf is the 1-based line of the first occurrence of needle.
func lineOf(t *testing.T, s, needle string) int {
	i := strings.Index(s, needle)
	require.GreaterOrEqual(t, i, 0, needle)
	return strings.Count(s[:i], "\n") + 1
}

// TestHARStreamErrorsNameEntryAndLine: errors carry the entry index and the
// line the entry begins on, also when the entry starts after a long run of
// white space (beyond what the decoder has read) and after a skipped
// oversized entry.
func TestHARStreamErrorsNameEntryAndLine(t *testing.T) {
	defer func(v int64) { harEntryLimit = v }(harEntryLimit)
	harEntryLimit = 4 << 10

	for _, sep := range []string{",\n      ", ",\n" + strings.Repeat(" \n\t", 30000), "\n" + strings.Repeat("\r\n", 50000) + ",     "} {
		badAt := func(n int) string { return strings.Replace(testEntry(n, ""), `"status": 200`, `"status": "x"`, 1) }
		bad := badAt(3)
		in := testHAR(sep, testEntry(0, ""), testEntry(1, ""), testEntry(2, ""), bad, testEntry(4, ""))
		s, res, err := ingestString(t, in, Options{})
		var ee *EntryError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, ErrMalformed)
		require.Equal(t, 3, ee.Entry, "%v", err)
		require.Equal(t, lineOf(t, in, `"2026-11-20T10:00:03.000Z"`)-1, ee.Line, "the line the entry begins on")
		require.Contains(t, err.Error(), "HAR entry 3: field response.status: a string where a int belongs")
		require.Equal(t, 3, res.Stored)
		require.Equal(t, []string{"/e/0", "/e/1", "/e/2"}, paths(s.recs))
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.recs[0].TraceID)

		// An entry over the limit: an ErrTooLarge at its index, or skipped.
		huge := testEntry(2, `, "postData": {"mimeType": "text/plain", "text": "`+strings.Repeat("x\\n", 3000)+`"}`)
		huge = strings.Replace(huge, `"headers": [`, "\"headers\": [\n"+strings.Repeat("  \n", 500), 1)
		in = testHAR(sep, testEntry(0, ""), testEntry(1, ""), huge, testEntry(3, ""), badAt(4), testEntry(5, ""))
		_, res, err = ingestString(t, in, Options{})
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, ErrTooLarge)
		require.Equal(t, 2, ee.Entry)
		require.Equal(t, lineOf(t, in, `"2026-11-20T10:00:02.000Z"`)-1, ee.Line)
		require.Equal(t, 2, res.Stored)

		s, res, err = ingestString(t, in, Options{SkipInvalid: true})
		require.NoError(t, err)
		require.Equal(t, 2, res.Skipped)
		require.Equal(t, []string{"/e/0", "/e/1", "/e/3", "/e/5"}, paths(s.recs))
		require.Len(t, res.Skips, 2)
		require.ErrorAs(t, res.Skips[1], &ee)
		require.Equal(t, 4, ee.Entry)
		require.Equal(t, lineOf(t, in, `"2026-11-20T10:00:04.000Z"`)-1, ee.Line, "lines stay right after a skipped oversized entry")
	}
}

// TestHARLastEntryOversizedAndTruncations: an oversized last entry is
// skipped and the end of the array found; truncation inside or after it is
// an error, never a hang or a silent success.
func TestHARLastEntryOversizedAndTruncations(t *testing.T) {
	defer func(v int64) { harEntryLimit = v }(harEntryLimit)
	harEntryLimit = 2 << 10
	huge := testEntry(1, `, "postData": {"text": "`+strings.Repeat(`\"}]`, 2000)+`"}`)
	in := testHAR(",\n", testEntry(0, ""), huge)
	s, res, err := ingestString(t, in, Options{SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Skipped)
	require.Len(t, s.recs, 1)
	for _, cut := range []int{len(in) / 2, len(in) - 12, len(in) - 7} {
		_, _, err := ingestString(t, in[:cut], Options{SkipInvalid: true})
		require.Error(t, err, "cut at %d", cut)
		require.ErrorIs(t, err, ErrMalformed)
	}
	// Something before log.entries over the limit.
	_, _, err = ingestString(t, `{"log": {"comment": "`+strings.Repeat("c", 3<<10)+`", "entries": []}}`, Options{SkipInvalid: true})
	require.ErrorIs(t, err, ErrTooLarge)
	require.Contains(t, err.Error(), "before log.entries")
	// A huge member skipped token by token is fine.
	s, _, err = ingestString(t, `{"log": {"pages": [`+strings.Repeat(`{"id": "p", "n": [1, 2, {"x": "y"}]},`, 500)+`{}], "entries": [`+testEntry(7, "")+`]}}`, Options{})
	require.NoError(t, err)
	require.Len(t, s.recs, 1)
}

// TestHeaderLimitsPerRecord: a HAR header list longer than MaxHeaders is
// refused before it is decoded, naming the list; the two lists together
// are bounded too; --skip-invalid skips and goes on.
func TestHeaderLimitsPerRecord(t *testing.T) {
	hdrs := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"name":"x%d","value":"v"}`, i)
		}
		return b.String()
	}
	// (cmd/logstore TestIngestMemoryIsBounded runs an entry of 10^6 headers
	// through the CLI and measures its memory.)
	many := strings.Replace(testEntry(1, ""), `"headers": [`, `"headers": [`+hdrs(100_000)+",", 1)
	in := testHAR(",\n", testEntry(0, ""), many, testEntry(2, ""))
	_, res, err := ingestString(t, in, Options{})
	require.ErrorIs(t, err, ErrTooLarge)
	require.Contains(t, err.Error(), "HAR entry 1: logstore/ingest: entry over the ingest limits: request.headers: more than 256 headers")
	require.Equal(t, 1, res.Stored)
	s, res, err := ingestString(t, in, Options{SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Skipped)
	require.Equal(t, []string{"/e/0", "/e/2"}, paths(s.recs))

	// 256 in all is fine, 257 is not.
	both := func(req, resp int) string {
		e := strings.Replace(testEntry(0, ""), `"headers": [`, `"headers": [`+hdrs(req-1)+",", 1)
		return strings.Replace(e, `"headers": []`, `"headers": [`+hdrs(resp)+`]`, 1)
	}
	s, _, err = ingestString(t, testHAR(",", both(128, 128)), Options{})
	require.NoError(t, err)
	require.Len(t, s.recs[0].RequestHeaders, 128)
	_, _, err = ingestString(t, testHAR(",", both(129, 128)), Options{})
	require.ErrorIs(t, err, ErrTooLarge)
	require.Contains(t, err.Error(), "257 request and response headers")
}

// TestLineLimits: a line over the limit is an ErrTooLarge naming its line,
// never held whole, and --skip-invalid goes on after it; a last line
// without a newline, CRLF line ends and a BOM still work.
func TestLineLimits(t *testing.T) {
	good := func(i int) string {
		return fmt.Sprintf(`{"time":"2026-11-20T10:00:00Z","method":"GET","path":"/l/%d","status":200}`, i)
	}
	long := `{"time":"2026-11-20T10:00:00Z","method":"GET","path":"/` + strings.Repeat("p", MaxJSONLLineBytes) + `"}`
	in := "\ufeff" + good(1) + "\r\n\r\n" + good(3) + "\n" + long + "\n" + good(5)
	_, res, err := ingestString(t, in, Options{Format: FormatJSONL})
	var ee *EntryError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, 4, ee.Line)
	require.Equal(t, "in.har:4: logstore/ingest: entry over the ingest limits: the line is longer than 16777216 bytes", err.Error())
	require.Equal(t, 2, res.Stored)
	s, res, err := ingestString(t, in, Options{Format: FormatJSONL, SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Skipped)
	require.Equal(t, []string{"/l/1", "/l/3", "/l/5"}, paths(s.recs))

	// Exactly the limit is accepted (it then fails as a record, not as a line).
	exact := `{"path":"` + strings.Repeat("p", MaxJSONLLineBytes-11) + `"}`
	require.Len(t, exact, MaxJSONLLineBytes)
	_, _, err = ingestString(t, exact+"\n", Options{Format: FormatJSONL})
	require.NotErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, err, ErrMalformed)

	comb := `1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /c/%d HTTP/1.1" 200 5 "-" "curl"`
	in = fmt.Sprintf(comb, 1) + "\n" + fmt.Sprintf(comb, 2)[:40] + strings.Repeat("x", MaxCombinedLineBytes) + "\n" + fmt.Sprintf(comb, 3) + "\n"
	_, res, err = ingestString(t, in, Options{Format: FormatCombined})
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.Line)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, 1, res.Stored)
	s, _, err = ingestString(t, in, Options{SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, []string{"/c/1", "/c/3"}, paths(s.recs))
}

// TestLimitsMatchTheEngine: ingest's limits are the engine's defaults, and a
// record that passes checkRecord is never refused by Append for its size.
func TestLimitsMatchTheEngine(t *testing.T) {
	rec := func(headers, body int) engine.Record {
		r := engine.Record{Meta: engine.Meta{Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), Method: "POST", Status: 200}, Path: "/x"}
		for i := range headers {
			r.RequestHeaders = append(r.RequestHeaders, engine.Header{Name: "h", Value: fmt.Sprint(i)})
		}
		if body >= 0 {
			r.Payload = &engine.Payload{RequestBody: bytes.Repeat([]byte("b"), body)}
		}
		return r
	}
	r := rec(MaxHeaders, -1)
	require.NoError(t, r.Validate())
	require.NoError(t, checkRecord(&r))
	r = rec(MaxHeaders+1, -1)
	require.ErrorIs(t, r.Validate(), engine.ErrRecordTooLarge)
	require.ErrorIs(t, checkRecord(&r), ErrTooLarge)

	db, err := engine.Open(t.TempDir(), &engine.Options{RetentionInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	// The largest body checkRecord lets through is stored.
	r = rec(3, 0)
	r = rec(3, MaxRecordBytes-encodedSizeBound(&r))
	require.Equal(t, MaxRecordBytes, encodedSizeBound(&r))
	require.NoError(t, checkRecord(&r))
	_, err = mustTenant(db, "t").Append(context.Background(), []engine.Record{r})
	require.NoError(t, err)
	r = rec(3, len(r.Payload.RequestBody)+1)
	require.ErrorIs(t, checkRecord(&r), ErrTooLarge)
	// And the engine does refuse what is over its limit.
	r = rec(0, MaxRecordBytes)
	_, err = mustTenant(db, "t").Append(context.Background(), []engine.Record{r})
	require.ErrorIs(t, err, engine.ErrRecordTooLarge)
	require.Error(t, checkRecord(&r))

	for m, ok := range map[string]bool{"GET": true, "M-SEARCH": true, "PROPFIND": true, strings.Repeat("A", 32): true,
		strings.Repeat("A", 33): false, "/x?y=1": false, "GE T": false, "": false, "GET\x00": false} {
		require.Equal(t, ok, isMethod(m), m)
	}
}

// TestOversizedRecordDoesNotSinkItsBatch: a record the engine would refuse
// is reported at its place; the records around it are stored.
func TestOversizedRecordDoesNotSinkItsBatch(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{RetentionInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	big := testEntry(1, `, "postData": {"mimeType": "text/plain", "text": "`+strings.Repeat("b", MaxRecordBytes)+`"}`)
	in := testHAR(",\n", testEntry(0, ""), big, testEntry(2, ""))
	res, err := Ingest(context.Background(), mustTenant(db, "t"), "in.har", strings.NewReader(in), Options{SkipInvalid: true})
	require.NoError(t, err)
	require.Equal(t, 2, res.Stored)
	require.Equal(t, 1, res.Skipped)
	require.ErrorIs(t, res.Skips[0], ErrTooLarge)
	require.Contains(t, res.Skips[0].Error(), "HAR entry 1:")
	res, err = Ingest(context.Background(), mustTenant(db, "t"), "in.har", strings.NewReader(in), Options{})
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, 1, res.Stored, "the record before it is stored")
}

// markedInputs have a marker in every sealed field.
func markedInputs() map[Format]string {
	const m = "Zx9q"
	har := testHAR(",\n", testEntry(0, ""), `{"startedDateTime": "2026-11-20T10:00:00Z", "time": 1,
	  "request": {"method": "POST", "url": "https://api.example.com/`+m+`path?tok=`+m+`query", "headers": [{"name": "`+m+`hn", "value": "`+m+`hv"}],
	    "postData": {"mimeType": "text/plain", "text": "`+m+`body"}},
	  "response": {"status": 200, "headers": [{"name": "x", "value": "`+m+`rv"}], "content": {"text": "`+m+`resp", "encoding": "base64"}},
	  "serverIPAddress": "`+m+`ip"}`, testEntry(2, ""))
	jsonl := `{"time":"2026-11-20T10:00:00Z","method":"GET","path":"/ok"}` + "\n" +
		`{"time":"2026-11-20T10:00:00Z","method":"POST","path":"/` + m + `p","query":"` + m + `q","client_ip":"` + m + `c","consumer_id":"` + m + `u",` +
		`"request_headers":[{"name":"` + m + `n","value":"` + m + `v"}],"attributes":{"` + m + `k":"` + m + `a"},"payload":{"request_body":"` + m + `b","response_body_base64":"` + m + `=="}}` + "\n"
	combined := `1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /ok HTTP/1.1" 200 5 "-" "curl"` + "\n" +
		m + `c - ` + m + `u [17/May/2015:10:05:03 +0000] "GET /` + m + `p?` + m + `q HTTP/1.1" 200 5 "` + m + `r" "` + m + `a"` + "\n"
	return map[Format]string{FormatHAR: har, FormatJSONL: jsonl, FormatCombined: combined}
}

// TestTruncationsNeverEchoSealedValues cuts inputs with a marker in every
// sealed field at every byte and ingests each prefix (stopping and
// skipping, the format given or detected): no error or skip reason may
// show a marker.
func TestTruncationsNeverEchoSealedValues(t *testing.T) {
	for f, in := range markedInputs() {
		n := 0
		for cut := 0; cut <= len(in); cut++ {
			for _, o := range []Options{{Format: f}, {Format: f, SkipInvalid: true}, {}} {
				_, res, err := ingestString(t, in[:cut], o)
				msgs := []error{err}
				msgs = append(msgs, res.Skips...)
				for _, e := range msgs {
					if e != nil {
						n++
						require.NotContains(t, e.Error(), "Zx9q", "%s cut at %d (%+v)", f, cut, o)
						require.True(t, errors.Is(e, ErrMalformed) || errors.Is(e, ErrUnknownFormat), "%s cut at %d: untyped %v", f, cut, e)
					}
				}
			}
		}
		require.Greater(t, n, len(in), f)
	}
}

// TestHARStreamingMatchesWholeFile: the real captures give the same records
// through a reader that returns one byte at a time.
func TestHARStreamingMatchesWholeFile(t *testing.T) {
	needShared(t)
	for _, name := range []string{"chrome.har", "with-bom.har", "postdata.har", "firefox.har"} {
		path := shared + "/har/" + name
		whole, _, err := ingestFile(t, path, Options{})
		require.NoError(t, err)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		s := &sink{}
		_, err = Ingest(context.Background(), s, name, iotestOneByte(b), Options{})
		require.NoError(t, err)
		require.Equal(t, whole.recs, s.recs, name)
	}
}

type oneByte struct{ b []byte }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func iotestOneByte(b []byte) io.Reader { return &oneByte{b} }

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestReadErrorsAreNotMalformedInput: a failing input is reported as the
// read error, after storing what came before it, in every format.
func TestReadErrorsAreNotMalformedInput(t *testing.T) {
	boom := errors.New("disk on fire")
	har := testHAR(",\n", testEntry(0, ""), testEntry(1, ""))
	for f, in := range map[Format]string{
		FormatHAR:      har[:strings.Index(har, `"2026-11-20T10:00:01`)],
		FormatJSONL:    `{"time":"2026-11-20T10:00:00Z","method":"GET","path":"/j"}` + "\n" + `{"time":`,
		FormatCombined: `1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /c HTTP/1.1" 200 5 "-" "curl"` + "\n1.2.3",
	} {
		s := &sink{}
		res, err := Ingest(context.Background(), s, "in", &failingReader{strings.NewReader(in), boom}, Options{Format: f, BatchSize: 1})
		require.ErrorIs(t, err, boom, f)
		require.NotErrorIs(t, err, ErrMalformed, f)
		require.Equal(t, 1, res.Stored, f)
	}
}
