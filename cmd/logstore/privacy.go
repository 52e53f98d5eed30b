package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/redact"
)

// redactionCmd is `logstore redaction`: a tenant's redaction policy, which
// the engine applies to every record before sealing it.
func (a *app) redactionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "redaction", Short: "Show or set a tenant's redaction policy (applied to every record before it is sealed)"}
	var tenant string
	show := &cobra.Command{
		Use:   "show --tenant T",
		Short: "Print the policy a tenant's records are redacted under (JSON, the format `set` reads)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			db, _, err := a.openTenant(cmd.Context(), tenant, a.openForReading)
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			rp, err := db.Admin().Redaction(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			b, err := rp.Policy.Marshal()
			if err != nil {
				return err
			}
			if !rp.Own {
				fmt.Fprintf(a.stderr, "tenant %s has no policy of its own: this is the store's default (docs/redaction.md)\n", tenant)
			}
			_, err = fmt.Fprintf(a.stdout, "%s\n", b)
			return err
		},
	}
	var none, reset bool
	set := &cobra.Command{
		Use:   "set --tenant T FILE | --none | --default",
		Short: "Set a tenant's policy from a JSON file (docs/redaction.md); --none turns redaction off, --default returns to the store default",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			p, err := policyArg(args, none, reset)
			if err != nil {
				return err
			}
			if err := requireTenant(tenant); err != nil {
				return err
			}
			// Like `keys link`, it may come first: a policy set before the
			// first ingest applies to it.
			db, err := a.openOrCreate()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			if err := db.Admin().SetRedaction(cmd.Context(), tenant, p); err != nil {
				return err
			}
			switch {
			case reset:
				fmt.Fprintf(a.stdout, "tenant %s: redaction policy reset to the store default\n", tenant)
			case none:
				fmt.Fprintf(a.stdout, "tenant %s: redaction turned off for new records (records already stored are not changed)\n", tenant)
			default:
				fmt.Fprintf(a.stdout, "tenant %s: redaction policy set from %s; it applies to new records\n", tenant, args[0])
			}
			return nil
		},
	}
	set.Flags().BoolVar(&none, "none", false, "store records unredacted")
	set.Flags().BoolVar(&reset, "default", false, "use the store's default policy")
	for _, c := range []*cobra.Command{show, set} {
		c.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
		cmd.AddCommand(c)
	}
	return cmd
}

// policyArg is the policy `redaction set` was given: a file, --none or
// --default (nil), exactly one of them.
func policyArg(args []string, none, reset bool) (*redact.Policy, error) {
	n := len(args)
	if none {
		n++
	}
	if reset {
		n++
	}
	if n != 1 {
		return nil, usageError{errors.New("give exactly one of FILE, --none or --default")}
	}
	switch {
	case none:
		return redact.None(), nil
	case reset:
		return nil, nil
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return nil, usageError{err}
	}
	p, err := redact.Parse(b)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", args[0], err)}
	}
	return p, nil
}

// redactedBefore is the store's count of redacted values (0 when the stats
// are unavailable: the report is then an overstatement, never silence).
func redactedBefore(ctx context.Context, db *engine.DB) uint64 {
	st, err := db.Stats(ctx)
	if err != nil {
		return 0
	}
	return st.RedactedValues
}

// reportRedacted tells an ingest's user how many values the tenant's
// redaction policy replaced, and where to see the policy.
func (a *app) reportRedacted(ctx context.Context, db *engine.DB, tenant string, before uint64) {
	st, err := db.Stats(ctx)
	if err != nil || st.RedactedValues == before {
		return
	}
	fmt.Fprintf(a.stderr, "redacted %d value(s) before sealing (credentials, API keys, card numbers...): `logstore redaction show -t %s` prints the policy\n",
		st.RedactedValues-before, tenant)
}

// eraseCmd is `logstore erase`: every record of one session or consumer,
// removed from the disk before retention would (Admin.Erase).
func (a *app) eraseCmd() *cobra.Command {
	var tenant string
	var f engine.EraseFilter
	var yes bool
	cmd := &cobra.Command{
		Use:   "erase --tenant T (--session S | --consumer C) --yes",
		Short: "Erase every record of one debug session or consumer: its segments are rewritten without them, nothing left on disk",
		Long: `Erase every record of one debug session (--session) or one consumer
(--consumer) before retention would. Each segment holding one is rewritten
without them under a new data key, then the old file, its summary file and
its index entries are removed and the index compacted. Crash-safe: run it
again after a crash. A consumer is a sealed field: every segment of the
tenant is decrypted to find its records.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if (f.SessionID == "") == (f.ConsumerID == "") {
				return usageError{errors.New("give exactly one of --session and --consumer")}
			}
			if !yes {
				return usageError{errors.New("erasing destroys records for good: add --yes")}
			}
			db, _, err := a.openTenant(cmd.Context(), tenant, a.open)
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			rep, err := db.Admin().Erase(cmd.Context(), tenant, f)
			fmt.Fprintf(a.stdout, "erased %d record(s) of tenant %s: %d segment(s) rewritten (%d record(s) kept), %d removed, %d bytes of old segments deleted\n",
				rep.Erased, tenant, rep.Rewritten, rep.Kept, rep.Removed, rep.Bytes)
			if rep.IndexFilesPending > 0 {
				fmt.Fprintf(a.stderr, "note: %d index file(s) holding erased entries are still read by another operation; the index deletes them when it is done\n", rep.IndexFilesPending)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
	cmd.Flags().StringVar(&f.SessionID, "session", "", "session id whose records go")
	cmd.Flags().StringVar(&f.ConsumerID, "consumer", "", "consumer id whose records go")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
