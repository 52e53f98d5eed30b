package main

import (
	"fmt"
	"strings"

	"github.com/logstore/logstore/query"
)

// queryLong is `logstore query --help` (and `logstore help query`): the
// grammar, the fields a --where may name, and examples.
func queryLong() string {
	var searchable []string
	for _, f := range query.Fields {
		kind := map[query.Kind]string{query.KindString: "string", query.KindNumber: "number", query.KindTime: "time"}[f.Kind]
		searchable = append(searchable, fmt.Sprintf("%s (%s)", f.Name, kind))
	}
	return `Query the plaintext metadata of a tenant's request logs (never needs the key). Rows come newest first,
a page of --limit rows (at most 10,000; --all streams every row), with a cursor for the next page on stderr.

Grammar of --where:
  expr       = term { OR term }
  term       = factor { AND factor }
  factor     = NOT factor | "(" expr ")" | comparison
  comparison = field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
             | field [NOT] IN "(" value { "," value } ")"
  value      = 'quoted string' | "quoted string" | number | bare-word | RFC 3339 time | 2xx..5xx (status only)
Keywords are case-insensitive. Quote a value that holds spaces, quotes, ';', '&', '|' or '` + "`" + `'.
Strings take = != IN; numbers and times also < <= > >=.

Searchable fields:
  ` + wrapList(searchable, 100) + `
Sealed fields (encrypted, never searchable):
  ` + wrapList(query.SealedFields, 100) + `

Times: --since 90s|15m|1h30m|7d|2w; --from/--to RFC 3339, 2015-05-18 or 2015-05-18T10:00 (UTC).`
}

const queryExamples = `  logstore query -t acme --since 1h -w "status = 5xx"
  logstore query -t acme -w "method IN (POST, PUT) AND latency_ms > 300" --limit 20
  logstore query -t acme -w "session_id = 'sess-42'" --all -o json > session.jsonl
  logstore query -t acme --from 2015-05-17 --to 2015-05-18 -w "status = 404" --count
  logstore query -t acme -w "status = 5xx" --follow          # new matches as an ingest stores them; Ctrl-C stops`

// wrapList joins items with ", ", wrapping lines at width.
func wrapList(items []string, width int) string {
	var b strings.Builder
	line := 0
	for i, it := range items {
		if i > 0 {
			b.WriteString(",")
			line++
			if line+len(it)+1 > width {
				b.WriteString("\n  ")
				line = 0
			} else {
				b.WriteString(" ")
				line++
			}
		}
		b.WriteString(it)
		line += len(it)
	}
	return b.String()
}
