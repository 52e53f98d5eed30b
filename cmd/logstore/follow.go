package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

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
// rows written at once in fixed-width columns (the query table's columns;
// a value longer than its column shifts the rest of its row).
type followPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func newFollowPrinter(w io.Writer, format string) *followPrinter {
	return &followPrinter{w: w, json: format == "json"}
}

// followRow is the table row format: time, id, method, status, latency,
// host, route, session, payload.
const followRow = "%-24s  %-26s  %-7s  %-6s  %-10s  %-24s  %-12s  %-12s  %s"

func (p *followPrinter) write(m *engine.Meta) error {
	if p.json {
		return newJSONEncoder(p.w).Encode(jsonRow(m))
	}
	if !p.header {
		p.header = true
		if err := p.line("TIME", "ID", "METHOD", "STATUS", "LATENCY_MS", "HOST", "ROUTE", "SESSION", "PAYLOAD"); err != nil {
			return err
		}
	}
	payload := ""
	if m.HasPayload {
		payload = "yes"
	}
	return p.line(m.Time.Format("2006-01-02T15:04:05.000Z07:00"), m.ID, m.Method, strconv.Itoa(m.Status),
		strconv.FormatFloat(m.LatencyMs, 'f', 1, 64), dash(m.Host), dash(m.RouteID), dash(m.SessionID), payload)
}

// line writes one table line, without trailing blanks.
func (p *followPrinter) line(cols ...any) error {
	_, err := io.WriteString(p.w, strings.TrimRight(fmt.Sprintf(followRow, cols...), " ")+"\n")
	return err
}
