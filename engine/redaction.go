package engine

// Redaction before sealing: Append passes every record through its
// tenant's redaction policy (the redact package) before anything is
// encoded, so no ingest path can skip it. The policy is the tenant's, kept
// in its authenticated manifest (Admin.SetRedaction), or else
// Options.Redaction (default redact.Default()). A manifest lost or
// replaced falls back to the store's default, never to no redaction; a
// policy this build cannot compile fails the tenant's appends closed.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/logstore/logstore/redact"
)

// redactors caches each tenant's compiled policy, keyed by the policy
// value it was compiled from (manifests are immutable once published, so a
// new policy is a new pointer).
type redactors struct {
	mu       sync.Mutex // guards byTenant
	byTenant map[string]compiledPolicy
	fallback *redact.Redactor // Options.Redaction, compiled by Open
}

type compiledPolicy struct {
	from *redact.Policy
	r    *redact.Redactor
}

// redactorFor returns the compiled policy tenant's records are appended
// under.
func (db *DB) redactorFor(tenant string) (*redact.Redactor, error) {
	p := db.tenantPolicy(tenant)
	if p == nil {
		return db.redact.fallback, nil
	}
	db.redact.mu.Lock()
	defer db.redact.mu.Unlock()
	if c, ok := db.redact.byTenant[tenant]; ok && c.from == p {
		return c.r, nil
	}
	r, err := p.Compile()
	if err != nil {
		return nil, fmt.Errorf("logstore/engine: tenant %s: redaction policy: %w", tenant, err)
	}
	if db.redact.byTenant == nil {
		db.redact.byTenant = map[string]compiledPolicy{}
	}
	db.redact.byTenant[tenant] = compiledPolicy{from: p, r: r}
	return r, nil
}

// tenantPolicy is the policy tenant's manifest sets, nil when none.
func (db *DB) tenantPolicy(tenant string) *redact.Policy {
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		return tm.body.Redaction
	}
	return nil
}

// setRedaction implements Admin.SetRedaction.
func (db *DB) setRedaction(ctx context.Context, tenant string, p *redact.Policy) error {
	if p != nil {
		if _, err := p.Compile(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		c := *p // the caller keeps theirs; the manifest's is never modified
		p = &c
	}
	if db.opts.Plaintext {
		return fmt.Errorf("%w: a Plaintext store has no manifests to keep a tenant policy in", ErrInvalidOptions)
	}
	return db.control(ctx, func() error {
		return db.updateManifest(ctx, tenant, true, func(b *manifestBody) error {
			b.Redaction = p
			b.ConfigDirty = b.ConfigDirty || db.uploader != nil
			return nil
		})
	})
}

// redaction implements Admin.Redaction.
func (db *DB) redaction(tenant string) (*redact.Policy, bool) {
	if p := db.tenantPolicy(tenant); p != nil {
		return p, true
	}
	if db.opts.Redaction != nil {
		return db.opts.Redaction, false
	}
	return redact.Default(), false
}

// RedactRecord returns in with the policy rd applied, as Append does, and how many values
// were replaced; in is not modified (its slices and maps are copied when
// something in them changes). Originals of "seal" actions are appended to
// the copy's Originals.
func RedactRecord(rd *redact.Redactor, in *Record) (Record, int) {
	out := *in
	n := 0
	var originals []Original
	rec := func(f redact.Finding) {
		n++
		if f.Action == redact.Seal {
			originals = append(originals, Original{Where: f.Where, Value: f.Original})
		}
	}
	// Identifiers (plaintext, or searched and erased by value): the
	// detectors but the card number's, whose Luhn check one numeric id in
	// ten passes (redact.Redactor.Identifier).
	for _, f := range []struct {
		where string
		v     *string
	}{{"session_id", &out.SessionID}, {"trace_id", &out.TraceID}, {"span_id", &out.SpanID},
		{"host", &out.Host}, {"route_id", &out.RouteID}, {"service_id", &out.ServiceID}, {"consumer_id", &out.ConsumerID}} {
		*f.v = rd.Identifier(f.where, *f.v, rec)
	}
	out.Method = rd.Text("method", in.Method, rec)
	out.ResponseSource = rd.Text("response_source", in.ResponseSource, rec)
	out.Path = rd.Text("path", in.Path, rec)
	out.Query = rd.Query("query", in.Query, rec)
	out.RequestHeaders = redactHeaders(rd, "request_header:", in.RequestHeaders, rec)
	out.ResponseHeaders = redactHeaders(rd, "response_header:", in.ResponseHeaders, rec)
	out.Attributes = redactAttributes(rd, in.Attributes, rec)
	if p := in.Payload; p != nil {
		req := rd.Body("request_body", p.RequestContentType, p.RequestBody, rec)
		resp := rd.Body("response_body", p.ResponseContentType, p.ResponseBody, rec)
		if !sameBytes(req, p.RequestBody) || !sameBytes(resp, p.ResponseBody) { // copied only when changed
			c := *p
			c.RequestBody, c.ResponseBody = req, resp
			out.Payload = &c
		}
	}
	// A caller's originals (an export read back) are kept only under a
	// policy that seals: under one that masks, they would store what it
	// masks (counted as redacted values).
	kept := in.Originals
	if len(kept) > 0 && !rd.Seals() {
		n += len(kept)
		kept = nil
		out.Originals = nil
	}
	if len(originals) > 0 {
		out.Originals = append(append(make([]Original, 0, len(kept)+len(originals)), kept...), originals...)
	}
	return out, n
}

// redactHeaders applies the policy to a header list, copying it only when
// a value changes or a header is dropped.
func redactHeaders(rd *redact.Redactor, where string, hs []Header, rec func(redact.Finding)) []Header {
	var out []Header
	for i, h := range hs {
		v, drop := rd.Header(where+h.Name, h.Name, h.Value, rec)
		if out == nil && (drop || v != h.Value) {
			out = append(make([]Header, 0, len(hs)), hs[:i]...)
		}
		if out != nil && !drop {
			out = append(out, Header{Name: h.Name, Value: v})
		}
	}
	if out == nil {
		return hs
	}
	return out
}

// redactAttributes runs the detectors over attribute values.
func redactAttributes(rd *redact.Redactor, attrs map[string]string, rec func(redact.Finding)) map[string]string {
	changed := false
	for _, v := range attrs { // most records have nothing to redact here: no sorting for them
		if rd.Text("", v, func(redact.Finding) {}) != v {
			changed = true
			break
		}
	}
	if !changed {
		return attrs
	}
	var out map[string]string
	for _, k := range slices.Sorted(maps.Keys(attrs)) { // originals in a stable order
		v := attrs[k]
		nv := rd.Text("attribute:"+k, v, rec)
		if nv == v {
			continue
		}
		if out == nil {
			out = maps.Clone(attrs)
		}
		out[k] = nv
	}
	if out == nil {
		return attrs
	}
	return out
}

// sameBytes reports whether a and b are the same slice (Body returns its
// argument when it changes nothing).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
