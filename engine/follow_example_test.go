package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/logstore/logstore/engine"
)

// Follow a tenant: the records acknowledged after the follow started, in
// batches (time order within one), whatever their capture time. Here the
// appends are made once the follow's position is taken (Started); a live
// tail would run the loop until its context ends.
func ExampleTenant_Follow() {
	dir, err := os.MkdirTemp("", "logstore-follow")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := engine.Open(dir, &engine.Options{RetentionInterval: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	acme, err := db.Tenant("acme")
	if err != nil {
		log.Fatal(err)
	}
	old := time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC) // an old HAR capture: still new to the follow
	if _, err := acme.Append(ctx, []engine.Record{{Meta: engine.Meta{Time: old, Method: "GET", Status: 200}, Path: "/before"}}); err != nil {
		log.Fatal(err)
	}
	started := func() {
		_, err := acme.Append(ctx, []engine.Record{
			{Meta: engine.Meta{Time: old.Add(time.Minute), Method: "POST", Status: 500}, Path: "/orders"},
			{Meta: engine.Meta{Time: old, Method: "PUT", Status: 503}, Path: "/orders/7"},
			{Meta: engine.Meta{Time: old, Method: "GET", Status: 200}, Path: "/health"},
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	n := 0
	for m, err := range acme.Follow(ctx, engine.FollowOptions{Index: engine.ByStatus(500, 503), Started: started}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Time.Format(time.DateTime), m.Method, m.Status)
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// 2015-05-17 10:00:00 PUT 503
	// 2015-05-17 10:01:00 POST 500
}
