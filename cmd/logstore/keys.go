package main

import (
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
	cmd.AddCommand(a.keysLinkCmd(), a.keysListCmd(), a.keysStatusCmd(), a.keysRewrapCmd(), a.keysPolicyCmd(),
		a.keysSetLocalCmd(true), a.keysSetLocalCmd(false))
	return cmd
}

func (a *app) keysLinkCmd() *cobra.Command {
	var tenant, key string
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
			// A URI no provider serves is refused before a store is created.
			if s, err := keys.Scheme(key); err != nil {
				return err
			} else if s != keys.LocalScheme && s != awskms.Scheme {
				return fmt.Errorf("%w: %q: this build serves %s:// and %s:// keys", keys.ErrBadURI, key, keys.LocalScheme, awskms.Scheme)
			}
			db, err := a.openOrCreate()
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
			a.printAttested(db.Admin().Attested())
			return nil
		},
	}
	link.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant")
	link.Flags().StringVar(&key, "key", "", "key URI: local://NAME or aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID")
	return link
}

// printAttested tells the re-attestations `keys link` made.
func (a *app) printAttested(ats []engine.AttestReport) {
	for _, at := range ats {
		fmt.Fprintf(a.stdout, "re-attested tenant %s: its manifest was missing or damaged; %d segment file(s) are now trusted, run `logstore segments verify --tenant %s`\n",
			at.Tenant, at.Segments, at.Tenant)
		for _, sk := range at.Skipped {
			fmt.Fprintf(a.stdout, "  not listed (unreadable): %s\n", sk)
		}
	}
}

// keyListRow is one line of `keys list`.
type keyListRow struct {
	Tenant    string   `json:"tenant"`
	LinkedKey string   `json:"linked_key"` // "" when the tenant uses its default key
	Default   string   `json:"default_key,omitempty"`
	KeysInUse []string `json:"keys_in_use"`
	Segments  int      `json:"segments"`
}

func (a *app) keysListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List tenants with their linked key and the keys their segments use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := checkFormat(format); err != nil {
				return err
			}
			db, err := a.open()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			st, err := db.Stats(cmd.Context())
			if err != nil {
				return err
			}
			tenants, err := db.Admin().Tenants(cmd.Context())
			if err != nil {
				return err
			}
			var rows []keyListRow
			for _, t := range tenants {
				uri, err := db.Admin().KeyURI(cmd.Context(), t)
				if err != nil {
					return err
				}
				r := keyListRow{Tenant: t, LinkedKey: uri, KeysInUse: st.Tenants[t].KeysInUse, Segments: st.Tenants[t].Segments}
				if uri == "" {
					r.Default = keys.LocalURI(t)
				}
				if r.KeysInUse == nil {
					r.KeysInUse = []string{}
				}
				rows = append(rows, r)
			}
			if format == "json" {
				return writeJSONEach(a.stdout, rows)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tLINKED KEY\tKEYS IN USE\tSEGMENTS")
			for _, r := range rows {
				uri := r.LinkedKey
				if uri == "" {
					uri = "(default " + r.Default + ")"
				}
				inUse := strings.Join(r.KeysInUse, ", ")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Tenant, uri, dash(inUse), r.Segments)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "table", "table or json (JSON lines)")
	return cmd
}

func (a *app) keysStatusCmd() *cobra.Command {
	var tenant string
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
			if _, err := a.existingTenant(cmd.Context(), db, tenant); err != nil {
				return err
			}
			sts, err := db.Admin().KeyStatus(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			// Exit 0 only when every key is enabled and usable; a disabled,
			// pending-deletion, missing or denied key exits 3.
			var errs []error
			for _, ks := range sts {
				a.printKeyStatus(ks)
				errs = append(errs, ks.Err)
			}
			fmt.Fprintf(a.stdout, "DEK cache max age: %s (how long a revocation takes to bite)\n", db.Admin().DEKCacheMaxAge())
			return errors.Join(errs...)
		},
	}
	status.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant")
	return status
}

// printKeyStatus prints one line of `keys status`.
func (a *app) printKeyStatus(ks engine.KeyStatus) {
	if !ks.Described {
		fmt.Fprintf(a.stdout, "%s: UNAVAILABLE: %v\n", ks.URI, ks.Err)
		return
	}
	s := ks.State
	details := []string{fmt.Sprintf("enabled=%v", s.Enabled)}
	for _, kv := range [][2]string{{"spec", s.Spec}, {"region", s.Region}} {
		if kv[1] != "" { // a local key has no region
			details = append(details, kv[0]+"="+kv[1])
		}
	}
	desc := fmt.Sprintf("%s: %s (%s)", ks.URI, s.State, strings.Join(details, " "))
	switch {
	case !s.Enabled:
		fmt.Fprintf(a.stdout, "%s: UNUSABLE\n", desc)
	case ks.Err != nil:
		fmt.Fprintf(a.stdout, "%s: UNUSABLE: %v\n", desc, ks.Err)
	default:
		fmt.Fprintln(a.stdout, desc)
	}
}

func (a *app) keysRewrapCmd() *cobra.Command {
	var tenant, to string
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
			if _, err := a.existingTenant(cmd.Context(), db, tenant); err != nil {
				return err
			}
			rep, err := db.Admin().Rewrap(cmd.Context(), tenant, to, a.printRewrapProgress)
			if err != nil {
				fmt.Fprintln(a.stderr, "rewrap interrupted; every segment is readable with the old or the new key. Run the same command again to resume.")
				return err
			}
			fmt.Fprintf(a.stdout, "rewrapped %d segment(s), %d already done, in %s; the old key is no longer needed\n", rep.Rewrapped, rep.Skipped, rep.Duration.Round(time.Millisecond))
			return nil
		},
	}
	rewrap.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant")
	rewrap.Flags().StringVar(&to, "to", "", "the new key URI")
	return rewrap
}

// printRewrapProgress reports one segment of `keys rewrap` on stderr.
func (a *app) printRewrapProgress(p engine.RewrapProgress) {
	state := "rewrapped"
	if p.Skipped {
		state = "already under the new key"
	}
	fmt.Fprintf(a.stderr, "[%d/%d] segment %s %s\n", p.Done, p.Total, p.Segment, state)
}

func (a *app) keysPolicyCmd() *cobra.Command {
	var principal string
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
	return policy
}

// keysSetLocalCmd is `keys enable` (enable true) or `keys disable`.
func (a *app) keysSetLocalCmd(enable bool) *cobra.Command {
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
