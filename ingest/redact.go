package ingest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/logstore/logstore/engine"
)

// Ingest error messages name the place (file:line, HAR entry), the field and
// the kind of problem, never a value from the input: sealed fields (path,
// query, client ip, consumer id, headers, attributes, bodies) may be
// anywhere in a malformed entry, and the messages go to terminals and logs
// (docs/reliability.md, "What is plaintext"). The helpers below turn library
// errors, which quote input freely, into such messages.

// safeError marks an error whose message is already free of input values
// (from the decoders' own UnmarshalJSON methods): it is passed on as is.
type safeError struct{ error }

func (e safeError) Unwrap() error { return e.error }

// withheld ends a message about a value that is not shown.
const withheld = "value withheld: it may hold sealed fields"

// syntaxCharRE matches the quoted character of encoding/json's "invalid
// character 'x' ..." messages.
var syntaxCharRE = regexp.MustCompile(`^invalid character '(?:\\.|[^'\\])*' `)

// jsonSyntax describes a JSON syntax error without the offending character.
func jsonSyntax(se *json.SyntaxError) string {
	return "invalid JSON: " + syntaxCharRE.ReplaceAllString(se.Error(), "invalid character ")
}

// jsonKind names a Go type as JSON would call it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t.Kind().String() // "int", "int64": as the messages always said
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "bool"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string"
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) {
			return "RFC 3339 time string"
		}
		return "object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

// valueKind is the JSON kind of an UnmarshalTypeError's value ("string",
// "number", ...) without the literal some versions of encoding/json append.
func valueKind(v string) string {
	k, _, _ := strings.Cut(v, " ")
	return k
}

// typeErrorField is an UnmarshalTypeError's field path (object keys, with
// prefix), cut at the first map: keys of a map (attributes) are sealed.
func typeErrorField(prefix, field string) string {
	parts := strings.Split(field, ".")
	if len(parts) > 1 && parts[0] == "Record" { // the embedded engine.Record of a JSONL line
		parts = parts[1:]
	}
	for i, p := range parts {
		if p == "attributes" {
			parts = parts[:i+1]
			break
		}
	}
	field = strings.Join(parts, ".")
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// typeError describes a JSON type mismatch: "field request.url: a number
// where a string belongs".
func typeError(prefix string, te *json.UnmarshalTypeError) error {
	field := typeErrorField(prefix, te.Field)
	if field == "" {
		return fmt.Errorf("a %s where a %s belongs", valueKind(te.Value), jsonKind(te.Type))
	}
	return fmt.Errorf("field %s: a %s where a %s belongs", field, valueKind(te.Value), jsonKind(te.Type))
}

// jsonRecordError describes any error of decoding one JSON record (a JSONL
// line) without quoting the input.
func jsonRecordError(err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
		pe *time.ParseError
		be base64.CorruptInputError
	)
	var safe safeError
	switch {
	case errors.As(err, &safe):
		return safe.error
	case errors.As(err, &te):
		return typeError("", te)
	case errors.As(err, &se):
		return fmt.Errorf("not a JSON record: %s", jsonSyntax(se))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("not a JSON record: the line ends inside it (truncated?)")
	case errors.As(err, &pe), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		return fmt.Errorf(`field time: not an RFC 3339 time (%s)`, withheld)
	case errors.As(err, &be):
		return fmt.Errorf("a *_base64 body is not valid base64 (at byte %d)", int64(be))
	case errors.Is(err, engine.ErrInvalidRecord): // engine.ID's UnmarshalText
		return errors.New(`field id: not a 26-character ULID`)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(name) > 66 {
			name = name[:64] + `..."`
		}
		if payloadFields[strings.Trim(name, `"`)] {
			return fmt.Errorf(`unknown field %s: bodies go under "payload", e.g. {"payload": {%s: ...}} (README: JSONL schema)`, name, name)
		}
		return fmt.Errorf("unknown field %s", name)
	}
	return errors.New("not a JSON record (details withheld: they may hold sealed fields)")
}

// urlProblem names what is wrong with a URL that did not parse, without it.
func urlProblem(err error) string {
	var ee url.EscapeError
	var he url.InvalidHostError
	msg := err.Error()
	switch {
	case errors.As(err, &ee):
		return "bad %-escape"
	case errors.As(err, &he), strings.Contains(msg, "missing ']'"):
		return "bad host"
	case strings.Contains(msg, "invalid control character"):
		return "control character"
	case strings.Contains(msg, "invalid port"):
		return "bad port"
	case strings.Contains(msg, "missing protocol scheme"), strings.Contains(msg, "first path segment in URL cannot contain colon"):
		return "bad scheme"
	}
	return "malformed"
}

// badURL is the error for a URL that did not parse.
func badURL(field string, err error) error {
	return fmt.Errorf("%s: invalid URL (%s): %s", field, withheld, urlProblem(err))
}

// payloadFields are the fields of a JSONL record's "payload" object: one
// of them at the top level is a misplaced body, and the error says where.
var payloadFields = map[string]bool{
	"request_content_type": true, "request_body": true, "request_body_base64": true,
	"response_content_type": true, "response_body": true, "response_body_base64": true,
}
