package redact

import (
	"bytes"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Query redacts a raw query string (or a form body): parameters a rule
// names are masked or dropped, the others go through the detectors, on
// their decoded value ("Bearer%20...", "4111+1111+..."). The parameters
// keep their order and, unless redacted, their encoding. A rule names a
// parameter by its decoded name, or the name before or inside its brackets
// (Rails and PHP forms: "user[password]", "api_key[]").
func (r *Redactor) Query(where, raw string, rec func(Finding)) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	out := parts[:0]
	changed := false
	for _, part := range parts {
		name, value, hasValue := strings.Cut(part, "=")
		key, err := url.QueryUnescape(name)
		if err != nil {
			key = name
		}
		a, ruled := r.paramRule(key)
		switch {
		case ruled && a != Keep && value != "" && value != url.QueryEscape(Masked):
			rec(Finding{Where: where + ":" + key, Kind: KindRule, Action: a, Original: value})
			changed = true
			if a == Drop {
				continue
			}
			part = name + "=" + url.QueryEscape(Masked)
		case !ruled && hasValue:
			if v := r.queryValue(where+":"+key, value, rec); v != value {
				part, changed = name+"="+v, true
			}
		}
		out = append(out, part)
	}
	if !changed {
		return raw
	}
	return strings.Join(out, "&")
}

// paramRule finds the rule for a decoded parameter name.
func (r *Redactor) paramRule(key string) (Action, bool) {
	k := strings.ToLower(key)
	if a, ok := r.params[k]; ok {
		return a, true
	}
	if i := strings.IndexByte(k, '['); i > 0 {
		if a, ok := r.params[k[:i]]; ok {
			return a, true
		}
		inner := strings.TrimSuffix(k[strings.LastIndexByte(k, '[')+1:], "]")
		if a, ok := r.params[inner]; ok && inner != "" {
			return a, true
		}
	}
	return "", false
}

// queryValue runs the detectors over a query value as it reads decoded;
// a value they change is written back encoded.
func (r *Redactor) queryValue(where, value string, rec func(Finding)) string {
	dec, err := url.QueryUnescape(value)
	if err != nil || dec == value {
		return r.Text(where, value, rec)
	}
	if out := r.Text(where, dec, rec); out != dec {
		return url.QueryEscape(out)
	}
	return value
}

// urlQueries redacts the query and fragment of a URL in a header value
// (Referer, Location, a callback URL): OAuth redirects carry tokens there.
func (r *Redactor) urlQueries(where, v string, rec func(Finding)) string {
	if !strings.Contains(v, "://") {
		return v
	}
	i := strings.IndexAny(v, "?#")
	if i < 0 {
		return v
	}
	rest, frag, hasFrag := strings.Cut(v[i+1:], "#")
	if v[i] == '#' {
		rest, frag, hasFrag = "", v[i+1:], true
	}
	out := v[:i+1] + r.Query(where, rest, rec)
	if hasFrag {
		if v[i] != '#' {
			out += "#"
		}
		out += r.Query(where, frag, rec)
	}
	return out
}

// looksForm: a body captured without a content type that reads as
// name=value pairs.
func looksForm(b []byte) bool {
	return len(b) < 1<<20 && bytes.IndexByte(b, '=') > 0 && bytes.IndexAny(b, " \t\r\n{}[]\"<>") < 0 && utf8.Valid(b)
}

var partNameRE = regexp.MustCompile(`(?i)content-disposition:[^\r\n]*;\s*name="([^"]*)"`)

// multipart redacts a multipart/form-data body: a part whose field name a
// query-parameter or body-field rule names has its content replaced, the
// others go through the detectors. ok is false when the body does not
// parse as the content type says.
func (r *Redactor) multipart(where, contentType string, body []byte, rec func(Finding)) ([]byte, bool) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, false
	}
	delim := []byte("--" + params["boundary"])
	chunks := bytes.Split(body, delim)
	if len(chunks) < 3 {
		return nil, false
	}
	changed := false
	for i := 1; i < len(chunks)-1; i++ {
		head, content, found := bytes.Cut(chunks[i], []byte("\r\n\r\n"))
		if !found {
			continue
		}
		content, tail := bytes.TrimSuffix(content, []byte("\r\n")), content[len(bytes.TrimSuffix(content, []byte("\r\n"))):]
		var out []byte
		if m := partNameRE.FindSubmatch(head); m != nil {
			out = r.formPart(where+":"+string(m[1]), string(m[1]), content, rec)
		} else {
			out = r.Body(where, "", content, rec)
		}
		if !bytes.Equal(out, content) {
			chunks[i] = append(append(append(append([]byte{}, head...), "\r\n\r\n"...), out...), tail...)
			changed = true
		}
	}
	if !changed {
		return body, true
	}
	return bytes.Join(chunks, delim), true
}

// formPart redacts one multipart field's content.
func (r *Redactor) formPart(where, name string, content []byte, rec func(Finding)) []byte {
	a, ok := r.paramRule(name)
	if !ok {
		a, ok = r.anyDepth[strings.ToLower(name)]
	}
	if !ok {
		return r.Body(where, "", content, rec)
	}
	if a == Keep || string(content) == Masked {
		return content
	}
	rec(Finding{Where: where, Kind: KindRule, Action: a, Original: string(content)})
	return []byte(ruleValue(a))
}
