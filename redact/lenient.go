package redact

import (
	"bytes"
	"strings"
)

// lenientFields applies the body-field rules to a JSON-like body that is
// not valid JSON (cut at a capture's size limit, NDJSON, a BOM or an
// anti-XSSI prefix before it): every `"key"` a rule names (by its name, or
// a path's last step) followed by a colon has its value replaced, up to
// where the value ends or the body does. It errs towards masking more.
func (r *Redactor) lenientFields(where string, body []byte, rec func(Finding)) []byte {
	if len(r.anyDepth)+len(r.paths) == 0 || !r.mayHaveSecrets(body) {
		return body
	}
	names := map[string]Action{}
	for k, a := range r.anyDepth {
		names[k] = a
	}
	for p, a := range r.paths {
		names[p[strings.LastIndexByte(p, '.')+1:]] = a
	}
	var out bytes.Buffer
	last := 0
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		end := stringEnd(body, i)
		a, ok := names[strings.ToLower(string(body[i+1:max(i+1, end-1)]))]
		j := skipBlank(body, end)
		if !ok || j >= len(body) || body[j] != ':' {
			i = end - 1
			continue
		}
		vs := skipBlank(body, j+1)
		ve := lenientValueEnd(body, vs)
		if a != Keep && vs < ve && string(body[vs:ve]) != `"`+Masked+`"` {
			rec(Finding{Where: where + ":" + strings.ToLower(string(body[i+1:end-1])), Kind: KindRule, Action: a, Original: string(body[vs:ve])})
			out.Write(body[last:vs])
			if a == Drop {
				out.WriteString("null")
			} else {
				out.WriteString(`"` + Masked + `"`)
			}
			last = ve
		}
		i = max(ve, end) - 1
	}
	if last == 0 {
		return body
	}
	out.Write(body[last:])
	return out.Bytes()
}

// stringEnd is the offset after the string starting at b[i] (a quote):
// after its closing quote, or len(b) if it has none.
func stringEnd(b []byte, i int) int {
	for k := i + 1; k < len(b); k++ {
		switch b[k] {
		case '\\':
			k++
		case '"':
			return k + 1
		}
	}
	return len(b)
}

func skipBlank(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// lenientValueEnd is where the value starting at b[i] ends: a string at its
// closing quote, an object or array at its matching bracket, anything else
// before the next , } ] or line end; the body's end if it is cut.
func lenientValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for k := i; k < len(b); k++ {
			switch b[k] {
			case '"':
				k = stringEnd(b, k) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return k + 1
				}
			}
		}
		return len(b)
	}
	k := i
	for k < len(b) && bytes.IndexByte([]byte(",}]\r\n"), b[k]) < 0 {
		k++
	}
	return k
}
