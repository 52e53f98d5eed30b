package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every sealed field of the inputs below carries a marker starting with
// markerPrefix; no ingest output (stdout or stderr, error or skip report) may
// show one (docs/reliability.md, "What is plaintext": the process's output).
const markerPrefix = "Zx9q"

const (
	mkPath        = markerPrefix + "PATH"
	mkQuery       = markerPrefix + "QUERY"
	mkReqHdrName  = markerPrefix + "REQHDRNAME"
	mkReqHdr      = markerPrefix + "REQHDR"
	mkRespHdrName = markerPrefix + "RESPHDRNAME"
	mkRespHdr     = markerPrefix + "RESPHDR"
	mkReqBody     = markerPrefix + "REQBODY"
	mkRespBody    = markerPrefix + "RESPBODY"
	mkAttr        = markerPrefix + "ATTR"
	mkAttrKey     = markerPrefix + "ATTRKEY"
	mkClient      = markerPrefix + "CLIENT"
	mkConsumer    = markerPrefix + "CONSUMER"
)

// requireSharedData checks that the captures are there (needShared).
func requireSharedData(t *testing.T) {
	t.Helper()
	needShared(t)
}

// harEntryJSON is one HAR entry with a marker in every sealed field;
// set overrides placeholders ({URL}, {STATUS}, ...).
func harEntryJSON(set map[string]string) string {
	v := map[string]string{
		"{TIME}":     `"2026-11-20T10:00:00Z"`,
		"{METHOD}":   `"POST"`,
		"{URL}":      `"https://api.example.com/` + mkPath + `/orders?token=` + mkQuery + `"`,
		"{REQHDRS}":  `{"name": "authorization", "value": "Bearer ` + mkReqHdr + `"}, {"name": "` + mkReqHdrName + `", "value": "x"}`,
		"{RESPHDRS}": `{"name": "set-cookie", "value": "sid=` + mkRespHdr + `"}, {"name": "` + mkRespHdrName + `", "value": "y"}`,
		"{POSTDATA}": `{"mimeType": "text/plain", "text": "` + mkReqBody + `"}`,
		"{CONTENT}":  `{"size": 12, "mimeType": "text/plain", "text": "` + mkRespBody + `"}`,
		"{STATUS}":   `201`,
		"{SERVERIP}": `"` + mkAttr + `"`,
	}
	for k, x := range set {
		v[k] = x
	}
	tpl := `{
      "startedDateTime": {TIME}, "time": 12.5,
      "request": {"method": {METHOD}, "url": {URL}, "httpVersion": "HTTP/1.1",
        "headers": [{REQHDRS}], "queryString": [{"name": "token", "value": "` + mkQuery + `"}],
        "cookies": [{"name": "sid", "value": "` + mkReqHdr + `"}], "headersSize": -1, "bodySize": 12,
        "postData": {POSTDATA}},
      "response": {"status": {STATUS}, "statusText": "", "httpVersion": "HTTP/1.1",
        "headers": [{RESPHDRS}], "cookies": [], "redirectURL": "", "headersSize": -1, "bodySize": 12,
        "content": {CONTENT}},
      "cache": {}, "timings": {"send": 1, "wait": 10, "receive": 1.5},
      "serverIPAddress": {SERVERIP}
    }`
	for k, x := range v {
		tpl = strings.ReplaceAll(tpl, k, x)
	}
	return tpl
}

// harFile wraps entries in a HAR document.
func harFile(entries ...string) string {
	return "{\n  \"log\": {\n    \"version\": \"1.2\", \"creator\": {\"name\": \"test\", \"version\": \"1\"},\n    \"entries\": [\n    " +
		strings.Join(entries, ",\n    ") + "\n    ]\n  }\n}\n"
}

func manyHeaders(n int, marker string) string {
	hs := make([]string, n)
	for i := range hs {
		hs[i] = fmt.Sprintf(`{"name": "x-h%d-%s", "value": "%s-%d"}`, i, marker, marker, i)
	}
	return strings.Join(hs, ", ")
}

// jsonlLine is a JSONL record with a marker in every sealed field; extra is
// spliced in before the closing brace (it may override fields: the last
// occurrence wins).
func jsonlLine(extra string) string {
	return `{"time":"2026-11-20T10:00:00Z","method":"POST","host":"api.example.com","status":201,"latency_ms":3,` +
		`"path":"/` + mkPath + `","query":"token=` + mkQuery + `","client_ip":"` + mkClient + `","consumer_id":"` + mkConsumer + `",` +
		`"request_headers":[{"name":"authorization","value":"Bearer ` + mkReqHdr + `"},{"name":"` + mkReqHdrName + `","value":"x"}],` +
		`"response_headers":[{"name":"` + mkRespHdrName + `","value":"` + mkRespHdr + `"}],` +
		`"attributes":{"` + mkAttrKey + `":"` + mkAttr + `"},` +
		`"payload":{"request_content_type":"text/plain","request_body":"` + mkReqBody + `","response_body_base64":"AAEC/w=="}` + extra + `}`
}

// combinedLine is a combined-log line with markers in the sealed parts
// (client ip, user, path, query, referer, user agent).
func combinedLine(tm, request string) string {
	return mkClient + ` - ` + mkConsumer + ` [` + tm + `] "` + request + `" 200 512 "https://ref.example.com/` + mkReqHdr + `" "agent/` + mkReqHdrName + `"`
}

const goodTime = "17/May/2015:10:05:03 +0000"

var goodRequest = "GET /" + mkPath + "?q=" + mkQuery + " HTTP/1.1"

type sealedCase struct {
	name   string
	format string // --format; "" is auto
	body   string
	want   string // a fragment the error must show (the place or the kind), "" for none
}

func sealedCases() []sealedCase {
	good := harEntryJSON(nil)
	h := func(set map[string]string) string { return harFile(good, harEntryJSON(set)) }
	cases := []sealedCase{
		// HAR: the URL and its parts.
		{name: "har-url-bad-escape", body: h(map[string]string{"{URL}": `"https://api.example.com/` + mkPath + `%zz?token=` + mkQuery + `"`}), want: "HAR entry 1: request.url: invalid URL (value withheld"},
		{name: "har-url-control-char", body: h(map[string]string{"{URL}": `"https://api.example.com/` + mkPath + `\u007f?token=` + mkQuery + `"`}), want: "request.url: invalid URL"},
		{name: "har-url-bad-host", body: h(map[string]string{"{URL}": `"https://[` + mkPath + `/x?token=` + mkQuery + `"`}), want: "request.url: invalid URL"},
		{name: "har-url-bad-port", body: h(map[string]string{"{URL}": `"https://api.example.com:` + mkPath + `/x?token=` + mkQuery + `"`}), want: "request.url: invalid URL"},
		{name: "har-url-empty", body: h(map[string]string{"{URL}": `""`}), want: "request.url"},
		{name: "har-url-not-a-string", body: h(map[string]string{"{URL}": `{"u": "` + mkPath + `"}`}), want: "request.url"},
		// Headers.
		{name: "har-header-value-number", body: h(map[string]string{"{REQHDRS}": `{"name": "` + mkReqHdrName + `", "value": 4242424242}`}), want: "request.headers"},
		{name: "har-header-value-object", body: h(map[string]string{"{RESPHDRS}": `{"name": "` + mkRespHdrName + `", "value": {"v": "` + mkRespHdr + `"}}`}), want: "response.headers"},
		{name: "har-headers-not-array", body: h(map[string]string{"{REQHDRS}": `"` + mkReqHdr + `"`}), want: "request.headers"},
		{name: "har-too-many-headers", body: h(map[string]string{"{REQHDRS}": manyHeaders(300, mkReqHdr)}), want: "headers"},
		{name: "har-too-many-headers-both", body: h(map[string]string{"{REQHDRS}": manyHeaders(200, mkReqHdr), "{RESPHDRS}": manyHeaders(200, mkRespHdr)}), want: "headers"},
		// Bodies.
		{name: "har-request-body-bad-base64", body: h(map[string]string{"{POSTDATA}": `{"mimeType": "text/plain", "encoding": "base64", "text": "` + mkReqBody + `!!"}`}), want: "request.postData"},
		{name: "har-response-body-bad-base64", body: h(map[string]string{"{CONTENT}": `{"size": 3, "mimeType": "text/plain", "encoding": "base64", "text": "` + mkRespBody + `==="}`}), want: "response.content"},
		{name: "har-response-body-unknown-encoding", body: h(map[string]string{"{CONTENT}": `{"size": 3, "mimeType": "text/plain", "encoding": "` + markerPrefix + `ENC", "text": "` + mkRespBody + `"}`}), want: "response.content"},
		{name: "har-body-not-a-string", body: h(map[string]string{"{POSTDATA}": `{"mimeType": "text/plain", "text": ["` + mkReqBody + `"]}`}), want: "request.postData"},
		// Status, time, method, shape.
		{name: "har-status-string", body: h(map[string]string{"{STATUS}": `"` + markerPrefix + `STATUS"`}), want: "response.status"},
		{name: "har-status-range", body: h(map[string]string{"{STATUS}": `4242`}), want: "response.status"},
		{name: "har-time-bad", body: h(map[string]string{"{TIME}": `"yesterday at noon"`}), want: "startedDateTime"},
		{name: "har-time-number", body: h(map[string]string{"{TIME}": `1700000000`}), want: "startedDateTime"},
		{name: "har-method-with-path", body: h(map[string]string{"{METHOD}": `"/` + mkPath + `?token=` + mkQuery + `"`}), want: "method"},
		{name: "har-method-too-long", body: h(map[string]string{"{METHOD}": `"` + mkPath + strings.Repeat("X", 40) + `"`}), want: "method"},
		{name: "har-no-request", body: harFile(good, `{"startedDateTime": "2026-11-20T10:00:00Z", "response": {"status": 200, "headers": [{"name": "a", "value": "`+mkRespHdr+`"}], "content": {"text": "`+mkRespBody+`"}}}`), want: "no request"},
		{name: "har-entry-not-object", body: harFile(good, `"https://api.example.com/`+mkPath+`?token=`+mkQuery+`"`), want: "HAR entry 1"},
		{name: "har-syntax-after-marker", body: harFile(good, `{"request": {"url": "https://api.example.com/`+mkPath+`" "method": "GET"}}`), want: "HAR entry 1"},
		{name: "har-syntax-bad-char-in-value", body: harFile(good, `{"request": {"url": "https://api.example.com/`+mkPath+`", "method": `+mkQuery+`}}`), want: "HAR entry 1"},
		{name: "har-truncated-in-marker", body: harFile(good, good)[:strings.LastIndex(harFile(good, good), mkReqBody)+6], want: "truncated"},
		{name: "har-truncated-after-entry", body: strings.TrimSuffix(harFile(good, good), "\n    ]\n  }\n}\n"), want: "truncated"},
		{name: "har-log-not-object", body: `{"log": ["` + mkPath + `"]}`, want: "log"},
		{name: "har-entries-not-array", body: `{"log": {"entries": {"url": "` + mkPath + `"}}}`, want: "entries"},
		{name: "har-entry-too-large", body: h(map[string]string{"{CONTENT}": `{"size": 3, "mimeType": "text/plain", "text": "` + strings.Repeat(mkRespBody, (33<<20)/len(mkRespBody)) + `"}`}), want: "HAR entry 1"},

		// JSONL.
		{name: "jsonl-status-string", body: jsonlLine("") + "\n" + jsonlLine(`,"status":"`+markerPrefix+`STATUS"`) + "\n", want: ":2:"},
		{name: "jsonl-header-value-number", body: jsonlLine("") + "\n" + jsonlLine(`,"request_headers":[{"name":"`+mkReqHdrName+`","value":4242424242}]`) + "\n", want: "request_headers"},
		{name: "jsonl-attribute-value-number", body: jsonlLine("") + "\n" + jsonlLine(`,"attributes":{"`+mkAttrKey+`2":4242424242}`) + "\n", want: "attributes"},
		{name: "jsonl-attribute-not-object", body: jsonlLine("") + "\n" + jsonlLine(`,"attributes":["`+mkAttr+`"]`) + "\n", want: "attributes"},
		{name: "jsonl-path-number", body: jsonlLine("") + "\n" + jsonlLine(`,"path":4242424242`) + "\n", want: "path"},
		{name: "jsonl-body-bad-base64", body: jsonlLine("") + "\n" + jsonlLine(`,"payload":{"request_body_base64":"`+mkReqBody+`!!"}`) + "\n", want: ":2:"},
		{name: "jsonl-both-bodies", body: jsonlLine("") + "\n" + jsonlLine(`,"payload":{"request_body":"`+mkReqBody+`","request_body_base64":"AAAA"}`) + "\n", want: "request_body"},
		{name: "jsonl-syntax-after-marker", body: jsonlLine("") + "\n" + `{"time":"2026-11-20T10:00:00Z","method":"GET","path":"/` + mkPath + `" "query":"` + mkQuery + `"}` + "\n", want: ":2:"},
		{name: "jsonl-bad-char-in-value", body: jsonlLine("") + "\n" + `{"time":"2026-11-20T10:00:00Z","method":"GET","path":` + mkPath + `}` + "\n", want: ":2:"},
		{name: "jsonl-truncated-line", body: jsonlLine("") + "\n" + jsonlLine("")[:strings.Index(jsonlLine(""), mkQuery)+7] + "\n", want: ":2:"},
		{name: "jsonl-truncated-file", body: jsonlLine("") + "\n" + jsonlLine("")[:strings.Index(jsonlLine(""), mkReqBody)+7], want: ":2:"},
		{name: "jsonl-no-time", body: jsonlLine("") + "\n" + strings.Replace(jsonlLine(""), `"time":"2026-11-20T10:00:00Z",`, "", 1) + "\n", want: "time"},
		{name: "jsonl-bad-time", body: jsonlLine("") + "\n" + jsonlLine(`,"time":"noon"`) + "\n", want: "time"},
		{name: "jsonl-bad-id", body: jsonlLine("") + "\n" + jsonlLine(`,"id":"`+mkPath+`"`) + "\n", want: "id"},
		{name: "jsonl-no-method", body: jsonlLine("") + "\n" + jsonlLine(`,"method":""`) + "\n", want: "method"},
		{name: "jsonl-method-with-path", body: jsonlLine("") + "\n" + jsonlLine(`,"method":"/`+mkPath+`?token=`+mkQuery+`"`) + "\n", want: "method"},
		{name: "jsonl-method-too-long", body: jsonlLine("") + "\n" + jsonlLine(`,"method":"`+mkPath+strings.Repeat("X", 40)+`"`) + "\n", want: "method"},
		{name: "jsonl-unknown-field", body: jsonlLine("") + "\n" + jsonlLine(`,"bogus":"`+mkPath+`"`) + "\n", want: "bogus"},
		{name: "jsonl-two-values", body: jsonlLine("") + "\n" + jsonlLine("") + ` {"path":"` + mkPath + `"}` + "\n", want: ":2:"},
		{name: "jsonl-too-many-headers", body: jsonlLine("") + "\n" + jsonlLine(`,"request_headers":[`+strings.ReplaceAll(manyHeaders(300, mkReqHdr), `": "`, `":"`)+`]`) + "\n", want: "headers"},
		{name: "jsonl-line-too-long", body: jsonlLine("") + "\n" + jsonlLine(`,"query":"`+strings.Repeat(mkQuery, (17<<20)/len(mkQuery))+`"`) + "\n", want: ":2:"},

		// Combined access log.
		{name: "combined-not-a-line", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + mkClient + " " + mkPath + " garbage\n", want: ":2:"},
		{name: "combined-bad-time", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine("32/Foo/2015:99:99:99 +0000", goodRequest) + "\n", want: ":2:"},
		{name: "combined-bad-time-marker", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(mkPath, goodRequest) + "\n", want: ":2:"},
		{name: "combined-request-one-word", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "/"+mkPath+"?q="+mkQuery) + "\n", want: ":2:"},
		{name: "combined-target-not-absolute", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "/"+mkPath+"?q="+mkQuery+" HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-target-bad-escape", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "GET /"+mkPath+"%zz?q="+mkQuery+" HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-method-with-path", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "/"+mkPath+"?q="+mkQuery+" /x HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-method-too-long", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, mkPath+strings.Repeat("X", 40)+" /x HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-invalid-utf8", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "GET /"+mkPath+"\xff\xfe?q="+mkQuery+" HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-line-too-long", format: "combined", body: combinedLine(goodTime, goodRequest) + "\n" + combinedLine(goodTime, "GET /"+strings.Repeat(mkPath, (2<<20)/len(mkPath))+" HTTP/1.1") + "\n", want: ":2:"},
		{name: "combined-auto-then-bad", body: combinedLine(goodTime, goodRequest) + "\n" + mkClient + " " + mkPath + " garbage\n", want: ":2:"},

		// Auto-detection that recognises nothing.
		{name: "auto-unknown-first-line", body: mkClient + " " + mkPath + "?token=" + mkQuery + "\n", want: "unrecognised input format"},
		{name: "jsonl-forced-on-combined", format: "jsonl", body: combinedLine(goodTime, goodRequest) + "\n", want: ":1:"},
		{name: "har-forced-on-jsonl", format: "har", body: jsonlLine("") + "\n", want: "HAR"},
	}
	return cases
}

// injectMarkers puts markers into the sealed fields of a HAR or JSONL file
// from ../shared/testdata/har-bad (URLs, header, cookie and query values,
// bodies, server ip, JSONL paths).
var (
	urlRE   = regexp.MustCompile(`"url":\s*"(https?://[^/"?]+)([^"]*)"`)
	valueRE = regexp.MustCompile(`"value":\s*"`)
	textRE  = regexp.MustCompile(`"text":\s*"`)
	ipRE    = regexp.MustCompile(`"serverIPAddress":\s*"`)
	pathRE  = regexp.MustCompile(`"path":\s*"/`)
)

func injectMarkers(b []byte) []byte {
	s := urlRE.ReplaceAllStringFunc(string(b), func(m string) string {
		sub := urlRE.FindStringSubmatch(m)
		rest := sub[2]
		sep := "?"
		if strings.Contains(rest, "?") {
			sep = "&"
		}
		return `"url": "` + sub[1] + "/" + mkPath + rest + sep + "mk=" + mkQuery + `"`
	})
	s = valueRE.ReplaceAllString(s, `"value": "`+mkReqHdr)
	s = textRE.ReplaceAllString(s, `"text": "`+mkRespBody)
	s = ipRE.ReplaceAllString(s, `"serverIPAddress": "`+mkAttr)
	s = pathRE.ReplaceAllString(s, `"path": "/`+mkPath+"/")
	s = strings.ReplaceAll(s, `"request:"`, `"request:`+mkPath+`"`) // brokenfile.har
	return []byte(s)
}

func requireNoMarker(t *testing.T, what, out string) {
	t.Helper()
	if i := strings.Index(out, markerPrefix); i >= 0 {
		lo, hi := max(0, i-200), min(len(out), i+60)
		t.Fatalf("%s: output shows a sealed value (marker %q) at byte %d:\n...%s...", what, markerPrefix, i, out[lo:hi])
	}
}

// TestIngestErrorsNeverEchoSealedValues runs every ingest error path it can
// reach through the CLI, with markers in every sealed field, stopping and
// with --skip-invalid, and requires that no marker reaches stdout or stderr
// while the error still names the place.
func TestIngestErrorsNeverEchoSealedValues(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "store")
	type input struct {
		name, path, format, want string
	}
	var inputs []input
	for i, c := range sealedCases() {
		p := filepath.Join(tmp, fmt.Sprintf("case-%02d.in", i)) // no marker in the file name
		require.NoError(t, os.WriteFile(p, []byte(c.body), 0o600))
		inputs = append(inputs, input{c.name, p, c.format, c.want})
	}
	if _, err := os.Stat(shared); err == nil || os.Getenv("CI") != "" {
		requireSharedData(t)
		files, _ := filepath.Glob(filepath.Join(shared, "har-bad", "*"))
		require.NotEmpty(t, files)
		for i, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			if strings.HasSuffix(f, ".log") { // random bytes: put a marker first
				b = append([]byte(mkClient+" "), b...)
			}
			inj := injectMarkers(b)
			require.Contains(t, string(inj), markerPrefix, "%s: no marker injected", f)
			p := filepath.Join(tmp, fmt.Sprintf("shared-%02d%s", i, filepath.Ext(f)))
			require.NoError(t, os.WriteFile(p, inj, 0o600))
			inputs = append(inputs, input{"har-bad/" + filepath.Base(f), p, "", filepath.Base(p)})
		}
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			args := []string{"ingest", "--tenant", "acme"}
			if in.format != "" {
				args = append(args, "--format", in.format)
			}
			r := cli(t, dir, append(args, in.path)...)
			requireNoMarker(t, in.name, r.stdout+r.stderr)
			t.Log(strings.ReplaceAll(r.stderr, tmp, "TMP"))
			require.Equal(t, 1, r.code, "%s: ingest must fail: stdout %s\nstderr %s", in.name, r.stdout, r.stderr)
			require.Contains(t, r.stderr, filepath.Base(in.path), "%s: the error names the file", in.name)
			if in.want != "" {
				require.Contains(t, r.stderr, in.want, in.name)
			}
			r = cli(t, dir, append(append(args, "--skip-invalid"), in.path)...)
			requireNoMarker(t, in.name+" --skip-invalid", r.stdout+r.stderr)
			require.NotEqual(t, 2, r.code, "%s: %s", in.name, r.stderr)
		})
	}
}
