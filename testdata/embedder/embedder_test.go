package embedder

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

const har = `{"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [
 {"startedDateTime": "2026-11-01T09:00:00Z", "time": 12,
  "request": {"method": "POST", "url": "https://api.example.com/v1/orders", "httpVersion": "HTTP/1.1",
   "headers": [{"name": "Authorization", "value": "Bearer secret"}], "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 2,
   "postData": {"mimeType": "application/json", "text": "{}"}},
  "response": {"status": 201, "statusText": "Created", "httpVersion": "HTTP/1.1", "headers": [], "cookies": [],
   "content": {"size": 0, "mimeType": "application/json"}, "redirectURL": "", "headersSize": -1, "bodySize": 0},
  "cache": {}, "timings": {"send": 0, "wait": 10, "receive": 2}},
 {"startedDateTime": "2026-11-01T09:00:01Z", "time": 30,
  "request": {"method": "GET", "url": "https://api.example.com/v1/orders/7", "httpVersion": "HTTP/1.1",
   "headers": [], "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
  "response": {"status": 503, "statusText": "Unavailable", "httpVersion": "HTTP/1.1", "headers": [], "cookies": [],
   "content": {"size": 0, "mimeType": "text/plain"}, "redirectURL": "", "headersSize": -1, "bodySize": 0},
  "cache": {}, "timings": {"send": 0, "wait": 28, "receive": 2}}
]}}`

// TestEmbedOnMemFS runs the backend on the public in-memory file system,
// crashes it, and checks that the acknowledged upload survived.
func TestEmbedOnMemFS(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	indexDir := t.TempDir()
	opts := &engine.Options{FS: mem, IndexDir: indexDir, RetentionInterval: -1}
	db, err := engine.Open("/store", opts)
	require.NoError(t, err)
	b := &Backend{DB: db}
	n, err := b.Upload(ctx, "acme", "debug-1", strings.NewReader(har))
	require.NoError(t, err)
	require.Equal(t, 2, n)

	mem.Crash() // power loss after the acknowledged upload
	_ = db.Close()
	db, err = engine.Open("/store", opts)
	require.NoError(t, err)
	defer db.Close()
	b = &Backend{DB: db}
	got, err := b.Session(ctx, "acme", "debug-1")
	require.NoError(t, err)
	require.Equal(t, []string{"POST 201 /v1/orders", "GET 503 /v1/orders/7"}, got)
	errs, err := b.Errors(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, 1, errs)

	// Revocation fails decryption closed with a typed error.
	db2, err := engine.Open(t.TempDir(), &engine.Options{DEKCache: &keys.CacheOptions{}, RetentionInterval: -1})
	require.NoError(t, err)
	defer db2.Close()
	b2 := &Backend{DB: db2}
	_, err = b2.Upload(ctx, "acme", "debug-2", strings.NewReader(har))
	require.NoError(t, err)
	require.NoError(t, db2.Admin().SetLocalKeyEnabled(ctx, keys.LocalURI("acme"), false))
	_, err = b2.Session(ctx, "acme", "debug-2")
	require.True(t, errors.Is(err, keys.ErrKeyUnusable), "%v", err)
	errs, err = b2.Errors(ctx, "acme")
	require.NoError(t, err, "metadata needs no key")
	require.Equal(t, 1, errs)

	_, err = db2.Tenant("../etc")
	require.ErrorIs(t, err, engine.ErrInvalidTenant)
}

// TestFaultInjection uses the public ErrorFS: a failing fsync fails the
// Append closed instead of acknowledging it.
func TestFaultInjection(t *testing.T) {
	ctx := context.Background()
	efs := vfs.NewErrorFS(vfs.NewMem(), nil)
	db, err := engine.Open("/store", &engine.Options{FS: efs, IndexInMemory: true, RetentionInterval: -1})
	require.NoError(t, err)
	defer db.Close()
	acme, err := db.Tenant("acme")
	require.NoError(t, err)
	efs.SetInjector(func(op vfs.Op, name string) error {
		if op == vfs.OpSync && strings.HasSuffix(name, ".lss") {
			return vfs.ErrIO
		}
		return nil
	})
	_, err = (&Backend{DB: db}).Upload(ctx, "acme", "s", strings.NewReader(har))
	require.Error(t, err)
	efs.SetInjector(nil)
	n, err := acme.Count(ctx, engine.ScanOptions{})
	require.NoError(t, err)
	require.Zero(t, n, "nothing unacknowledged is listed")
}
