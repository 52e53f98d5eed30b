// Package engine is logstore's embeddable storage engine for API-gateway
// debugger logs: per-tenant append into append-only segments of compressed,
// AES-256-GCM sealed blocks under a per-segment data key wrapped by the
// tenant's key (a local key file by default, a customer's KMS key when the
// application supplies a provider), and a Pebble index of the plaintext
// metadata derived from those segments.
//
// A DB has two planes. The data plane, what a request path uses, is a
// Tenant: a name validated once by DB.Tenant.
//
//	db, err := engine.Open(dir, nil) // local keys in dir/keys
//	if err != nil {
//		return err
//	}
//	defer db.Close()
//	acme, err := db.Tenant("acme")
//	if err != nil {
//		return err
//	}
//	ids, err := acme.Append(ctx, []engine.Record{{
//		Meta: engine.Meta{Time: time.Now(), SessionID: "debug-42", Method: "GET", Status: 200},
//		Path: "/v1/orders",
//	}})
//	for m, err := range acme.Scan(ctx, engine.ScanOptions{Index: engine.BySession("debug-42")}) {
//		// m is plaintext metadata from the index: no key needed
//	}
//	rec, err := acme.Get(ctx, ids[0], engine.PartAll) // decrypts
//	if errors.Is(err, keys.ErrKeyUnusable) {
//		// the tenant's key is revoked: the record stays sealed
//	}
//
// The operator plane, DB.Admin, links and rotates keys (LinkKey, Rewrap),
// applies retention, crypto-shreds tenants (DeleteTenant), verifies segments,
// the index and the key audit trail, rebuilds the index and lists segments.
//
// # Keys
//
// The engine imports no cloud SDK. Options.Keys defaults to a router over
// the local provider (a key file per tenant in DIR/keys, created on first
// use unless Options.RequireLinkedKey) plus the providers in Options.KMS;
// for AWS KMS the application passes awskms.New(...) from package
// keys/awskms, as the logstore CLI does. Unwrapped data keys are cached for
// at most Options.DEKCache.MaxAge (5 minutes by default): that is how long a
// revocation takes to bite.
//
// # Schema
//
// A Record is its plaintext Meta (indexed, readable without a key) and
// sealed fields (path, query, client ip, consumer, headers, attributes,
// bodies) that are encrypted and never indexed. Fields() is the one table of
// the plaintext schema.
//
// # Durability and integrity
//
// With SyncAlways (the default) an Append that returned nil survives a
// power loss. Each tenant's MANIFEST, authenticated by its keys, lists every
// segment with its size and digest, so a truncated, replaced, deleted or
// forged segment is refused and reported (DB.Recovery, Admin.Verify), never
// silently repaired or served. docs/format/README.md describes every file
// under the data directory; docs/security.md the threat model.
//
// # Testing
//
// Options.FS takes any vfs.FS: vfs.NewMem simulates power loss (MemFS.Crash
// keeps only what was fsynced) and vfs.NewErrorFS injects I/O faults, for
// the engine's tests and an embedder's alike.
package engine
