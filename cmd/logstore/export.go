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
// JSONL in the ingest schema (so `logstore ingest` reads them back, ids
// kept), streamed in constant memory.
func (a *app) exportCmd() *cobra.Command {
	var req query.Request
	var since sinceFlag
	var tenant, from, to, format string
	cmd := &cobra.Command{
		Use:   "export --tenant T [--where EXPR] [--since D | --from TIME --to TIME] [--format jsonl] > FILE",
		Short: "Decrypt the records a query selects and write them as JSONL (ingest reads it back); audited like every decrypt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if format != "jsonl" {
				return usageError{fmt.Errorf("--format must be jsonl, not %q (HAR export is not built yet)", format)}
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
			n, err := a.export(cmd.Context(), tn, req)
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
	f.StringVarP(&format, "format", "o", "jsonl", "jsonl")
	return cmd
}

// export writes every record req selects, decrypted, one JSONL line each,
// newest first; it returns how many it wrote.
func (a *app) export(ctx context.Context, tn *engine.Tenant, req query.Request) (int, error) {
	w := bufio.NewWriterSize(a.stdout, 1<<16)
	n := 0
	_, err := query.Stream(ctx, tn, req, func(m *engine.Meta) error {
		rec, err := tn.Get(ctx, m.ID, engine.PartAll)
		if err != nil {
			return fmt.Errorf("record %s: %w", m.ID, err)
		}
		line, err := ingest.MarshalJSONL(*rec)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, errors.Join(err, w.Flush())
}
