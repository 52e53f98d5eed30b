package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// jsonFrame is one open object or array of the walk.
type jsonFrame struct {
	object    bool
	expectKey bool
	key       string // the key whose value is being read (objects)
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
	body  []byte
	dec   *json.Decoder
	stack []jsonFrame
	edits []edit
	rec   func(Finding)
}

// jsonBody redacts a JSON body in place of its values, keeping every other
// byte (key order, spacing, number forms) as it was. ok is false when the
// body is not valid JSON; the caller then falls back to the detectors.
func (r *Redactor) jsonBody(where string, body []byte, rec func(Finding)) (out []byte, ok bool) {
	w := &jsonWalk{r: r, where: where, body: body, dec: json.NewDecoder(bytes.NewReader(body))}
	w.dec.UseNumber()
	// Findings are held until the walk succeeds: a body that turns out not
	// to be JSON is redacted by the fallback, which reports its own.
	var found []Finding
	w.rec = func(f Finding) { found = append(found, f) }
	if err := w.run(); err != nil {
		return nil, false
	}
	for _, f := range found {
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

// valueStart is the offset of the value that follows off, past the
// separators the decoder has not consumed yet.
func (w *jsonWalk) valueStart(off int64) int {
	i := int(off)
	for i < len(w.body) && strings.IndexByte(" \t\r\n,:", w.body[i]) >= 0 {
		i++
	}
	return i
}

func (w *jsonWalk) run() error {
	for {
		before := w.dec.InputOffset()
		if n := len(w.stack); n > 0 && w.stack[n-1].object && !w.stack[n-1].expectKey {
			if done, err := w.ruledValue(before); err != nil || done {
				if err != nil {
					return err
				}
				w.stack[n-1].expectKey = true
				continue
			}
		}
		tok, err := w.dec.Token()
		if errors.Is(err, io.EOF) {
			if len(w.stack) != 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		w.token(tok, before)
	}
}

// ruledValue handles the value of an object key that a field rule names:
// the whole value (object, array or scalar) is replaced. done is false
// when no rule applies.
func (w *jsonWalk) ruledValue(before int64) (done bool, err error) {
	top := w.stack[len(w.stack)-1]
	a, ok := w.r.paths[w.path()]
	if !ok {
		a, ok = w.r.anyDepth[strings.ToLower(top.key)]
	}
	if !ok {
		return false, nil
	}
	start := w.valueStart(before)
	var raw json.RawMessage
	if err := w.dec.Decode(&raw); err != nil {
		return false, err
	}
	if a == Keep {
		return true, nil // exempt, detectors included
	}
	masked := []byte(`"` + Masked + `"`)
	if bytes.Equal(raw, masked) || a == Drop && string(raw) == "null" {
		return true, nil // already redacted
	}
	where := w.where + ":" + w.path()
	w.rec(Finding{Where: where, Kind: KindRule, Action: a, Original: string(raw)})
	text := masked
	if a == Drop {
		text = []byte("null")
	}
	w.edits = append(w.edits, edit{start: start, end: int(w.dec.InputOffset()), text: text})
	return true, nil
}

// token advances the walk over one token; string and number values go
// through the detectors.
func (w *jsonWalk) token(tok json.Token, before int64) {
	n := len(w.stack)
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			w.stack = append(w.stack, jsonFrame{object: true, expectKey: true})
		case '[':
			w.stack = append(w.stack, jsonFrame{})
		default:
			w.stack = w.stack[:n-1]
			w.valueDone()
		}
		return
	case string:
		if n > 0 && w.stack[n-1].object && w.stack[n-1].expectKey {
			w.stack[n-1].key, w.stack[n-1].expectKey = t, false
			return
		}
		w.scalar(t, before)
	case json.Number:
		w.scalar(string(t), before)
	}
	w.valueDone()
}

// valueDone: after a value inside an object, the next string is a key.
func (w *jsonWalk) valueDone() {
	if n := len(w.stack); n > 0 && w.stack[n-1].object {
		w.stack[n-1].expectKey = true
	}
}

// scalar runs the detectors over a string or number value and records an
// edit when they replace anything (a number becomes a string).
func (w *jsonWalk) scalar(s string, before int64) {
	if !w.r.det.any() {
		return
	}
	out := w.r.Text(w.where+":"+w.path(), s, w.rec)
	if out == s {
		return
	}
	text, err := json.Marshal(out)
	if err != nil {
		return // a Go string always marshals
	}
	w.edits = append(w.edits, edit{start: w.valueStart(before), end: int(w.dec.InputOffset()), text: text})
}
