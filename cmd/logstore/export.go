package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/query"
	"github.com/logstore/logstore/redact"
)

// exportCmd is `logstore export`: decrypted records matching a query, as
// JSONL in the ingest schema or as a HAR 1.2 file (`logstore ingest` reads
// either back, ids kept), streamed in constant memory.
func (a *app) exportCmd() *cobra.Command {
	var req query.Request
	var since sinceFlag
	var tenant, from, to, format, policyFile string
	var opts exportOptions
	cmd := &cobra.Command{
		Use:   "export --tenant T [--where EXPR] [--since D | --from TIME --to TIME] [--format jsonl|har] [--redact | --redact-policy FILE] [--reveal] > FILE",
		Short: "Decrypt the records a query selects and write them as JSONL or HAR 1.2 (ingest reads either back); audited like every decrypt",
		Long: `Decrypt the records a query selects and write them to stdout, newest first:
  --format jsonl  one record per line in the ingest schema (the default)
  --format har    a HAR 1.2 file that browsers and HAR viewers open; the
                  fields HAR has no place for are in each entry's "_logstore"
Either way 'logstore ingest' of the file gives the same records (ids kept),
so importing it twice stores nothing new. Every decryption is audited.
A progress bar is drawn on stderr when it is a terminal.

Records were redacted when they were stored (docs/redaction.md). --redact
applies the tenant's current policy to the export again (records stored
before it was tightened), --redact-policy FILE a policy of your own (for a
file leaving the team). The sealed originals of values masked with a "seal"
action are left out unless --reveal is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			if format != string(ingest.FormatJSONL) && format != string(ingest.FormatHAR) {
				return usageError{fmt.Errorf("--format must be jsonl or har, not %q", format)}
			}
			if req.From, req.To, err = timeRange(since.d, from, to, time.Now()); err != nil {
				return usageError{err}
			}
			// Opened for writing (not read-only): the key uses of the
			// decryption are recorded in the store's audit trail.
			db, tn, err := a.openTenant(cmd.Context(), tenant, a.open)
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			if opts.redactor, err = exportRedactor(cmd.Context(), db, tenant, opts.redact, policyFile); err != nil {
				return err
			}
			n, err := a.export(cmd.Context(), tn, req, ingest.Format(format), opts)
			fmt.Fprintf(a.stderr, "exported %d record(s)\n", n)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
	f.StringVarP(&req.Where, "where", "w", "", "filter expression (see `logstore help query`)")
	f.Var(&since, "since", "only records newer than this age (90s, 15m, 1h30m, 7d, 2w)")
	f.StringVar(&from, "from", "", "records at or after this time")
	f.StringVar(&to, "to", "", "records before this time")
	f.StringVarP(&format, "format", "o", "jsonl", "output format: jsonl or har")
	f.BoolVar(&opts.redact, "redact", false, "apply the tenant's redaction policy to the exported records")
	f.StringVar(&policyFile, "redact-policy", "", "apply the redaction policy in this JSON file (docs/redaction.md)")
	f.BoolVar(&opts.reveal, "reveal", false, "include the sealed originals of masked values")
	return cmd
}

// exportOptions are export's redaction choices.
type exportOptions struct {
	redact, reveal bool
	redactor       *redact.Redactor // nil: records as stored
}

// exportRedactor is the policy an export applies: the tenant's (--redact),
// a file's (--redact-policy), or none.
func exportRedactor(ctx context.Context, db *engine.DB, tenant string, useTenant bool, file string) (*redact.Redactor, error) {
	var p *redact.Policy
	switch {
	case file != "" && useTenant:
		return nil, usageError{errors.New("give --redact or --redact-policy, not both")}
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usageError{err}
		}
		if p, err = redact.Parse(b); err != nil {
			return nil, usageError{fmt.Errorf("%s: %w", file, err)}
		}
	case useTenant:
		rp, err := db.Admin().Redaction(ctx, tenant)
		if err != nil {
			return nil, err
		}
		p = rp.Policy
	default:
		return nil, nil
	}
	return p.Compile()
}

// export writes every record req selects, decrypted, in format, newest
// first; it returns how many it wrote.
func (a *app) export(ctx context.Context, tn *engine.Tenant, req query.Request, format ingest.Format, o exportOptions) (int, error) {
	bw := bufio.NewWriterSize(a.stdout, 1<<16)
	w, err := ingest.NewWriter(format, bw, "logstore "+version())
	if err != nil {
		return 0, usageError{err}
	}
	var bar *progress
	if a.stderrIsTerminal() {
		bar = a.newProgress("export", exportTotal(ctx, tn, req), false)
		defer bar.finish()
	}
	n := 0
	_, err = query.Stream(ctx, tn, req, func(m *engine.Meta) error {
		rec, err := tn.Get(ctx, m.ID, engine.PartAll)
		if err != nil {
			return fmt.Errorf("record %s: %w", m.ID, err)
		}
		if o.redactor != nil {
			red, _ := engine.RedactRecord(o.redactor, rec)
			rec = &red
		}
		if !o.reveal { // after the redaction: its "seal" originals are withheld too
			rec.Originals = nil
		}
		if err := w.Write(*rec); err != nil {
			return err
		}
		n++
		bar.set(int64(n), n)
		return nil
	})
	if err == nil {
		// Not on an error: a HAR cut short stays visibly truncated
		// (ingest says so) instead of looking complete.
		err = w.Close()
	}
	return n, errors.Join(err, bw.Flush())
}

// exportTotal is how many records req selects, for the progress bar (-1
// if the count fails: the bar then shows no total).
func exportTotal(ctx context.Context, tn *engine.Tenant, req query.Request) int64 {
	req.Count = true
	res, err := query.Run(ctx, tn, req)
	if err != nil {
		return -1
	}
	return int64(res.Count)
}
