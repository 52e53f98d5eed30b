package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/query"
)

// `logstore query --follow [--last N]`: print the newest N matching records
// (default none), then those a writer (another process: the store is open
// read-only) acknowledges from now on, until SIGINT or SIGTERM, which end
// it with exit 0.

// checkFollow refuses the query flags that make no sense with --follow,
// and --last without it.
func checkFollow(cmd *cobra.Command, follow bool, last int) error {
	switch {
	case !follow && cmd.Flags().Changed("last"):
		return usageError{errors.New("--last N prints the newest N matches before following: use it with --follow")}
	case !follow:
		return nil
	case last < 0 || last > query.MaxLimit:
		return usageError{fmt.Errorf("--last must be from 0 to %d, not %d", query.MaxLimit, last)}
	}
	for _, name := range []string{"all", "limit", "cursor", "count"} {
		if cmd.Flags().Changed(name) {
			return usageError{fmt.Errorf("--follow prints new records as they come: not with --%s", name)}
		}
	}
	return nil
}

// followQuery prints every record req selects that is acknowledged after it
// starts, each as soon as the store shows it (a table row flushed at once,
// or a JSON line). A store it cannot read for a while is reported on stderr
// and retried; the context's end (a signal) ends it without error.
func (a *app) followQuery(ctx context.Context, tn *engine.Tenant, req query.Request, last int, format string) error {
	out := newFollowPrinter(a.stdout, format)
	opts := engine.FollowOptions{Started: func() {
		fmt.Fprintf(a.stderr, "following tenant %s (new records as they are acknowledged; Ctrl-C stops)\n", tn.Name())
	}}
	for m, err := range query.FollowLast(ctx, tn, req, last, opts) {
		switch {
		case errors.Is(err, engine.ErrFollowStalled):
			fmt.Fprintf(a.stderr, "logstore: warning: %v (retrying)\n", err)
		case err != nil:
			return err
		default:
			if err := out.write(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// followPrinter prints followed rows one at a time: JSON lines, or table
// rows flushed at once (aligned while the values fit the minimum widths;
// the time and id columns always do).
type followPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func newFollowPrinter(w io.Writer, format string) *followPrinter {
	return &followPrinter{w: w, json: format == "json"}
}

func (p *followPrinter) write(m *engine.Meta) error {
	if p.json {
		return newJSONEncoder(p.w).Encode(jsonRow(m))
	}
	tw := tabwriter.NewWriter(p.w, 10, 0, 2, ' ', 0)
	if !p.header {
		p.header = true
		fmt.Fprintln(tw, tableHeader)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	writeRow(tw, m)
	return tw.Flush()
}
