package ingest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logstore/logstore/engine"
)

// combinedRE matches the Apache/nginx combined log format:
// %h %l %u [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i"
var combinedRE = regexp.MustCompile(`^(\S+) (\S+) (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}|-) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?`)

const combinedTime = "02/Jan/2006:15:04:05 -0700"

func readCombined(r io.Reader, name string, emit func(engine.Record) error, bad func(error) error) error {
	return readLines(r, name, MaxCombinedLineBytes, func(line []byte) (engine.Record, error) { return combinedRecord(string(line)) }, emit, bad)
}

func unquote(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\"`, `"`), `\\`, `\`) }

func combinedRecord(line string) (engine.Record, error) {
	if !utf8.ValidString(line) {
		return engine.Record{}, errors.New("not a text line (invalid UTF-8)")
	}
	m := combinedRE.FindStringSubmatch(line)
	if m == nil {
		return engine.Record{}, fmt.Errorf("not a combined log line (%s)", withheld)
	}
	t, err := time.Parse(combinedTime, m[4])
	if err != nil {
		return engine.Record{}, fmt.Errorf("time: not in the form [%s] (%s)", combinedTime, withheld)
	}
	reqLine := strings.Fields(unquote(m[5]))
	if len(reqLine) < 2 {
		return engine.Record{}, fmt.Errorf("request line: not METHOD TARGET [PROTOCOL] (%s)", withheld)
	}
	u, err := url.ParseRequestURI(reqLine[1])
	if err != nil {
		return engine.Record{}, fmt.Errorf("request target: invalid (%s): %s", withheld, urlProblem(err))
	}
	rec := engine.Record{Meta: engine.Meta{Time: t, Method: reqLine[0], ResponseSource: "upstream"}, Path: u.EscapedPath(), Query: u.RawQuery, ClientIP: m[1]}
	if m[3] != "-" {
		rec.ConsumerID = m[3]
	}
	if m[6] != "-" {
		rec.Status, _ = strconv.Atoi(m[6])
	}
	if m[7] != "-" {
		rec.ResponseSize, _ = strconv.ParseInt(m[7], 10, 64)
	}
	if m[8] != "" && m[8] != "-" {
		rec.RequestHeaders = append(rec.RequestHeaders, engine.Header{Name: "Referer", Value: unquote(m[8])})
	}
	if m[9] != "" && m[9] != "-" {
		rec.RequestHeaders = append(rec.RequestHeaders, engine.Header{Name: "User-Agent", Value: unquote(m[9])})
	}
	if len(reqLine) > 2 {
		rec.Attributes = map[string]string{"protocol": reqLine[2]}
	}
	return rec, nil
}

// isText reports whether b is printable UTF-8 (shown as text, not base64).
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}
