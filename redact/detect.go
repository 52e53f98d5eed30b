package redact

import "strings"

// Kind names what found a secret: a policy rule or one of the detectors.
type Kind string

const (
	KindRule       Kind = "rule"
	KindBearer     Kind = "bearer"
	KindAPIKey     Kind = "api_key"
	KindCardNumber Kind = "card_number"
)

// match is one detected secret: s[start:end] is replaced with masked.
type match struct {
	start, end int
	kind       Kind
	masked     string
}

// apiKeyPrefix describes a key format by its prefix: the token after the
// prefix is made of charset, at least min and at most max characters
// (max 0: unbounded), and needs a digit when digit is set (a guard against
// words that share the prefix).
type apiKeyPrefix struct {
	prefix   string
	charset  string
	min, max int
	digit    bool
}

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upperDigit = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b64url     = alnum + "_-"
)

// apiKeyPrefixes are the formats the APIKey detector knows; each is
// documented by its issuer as a secret.
var apiKeyPrefixes = []apiKeyPrefix{
	{"AKIA", upperDigit, 16, 16, false}, // AWS access key id
	{"ASIA", upperDigit, 16, 16, false}, // AWS temporary access key id
	{"sk_live_", alnum, 16, 0, false},   // Stripe
	{"sk_test_", alnum, 16, 0, false},
	{"rk_live_", alnum, 16, 0, false},
	{"ghp_", alnum, 30, 0, false}, // GitHub
	{"gho_", alnum, 30, 0, false},
	{"ghu_", alnum, 30, 0, false},
	{"ghs_", alnum, 30, 0, false},
	{"github_pat_", alnum + "_", 20, 0, false},
	{"xoxb-", alnum + "-", 10, 0, false}, // Slack
	{"xoxp-", alnum + "-", 10, 0, false},
	{"xoxa-", alnum + "-", 10, 0, false},
	{"AIza", b64url, 35, 35, false},     // Google API key
	{"glpat-", b64url, 20, 0, false},    // GitLab
	{"sk-", b64url, 32, 0, true},        // OpenAI and alike
	{"eyJ", b64url + ".", 30, 0, false}, // JSON Web Token (checked below)
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// detector finds the secrets its enabled detectors know in a string.
type detector struct {
	bearer, apiKey, card bool
}

func (d detector) any() bool { return d.bearer || d.apiKey || d.card }

// find returns the secrets in s, in order and not overlapping.
func (d detector) find(s string) []match {
	var ms []match
	if d.bearer {
		ms = findBearer(s, ms)
	}
	if d.apiKey {
		ms = findAPIKeys(s, ms)
	}
	if d.card {
		ms = findCards(s, ms)
	}
	return sortMatches(ms)
}

// sortMatches orders matches by start and drops those overlapping an
// earlier one (a JWT inside a bearer token is one secret).
func sortMatches(ms []match) []match {
	if len(ms) < 2 {
		return ms
	}
	for i := 1; i < len(ms); i++ { // insertion sort: a handful of matches
		for j := i; j > 0 && (ms[j].start < ms[j-1].start || ms[j].start == ms[j-1].start && ms[j].end > ms[j-1].end); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	out := ms[:1]
	for _, m := range ms[1:] {
		if m.start >= out[len(out)-1].end {
			out = append(out, m)
		}
	}
	return out
}

// findBearer finds "Bearer <token>" (any case, one or more spaces) with a
// token of at least 8 characters of RFC 6750's b64token alphabet.
func findBearer(s string, ms []match) []match {
	const word = "bearer"
	for i := 0; i+len(word) < len(s); {
		j := strings.IndexAny(s[i:], "bB")
		if j < 0 {
			break
		}
		at := i + j
		i = at + 1
		if at+len(word) >= len(s) || !strings.EqualFold(s[at:at+len(word)], word) || at > 0 && isAlnum(s[at-1]) {
			continue
		}
		k := at + len(word)
		for k < len(s) && s[k] == ' ' {
			k++
		}
		if k == at+len(word) {
			continue
		}
		end := k
		for end < len(s) && (isAlnum(s[end]) || strings.IndexByte("-._~+/", s[end]) >= 0) {
			end++
		}
		for end < len(s) && s[end] == '=' {
			end++
		}
		if end-k < 8 {
			continue
		}
		ms = append(ms, match{start: k, end: end, kind: KindBearer, masked: Masked})
		i = end
	}
	return ms
}

// findAPIKeys finds tokens of the known key formats, each starting at a
// word boundary.
func findAPIKeys(s string, ms []match) []match {
	for _, p := range apiKeyPrefixes {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], p.prefix)
			if j < 0 {
				break
			}
			at := i + j
			i = at + len(p.prefix)
			if at > 0 && (isAlnum(s[at-1]) || s[at-1] == '_' || s[at-1] == '-') {
				continue
			}
			end, digits := at+len(p.prefix), 0
			for end < len(s) && strings.IndexByte(p.charset, s[end]) >= 0 && (p.max == 0 || end-at-len(p.prefix) < p.max) {
				if isDigit(s[end]) {
					digits++
				}
				end++
			}
			n := end - at - len(p.prefix)
			if n < p.min || p.digit && digits == 0 || end < len(s) && isAlnum(s[end]) {
				continue
			}
			if p.prefix == "eyJ" && !isJWT(s[at:end]) {
				continue
			}
			ms = append(ms, match{start: at, end: end, kind: KindAPIKey, masked: Masked})
			i = end
		}
	}
	return ms
}

// isJWT reports whether t looks like a JSON Web Token: three dot-separated
// base64url parts whose first two encode JSON objects ("eyJ" is `{"`).
func isJWT(t string) bool {
	parts := strings.Split(t, ".")
	return len(parts) == 3 && strings.HasPrefix(parts[1], "eyJ") && len(parts[0]) >= 10 && len(parts[1]) >= 10
}

// findCards finds runs of 13 to 19 digits, single spaces or dashes allowed
// between them, at word boundaries, that pass the Luhn check.
func findCards(s string, ms []match) []match {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || i > 0 && (isAlnum(s[i-1])) {
			i++
			continue
		}
		start, end, digits := i, i, 0
		for k := i; k < len(s); {
			if isDigit(s[k]) {
				digits++
				k++
				end = k
				continue
			}
			if (s[k] == ' ' || s[k] == '-') && k+1 < len(s) && isDigit(s[k+1]) && k > start && isDigit(s[k-1]) {
				k++
				continue
			}
			break
		}
		i = end
		if digits < 13 || digits > 19 || end < len(s) && isAlnum(s[end]) {
			continue
		}
		if !luhn(s[start:end]) {
			continue
		}
		ms = append(ms, match{start: start, end: end, kind: KindCardNumber, masked: maskCard(s[start:end])})
	}
	return ms
}

// luhn checks the digits of s (other characters skipped).
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		if !isDigit(s[i]) {
			continue
		}
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// maskCard replaces every digit but the last four with '*', keeping the
// separators (PCI DSS allows the last four to be shown).
func maskCard(s string) string {
	b := []byte(s)
	keep := 4
	for i := len(b) - 1; i >= 0; i-- {
		if !isDigit(b[i]) {
			continue
		}
		if keep > 0 {
			keep--
			continue
		}
		b[i] = '*'
	}
	return string(b)
}
