package redact

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Finding is one value a Redactor replaced: where it was, what found it,
// what was done, and the original (for Seal; callers must not keep
// originals of other actions).
type Finding struct {
	// Where names the place: "request_header:Authorization",
	// "query:api_key", "request_body:$.card.number", "path", ...
	Where    string
	Kind     Kind
	Action   Action
	Original string
}

// Redactor applies a compiled Policy. It is immutable and safe for
// concurrent use.
type Redactor struct {
	headers  map[string]Action // lower-case header name
	params   map[string]Action // lower-case query parameter name
	anyDepth map[string]Action // lower-case JSON key, any depth
	paths    map[string]Action // "$.a.b", lower-case
	bodyKeys []string          // `"name"`, lower-case, for the prefilter
	keyFirst [256][]string     // bodyKeys by the first byte of their name, either case
	det      detector
	detAct   map[Kind]Action
	seals    bool // some rule or detector seals
}

// Seals reports whether the policy keeps any original (a "seal" action).
func (r *Redactor) Seals() bool { return r.seals }

// Compile validates p and prepares it for use. A nil Policy compiles to
// Default.
func (p *Policy) Compile() (*Redactor, error) {
	if p == nil {
		p = Default()
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	r := &Redactor{
		headers: rules(p.Headers), params: rules(p.QueryParams),
		anyDepth: map[string]Action{}, paths: map[string]Action{},
		detAct: map[Kind]Action{KindBearer: p.Detectors.Bearer, KindAPIKey: p.Detectors.APIKey, KindCardNumber: p.Detectors.CardNumber},
	}
	for _, rule := range p.BodyFields {
		name := strings.ToLower(rule.Name)
		if strings.HasPrefix(name, "$.") {
			r.paths[name] = rule.Action
			name = name[strings.LastIndexByte(name, '.')+1:]
		} else {
			r.anyDepth[name] = rule.Action
		}
		r.bodyKeys = append(r.bodyKeys, `"`+name+`"`)
		if name != "" {
			k, up := `"`+name+`"`, strings.ToUpper(name[:1])[0]
			r.keyFirst[name[0]] = append(r.keyFirst[name[0]], k)
			if up != name[0] {
				r.keyFirst[up] = append(r.keyFirst[up], k)
			}
		}
	}
	for _, rs := range [][]Rule{p.Headers, p.QueryParams, p.BodyFields} {
		for _, rule := range rs {
			r.seals = r.seals || rule.Action == Seal
		}
	}
	for _, a := range r.detAct {
		r.seals = r.seals || a == Seal
	}
	on := func(a Action) bool { return a != "" && a != Keep }
	r.det = detector{bearer: on(p.Detectors.Bearer), apiKey: on(p.Detectors.APIKey), card: on(p.Detectors.CardNumber)}
	return r, nil
}

// lookupFold looks name up in m, whose keys are lower-case, without
// allocating for names of up to 64 bytes (header names, JSON keys).
func lookupFold(m map[string]Action, name string) (Action, bool) {
	if len(name) > 64 {
		a, ok := m[strings.ToLower(name)]
		return a, ok
	}
	var buf [64]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	a, ok := m[string(buf[:len(name)])] // no allocation: a map index by a converted slice
	return a, ok
}

func rules(rs []Rule) map[string]Action {
	m := make(map[string]Action, len(rs))
	for _, r := range rs {
		m[strings.ToLower(r.Name)] = r.Action
	}
	return m
}

// replaceRule is the value a rule's action leaves: masked, or "" for
// Drop (callers that can remove the value do so instead).
func ruleValue(a Action) string {
	if a == Drop {
		return ""
	}
	return Masked
}

// Header redacts one header value. drop reports that the header must be
// removed. A header a rule names (with any action but Keep) is replaced as
// a whole; Keep exempts it from the detectors; others go through the
// detectors.
func (r *Redactor) Header(where, name, value string, rec func(Finding)) (out string, drop bool) {
	if a, ok := lookupFold(r.headers, name); ok {
		if a == Keep || value == Masked {
			return value, false
		}
		rec(Finding{Where: where, Kind: KindRule, Action: a, Original: value})
		return ruleValue(a), a == Drop
	}
	return r.urlQueries(where, r.Text(where, value, rec), rec), false
}

// Text runs the detectors over s.
func (r *Redactor) Text(where, s string, rec func(Finding)) string {
	return r.text(r.det, where, s, rec)
}

// Identifier is Text for an identifier (a session, trace or consumer id):
// the card-number detector is left out, because numeric ids of 13 to 19
// digits (snowflake ids, say) pass the Luhn check one time in ten, and an
// id masked by mistake could no longer be queried or erased by its value.
func (r *Redactor) Identifier(where, s string, rec func(Finding)) string {
	d := r.det
	d.card = false
	return r.text(d, where, s, rec)
}

func (r *Redactor) text(d detector, where, s string, rec func(Finding)) string {
	if !d.any() || s == "" || !r.mayMatch(d, s) {
		return s
	}
	ms := d.find(s)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, m := range ms {
		a := r.detAct[m.kind]
		rec(Finding{Where: where, Kind: m.kind, Action: a, Original: s[m.start:m.end]})
		switch {
		case a == Drop:
			// The whole credential goes ("Bearer" too), so a second pass
			// finds nothing new: dropping is idempotent.
			b.WriteString(s[last:max(last, m.dropStart)])
		case len(m.masked) > m.end-m.start:
			// Never longer than the secret: a field at its size limit
			// stays within it.
			b.WriteString(s[last:m.start])
			b.WriteString(strings.Repeat("*", m.end-m.start))
		default:
			b.WriteString(s[last:m.start])
			b.WriteString(m.masked)
		}
		last = m.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Body redacts a request or response body: JSON bodies by their field
// rules and the detectors over every string and number, form bodies like a
// query string, anything else by the detectors over its bytes (a secret
// in a binary body is masked too: a capture with a damaged binary body is
// better than a leaked card number). A body with nothing to redact is
// returned as is, without copying.
func (r *Redactor) Body(where, contentType string, body []byte, rec func(Finding)) []byte {
	if len(body) == 0 || !r.det.any() && len(r.bodyKeys) == 0 && len(r.params) == 0 {
		return body
	}
	ct := strings.ToLower(contentType)
	switch {
	case strings.Contains(ct, "x-www-form-urlencoded") || ct == "" && looksForm(body):
		s := string(body)
		if out := r.Query(where, s, rec); out != s {
			return []byte(out)
		}
		return body
	case strings.HasPrefix(ct, "multipart/"):
		if out, ok := r.multipart(where, contentType, body, rec); ok {
			return out
		}
	case strings.Contains(ct, "json") || looksJSON(body):
		if !r.mayHaveSecrets(body) {
			return body
		}
		if out, ok := r.jsonBody(where, body, rec); ok {
			return out
		}
		// Not valid JSON (a capture cut at a size limit, NDJSON, a BOM or
		// an anti-XSSI prefix): the field rules still apply, leniently.
		body = r.lenientFields(where, body, rec)
	}
	if !r.det.any() || !r.detectorsMayMatch(bytesString(body)) {
		return body
	}
	s := string(body)
	if out := r.Text(where, s, rec); out != s {
		return []byte(out)
	}
	return body
}

// looksJSON: an object or array, for bodies captured without a content type.
func looksJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[') && utf8.Valid(b)
}
