package redact

import (
	"bytes"
	"strings"
	"unsafe"
)

// The prefilter lets a body with nothing to redact (most of them) pass
// with one pass over its bytes, instead of one per detector, API-key
// prefix and field name (BenchmarkBody).

// starts marks the bytes a secret the detectors know can begin with: a
// digit (card numbers), b/B (bearer) and the first byte of each API-key
// prefix; pairs marks their first two bytes (digits aside).
var starts, pairs = func() (t [256]bool, p [1 << 16]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, w := range []string{"be", "Be", "BE", "bE"} {
		t[w[0]], p[pair(w[0], w[1])] = true, true
	}
	for _, k := range apiKeyPrefixes {
		t[k.prefix[0]], p[pair(k.prefix[0], k.prefix[1])] = true, true
	}
	return t, p
}()

func pair(a, b byte) uint16 { return uint16(a)<<8 | uint16(b) }

// bytesString views b as a string without copying; b must not change while
// the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// mayHaveSecrets is the cheap test that lets most JSON bodies skip the
// tokenizer: it reports whether the body could hold a detector match or a
// field rule's key, erring only towards true.
func (r *Redactor) mayHaveSecrets(body []byte) bool {
	if bytes.IndexByte(body, '\\') >= 0 {
		return true // escapes can spell any key or secret: the walk decodes them
	}
	s := bytesString(body)
	if r.det.any() && r.mayMatch(r.det, s) {
		return true
	}
	if len(r.bodyKeys) == 0 {
		return false
	}
	for i := 0; i < len(s)-1; i++ {
		if s[i] == '"' && len(r.keyFirst[s[i+1]]) > 0 && r.keyAt(s[i:]) {
			return true
		}
	}
	return false
}

// keyAt reports whether s (starting at a quote) starts with a quoted field
// rule key, in any case.
func (r *Redactor) keyAt(s string) bool {
	for _, k := range r.keyFirst[s[1]] { // `"name"`, lower-case
		if len(s) >= len(k) && equalFoldASCII(s[:len(k)], k) {
			return true
		}
	}
	return false
}

// detectorsMayMatch reports whether the policy's detectors could find
// anything in s.
func (r *Redactor) detectorsMayMatch(s string) bool { return r.mayMatch(r.det, s) }

// mayMatch reports whether detectors d could find anything in s, in one
// pass that looks further only at the starts of words (false positives are
// settled by find).
func (r *Redactor) mayMatch(d detector, s string) bool {
	if d.apiKey && strings.Contains(s, "://") && len(findURLPasswords(s, nil)) > 0 {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !starts[c] || i > 0 && isAlnum(s[i-1]) {
			continue
		}
		if isDigit(c) {
			if d.card && (i == 0 || s[i-1] != '*') && cardRunAt(s, i) {
				return true
			}
			continue
		}
		if i+1 < len(s) && pairs[pair(c, s[i+1])] && detectAt(d, s, i) {
			return true
		}
	}
	return false
}

// cardRunAt reports whether a card-number-like run (13 to 19 digits,
// single spaces or dashes between) starts at s[i].
func cardRunAt(s string, i int) bool {
	digits, k := 0, i
	for ; k < len(s); k++ { // count first: most runs are short, and this allocates nothing
		switch c := s[k]; {
		case isDigit(c):
			digits++
			continue
		case (c == ' ' || c == '-') && k+1 < len(s) && isDigit(s[k+1]) && isDigit(s[k-1]):
			continue
		}
		break
	}
	if digits < 13 || k < len(s) && cardWord(s[k]) {
		return false
	}
	gs, _ := digitGroups(s, i)
	return len(cardWindows(s, gs, nil)) > 0
}

// detectAt runs detectors d from s[i], a possible start of a secret.
func detectAt(d detector, s string, i int) bool {
	end := min(len(s), i+512) // the longest prefix match the detectors need is far shorter
	if d.bearer && (s[i] == 'b' || s[i] == 'B') && len(findBearer(s[i:end], nil)) > 0 {
		return true
	}
	if d.apiKey {
		for _, p := range apiKeyPrefixes {
			if p.prefix[0] == s[i] && len(s)-i >= len(p.prefix) && s[i:i+len(p.prefix)] == p.prefix {
				return true // the full check runs on the tokens
			}
		}
	}
	return false
}

// equalFoldASCII compares s with lower-case ASCII k, ignoring the case of s.
func equalFoldASCII(s, k string) bool {
	for j := 0; j < len(k); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != k[j] {
			return false
		}
	}
	return true
}
