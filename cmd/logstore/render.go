package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

// The terminal rendering of query rows and decrypted records: `logstore
// query` and `logstore show` print with these.

// writeTable prints rows as an aligned table.
func writeTable(w io.Writer, rows []engine.Meta) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, tableHeader)
	for i := range rows {
		writeRow(tw, &rows[i])
	}
	return tw.Flush()
}

const tableHeader = "TIME\tID\tMETHOD\tSTATUS\tLATENCY_MS\tHOST\tROUTE\tSESSION\tPAYLOAD"

func writeRow(w io.Writer, m *engine.Meta) {
	payload := ""
	if m.HasPayload {
		payload = "yes"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Time.Format("2006-01-02T15:04:05.000Z07:00"), m.ID,
		m.Method, m.Status, strconv.FormatFloat(m.LatencyMs, 'f', 1, 64), dash(m.Host), dash(m.RouteID), dash(m.SessionID), payload)
}

// rowStream prints streamed rows: JSON lines, or a table aligned per chunk
// of streamChunk rows (so memory stays constant).
type rowStream struct {
	json  *json.Encoder
	tw    *tabwriter.Writer
	n     int
	chunk int
}

const streamChunk = 1000

func newRowStream(w io.Writer, format string) *rowStream {
	if format == "json" {
		return &rowStream{json: newJSONEncoder(w)}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, tableHeader)
	return &rowStream{tw: tw}
}

func (s *rowStream) write(m *engine.Meta) error {
	s.n++
	if s.json != nil {
		return s.json.Encode(jsonRow(m))
	}
	writeRow(s.tw, m)
	if s.chunk++; s.chunk == streamChunk {
		s.chunk = 0
		return s.tw.Flush()
	}
	return nil
}

func (s *rowStream) close() error {
	if s.tw != nil {
		return s.tw.Flush()
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSONLines prints one JSON object per row (plaintext fields only).
func writeJSONLines(w io.Writer, rows []engine.Meta) error {
	enc := newJSONEncoder(w)
	for i := range rows {
		if err := enc.Encode(jsonRow(&rows[i])); err != nil {
			return err
		}
	}
	return nil
}

// newJSONEncoder writes JSON for people and tools alike: "<" and "&" as
// themselves, not \u003c.
func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// metaJSON is a row as the CLI prints it: the time in UTC with nine
// fractional digits (every row the same length, so they sort as text), and
// latencies rounded to the microsecond (no binary float noise such as
// 0.31400000000000006).
type metaJSON struct {
	engine.Meta
	Time              string  `json:"time"`
	LatencyMs         float64 `json:"latency_ms"`
	UpstreamLatencyMs float64 `json:"upstream_latency_ms,omitempty"`
	GatewayLatencyMs  float64 `json:"gateway_latency_ms,omitempty"`
}

const jsonTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func jsonRow(m *engine.Meta) metaJSON {
	us := func(ms float64) float64 { return math.Round(ms*1000) / 1000 }
	return metaJSON{Meta: *m, Time: m.Time.UTC().Format(jsonTimeLayout),
		LatencyMs: us(m.LatencyMs), UpstreamLatencyMs: us(m.UpstreamLatencyMs), GatewayLatencyMs: us(m.GatewayLatencyMs)}
}

// writeRecordText prints a decrypted record for a person; binary bodies are
// shown as their size and base64.
func writeRecordText(w io.Writer, r *engine.Record, parts engine.Part) error {
	var b strings.Builder
	fmt.Fprintf(&b, "id        %s\ntime      %s\n", r.ID, r.Time.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "request   %s %s%s", r.Method, dash(r.Host), r.Path)
	if r.Query != "" {
		b.WriteString("?" + r.Query)
	}
	// Unknown (zero) upstream figures are left out, not shown as 0.
	fmt.Fprintf(&b, "\nstatus    %d", r.Status)
	if r.UpstreamStatus != 0 {
		fmt.Fprintf(&b, " (upstream %d)", r.UpstreamStatus)
	}
	fmt.Fprintf(&b, "\nlatency   %.1f ms", r.LatencyMs)
	if r.UpstreamLatencyMs != 0 || r.GatewayLatencyMs != 0 {
		fmt.Fprintf(&b, " (upstream %.1f, gateway %.1f)", r.UpstreamLatencyMs, r.GatewayLatencyMs)
	}
	b.WriteString("\n")
	for _, kv := range [][2]string{{"session", r.SessionID}, {"trace", r.TraceID}, {"span", r.SpanID}, {"route", r.RouteID},
		{"service", r.ServiceID}, {"client ip", r.ClientIP}, {"consumer", r.ConsumerID}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%-9s %s\n", kv[0], kv[1])
		}
	}
	if parts&engine.PartLog != 0 {
		for _, hs := range []struct {
			title string
			h     []engine.Header
		}{{"request headers", r.RequestHeaders}, {"response headers", r.ResponseHeaders}} {
			fmt.Fprintf(&b, "%s (%d):\n", hs.title, len(hs.h))
			for _, h := range hs.h {
				fmt.Fprintf(&b, "  %s: %s\n", h.Name, h.Value)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(r.Attributes)) {
			fmt.Fprintf(&b, "attribute %s=%s\n", k, r.Attributes[k])
		}
		if len(r.Originals) > 0 {
			fmt.Fprintf(&b, "sealed originals of masked values (%d):\n", len(r.Originals))
			for _, o := range r.Originals {
				fmt.Fprintf(&b, "  %s: %s\n", o.Where, o.Value)
			}
		}
	}
	if parts&engine.PartPayload != 0 {
		if r.Payload == nil {
			b.WriteString("payload   none captured\n")
		} else {
			writeBody(&b, "request body", r.Payload.RequestContentType, r.Payload.RequestBody)
			writeBody(&b, "response body", r.Payload.ResponseContentType, r.Payload.ResponseBody)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeBody(b *strings.Builder, title, ctype string, body []byte) {
	if len(body) == 0 && ctype == "" {
		fmt.Fprintf(b, "%s none\n", title)
		return
	}
	if ctype == "" {
		fmt.Fprintf(b, "%s (%d bytes)", title, len(body))
	} else {
		fmt.Fprintf(b, "%s (%s, %d bytes)", title, ctype, len(body))
	}
	switch {
	case len(body) == 0:
		b.WriteString("\n")
	case isPrintable(body):
		b.WriteString(":\n")
		b.Write(body)
		b.WriteString("\n")
	default:
		b.WriteString(", binary, base64:\n")
		b.WriteString(base64.StdEncoding.EncodeToString(body))
		b.WriteString("\n")
	}
}

func isPrintable(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	for _, r := range string(body) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// writeJSONEach prints one JSON object per item.
func writeJSONEach[T any](w io.Writer, items []T) error {
	enc := newJSONEncoder(w)
	for i := range items {
		if err := enc.Encode(&items[i]); err != nil {
			return err
		}
	}
	return nil
}

// checkFormat refuses an output format other than table or json.
func checkFormat(format string) error {
	if format != "table" && format != "json" {
		return usageError{fmt.Errorf("--format must be table or json, not %q", format)}
	}
	return nil
}
