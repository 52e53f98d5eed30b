package redact

import (
	"cmp"
	"slices"
	"strings"
)

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
	// dropStart is where a Drop cuts from: start, or the "Bearer" before a
	// bearer token.
	dropStart int
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
		ms = findURLPasswords(s, ms)
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
	slices.SortFunc(ms, func(a, b match) int { return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(b.end, a.end)) })
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
		ms = append(ms, match{start: k, end: end, kind: KindBearer, masked: Masked, dropStart: at})
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
			ms = append(ms, match{start: at, end: end, kind: KindAPIKey, masked: Masked, dropStart: at})
			i = end
		}
	}
	return ms
}

// isJWT reports whether t looks like a JSON Web Token: three dot-separated
// base64url parts whose first two encode JSON objects ("eyJ" is `{"`).
func isJWT(t string) bool {
	parts := strings.Split(t, ".")
	switch len(parts) {
	case 3: // JWS: header.payload.signature
		return strings.HasPrefix(parts[1], "eyJ") && len(parts[0]) >= 10 && len(parts[1]) >= 10
	case 5: // JWE: header.key.iv.ciphertext.tag (the key is empty for "dir")
		return len(parts[0]) >= 10 && len(parts[3]) >= 10
	}
	return false
}

// findURLPasswords finds the password of URL user info: the part after the
// colon in "scheme://user:password@host".
func findURLPasswords(s string, ms []match) []match {
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "://")
		if j < 0 {
			break
		}
		start := i + j + 3
		i = start
		end := start
		for end < len(s) && strings.IndexByte("/?#@ \t\r\n\"'<>", s[end]) < 0 {
			end++
		}
		if end >= len(s) || s[end] != '@' {
			continue
		}
		c := strings.IndexByte(s[start:end], ':')
		if c < 0 || c == end-start-1 {
			continue
		}
		ms = append(ms, match{start: start + c + 1, end: end, kind: KindAPIKey, masked: Masked, dropStart: start + c + 1})
		i = end
	}
	return ms
}

// findCards finds card numbers: 13 to 19 digits, single spaces or dashes
// allowed between them, at word boundaries, passing the Luhn check. A run
// of digit groups (a date and a card, two cards, a quantity and a card) is
// searched for every window of whole groups that could be one: the longest
// valid window starting at each group is taken.
func findCards(s string, ms []match) []match {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || i > 0 && cardWord(s[i-1]) {
			i++
			continue
		}
		groups, end := digitGroups(s, i)
		if end < len(s) && cardWord(s[end]) {
			i = end
			continue
		}
		ms = cardWindows(s, groups, ms)
		i = end
	}
	return ms
}

// group is one maximal digit sequence of a run, s[start:end].
type group struct{ start, end int }

// digitGroups returns the digit groups of the run at s[i] (groups joined
// by one space or dash) and where the run ends.
func digitGroups(s string, i int) ([]group, int) {
	var gs []group
	for k := i; ; {
		g := group{start: k}
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		g.end = k
		gs = append(gs, g)
		if k+1 < len(s) && (s[k] == ' ' || s[k] == '-') && isDigit(s[k+1]) && len(gs) < 64 {
			k++
			continue
		}
		return gs, k
	}
}

// cardWindows appends the card numbers among windows of whole groups.
func cardWindows(s string, gs []group, ms []match) []match {
	for a := 0; a < len(gs); {
		best, digits := -1, 0
		for b := a; b < len(gs); b++ {
			digits += gs[b].end - gs[b].start
			if digits > 19 {
				break
			}
			if digits >= 13 && luhn(s[gs[a].start:gs[b].end]) {
				best = b
			}
		}
		if best < 0 {
			a++
			continue
		}
		start, end := gs[a].start, gs[best].end
		masked := maskCard(s[start:end])
		if best < len(gs)-1 {
			// More digit groups follow: the last four digits are masked too,
			// or they could make a new card with those (not idempotent).
			masked = strings.Map(func(c rune) rune {
				if c >= '0' && c <= '9' {
					return '*'
				}
				return c
			}, masked)
		}
		ms = append(ms, match{start: start, end: end, kind: KindCardNumber, masked: masked, dropStart: start})
		a = best + 1
	}
	return ms
}

// cardWord reports whether c continues a word a card number cannot be
// part of: a letter, a digit, or the '*' of a masked card (so the digits
// a mask leaves never start a new match: redaction stays idempotent).
func cardWord(c byte) bool { return isAlnum(c) || c == '*' }

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
