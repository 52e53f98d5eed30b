// Package embedder is a debugger backend in miniature, written against
// logstore's public API only: it stores uploaded HAR captures for a tenant
// and answers "what happened in this debug session".
package embedder

import (
	"context"
	"fmt"
	"io"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/query"
)

// Backend stores captures for many tenants in one logstore DB.
type Backend struct{ DB *engine.DB }

// Upload stores a HAR upload for tenant, every entry tagged with session.
func (b *Backend) Upload(ctx context.Context, tenant, session string, har io.Reader) (int, error) {
	t, err := b.DB.Tenant(tenant)
	if err != nil {
		return 0, err
	}
	res, err := ingest.Ingest(ctx, t, "upload.har", har, ingest.Options{Format: ingest.FormatHAR, Session: session})
	return res.Stored, err
}

// Session lists a session's requests, oldest first, as "METHOD STATUS PATH"
// lines: the metadata comes from the index, the path is decrypted.
func (b *Backend) Session(ctx context.Context, tenant, session string) ([]string, error) {
	t, err := b.DB.Tenant(tenant)
	if err != nil {
		return nil, err
	}
	var out []string
	for m, err := range t.Scan(ctx, engine.ScanOptions{Index: engine.BySession(session), Oldest: true}) {
		if err != nil {
			return nil, err
		}
		rec, err := t.Get(ctx, m.ID, engine.PartLog)
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s %d %s", m.Method, m.Status, rec.Path))
	}
	return out, nil
}

// Errors counts a tenant's 5xx responses with the query language.
func (b *Backend) Errors(ctx context.Context, tenant string) (int, error) {
	t, err := b.DB.Tenant(tenant)
	if err != nil {
		return 0, err
	}
	res, err := query.Run(ctx, t, query.Request{Where: "status = 5xx", Count: true})
	if err != nil {
		return 0, err
	}
	return res.Count, nil
}
