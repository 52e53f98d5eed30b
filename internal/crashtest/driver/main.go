// Command driver is the process-crash test's writer: it appends records to a
// store with SyncAlways and prints "ack RUN N ID" for each acknowledged
// record, until it is killed.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/internal/crashtest"
	"github.com/logstore/logstore/objstore/s3store"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: driver DIR RUN")
		os.Exit(2)
	}
	run, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts := &engine.Options{Sync: engine.SyncAlways, BlockSize: 4 << 10, SegmentSize: 1 << 20}
	if ep := os.Getenv(crashtest.BucketEndpointEnv); ep != "" {
		// The bucket test: sealed segments go to an S3 server too.
		b, err := s3store.Open(context.Background(), crashtest.BucketURL, crashtest.BucketOptions(ep))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		opts.Bucket, opts.UploadInterval = b, 50*time.Millisecond
	}
	db, err := engine.Open(os.Args[1], opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	acme, err := db.Tenant("acme")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	for n := 0; ; n += 3 {
		recs := []engine.Record{crashtest.Record(run, n), crashtest.Record(run, n+1), crashtest.Record(run, n+2)}
		ids, err := acme.Append(context.Background(), recs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(1)
		}
		for i, id := range ids {
			fmt.Fprintf(out, "ack %d %d %s\n", run, n+i, id)
		}
		// The ack is only printed once durable: flush it now, so a kill
		// cannot lose an ack line of a record that is on disk either way.
		if err := out.Flush(); err != nil {
			os.Exit(1)
		}
	}
}
