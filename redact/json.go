package redact

import (
	"bytes"
	"encoding/json"
	"strings"
)

// A JSON body is redacted by a scan of its bytes after json.Valid has
// accepted it: valid input lets the scanner skip error handling, and
// working on spans keeps every byte that is not replaced (key order,
// spacing, number forms). encoding/json's Decoder.Token would allocate per
// token and ran at 6 MB/s (BenchmarkBody).

// jsonFrame is one open object or array of the walk.
type jsonFrame struct {
	object bool
	key    string // the key whose value is being read (objects)
}

// edit replaces body[start:end] with text.
type edit struct {
	start, end int
	text       []byte
}

// jsonWalk is the state of one body's walk.
type jsonWalk struct {
	r     *Redactor
	where string
	b     []byte
	i     int
	stack []jsonFrame
	edits []edit
	found []Finding
}

// jsonBody redacts a JSON body in place of its values. ok is false when
// the body is not valid JSON; the caller then falls back to the detectors.
func (r *Redactor) jsonBody(where string, body []byte, rec func(Finding)) (out []byte, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	w := &jsonWalk{r: r, where: where, b: body}
	w.value()
	for _, f := range w.found {
		rec(f)
	}
	if len(w.edits) == 0 {
		return body, true
	}
	var b bytes.Buffer
	b.Grow(len(body))
	last := 0
	for _, e := range w.edits {
		b.Write(body[last:e.start])
		b.Write(e.text)
		last = e.end
	}
	b.Write(body[last:])
	return b.Bytes(), true
}

func (w *jsonWalk) skipSpace() {
	for w.i < len(w.b) && (w.b[w.i] == ' ' || w.b[w.i] == '\t' || w.b[w.i] == '\r' || w.b[w.i] == '\n') {
		w.i++
	}
}

// value walks the value at w.i (valid JSON) and leaves w.i after it.
func (w *jsonWalk) value() {
	w.skipSpace()
	if w.i >= len(w.b) {
		return
	}
	switch c := w.b[w.i]; {
	case c == '{':
		w.object()
	case c == '[':
		w.array()
	case c == '"':
		start := w.i
		w.skipValue()
		raw := w.b[start:w.i]
		// An escaped string is tested decoded ("\u0034111..." is a card).
		if w.r.det.any() && (bytes.IndexByte(raw, '\\') >= 0 || w.r.detectorsMayMatch(bytesString(raw))) {
			end := w.i
			w.i = start
			w.scalar(w.str(), start, end)
		}
	case c == '-' || isDigit(c):
		start := w.i
		for w.i < len(w.b) && strings.IndexByte("+-.eE0123456789", w.b[w.i]) >= 0 {
			w.i++
		}
		w.scalar(bytesString(w.b[start:w.i]), start, w.i)
	default: // true, false, null
		for w.i < len(w.b) && w.b[w.i] >= 'a' && w.b[w.i] <= 'z' {
			w.i++
		}
	}
}

func (w *jsonWalk) object() {
	w.i++ // {
	w.stack = append(w.stack, jsonFrame{object: true})
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()
	for {
		w.skipSpace()
		switch w.b[w.i] {
		case '}':
			w.i++
			return
		case ',':
			w.i++
			continue
		}
		keyStart := w.i
		key := w.str()
		w.scalar(key, keyStart, w.i) // a secret can be a key too
		w.skipSpace()
		w.i++ // :
		w.skipSpace()
		w.stack[len(w.stack)-1].key = key
		if !w.ruledValue(key) {
			w.value()
		}
	}
}

func (w *jsonWalk) array() {
	w.i++ // [
	w.stack = append(w.stack, jsonFrame{})
	defer func() { w.stack = w.stack[:len(w.stack)-1] }()
	for {
		w.skipSpace()
		switch w.b[w.i] {
		case ']':
			w.i++
			return
		case ',':
			w.i++
			continue
		}
		w.value()
	}
}

// str reads the string at w.i and returns it decoded.
func (w *jsonWalk) str() string {
	start := w.i
	w.i++ // "
	escaped := false
	for w.b[w.i] != '"' {
		if w.b[w.i] == '\\' {
			escaped = true
			w.i++
		}
		w.i++
	}
	w.i++
	if !escaped {
		// A view, not a copy: keys live as long as the walk, and what is
		// kept (findings, edits) is copied from it.
		return bytesString(w.b[start+1 : w.i-1])
	}
	var s string
	_ = json.Unmarshal(w.b[start:w.i], &s) // valid JSON: cannot fail
	return s
}

// path is the JSON path of the value being read, lower-case, arrays
// looked through: "$.user.card".
func (w *jsonWalk) path() string {
	var b strings.Builder
	b.WriteString("$")
	for _, f := range w.stack {
		if f.object {
			b.WriteByte('.')
			b.WriteString(strings.ToLower(f.key))
		}
	}
	return b.String()
}

// ruledValue handles the value (at w.i) of an object key that a field rule
// names: the whole value is replaced. It reports false, reading nothing,
// when no rule applies.
func (w *jsonWalk) ruledValue(key string) bool {
	var a Action
	ok := false
	if len(w.r.paths) > 0 {
		a, ok = w.r.paths[w.path()]
	}
	if !ok {
		a, ok = lookupFold(w.r.anyDepth, key)
	}
	if !ok {
		return false
	}
	start := w.i
	if a == Keep {
		w.skipValue()
		return true // exempt, detectors included
	}
	w.skipValue()
	raw := w.b[start:w.i]
	if string(raw) == `"`+Masked+`"` || a == Drop && string(raw) == "null" {
		return true // already redacted
	}
	w.found = append(w.found, Finding{Where: w.where + ":" + w.path(), Kind: KindRule, Action: a, Original: string(raw)})
	text := []byte(`"` + Masked + `"`)
	if a == Drop {
		text = []byte("null")
	}
	w.edits = append(w.edits, edit{start: start, end: w.i, text: text})
	return true
}

// skipValue moves w.i past the value at w.i without looking into it.
func (w *jsonWalk) skipValue() {
	switch w.b[w.i] {
	case '"':
		w.str()
	case '{', '[':
		for depth := 0; ; {
			switch w.b[w.i] {
			case '"':
				w.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			w.i++
			if depth == 0 {
				return
			}
		}
	default: // a number, true, false, null
		for w.i < len(w.b) && strings.IndexByte(",}] \t\r\n", w.b[w.i]) < 0 {
			w.i++
		}
	}
}

// scalar runs the detectors over a string or number value at
// w.b[start:end] and records an edit when they replace anything (a number
// becomes a string).
func (w *jsonWalk) scalar(s string, start, end int) {
	if !w.r.det.any() || !w.r.detectorsMayMatch(s) {
		return
	}
	out := w.r.Text(w.where+":"+w.path(), s, func(f Finding) {
		f.Original = strings.Clone(f.Original) // s may be a view of the body
		w.found = append(w.found, f)
	})
	if out == s {
		return
	}
	text, err := json.Marshal(out)
	if err != nil {
		return // a Go string always marshals
	}
	w.edits = append(w.edits, edit{start: start, end: end, text: text})
}
