// Package redact removes secrets from captured requests before they are
// sealed: a Policy names headers, query parameters and JSON body fields to
// drop, mask or seal, and turns on built-in detectors (bearer tokens, API
// keys, card numbers with a Luhn check) that find secrets wherever they are.
//
// The engine applies a tenant's policy to every record it appends (so every
// ingest path is covered); the CLI's export applies one to what it writes.
// The package knows nothing of records: it rewrites strings and bodies and
// reports, through a callback, each value it replaced and how, so the caller
// can keep originals of "seal" actions. docs/redaction.md documents the
// policy file and the default policy.
package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of this package; every error matches one with errors.Is.
var (
	// ErrInvalidPolicy: a policy that does not parse or names an unknown
	// action, detector or field path.
	ErrInvalidPolicy = errors.New("logstore/redact: invalid policy")
	// ErrUnknownVersion: a policy written by a newer build.
	ErrUnknownVersion = errors.New("logstore/redact: unknown policy version")
)

// Version is the policy format this build writes and reads.
const Version = 1

// Action says what happens to a value a rule or detector matches.
type Action string

const (
	// Keep leaves the value as it is (a rule that exempts a header from the
	// detectors, or a detector turned off).
	Keep Action = "keep"
	// Mask replaces the value with a masked form ("[REDACTED]", or a card
	// number's last four digits); the original is not stored anywhere.
	Mask Action = "mask"
	// Drop removes the value: a header or query parameter disappears, a
	// JSON field's value becomes null, a detected secret becomes "".
	Drop Action = "drop"
	// Seal masks the value for the normal view and keeps the original in the
	// record's sealed originals, which only an explicit reveal decrypts.
	Seal Action = "seal"
)

func (a Action) valid() bool {
	switch a {
	case Keep, Mask, Drop, Seal:
		return true
	}
	return false
}

// Masked is what a masked value reads as.
const Masked = "[REDACTED]"

// Rule applies Action to the values of one name.
type Rule struct {
	// Name is a header name or query parameter name (case-insensitive), or
	// a JSON body path: "password" matches that key at any depth, "$.a.b"
	// only key b of the top-level object a (arrays are looked through).
	Name   string `json:"name"`
	Action Action `json:"action"`
}

// Detectors turns each built-in detector on (Mask, Drop or Seal) or off
// (Keep or empty). They run over every header value, the query string, the
// path, attribute values, text, form, multipart and JSON bodies, and the
// identifiers (Redactor.Identifier: not for card numbers).
type Detectors struct {
	// Bearer finds "Bearer <token>" credentials; the token is replaced.
	Bearer Action `json:"bearer,omitempty"`
	// APIKey finds keys by their well-known prefixes (AWS AKIA/ASIA,
	// Stripe sk_live_/rk_live_, GitHub ghp_/github_pat_, Slack xox?-,
	// Google AIza, GitLab glpat-, OpenAI sk-), JSON Web Tokens (signed or
	// encrypted) and the password of a URL's user info (scheme://user:pass@).
	APIKey Action `json:"api_key,omitempty"`
	// CardNumber finds 13 to 19 digit runs (single spaces or dashes
	// allowed between digits) that pass the Luhn check; all digits but the
	// last four are replaced with '*'.
	CardNumber Action `json:"card_number,omitempty"`
}

// Policy is a tenant's redaction policy. The zero Policy (or None) changes
// nothing; Default is what a tenant without a policy gets.
type Policy struct {
	Version     int       `json:"version"`
	Headers     []Rule    `json:"headers,omitempty"`
	QueryParams []Rule    `json:"query_params,omitempty"`
	BodyFields  []Rule    `json:"body_fields,omitempty"`
	Detectors   Detectors `json:"detectors"`
}

// Default is the policy of a tenant that has not set one: credentials in
// headers and query strings are masked, well-known secret body fields are
// masked, and every detector masks. Masking keeps nothing: a tenant that
// needs the originals sets a policy with Seal.
func Default() *Policy {
	mask := func(names ...string) []Rule {
		rs := make([]Rule, len(names))
		for i, n := range names {
			rs[i] = Rule{Name: n, Action: Mask}
		}
		return rs
	}
	return &Policy{
		Version: Version,
		Headers: mask("authorization", "proxy-authorization", "x-forwarded-authorization", "cookie", "set-cookie",
			"x-api-key", "api-key", "x-auth-token", "x-access-token", "x-refresh-token", "x-csrf-token", "x-xsrf-token",
			"x-amz-security-token"),
		QueryParams: mask("api_key", "apikey", "access_token", "token", "password", "secret", "client_secret", "signature", "x-amz-signature"),
		BodyFields: mask("password", "passwd", "secret", "client_secret", "token", "access_token", "refresh_token",
			"id_token", "authorization", "private_key", "api_key", "apikey", "card_number", "cvv", "cvc"),
		Detectors: Detectors{Bearer: Mask, APIKey: Mask, CardNumber: Mask},
	}
}

// None is a policy that changes nothing (a tenant that opts out).
func None() *Policy { return &Policy{Version: Version} }

// Parse reads a policy file (JSON, docs/redaction.md) and validates it.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the policy object", ErrInvalidPolicy)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks every action and name.
func (p *Policy) Validate() error {
	if p.Version != Version {
		if p.Version > Version {
			return fmt.Errorf("%w: version %d (this build reads %d)", ErrUnknownVersion, p.Version, Version)
		}
		return fmt.Errorf("%w: version %d (want %d)", ErrInvalidPolicy, p.Version, Version)
	}
	for _, g := range []struct {
		what  string
		rules []Rule
	}{{"headers", p.Headers}, {"query_params", p.QueryParams}, {"body_fields", p.BodyFields}} {
		seen := map[string]bool{}
		for i, r := range g.rules {
			if err := validName(g.what, r.Name); err != nil {
				return fmt.Errorf("%w: %s[%d]: %v", ErrInvalidPolicy, g.what, i, err)
			}
			if !r.Action.valid() {
				return fmt.Errorf("%w: %s[%d] %q: action %q (want keep, mask, drop or seal)", ErrInvalidPolicy, g.what, i, r.Name, r.Action)
			}
			if k := strings.ToLower(r.Name); seen[k] {
				return fmt.Errorf("%w: %s[%d]: %q is named twice (names are case-insensitive)", ErrInvalidPolicy, g.what, i, r.Name)
			} else {
				seen[k] = true
			}
		}
	}
	for name, a := range map[string]Action{"bearer": p.Detectors.Bearer, "api_key": p.Detectors.APIKey, "card_number": p.Detectors.CardNumber} {
		if a != "" && !a.valid() {
			return fmt.Errorf("%w: detector %s: action %q (want keep, mask, drop or seal)", ErrInvalidPolicy, name, a)
		}
	}
	return nil
}

// validName refuses a rule name that could never match: empty, with
// surrounding spaces, or, for body fields, a path with an empty step or
// JSONPath syntax this build does not read ("$..a", "$.a[*].b", "a[0]").
func validName(what, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("empty name")
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%q: spaces around the name", name)
	case what != "body_fields":
		return nil
	case strings.ContainsAny(name, "[]*"):
		return fmt.Errorf("%q: only key names and $.a.b paths are read (arrays are looked through)", name)
	case strings.HasPrefix(name, "$"):
		steps := strings.Split(name, ".")
		if steps[0] != "$" || len(steps) < 2 || slices.Contains(steps[1:], "") {
			return fmt.Errorf("%q: a path is $.key.key...", name)
		}
	case strings.Contains(name, "."):
		return fmt.Errorf("%q: a dotted name must be a path from the top: $.%s", name, name)
	}
	return nil
}

// Marshal is the policy as a file holds it.
func (p *Policy) Marshal() ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}

// IsNone reports whether the policy changes nothing.
func (p *Policy) IsNone() bool {
	on := func(a Action) bool { return a != "" && a != Keep }
	for _, rs := range [][]Rule{p.Headers, p.QueryParams, p.BodyFields} {
		for _, r := range rs {
			if r.Action != Keep {
				return false
			}
		}
	}
	return !on(p.Detectors.Bearer) && !on(p.Detectors.APIKey) && !on(p.Detectors.CardNumber)
}
