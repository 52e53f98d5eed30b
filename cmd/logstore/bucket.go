package main

// --bucket: sealed segments in an S3-compatible bucket (docs/scale-out.md).

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/objstore/s3store"
)

// defaultBucket is $LOGSTORE_BUCKET ("" : local only).
func defaultBucket() string { return os.Getenv("LOGSTORE_BUCKET") }

// withBucket adds --bucket's bucket to opts. The S3 client takes the
// standard AWS configuration: credentials chain, AWS_REGION,
// AWS_ENDPOINT_URL_S3 (path-style addressing with a custom endpoint).
func (a *app) withBucket(ctx context.Context, opts *engine.Options) error {
	if a.bucket == "" {
		return nil
	}
	b, err := s3store.Open(ctx, a.bucket, nil)
	if err != nil {
		return usageError{fmt.Errorf("--bucket: %w", err)}
	}
	opts.Bucket = b
	return nil
}

// uploadCmd is `segments upload`.
func (a *app) uploadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "upload --bucket s3://NAME/PREFIX",
		Short: "Upload every sealed segment not in the bucket yet, then the tenants' manifests (and remove expired or erased ones there)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if a.bucket == "" {
				return usageError{fmt.Errorf("segments upload needs --bucket s3://NAME/PREFIX (or $LOGSTORE_BUCKET)")}
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			rep, err := db.Admin().Upload(cmd.Context())
			fmt.Fprintf(a.stdout, "uploaded %d objects (%d bytes), %d already there, %d manifests, %d removed, %d pending\n",
				rep.Uploaded, rep.Bytes, rep.Verified, rep.Manifests, rep.Deleted, rep.Pending)
			for _, l := range rep.Lost {
				fmt.Fprintf(a.stdout, "LOST %s: neither on this disk nor in the bucket\n", l)
			}
			return err
		},
	}
}

// listLocations is `segments list --bucket`: where each segment is. It
// only reads: a local store is opened read-only and without the bucket
// (listing must never publish a store into the fleet), and the bucket is
// listed directly.
func (a *app) listLocations(ctx context.Context, tenant, format string) (err error) {
	b, err := s3store.Open(ctx, a.bucket, nil)
	if err != nil {
		return usageError{fmt.Errorf("--bucket: %w", err)}
	}
	var locs []engine.SegmentLocation
	if a.requireStore() == nil {
		db, err := engine.Open(a.dir, &engine.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer closeDB(db, &err)
		if locs, err = db.Admin().Locations(ctx, tenant); err != nil {
			return err
		}
	}
	remote, err := engine.BucketLocations(ctx, b, tenant)
	if err != nil {
		return err
	}
	locs = mergeLocations(locs, remote)
	if format == "json" {
		return writeJSONEach(a.stdout, locs)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSEGMENT\tSTATE\tSIZE\tWHERE\tNODE")
	for _, l := range locs {
		var where []string
		if l.Local {
			where = append(where, "local")
		}
		if l.Remote {
			where = append(where, "bucket")
		}
		if len(where) == 0 {
			where = append(where, "-")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Tenant, l.ID, l.State, l.Size, strings.Join(where, "+"), l.Node)
	}
	return tw.Flush()
}

// mergeLocations adds the bucket's objects to the local store's segments.
func mergeLocations(local, remote []engine.SegmentLocation) []engine.SegmentLocation {
	at := map[string]int{}
	for i, l := range local {
		at[l.Tenant+"/"+l.ID] = i
	}
	for _, r := range remote {
		if i, ok := at[r.Tenant+"/"+r.ID]; ok {
			local[i].Remote, local[i].Node = true, r.Node
			continue
		}
		local = append(local, r)
	}
	return local
}
