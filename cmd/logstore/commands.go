package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
	"github.com/logstore/logstore/internal/demo"
	"github.com/logstore/logstore/query"
)

func (a *app) demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Create a store under a local key, ingest the bundled sample, query it and decrypt a record (no AWS account needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			return demo.Run(cmd.Context(), a.dir, a.stdout, demo.Printer{Table: writeTable, Record: writeRecordText})
		},
	}
}

func (a *app) ingestCmd() *cobra.Command {
	var tenant, format, session string
	var skip, dupes bool
	cmd := &cobra.Command{
		Use:   "ingest --tenant T [--format auto|jsonl|har|combined] [--session S] [--skip-invalid] [--allow-duplicates] FILE...|-",
		Short: "Store captures: HAR 1.2, JSONL records or Apache/nginx combined access logs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			f, err := ingest.ParseFormat(format)
			if err != nil {
				return err
			}
			db, err := a.openOrCreate()
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			tn, err := db.Tenant(tenant)
			if err != nil {
				return err
			}
			total, skipped, dups, skippedFiles := 0, 0, 0, 0
			start := time.Now()
			defer a.reportRedacted(context.WithoutCancel(cmd.Context()), db, tenant, redactedBefore(cmd.Context(), db))
			for _, name := range files {
				res, err := a.ingestOne(cmd.Context(), tn, name, ingest.Options{Format: f, Session: session, SkipInvalid: skip, Idempotent: !dupes})
				total += res.Stored
				skipped += res.Skipped
				dups += res.Duplicates
				for _, s := range res.Skips {
					fmt.Fprintf(a.stderr, "skipped: %v\n", s)
				}
				if err != nil && cmd.Context().Err() != nil {
					fmt.Fprintf(a.stderr, "interrupted: %d record(s) stored in all (%d from %s), %d were already stored; they are safe. Run the same command again to resume: records already stored are skipped.\n",
						total, res.Stored, name, dups)
					return fmt.Errorf("ingest interrupted (%v)", context.Cause(cmd.Context()))
				}
				if err != nil {
					if res.Stored > 0 {
						fmt.Fprintf(a.stderr, "stored %d record(s) from %s before the error; they are safe\n", res.Stored, name)
					}
					if skip && badInputFile(err) {
						// --skip-invalid: a file that is not input is skipped
						// like an entry that is not a record, and counted.
						fmt.Fprintf(a.stderr, "skipped file %s: %v\n", name, err)
						skippedFiles++
						continue
					}
					return err
				}
				fmt.Fprintf(a.stdout, "%s: %s, %d record(s) stored, %d already stored, %d skipped, %d bytes\n", name, res.Format, res.Stored, res.Duplicates, res.Skipped, res.Bytes)
			}
			el := time.Since(start)
			fmt.Fprintf(a.stdout, "ingested %d record(s) for tenant %s in %s (%.0f records/s), %d already stored, %d skipped", total, tenant, el.Round(time.Millisecond), float64(total)/el.Seconds(), dups, skipped)
			if skippedFiles > 0 {
				fmt.Fprintf(a.stdout, ", %d file(s) skipped", skippedFiles)
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
	cmd.Flags().StringVar(&format, "format", "auto", "input format: auto, jsonl, har or combined")
	cmd.Flags().StringVar(&session, "session", "", "session id for records without one")
	cmd.Flags().BoolVar(&skip, "skip-invalid", false, "skip malformed entries (counted) instead of stopping")
	cmd.Flags().BoolVar(&dupes, "allow-duplicates", false, "store every record even if the tenant holds it already (default: a record with the same content is stored once, so an ingest can be re-run or resumed)")
	return cmd
}

// badInputFile reports whether err is about an input file itself (missing,
// unreadable, not a format ingest knows, malformed past what --skip-invalid
// skips), not about the store or the key.
func badInputFile(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, ingest.ErrUnknownFormat) || errors.Is(err, ingest.ErrMalformed) || errors.Is(err, ingest.ErrTooLarge)
}

func (a *app) ingestOne(ctx context.Context, tn *engine.Tenant, name string, o ingest.Options) (ingest.Result, error) {
	in, size := a.stdin, int64(-1)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return ingest.Result{}, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		in = f
	}
	if bar := a.newProgress(filepath.Base(name), size, true); bar != nil {
		o.Progress = func(p ingest.Progress) { bar.set(p.Bytes, p.Records) }
		defer bar.finish()
	}
	return ingest.Ingest(ctx, tn, name, in, o)
}

func (a *app) queryCmd() *cobra.Command {
	var req query.Request
	var since sinceFlag
	var all, follow bool
	var last int
	var tenant, from, to, format string
	cmd := &cobra.Command{
		Use:     "query --tenant T [--since 1h | --from TIME --to TIME] [--where EXPR] [--limit N | --all | --follow [--last N]] [--cursor TOKEN] [--format table|json] [--count]",
		Short:   "Query plaintext metadata (never needs the key); newest first",
		Long:    queryLong(),
		Example: queryExamples,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			if format != "table" && format != "json" {
				return usageError{fmt.Errorf("--format must be table or json, not %q", format)}
			}
			if req.From, req.To, err = timeRange(since.d, from, to, time.Now()); err != nil {
				return usageError{err}
			}
			if err := checkFollow(cmd, follow, last); err != nil {
				return err
			}
			if all && req.Count {
				return usageError{errors.New("--all streams rows: not with --count")}
			}
			if cmd.Flags().Changed("limit") && req.Limit <= 0 {
				all = true // --limit 0: every row
			}
			if !all && req.Limit > query.MaxLimit {
				return usageError{fmt.Errorf("--limit %d is over %d, the largest page: use --all to stream every row", req.Limit, query.MaxLimit)}
			}
			db, tn, err := a.openTenant(cmd.Context(), tenant, a.openForReading)
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			if follow {
				req.Limit = 0
				return a.followQuery(cmd.Context(), tn, req, last, format)
			}
			if all {
				return a.streamQuery(cmd.Context(), tn, req, format)
			}
			res, err := query.Run(cmd.Context(), tn, req)
			if err != nil {
				return err
			}
			return a.printQueryResult(res, req.Count, format)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
	f.Var(&since, "since", "only records newer than this age (90s, 15m, 1h30m, 7d, 2w)")
	f.StringVar(&from, "from", "", "records at or after this time (RFC 3339, 2015-05-18, or 2015-05-18T10:00 UTC)")
	f.StringVar(&to, "to", "", "records before this time (same forms as --from)")
	f.BoolVar(&all, "all", false, "stream every matching row (no page limit, constant memory); same as --limit 0")
	f.StringVarP(&req.Where, "where", "w", "", "filter expression, e.g. \"status=5xx AND method IN (POST, PUT)\"")
	f.IntVar(&req.Limit, "limit", 100, "page size, at most 10,000 (--all or --limit 0: every row)")
	f.StringVar(&req.Cursor, "cursor", "", "continue from a previous page's cursor")
	f.StringVarP(&format, "format", "o", "table", "table or json (JSON lines)")
	f.BoolVar(&req.Count, "count", false, "print the number of matches")
	f.BoolVarP(&follow, "follow", "f", false, "print new matching records as a writer acknowledges them, until Ctrl-C (store opened read-only)")
	f.IntVar(&last, "last", 0, "with --follow: first print the newest N existing matches (oldest first), like tail -n N -f")
	return cmd
}

// streamQuery prints every row req matches (--all), as they come.
func (a *app) streamQuery(ctx context.Context, tn *engine.Tenant, req query.Request, format string) error {
	out := newRowStream(a.stdout, format)
	plan, err := query.Stream(ctx, tn, req, out.write)
	if cerr := out.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintf(a.stderr, "%d row(s), index %s\n", out.n, plan.Index)
	}
	return nil
}

// printQueryResult prints a query's count or rows in format (table or json);
// the continuation cursor or, for a table, a summary goes to stderr.
func (a *app) printQueryResult(res *query.Result, count bool, format string) error {
	if count {
		if format == "json" {
			return json.NewEncoder(a.stdout).Encode(map[string]any{"count": res.Count, "index": res.Plan.Index})
		}
		fmt.Fprintln(a.stdout, res.Count)
		return nil
	}
	if format == "json" {
		if err := writeJSONLines(a.stdout, res.Rows); err != nil {
			return err
		}
	} else if err := writeTable(a.stdout, res.Rows); err != nil {
		return err
	}
	if res.Next != "" {
		fmt.Fprintf(a.stderr, "more: --cursor %s\n", res.Next)
	} else if format == "table" {
		fmt.Fprintf(a.stderr, "%d row(s), index %s\n", len(res.Rows), res.Plan.Index)
	}
	return nil
}

func (a *app) showCmd() *cobra.Command {
	var tenant, part, format, which string
	var reveal bool
	cmd := &cobra.Command{
		Use:   "show --tenant T ID [--part log|payload|all] [--format text|json|raw] [--body request|response] [--reveal]",
		Short: "Decrypt and print a record",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if err := requireTenant(tenant); err != nil {
				return err
			}
			id, err := engine.ParseID(args[0])
			if err != nil {
				return usageError{err}
			}
			parts := map[string]engine.Part{"log": engine.PartLog, "payload": engine.PartPayload, "all": engine.PartAll}[part]
			if parts == 0 {
				return usageError{fmt.Errorf("--part must be log, payload or all, not %q", part)}
			}
			if format == "raw" && parts != engine.PartPayload {
				return usageError{errors.New("--format raw writes body bytes: use it with --part payload")}
			}
			if which != "request" && which != "response" {
				return usageError{fmt.Errorf("--body must be request or response, not %q", which)}
			}
			db, tn, err := a.openTenant(cmd.Context(), tenant, a.openForReading)
			if err != nil {
				return err
			}
			defer closeDB(db, &err)
			rec, err := tn.Get(cmd.Context(), id, parts)
			if err != nil {
				return err
			}
			if n := len(rec.Originals); n > 0 && !reveal {
				rec.Originals = nil
				fmt.Fprintf(a.stderr, "%d value(s) are shown masked; their sealed originals are withheld (--reveal prints them)\n", n)
			}
			switch format {
			case "text":
				return writeRecordText(a.stdout, rec, parts)
			case "json":
				line, err := ingest.MarshalJSONL(*rec)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "%s\n", line)
				return err
			case "raw":
				if rec.Payload == nil {
					return nil
				}
				body := rec.Payload.ResponseBody
				if which == "request" {
					body = rec.Payload.RequestBody
				}
				_, err = a.stdout.Write(body)
				return err
			}
			return usageError{fmt.Errorf("--format must be text, json or raw, not %q", format)}
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant (required)")
	cmd.Flags().StringVar(&part, "part", "all", "log, payload or all")
	cmd.Flags().StringVarP(&format, "format", "o", "text", "text, json, or raw (the bytes of one body, see --body)")
	cmd.Flags().StringVar(&which, "body", "response", "with --format raw: request or response")
	cmd.Flags().BoolVar(&reveal, "reveal", false, "also print the sealed originals of values the redaction policy masked with a seal action")
	return cmd
}
