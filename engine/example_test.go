package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// The whole data plane: open a store, append a captured request with its
// bodies, find it by its debug session (no key needed), decrypt it, close.
func Example() {
	dir, err := os.MkdirTemp("", "logstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// nil Options: the embedded default, a local key file per tenant in
	// DIR/keys. For AWS KMS, pass Options.KMS = []keys.Provider{awskms.New(...)}
	// and link the tenant's key with db.Admin().LinkKey.
	db, err := engine.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	acme, err := db.Tenant("acme")
	if err != nil {
		log.Fatal(err)
	}
	ids, err := acme.Append(ctx, []engine.Record{{
		Meta: engine.Meta{
			Time:      time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC),
			SessionID: "debug-42",
			Method:    "POST",
			Host:      "api.example.com",
			Status:    201,
			LatencyMs: 12.5,
		},
		Path:           "/v1/orders",
		RequestHeaders: []engine.Header{{Name: "Content-Type", Value: "application/json"}},
		Payload:        &engine.Payload{RequestContentType: "application/json", RequestBody: []byte(`{"sku":"A-1"}`)},
	}})
	if err != nil {
		log.Fatal(err)
	}

	// Metadata comes from the plaintext index: no key, no decryption.
	for m, err := range acme.Scan(ctx, engine.ScanOptions{Index: engine.BySession("debug-42")}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Method, m.Host, m.Status, m.LatencyMs, "payload:", m.HasPayload)
	}

	// Get decrypts only the blocks that hold the parts asked for.
	rec, err := acme.Get(ctx, ids[0], engine.PartAll)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Path, string(rec.Payload.RequestBody))
	// Output:
	// POST api.example.com 201 12.5 payload: true
	// /v1/orders {"sku":"A-1"}
}

// A revoked key fails reads closed with a typed error, while the metadata
// stays queryable. Disabling a local key stands in for disabling the
// customer's KMS key; the DEK cache's max age (5 minutes by default, 0 here)
// is how long a revocation takes to bite.
func Example_revocation() {
	dir, err := os.MkdirTemp("", "logstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := engine.Open(dir, &engine.Options{DEKCache: &keys.CacheOptions{MaxAge: 0}})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	acme, _ := db.Tenant("acme")
	ids, err := acme.Append(ctx, []engine.Record{{Meta: engine.Meta{Time: time.Now(), Method: "GET", Status: 200}, Path: "/v1/me"}})
	if err != nil {
		log.Fatal(err)
	}

	if err := db.Admin().SetLocalKeyEnabled(ctx, keys.LocalURI("acme"), false); err != nil {
		log.Fatal(err)
	}
	_, err = acme.Get(ctx, ids[0], engine.PartLog)
	switch {
	case errors.Is(err, keys.ErrKeyUnusable):
		fmt.Println("revoked: the record cannot be decrypted")
	case err != nil:
		log.Fatal(err)
	}
	n, err := acme.Count(ctx, engine.ScanOptions{})
	fmt.Println("records still listed:", n, err)
	// Output:
	// revoked: the record cannot be decrypted
	// records still listed: 1 <nil>
}

// Paging through a large selection: a Cursor is the position of the last
// record seen, so a page can be resumed later (the query package encodes it
// as a token).
func ExampleTenant_Scan() {
	db, err := engine.Open("/store", &engine.Options{FS: vfs.NewMem(), IndexInMemory: true})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	acme, _ := db.Tenant("acme")
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var recs []engine.Record
	for i := range 5 {
		recs = append(recs, engine.Record{Meta: engine.Meta{Time: t0.Add(time.Duration(i) * time.Minute), Method: "GET", Status: 500 + i%2}, Path: "/"})
	}
	if _, err := acme.Append(ctx, recs); err != nil {
		log.Fatal(err)
	}
	o := engine.ScanOptions{Index: engine.ByStatus(500), Oldest: true, Limit: 2}
	for page := 1; ; page++ {
		n := 0
		for m, err := range acme.Scan(ctx, o) {
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("page", page, m.Time.Format("15:04"), m.Status)
			o.After = &engine.Cursor{Time: m.Time, ID: m.ID}
			n++
		}
		if n < o.Limit {
			break
		}
	}
	// Output:
	// page 1 00:00 500
	// page 1 00:02 500
	// page 2 00:04 500
}

// vfs.MemFS lets an embedder's tests simulate a power loss: what was
// acknowledged under SyncAlways (the default) survives it.
func Example_crashSimulation() {
	mem := vfs.NewMem()
	indexDir, err := os.MkdirTemp("", "logstore-example-index")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(indexDir)
	ctx := context.Background()
	opts := &engine.Options{FS: mem, IndexDir: indexDir}
	db, err := engine.Open("/store", opts)
	if err != nil {
		log.Fatal(err)
	}
	acme, _ := db.Tenant("acme")
	if _, err := acme.Append(ctx, []engine.Record{{Meta: engine.Meta{Time: time.Now(), Method: "GET", Status: 200}, Path: "/"}}); err != nil {
		log.Fatal(err)
	}

	mem.Crash()    // power loss: whatever was not fsynced is gone
	_ = db.Close() // the crashed process's handles are dead; its error is moot

	db, err = engine.Open("/store", opts)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	acme, _ = db.Tenant("acme")
	n, err := acme.Count(ctx, engine.ScanOptions{})
	fmt.Println("acknowledged records after the crash:", n, err)
	// Output:
	// acknowledged records after the crash: 1 <nil>
}
