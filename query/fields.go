package query

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/logstore/logstore/engine"
)

// Kind is a field's value type.
type Kind int

const (
	KindString Kind = iota
	KindNumber
	KindTime
)

// Field is a queryable (plaintext) field: a row of the engine's schema
// (engine.Fields()) seen with the query language's value kinds.
type Field struct {
	Name string
	Kind Kind
	// Schema is the engine's field: its accessors and whether it has a
	// secondary index (the time index bounds every scan).
	Schema *engine.Field
}

func (f *Field) get(m *engine.Meta) Value {
	switch f.Kind {
	case KindNumber:
		return Value{Num: f.Schema.Number(m), Kind: KindNumber}
	case KindTime:
		return Value{Time: m.Time, Kind: KindTime}
	}
	return Value{Str: f.Schema.String(m), Kind: KindString}
}

// Fields are the plaintext fields, in the README's order: one per row of
// engine.Fields(), so a field added to the engine's schema is queryable.
var Fields = fromSchema(engine.Fields())

func fromSchema(schema []*engine.Field) []*Field {
	out := make([]*Field, len(schema))
	for i, sf := range schema {
		f := &Field{Name: sf.Name(), Kind: KindString, Schema: sf}
		switch sf.Kind() {
		case engine.KindInt, engine.KindFloat:
			f.Kind = KindNumber
		case engine.KindTime:
			f.Kind = KindTime
		}
		out[i] = f
	}
	return out
}

// SealedFields are encrypted: a query naming one is refused.
var SealedFields = []string{"path", "query", "url", "client_ip", "consumer_id", "headers", "request_headers",
	"response_headers", "body", "request_body", "response_body", "payload", "attributes"}

// LookupField resolves a field name (case-insensitive).
func LookupField(name string) (*Field, error) {
	n := strings.ToLower(name)
	for _, f := range Fields {
		if f.Name == n {
			return f, nil
		}
	}
	for _, s := range SealedFields {
		if s == n || strings.HasPrefix(n, s+".") {
			return nil, fmt.Errorf("%w: %q is sealed (encrypted with the tenant's key, never indexed); searchable fields: %s",
				ErrSealedField, name, strings.Join(FieldNames(), ", "))
		}
	}
	best, bestD := "", 1<<30
	for _, cand := range append(FieldNames(), SealedFields...) {
		if d := levenshtein(n, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	if bestD <= 3 {
		return nil, fmt.Errorf("%w: %q; did you mean %q?", ErrUnknownField, name, best)
	}
	return nil, fmt.Errorf("%w: %q; fields: %s", ErrUnknownField, name, strings.Join(FieldNames(), ", "))
}

// FieldNames lists the queryable fields.
func FieldNames() []string {
	out := make([]string, len(Fields))
	for i, f := range Fields {
		out[i] = f.Name
	}
	sort.Strings(out)
	return out
}

func (f *Field) parseValue(s string) (Value, error) {
	switch f.Kind {
	case KindNumber:
		if f.Name == "status" || f.Name == "upstream_status" {
			if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && strings.EqualFold(s[1:], "xx") {
				return Value{Class: int(s[0] - '0'), Kind: KindNumber}, nil
			}
		}
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %s wants a number, got %q", ErrBadValue, f.Name, s)
		}
		// A number no record can hold is a typo, not a query for nothing.
		if math.Abs(n) > 1<<53 {
			return Value{}, fmt.Errorf("%w: %s: %s is out of range", ErrBadValue, f.Name, s)
		}
		if (f.Name == "status" || f.Name == "upstream_status") && (n != math.Trunc(n) || n < 0 || n > 999) {
			return Value{}, fmt.Errorf("%w: %s is an HTTP status, 0-999 or a class like 5xx, not %s", ErrBadValue, f.Name, s)
		}
		return Value{Num: n, Kind: KindNumber}, nil
	case KindTime:
		t, err := parseTime(s)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %s wants an RFC 3339 time, got %q", ErrBadValue, f.Name, s)
		}
		return Value{Time: t, Kind: KindTime}, nil
	}
	if f.Name == "method" {
		s = strings.ToUpper(s)
	}
	return Value{Str: s, Kind: KindString}, nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// match evaluates e on m.
func match(e Expr, m *engine.Meta) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *And:
		return match(e.L, m) && match(e.R, m)
	case *Or:
		return match(e.L, m) || match(e.R, m)
	case *Not:
		return !match(e.X, m)
	case *Cmp:
		got := e.Field.get(m)
		if e.Op == OpIn {
			for _, v := range e.Values {
				if equal(got, v) {
					return !e.Negate
				}
			}
			return e.Negate
		}
		v := e.Values[0]
		switch e.Op {
		case OpEq:
			return equal(got, v)
		case OpNe:
			return !equal(got, v)
		}
		c := compare(got, v)
		switch e.Op {
		case OpLt:
			return c < 0
		case OpLe:
			return c <= 0
		case OpGt:
			return c > 0
		case OpGe:
			return c >= 0
		}
	}
	return false
}

func equal(got, v Value) bool {
	switch {
	case v.Class > 0:
		return int(got.Num)/100 == v.Class
	case got.Kind == KindNumber:
		return got.Num == v.Num
	case got.Kind == KindTime:
		return got.Time.Equal(v.Time)
	}
	return got.Str == v.Str
}

func compare(got, v Value) int {
	switch got.Kind {
	case KindNumber:
		switch {
		case got.Num < v.Num:
			return -1
		case got.Num > v.Num:
			return 1
		}
		return 0
	case KindTime:
		return got.Time.Compare(v.Time)
	}
	return strings.Compare(got.Str, v.Str)
}
