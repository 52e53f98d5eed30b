package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
)

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	db, err := engine.Open(dir, &engine.Options{RetentionInterval: -1})
	require.NoError(t, err)
	_, err = mustTenant(db, "acme").Append(context.Background(), []engine.Record{
		{Meta: engine.Meta{Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Method: "GET", Status: 200}, Path: "/a"}})
	require.NoError(t, err)
	require.NoError(t, db.Close())

	r := cli(t, dir, "audit", "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "version 2, hash-chained")
	require.Regexp(t, `records +[1-9][0-9]* checked`, r.stdout)
	require.Regexp(t, `head +seq [1-9][0-9]* sha256 [0-9a-f]{64}`, r.stdout)
	require.Contains(t, r.stdout, "anchors ")
	require.Contains(t, r.stdout, "result       OK")

	// The listing is unchanged.
	r = cli(t, dir, "audit", "--tenant", "acme")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "GenerateDataKey")

	// An unknown version is its own error, exit 1, and the store does not
	// open over it (a newer build wrote it).
	path := engine.AuditPath(dir)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	good := append([]byte(nil), b...)
	b[8] = 9
	require.NoError(t, os.WriteFile(path, b, 0o600))
	r = cli(t, dir, "audit", "verify")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "unknown audit log version")

	// A corrupt last record: the store opens (one flipped byte must not stop
	// every tenant), the damaged trail is kept unchanged beside the new one,
	// and verify fails with the place and the manifests' broken anchor.
	b = good
	b[len(b)-3] ^= 0x20
	require.NoError(t, os.WriteFile(path, b, 0o600))
	r = cli(t, dir, "audit", "verify")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "corrupt audit log")
	require.Contains(t, r.stderr, "checksum mismatch")
	require.Contains(t, r.stdout, "result       BAD")
	aside, err := filepath.Glob(path + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, aside, 1)
	after, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	require.Equal(t, b, after, "kept as it was, not cut")
}

// mustTenant is the handle of a valid tenant name.
func mustTenant(db *engine.DB, name string) *engine.Tenant {
	t, err := db.Tenant(name)
	if err != nil {
		panic(err)
	}
	return t
}
