package ingest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harEntry struct {
	StartedDateTime string       `json:"startedDateTime"`
	Time            float64      `json:"time"`
	Request         *harRequest  `json:"request"`
	Response        *harResponse `json:"response"`
	Timings         struct {
		Send    float64 `json:"send"`
		Wait    float64 `json:"wait"`
		Receive float64 `json:"receive"`
	} `json:"timings"`
	ServerIPAddress string `json:"serverIPAddress"`
}

type harRequest struct {
	Method      string      `json:"method"`
	URL         string      `json:"url"`
	Headers     reqHeaders  `json:"headers"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	PostData    *harPayload `json:"postData"`
}

type harPayload struct {
	MimeType string   `json:"mimeType"`
	Text     postText `json:"text"`
	Encoding string   `json:"encoding"`
}

type harResponse struct {
	Status      int         `json:"status"`
	Headers     respHeaders `json:"headers"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	Content     struct {
		Size     int64       `json:"size"`
		MimeType string      `json:"mimeType"`
		Text     contentText `json:"text"`
		Encoding string      `json:"encoding"`
	} `json:"content"`
}

// Header lists are counted before they are decoded (an entry with millions
// of headers costs no memory), and bodies are decoded straight to bytes.
type (
	reqHeaders  []harNV
	respHeaders []harNV
	postText    []byte
	contentText []byte
)

func (h *reqHeaders) UnmarshalJSON(b []byte) (err error) {
	*h, err = decodeHeaders(b, "request.headers")
	return err
}

func (h *respHeaders) UnmarshalJSON(b []byte) (err error) {
	*h, err = decodeHeaders(b, "response.headers")
	return err
}

func (t *postText) UnmarshalJSON(b []byte) (err error) {
	*t, err = decodeText(b, "request.postData.text")
	return err
}

func (t *contentText) UnmarshalJSON(b []byte) (err error) {
	*t, err = decodeText(b, "response.content.text")
	return err
}

// kindOf names the JSON kind of a value by its first byte.
func kindOf(b []byte) string {
	if len(b) == 0 {
		return "value"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func decodeHeaders(b []byte, field string) ([]harNV, error) {
	switch kindOf(b) {
	case "null":
		return nil, nil
	case "array":
	default:
		return nil, safeError{fmt.Errorf("field %s: a %s where an array belongs", field, kindOf(b))}
	}
	if n := countElements(b, MaxHeaders+1); n > MaxHeaders {
		return nil, safeError{fmt.Errorf("%w: %s: more than %d headers, over the limit of %d per record", ErrTooLarge, field, MaxHeaders, MaxHeaders)}
	}
	var hs []harNV
	if err := json.Unmarshal(b, &hs); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, safeError{typeError(field+"[]", te)}
		}
		return nil, safeError{fmt.Errorf("field %s: not a list of name/value objects", field)}
	}
	return hs, nil
}

// countElements counts the elements of the JSON array b (valid JSON), up to
// stop.
func countElements(b []byte, stop int) int {
	depth, commas, any := 0, 0, false
	inStr, esc := false, false
scan:
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			inStr = true
		case '[', '{':
			depth++
			if depth == 1 {
				continue
			}
		case ']', '}':
			depth--
			if depth == 0 {
				break scan
			}
		case ',':
			if depth == 1 {
				if commas++; commas+1 >= stop {
					return commas + 1
				}
				continue
			}
		}
		any = true
	}
	if !any {
		return 0
	}
	return commas + 1
}

// decodeText decodes a JSON string to bytes with one copy when it has no
// escapes (the common case), as encoding/json would decode it to a string.
func decodeText(b []byte, field string) ([]byte, error) {
	switch kindOf(b) {
	case "null":
		return nil, nil
	case "string":
	default:
		return nil, safeError{fmt.Errorf("field %s: a %s where a string belongs", field, kindOf(b))}
	}
	tooLarge := func() error {
		return safeError{fmt.Errorf("%w: %s: over %d bytes, more than a record can hold even in base64", ErrTooLarge, field, maxBodyText)}
	}
	if in := b[1 : len(b)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		if len(in) > maxBodyText {
			return nil, tooLarge() // refused before it is copied
		}
		return bytes.Clone(in), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, safeError{fmt.Errorf("field %s: not a JSON string", field)}
	}
	if len(s) > maxBodyText {
		return nil, tooLarge()
	}
	return []byte(s), nil
}

// maxBodyText is the longest body text that can fit in a record: the
// base64 form of a MaxRecordBytes body.
const maxBodyText = (MaxRecordBytes+2)/3*4 + 4

// harSource is what the JSON decoder reads: it counts the newlines it hands
// over (for error lines), hands over at most 32 KiB per read (so the
// decoder's read-ahead stays small) and nothing at or past limit (so one
// entry cannot fill memory). While seeking, it drops the white space before
// the next entry and finds where the entry begins.
type harSource struct {
	r     io.Reader
	read  int64 // bytes handed over
	lines int64 // newlines in the input up to there (handed over or dropped)
	limit int64

	seeking bool
	comma   bool  // seeking, the comma before the entry has been handed over
	seekNL  int64 // newlines passed while seeking
	found   bool  // the entry start was found by the last seek
}

const harReadChunk = 32 << 10

// harEntryLimit is MaxHAREntryBytes; tests lower it.
var harEntryLimit int64 = MaxHAREntryBytes

var errOverLimit = errors.New("logstore/ingest: over the size limit") // internal: the decoder never returns it to a caller

func (s *harSource) Read(p []byte) (int, error) {
	room := s.limit - s.read
	if room <= 0 {
		return 0, errOverLimit
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	if len(p) > harReadChunk {
		p = p[:harReadChunk]
	}
	for {
		n, err := s.r.Read(p)
		if s.seeking {
			// White space before the entry is dropped, not handed over: the
			// decoder would hold all of it. The comma is handed over.
			w, i := 0, 0
			for ; i < n; i++ {
				c := p[i]
				if c == '\n' {
					s.lines++
					s.seekNL++
					continue
				}
				if c == ' ' || c == '\t' || c == '\r' {
					continue
				}
				if c == ',' && !s.comma {
					s.comma = true
					p[w] = c
					w++
					continue
				}
				s.seeking, s.found = false, true
				s.limit = s.read + int64(w) + harEntryLimit
				break
			}
			n = w + copy(p[w:], p[i:n])
			if n == 0 && err == nil {
				continue
			}
		}
		s.read += int64(n)
		s.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
		if err != nil && err != io.EOF {
			err = readError{err}
		}
		return n, err
	}
}

// readError is a failure to read the input (not a malformed input): it is
// returned as is, without a place.
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

// lead counts what a decoder has buffered: newlines in all of it, and before
// the first byte that is neither white space nor a comma (the start of the
// next value).
type lead struct {
	total, before, bytes int64
	comma, found         bool
}

func (l *lead) Write(p []byte) (int, error) {
	l.total += int64(bytes.Count(p, []byte{'\n'}))
	for _, c := range p {
		if l.found {
			break
		}
		switch c {
		case '\n':
			l.before++
		case ' ', '\t', '\r':
		case ',':
			l.comma = true
		default:
			l.found = true
			continue
		}
		l.bytes++
	}
	return len(p), nil
}

func scanBuffered(dec *json.Decoder) lead {
	var l lead
	_, _ = dec.Buffered().(io.WriterTo).WriteTo(&l)
	return l
}

// harReader walks {"log": {"entries": [...]}} one entry at a time, with
// memory bounded by MaxHAREntryBytes whatever the size of the file.
type harReader struct {
	br   *bufio.Reader
	src  *harSource
	dec  *json.Decoder
	name string
}

func (h *harReader) start(r io.Reader, lines int64) {
	h.src = &harSource{r: r, lines: lines}
	h.dec = json.NewDecoder(h.src)
}

// linesBefore is the number of newlines before the decoder's position.
func (h *harReader) linesBefore() (int64, lead) {
	l := scanBuffered(h.dec)
	return h.src.lines - l.total, l
}

// fail turns a decoder error into an EntryError (entry < 0: not in an
// entry; startLine: the entry's first line, 0 if unknown).
func (h *harReader) fail(err error, entry int, startLine int) error {
	var re readError
	if errors.As(err, &re) {
		return re.error
	}
	base, l := h.linesBefore()
	line := int(base + l.before + 1) // the next value
	var se *json.SyntaxError
	switch {
	case errors.Is(err, errOverLimit):
		what := "a JSON value before log.entries"
		if entry >= 0 {
			what = "the entry"
		}
		err = fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, what, harEntryLimit)
		if startLine > 0 {
			line = startLine
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = errors.New("unexpected end of file (truncated HAR?)")
		if startLine > 0 {
			line = startLine
		}
	case errors.As(err, &se):
		// The offset in a SyntaxError is not the input's: find the bad byte
		// again in what the decoder holds (from its position on).
		buf, _ := io.ReadAll(h.dec.Buffered())
		var se2 *json.SyntaxError
		if errors.As(json.NewDecoder(bytes.NewReader(buf)).Decode(new(struct{})), &se2) && se2.Offset > 0 && se2.Offset <= int64(len(buf)) {
			line = int(base) + bytes.Count(buf[:se2.Offset-1], []byte{'\n'}) + 1
		}
		err = errors.New(jsonSyntax(se))
	}
	return &EntryError{File: h.name, Line: line, Entry: entry, Err: err}
}

// token reads one token with at most MaxHAREntryBytes of input.
func (h *harReader) token() (json.Token, error) {
	h.src.limit = h.src.read + harEntryLimit
	return h.dec.Token()
}

// enterObjectKey reads tokens until it is positioned at the value of key in
// the next object, skipping other members token by token (a large member
// costs no memory).
func (h *harReader) enterObjectKey(key, what string) error {
	t, err := h.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a HAR document: %s is not an object", what)
	}
	for h.dec.More() {
		t, err := h.token()
		if err != nil {
			return err
		}
		if k, _ := t.(string); k == key {
			return nil
		}
		if err := h.skipValue(); err != nil {
			return err
		}
	}
	return fmt.Errorf("not a HAR document: %s has no %q member", what, key)
}

func (h *harReader) skipValue() error {
	depth := 0
	for {
		t, err := h.token()
		if err != nil {
			return err
		}
		if d, ok := t.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

// readHAR walks {"log": {"entries": [...]}} entry by entry, so a bad entry
// is reported by index and line while the good ones around it are kept.
func readHAR(r io.Reader, name string, emit func(engine.Record) error, bad func(error) error) error {
	h := &harReader{br: bufio.NewReaderSize(r, 64<<10), name: name}
	if b, _ := h.br.Peek(len(bom)); bytes.Equal(b, bom) {
		_, _ = h.br.Discard(len(bom))
	}
	h.start(h.br, 0)
	if err := h.enterObjectKey("log", "the document"); err != nil {
		return h.fail(err, -1, 0)
	}
	if err := h.enterObjectKey("entries", "log"); err != nil {
		return h.fail(err, -1, 0)
	}
	if t, err := h.token(); err != nil {
		return h.fail(err, -1, 0)
	} else if d, ok := t.(json.Delim); !ok || d != '[' {
		return h.fail(errors.New("not a HAR document: log.entries is not an array"), -1, 0)
	}
	for i := 0; ; i++ {
		// Where the next entry begins, and its limit.
		base, l := h.linesBefore()
		startLine := int(base + l.before + 1)
		if l.found {
			h.src.limit = h.dec.InputOffset() + l.bytes + harEntryLimit
		} else {
			h.src.limit = h.src.read + harEntryLimit // set again where the entry begins
			h.src.seeking, h.src.comma, h.src.seekNL, h.src.found = true, l.comma, 0, false
		}
		if !h.dec.More() {
			break
		}
		var e harEntry
		err := h.dec.Decode(&e)
		if h.src.found {
			startLine += int(h.src.seekNL)
			h.src.found = false
		}
		h.src.seeking = false
		if err != nil {
			var te *json.UnmarshalTypeError
			var safe safeError
			switch {
			case errors.Is(err, errOverLimit):
				ferr := h.fail(err, i, startLine)
				if err := bad(ferr); err != nil {
					return err
				}
				if err := h.resync(); err != nil {
					return h.fail(err, i, startLine)
				}
				continue
			case errors.As(err, &te):
				err = typeError("", te)
			case errors.As(err, &safe):
				// A complete entry that did not fit: reported as is.
			default: // syntax, end of file, read error: the stream is lost
				return h.fail(err, i, startLine)
			}
			if err := bad(&EntryError{File: name, Line: startLine, Entry: i, Err: err}); err != nil {
				return err
			}
			continue
		}
		rec, err := harRecord(&e)
		if err == nil {
			if err = emit(rec); err != nil {
				var ie errInvalid
				if !errors.As(err, &ie) {
					return err // the store failed: stop
				}
				err = ie.error
			}
		}
		if err != nil {
			if err := bad(&EntryError{File: name, Line: startLine, Entry: i, Err: err}); err != nil {
				return err
			}
		}
	}
	if _, err := h.token(); err != nil {
		return h.fail(err, -1, 0)
	}
	return nil
}

// resync skips the rest of an entry too large to decode (the decoder gave
// up on it and is dead) and starts a new decoder positioned in log.entries
// after it.
func (h *harReader) resync() error {
	base, _ := h.linesBefore()
	var sk valueSkipper
	_, _ = h.dec.Buffered().(io.WriterTo).WriteTo(&sk) // what the dead decoder had read of the entry
	rest := sk.rest
	for !sk.done {
		p, err := h.br.Peek(1)
		if len(p) == 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		p, _ = h.br.Peek(h.br.Buffered())
		n := sk.feed(p)
		_, _ = h.br.Discard(n)
	}
	// A new decoder sees "[0" and then the rest of the array.
	h.start(io.MultiReader(strings.NewReader("[0"), bytes.NewReader(rest), h.br), base+sk.newlines)
	var zero int
	if _, err := h.token(); err != nil {
		return err
	}
	return h.dec.Decode(&zero)
}

// valueSkipper consumes one JSON value (after white space and a comma) from
// the bytes it is fed, tracking strings and nesting only.
type valueSkipper struct {
	started, done bool
	scalar        bool // a number or literal: ends before a delimiter
	depth         int
	inStr, esc    bool
	newlines      int64
	rest          []byte
}

// Write feeds p; what follows the value is kept in rest.
func (s *valueSkipper) Write(p []byte) (int, error) {
	n := s.feed(p)
	if s.done {
		s.rest = append(s.rest, p[n:]...)
	}
	return len(p), nil
}

// feed consumes bytes of p up to the end of the value and returns how many.
func (s *valueSkipper) feed(p []byte) int {
	for i, c := range p {
		if s.done {
			return i
		}
		if c == '\n' {
			s.newlines++
		}
		switch {
		case s.inStr:
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
				if s.depth == 0 {
					s.done = true
				}
			}
		case !s.started:
			switch c {
			case ' ', '\t', '\r', '\n', ',':
			case '"':
				s.started, s.inStr = true, true
			case '{', '[':
				s.started, s.depth = true, 1
			default:
				s.started, s.scalar = true, true
			}
		case s.scalar:
			switch c {
			case ' ', '\t', '\r', '\n', ',', ']', '}':
				if c == '\n' {
					s.newlines--
				}
				s.done = true
				return i
			}
		default:
			switch c {
			case '"':
				s.inStr = true
			case '{', '[':
				s.depth++
			case '}', ']':
				if s.depth--; s.depth == 0 {
					s.done = true
				}
			}
		}
	}
	return len(p)
}

func harRecord(e *harEntry) (engine.Record, error) {
	if e.Request == nil {
		return engine.Record{}, errors.New("entry has no request")
	}
	if e.Response == nil {
		return engine.Record{}, errors.New("entry has no response")
	}
	t, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
	if err != nil {
		return engine.Record{}, errors.New("startedDateTime: not an RFC 3339 time")
	}
	if e.Request.URL == "" {
		return engine.Record{}, errors.New("request.url: missing or empty")
	}
	u, err := url.Parse(e.Request.URL)
	if err != nil {
		return engine.Record{}, badURL("request.url", err)
	}
	if e.Response.Status < 0 || e.Response.Status > 999 {
		return engine.Record{}, errors.New("response.status: out of range 0..999")
	}
	rec := engine.Record{
		Time:              t,
		Method:            e.Request.Method,
		Host:              u.Host,
		Path:              u.EscapedPath(),
		Query:             u.RawQuery,
		Status:            e.Response.Status,
		LatencyMs:         nonNeg(e.Time),
		UpstreamLatencyMs: nonNeg(e.Timings.Wait),
		RequestHeaders:    headers([]harNV(e.Request.Headers)),
		ResponseHeaders:   headers([]harNV(e.Response.Headers)),
		RequestSize:       sizeOf(e.Request.HeadersSize, e.Request.BodySize),
		ResponseSize:      sizeOf(e.Response.HeadersSize, e.Response.BodySize),
		ResponseSource:    "upstream",
	}
	if rec.Path == "" {
		rec.Path = "/"
	}
	if g := rec.LatencyMs - rec.UpstreamLatencyMs; g > 0 {
		rec.GatewayLatencyMs = g
	}
	if e.ServerIPAddress != "" {
		rec.Attributes = map[string]string{"server_ip": strings.Trim(e.ServerIPAddress, "[]")}
	}
	rec.TraceID, rec.SpanID = traceIDs(rec.RequestHeaders)
	var p engine.Payload
	has := false
	if pd := e.Request.PostData; pd != nil {
		body, err := decodeBody([]byte(pd.Text), pd.Encoding)
		if err != nil {
			return engine.Record{}, fmt.Errorf("request.postData: %v", err)
		}
		p.RequestContentType, p.RequestBody, has = pd.MimeType, body, true
	}
	c := e.Response.Content
	if len(c.Text) > 0 || c.Encoding != "" {
		body, err := decodeBody([]byte(c.Text), c.Encoding)
		if err != nil {
			return engine.Record{}, fmt.Errorf("response.content: %v", err)
		}
		p.ResponseContentType, p.ResponseBody, has = c.MimeType, body, true
	} else if c.MimeType != "" && has {
		p.ResponseContentType = c.MimeType
	}
	if has {
		rec.Payload = &p
	}
	return rec, nil
}

func decodeBody(text []byte, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "":
		if len(text) == 0 {
			return nil, nil
		}
		return text, nil
	case "base64":
		b := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := base64.StdEncoding.Decode(b, text)
		if err != nil {
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				return nil, fmt.Errorf("text: invalid base64 at byte %d", int64(ce))
			}
			return nil, errors.New("text: invalid base64")
		}
		return b[:n], nil
	}
	return nil, errors.New(`encoding: unknown (want "base64" or none; value withheld)`)
}

func headers(in []harNV) []engine.Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]engine.Header, len(in))
	for i, h := range in {
		out[i] = engine.Header{Name: h.Name, Value: h.Value}
	}
	return out
}

func nonNeg(v float64) float64 {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func sizeOf(h, b int64) int64 {
	var n int64
	if h > 0 {
		n += h
	}
	if b > 0 {
		n += b
	}
	return n
}

// traceIDs extracts trace and span ids from W3C traceparent or B3 headers.
func traceIDs(hs []engine.Header) (trace, span string) {
	for _, h := range hs {
		switch strings.ToLower(h.Name) {
		case "traceparent":
			parts := strings.Split(h.Value, "-")
			if len(parts) == 4 && len(parts[1]) == 32 && len(parts[2]) == 16 {
				return parts[1], parts[2]
			}
		case "x-b3-traceid":
			trace = h.Value
		case "x-b3-spanid":
			span = h.Value
		}
	}
	return trace, span
}
