package ingest

// Streaming a HAR file: a json.Decoder walks {"log": {"entries": [...]}} and
// decodes one entry at a time from a source that bounds what one entry may
// take (MaxHAREntryBytes) and counts lines for error places.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/logstore/logstore/engine"
)

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
