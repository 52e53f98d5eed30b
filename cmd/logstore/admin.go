package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/awskms"
)

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Link, inspect, rotate and rewrap tenant keys"}
	var tenant, key, to, principal string

	link := &cobra.Command{
		Use:   "link --tenant T --key URI",
		Short: "Validate a key (local://NAME or aws-kms://ARN) and use it for the tenant's new segments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			if key == "" {
				return usageError{errors.New("--key is required")}
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			st, err := db.Admin().LinkKey(cmd.Context(), tenant, key)
			if err != nil {
				return err
			}
			bound := key
			if st.URI != "" && st.URI != key {
				bound = st.URI + " (" + key + ")"
			}
			fmt.Fprintf(a.stdout, "linked %s to tenant %s (state %s, spec %s); new segments use it, old ones keep theirs until `keys rewrap`\n",
				bound, tenant, st.State, st.Spec)
			for _, at := range db.Admin().Attested() {
				fmt.Fprintf(a.stdout, "re-attested tenant %s: its manifest was missing or damaged; %d segment file(s) are now trusted, run `logstore segments verify --tenant %s`\n",
					at.Tenant, at.Segments, at.Tenant)
				for _, sk := range at.Skipped {
					fmt.Fprintf(a.stdout, "  not listed (unreadable): %s\n", sk)
				}
			}
			return nil
		},
	}
	link.Flags().StringVar(&tenant, "tenant", "", "tenant")
	link.Flags().StringVar(&key, "key", "", "key URI: local://NAME or aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants with their linked key and the keys their segments use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			st, err := db.Stats()
			if err != nil {
				return err
			}
			tenants, err := db.Admin().Tenants(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tLINKED KEY\tKEYS IN USE\tSEGMENTS")
			for _, t := range tenants {
				uri, err := db.Admin().KeyURI(cmd.Context(), t)
				if err != nil {
					return err
				}
				if uri == "" {
					uri = "(default " + keys.LocalURI(t) + ")"
				}
				ts := st.Tenants[t]
				fmt.Fprintf(tw, "%s\t%s\t%v\t%d\n", t, uri, ts.KeysInUse, ts.Segments)
			}
			return tw.Flush()
		},
	}

	status := &cobra.Command{
		Use:   "status --tenant T",
		Short: "Describe the state of every key a tenant's data depends on",
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
			st, err := db.Stats()
			if err != nil {
				return err
			}
			uris := st.Tenants[tenant].KeysInUse
			if linked, _ := db.Admin().KeyURI(cmd.Context(), tenant); linked != "" && !contains(uris, linked) {
				uris = append(uris, linked)
			}
			if len(uris) == 0 {
				return fmt.Errorf("%w: tenant %s has no key and no data: run `logstore keys link --tenant %s --key URI`", engine.ErrNoKey, tenant, tenant)
			}
			// Exit 0 only when every key is enabled and usable; a disabled,
			// pending-deletion, missing or denied key exits 3.
			var errs []error
			for _, u := range uris {
				ks, err := db.Admin().DescribeKey(cmd.Context(), u)
				if err != nil {
					fmt.Fprintf(a.stdout, "%s: UNAVAILABLE: %v\n", u, err)
					errs = append(errs, err)
					continue
				}
				desc := fmt.Sprintf("%s: %s (enabled=%v spec=%s region=%s)", u, ks.State, ks.Enabled, ks.Spec, ks.Region)
				if !ks.Enabled {
					kind := keys.ErrKeyInvalidState
					if ks.State == "Disabled" {
						kind = keys.ErrKeyDisabled
					}
					fmt.Fprintf(a.stdout, "%s: UNUSABLE\n", desc)
					errs = append(errs, &keys.Error{Op: "describe", KeyURI: u, Kind: kind, Detail: "state " + ks.State})
					continue
				}
				if err := db.Admin().CheckKey(cmd.Context(), tenant, u); err != nil {
					fmt.Fprintf(a.stdout, "%s: UNUSABLE: %v\n", desc, err)
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(a.stdout, desc)
			}
			fmt.Fprintf(a.stdout, "DEK cache max age: %s (how long a revocation takes to bite)\n", db.Admin().DEKCacheMaxAge())
			return errors.Join(errs...)
		},
	}

	rewrap := &cobra.Command{
		Use:   "rewrap --tenant T --to URI",
		Short: "Re-wrap every segment DEK of a tenant under a new key (no data block rewritten; resumable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			if to == "" {
				return usageError{errors.New("--to is required")}
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			rep, err := db.Admin().Rewrap(cmd.Context(), tenant, to, func(p engine.RewrapProgress) {
				state := "rewrapped"
				if p.Skipped {
					state = "already under the new key"
				}
				fmt.Fprintf(a.stderr, "[%d/%d] segment %s %s\n", p.Done, p.Total, p.Segment, state)
			})
			if err != nil {
				fmt.Fprintln(a.stderr, "rewrap interrupted; every segment is readable with the old or the new key. Run the same command again to resume.")
				return err
			}
			fmt.Fprintf(a.stdout, "rewrapped %d segment(s), %d already done, in %s; the old key is no longer needed\n", rep.Rewrapped, rep.Skipped, rep.Duration.Round(time.Millisecond))
			return nil
		},
	}

	policy := &cobra.Command{
		Use:   "policy --principal ARN",
		Short: "Print the key-policy statement that lets PRINCIPAL use a customer's AWS KMS key with logstore",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if principal == "" {
				return usageError{errors.New("--principal is required (the IAM role ARN logstore runs as)")}
			}
			fmt.Fprintln(a.stdout, awskms.PolicyStatement(principal))
			return nil
		},
	}
	policy.Flags().StringVar(&principal, "principal", "", "IAM principal ARN")

	setLocal := func(enable bool) *cobra.Command {
		verb := map[bool]string{true: "enable", false: "disable"}[enable]
		return &cobra.Command{
			Use:   verb + " local://NAME",
			Short: map[bool]string{true: "Re-enable a local key", false: "Disable a local key: reads and writes under it fail (exit 3) until it is enabled"}[enable],
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) (err error) {
				db, err := a.open()
				if err != nil {
					return err
				}
				defer closeDB(db, &err)
				if err := db.Admin().SetLocalKeyEnabled(cmd.Context(), args[0], enable); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%sd %s (for AWS KMS keys use the KMS console or `aws kms %s-key`)\n", verb, args[0], verb)
				return nil
			},
		}
	}
	for _, c := range []*cobra.Command{status, rewrap} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant")
	}
	rewrap.Flags().StringVar(&to, "to", "", "the new key URI")
	cmd.AddCommand(link, list, status, rewrap, policy, setLocal(true), setLocal(false))
	return cmd
}

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
	var tenant string
	list := &cobra.Command{
		Use:  "list [--tenant T]",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			tenants := []string{tenant}
			if tenant == "" {
				if tenants, err = db.Admin().Tenants(cmd.Context()); err != nil {
					return err
				}
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tSEGMENT\tSEALED\tRECORDS\tPAYLOADS\tBLOCKS\tRAW\tSIZE\tKEY\tGEN\tNEWEST")
			for _, t := range tenants {
				segs, err := db.Admin().Segments(cmd.Context(), t)
				if err != nil {
					return err
				}
				for _, s := range segs {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\n", t, s.ID, s.Sealed, s.Records, s.Payloads, s.Blocks,
						s.RawBytes, s.Size, s.KeyURI, s.KeyGen, s.MaxTime.Format(time.RFC3339))
				}
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
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
			if tenant == "" {
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
	verify.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
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
	cmd.AddCommand(list, verify, reindex)
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
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant")
	cmd.Flags().DurationVar(&since, "since", 0, "only events newer than this")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
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
	bad, unauthSegs, unauthOther, segs := 0, 0, 0, 0
	var keyURIs []string
	var keyErr error
	for _, c := range checks {
		isSeg := strings.HasSuffix(c.Path, ".lss")
		if isSeg {
			segs++
		}
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
		if c.OpenErr != nil {
			continue
		}
		if c.KeyErr != nil {
			uri := c.KeyURI
			var ke *keys.Error
			if uri == "" && errors.As(c.KeyErr, &ke) {
				uri = ke.KeyURI
			}
			if uri != "" && !contains(keyURIs, uri) {
				keyURIs = append(keyURIs, uri)
			}
			if keyErr == nil {
				keyErr = c.KeyErr
			}
			if isSeg {
				unauthSegs++
				fmt.Fprintf(a.stdout, "WARN %s: NOT authenticated (checksums only; index compared with unauthenticated metadata): key %s: %v\n", c.Path, uri, c.KeyErr)
			} else {
				unauthOther++
				fmt.Fprintf(a.stdout, "WARN %s: NOT authenticated: key %s: %v\n", c.Path, uri, c.KeyErr)
			}
			continue
		}
		if isSeg && len(c.Result.Problems) == 0 && len(c.IndexProblems) == 0 {
			how := "authenticated"
			if !c.Result.Authenticated {
				how = "checksums ok (plaintext segment)"
			}
			fmt.Fprintf(a.stdout, "OK   %s: %d blocks, %d entries (logs and payloads), %s\n", c.Path, c.Result.Blocks, c.Result.Records, how)
		}
	}
	fmt.Fprintf(a.stdout, "%d segment(s), %d problem(s)\n", segs, bad)
	var unauth string
	switch {
	case unauthSegs > 0:
		unauth = fmt.Sprintf("%d segment(s) could not be authenticated: key %s", unauthSegs, strings.Join(keyURIs, ", "))
	case unauthOther > 0:
		unauth = fmt.Sprintf("%d tenant manifest(s) could not be authenticated: key %s", unauthOther, strings.Join(keyURIs, ", "))
	}
	var unauthErr error
	if unauth != "" {
		fmt.Fprintln(a.stdout, unauth)
		unauthErr = fmt.Errorf("%s: %w", unauth, keyErr)
	}
	switch {
	case bad > 0 && unauthErr != nil:
		// Corruption decides the exit code (1); the key error is only told.
		return fmt.Errorf("%d problem(s) found; %v", bad, unauthErr)
	case bad > 0:
		return fmt.Errorf("%d problem(s) found", bad)
	}
	return unauthErr
}
