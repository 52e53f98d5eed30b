package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
)

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (a *app) segmentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "segments", Short: "List, verify and reindex segments"}
	var tenant, format string
	list := &cobra.Command{
		Use:   "list [--tenant T] [--format table|json]",
		Short: "List every segment: sealed or active, records, blocks, bytes, key and newest record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			if a.bucket != "" {
				return a.listLocations(cmd.Context(), tenant, format)
			}
			return a.listSegments(cmd.Context(), tenant, format)
		},
	}
	list.Flags().StringVarP(&tenant, "tenant", "t", "", "only this tenant")
	list.Flags().StringVarP(&format, "format", "o", "table", "table or json (JSON lines)")
	verify := &cobra.Command{
		Use:   "verify [--tenant T]",
		Short: "Check every segment's checksums, authenticate every block, and compare the index with the segments (exit 3: a key is unusable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			// Every block of the index first: Verify compares the index with
			// the segments and would stop at a damaged index block.
			var ierr error
			if tenant != "" {
				if _, err := a.existingTenant(cmd.Context(), db, tenant); err != nil {
					return err
				}
			} else {
				if ierr = db.Admin().VerifyIndex(cmd.Context()); ierr != nil {
					fmt.Fprintf(a.stdout, "BAD  index: %v\n", ierr)
				} else {
					fmt.Fprintln(a.stdout, "index: every block's checksum is valid")
				}
			}
			checks, err := db.Admin().Verify(cmd.Context(), tenant)
			if ierr != nil {
				// The damaged index decides the exit code (1).
				var rerr error
				if err == nil {
					rerr = a.reportVerify(checks)
				}
				if rerr = errors.Join(err, rerr); rerr != nil {
					return fmt.Errorf("%w; %v", ierr, rerr)
				}
				return ierr
			}
			if err != nil {
				return err
			}
			return a.reportVerify(checks)
		},
	}
	verify.Flags().StringVarP(&tenant, "tenant", "t", "", "only this tenant")
	reindex := &cobra.Command{
		Use:   "reindex",
		Short: "Rebuild the metadata index from the segments alone (no key needed), also when it is damaged or cannot be opened",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			start := time.Now()
			// The index is deleted and rebuilt by Open, so this works when
			// it cannot be opened at all; the few entries not derived from
			// the segments are kept as far as the old index can be read.
			db, err := a.openWith(&engine.Options{RebuildIndex: true})
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			tenants, err := db.Admin().Tenants(cmd.Context())
			if err != nil {
				return err
			}
			rb := db.Admin().IndexRebuild()
			if rb.OldIndex != "" {
				fmt.Fprintf(a.stderr, "the old index could not be read in full: %s\n", rb.OldIndex)
			}
			for _, t := range rb.Lost {
				fmt.Fprintf(a.stderr, "tenant %s: its manifest rollback check restarts from the current manifest (docs/security.md)\n", t)
			}
			fmt.Fprintf(a.stdout, "reindexed %d tenant(s) in %s\n", len(tenants), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.AddCommand(list, verify, reindex, a.uploadCmd())
	return cmd
}

func (a *app) auditCmd() *cobra.Command {
	var tenant, format string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "audit --tenant T [--since D]",
		Short: "Print the key operations recorded for a tenant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			if _, err := a.existingTenant(cmd.Context(), db, tenant); err != nil {
				return err
			}
			var from time.Time
			if since > 0 {
				from = time.Now().Add(-since)
			}
			evs, err := db.Admin().Audit(cmd.Context(), tenant, from)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				for _, e := range evs {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tOPERATION\tKEY\tSEGMENT\tPURPOSE\tOUTCOME\tLATENCY_MS")
			for _, e := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\n", e.Time.Format(time.RFC3339), e.Operation, e.KeyURI,
					e.Context[keys.CtxSegment], e.Context[keys.CtxPurpose], e.Outcome, e.LatencyMs)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant")
	cmd.Flags().DurationVar(&since, "since", 0, "only events newer than this")
	cmd.Flags().StringVarP(&format, "format", "o", "table", "table or json")
	cmd.AddCommand(a.auditVerifyCmd())
	return cmd
}

func (a *app) tenantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Tenant administration"}
	var yes bool
	del := &cobra.Command{
		Use:   "delete T --yes",
		Short: "Crypto-shred a tenant: segments, wrapped DEKs, index entries and every local key its data was wrapped under",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if !yes {
				return usageError{errors.New("deleting a tenant destroys its data for good: add --yes")}
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			if _, err := a.existingTenant(cmd.Context(), db, args[0]); err != nil {
				return err
			}
			rep, err := db.Admin().DeleteTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted tenant %s: %d segment(s), %d record(s), %d bytes; keys destroyed: %v\n",
				args[0], rep.Segments, rep.Records, rep.Bytes, rep.KeysDestroyed)
			for _, k := range rep.KeysKept {
				fmt.Fprintf(a.stdout, "key kept: %s: %s\n", k.URI, k.Reason)
			}
			return nil
		},
	}
	del.Flags().BoolVar(&yes, "yes", false, "confirm")
	cmd.AddCommand(del)
	return cmd
}

// reportVerify prints the checks of `segments verify` and returns its
// outcome: nil when every segment was authenticated and nothing is wrong; an
// error (exit 1) when a segment is damaged or the index disagrees with the
// segments; otherwise, when some segment (or tenant manifest) could not be
// authenticated, the key error (exit 3 for a revoked or unreachable key):
// checksums alone do not vouch for a segment.
func (a *app) reportVerify(checks []engine.SegmentCheck) error {
	var t verifyTally
	for _, c := range checks {
		a.reportCheck(&t, c)
	}
	fmt.Fprintf(a.stdout, "%d segment(s), %d problem(s)\n", t.segs, t.bad)
	unauthErr := a.reportUnauthenticated(&t)
	switch {
	case t.bad > 0 && unauthErr != nil:
		// Corruption decides the exit code (1); the key error is only told.
		return fmt.Errorf("%d problem(s) found; %v", t.bad, unauthErr)
	case t.bad > 0:
		return fmt.Errorf("%d problem(s) found", t.bad)
	}
	return unauthErr
}

// verifyTally sums up the checks reportVerify printed.
type verifyTally struct {
	bad, unauthSegs, unauthOther, segs int
	keyURIs                            []string // the keys that could not authenticate, first seen first
	keyErr                             error    // the first of their errors
}

// reportCheck prints one check of `segments verify` and counts it in t.
func (a *app) reportCheck(t *verifyTally, c engine.SegmentCheck) {
	isSeg := c.IsSegment()
	if isSeg {
		t.segs++
	}
	t.bad += a.reportProblems(c)
	switch {
	case c.OpenErr != nil:
	case c.KeyErr != nil:
		a.reportKeyErr(t, c, isSeg)
	case isSeg && len(c.Result.Problems) == 0 && len(c.IndexProblems) == 0:
		how := "authenticated"
		if !c.Result.Authenticated {
			how = "checksums ok (plaintext segment)"
		}
		fmt.Fprintf(a.stdout, "OK   %s: %d blocks, %d entries (logs and payloads), %s\n", c.Path, c.Result.Blocks, c.Result.Records, how)
	}
}

// reportProblems prints the damage found in one check and returns how much.
func (a *app) reportProblems(c engine.SegmentCheck) int {
	bad := 0
	if c.OpenErr != nil {
		bad++
		fmt.Fprintf(a.stdout, "BAD  %s: %v\n", c.Path, c.OpenErr)
	}
	for _, p := range c.Result.Problems {
		bad++
		fmt.Fprintf(a.stdout, "BAD  %s block %d at offset %d: %v\n", c.Path, p.Block, p.Offset, p.Err)
	}
	for _, p := range c.IndexProblems {
		bad++
		fmt.Fprintf(a.stdout, "BAD  %s index: %v\n", c.Path, p.Err)
	}
	return bad
}

// reportKeyErr prints a segment (or tenant manifest) that could not be
// authenticated and counts it in t.
func (a *app) reportKeyErr(t *verifyTally, c engine.SegmentCheck, isSeg bool) {
	uri := c.KeyURI
	var ke *keys.Error
	if uri == "" && errors.As(c.KeyErr, &ke) {
		uri = ke.KeyURI
	}
	if uri != "" && !contains(t.keyURIs, uri) {
		t.keyURIs = append(t.keyURIs, uri)
	}
	if t.keyErr == nil {
		t.keyErr = c.KeyErr
	}
	if isSeg {
		t.unauthSegs++
		fmt.Fprintf(a.stdout, "WARN %s: NOT authenticated (checksums only; index compared with unauthenticated metadata): key %s: %v\n", c.Path, uri, c.KeyErr)
	} else {
		t.unauthOther++
		fmt.Fprintf(a.stdout, "WARN %s: NOT authenticated: key %s: %v\n", c.Path, uri, c.KeyErr)
	}
}

// reportUnauthenticated prints how much could not be authenticated and
// returns it as an error wrapping the first key error (nil when everything
// was).
func (a *app) reportUnauthenticated(t *verifyTally) error {
	var unauth string
	switch {
	case t.unauthSegs > 0:
		unauth = fmt.Sprintf("%d segment(s) could not be authenticated: key %s", t.unauthSegs, strings.Join(t.keyURIs, ", "))
	case t.unauthOther > 0:
		unauth = fmt.Sprintf("%d tenant manifest(s) could not be authenticated: key %s", t.unauthOther, strings.Join(t.keyURIs, ", "))
	default:
		return nil
	}
	fmt.Fprintln(a.stdout, unauth)
	return fmt.Errorf("%s: %w", unauth, t.keyErr)
}

// listSegments prints `segments list`: every tenant's segments, or one's.
func (a *app) listSegments(ctx context.Context, tenant, format string) (err error) {
	db, err := a.open()
	if err != nil {
		return err
	}
	defer closeDB(db, &err)
	tenants := []string{tenant}
	if tenant == "" {
		if tenants, err = db.Admin().Tenants(ctx); err != nil {
			return err
		}
	} else if _, err := a.existingTenant(ctx, db, tenant); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if format == "table" {
		fmt.Fprintln(tw, "TENANT\tSEGMENT\tSEALED\tRECORDS\tPAYLOADS\tBLOCKS\tRAW\tSIZE\tKEY\tGEN\tNEWEST")
	}
	for _, t := range tenants {
		segs, err := db.Admin().Segments(ctx, t)
		if err != nil {
			return err
		}
		if format == "json" {
			if err := writeJSONEach(a.stdout, segs); err != nil {
				return err
			}
			continue
		}
		for _, s := range segs {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\n", t, s.ID, s.Sealed, s.Records, s.Payloads, s.Blocks,
				s.RawBytes, s.Size, s.KeyURI, s.KeyGen, s.MaxTime.Format(time.RFC3339))
		}
	}
	return tw.Flush()
}
