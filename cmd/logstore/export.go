package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/query"
)

// exportCmd is `logstore export`: decrypted records matching a query, as
// JSONL in the ingest schema or as a HAR 1.2 file (`logstore ingest` reads
// either back, ids kept), streamed in constant memory.
func (a *app) exportCmd() *cobra.Command {
	var req query.Request
	var since sinceFlag
	var tenant, from, to, format string
	cmd := &cobra.Command{
		Use:   "export --tenant T [--where EXPR] [--since D | --from TIME --to TIME] [--format jsonl|har] > FILE",
		Short: "Decrypt the records a query selects and write them as JSONL or HAR 1.2 (ingest reads either back); audited like every decrypt",
		Long: `Decrypt the records a query selects and write them to stdout, newest first:
  --format jsonl  one record per line in the ingest schema (the default)
  --format har    a HAR 1.2 file that browsers and HAR viewers open; the
                  fields HAR has no place for are in each entry's "_logstore"
Either way 'logstore ingest' of the file gives the same records (ids kept),
so importing it twice stores nothing new. Every decryption is audited.
A progress bar is drawn on stderr when it is a terminal.`,
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
			n, err := a.export(cmd.Context(), tn, req, ingest.Format(format))
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
	return cmd
}

// export writes every record req selects, decrypted, in format, newest
// first; it returns how many it wrote.
func (a *app) export(ctx context.Context, tn *engine.Tenant, req query.Request, format ingest.Format) (int, error) {
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
