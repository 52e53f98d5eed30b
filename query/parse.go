// Package query is logstore's metadata query language and its planner. It
// runs over the plaintext, indexed fields only: sealed fields are encrypted
// and cannot be searched, and a query never needs a key.
//
// Grammar:
//
//	expr    = or
//	or      = and { "OR" and }
//	and     = unary { "AND" unary }
//	unary   = "NOT" unary | "(" expr ")" | cmp
//	cmp     = FIELD op value | FIELD ["NOT"] "IN" "(" value { "," value } ")"
//	op      = "=" | "!=" | "<" | "<=" | ">" | ">="
//	value   = 'string' | "string" | number | bare-word | status class (5xx)
package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Errors.
var (
	ErrSyntax       = errors.New("logstore/query: syntax error")
	ErrSealedField  = errors.New("logstore/query: field is encrypted and not searchable")
	ErrUnknownField = errors.New("logstore/query: unknown field")
	ErrBadValue     = errors.New("logstore/query: bad value")
	ErrBadCursor    = errors.New("logstore/query: bad cursor")
)

// Op is a comparison operator.
type Op string

const (
	OpEq Op = "="
	OpNe Op = "!="
	OpLt Op = "<"
	OpLe Op = "<="
	OpGt Op = ">"
	OpGe Op = ">="
	OpIn Op = "IN"
)

// Expr is a parsed expression.
type Expr interface{ String() string }

// And, Or and Not combine expressions.
type (
	And struct{ L, R Expr }
	Or  struct{ L, R Expr }
	Not struct{ X Expr }
	// Cmp compares a field with one value, or with a set (IN). A status
	// class (5xx) is kept as a range: Lo <= status < Hi.
	Cmp struct {
		Field  *Field
		Op     Op
		Values []Value
		Negate bool // NOT IN
	}
)

func (e *And) String() string { return "(" + e.L.String() + " AND " + e.R.String() + ")" }
func (e *Or) String() string  { return "(" + e.L.String() + " OR " + e.R.String() + ")" }
func (e *Not) String() string { return "NOT " + e.X.String() }
func (e *Cmp) String() string {
	vs := make([]string, len(e.Values))
	for i, v := range e.Values {
		vs[i] = v.String()
	}
	if e.Op == OpIn {
		neg := ""
		if e.Negate {
			neg = "NOT "
		}
		return fmt.Sprintf("%s %sIN (%s)", e.Field.Name, neg, strings.Join(vs, ", "))
	}
	return fmt.Sprintf("%s %s %s", e.Field.Name, e.Op, vs[0])
}

// Value is a literal: a string, a number, a time, or a status class.
type Value struct {
	Str   string
	Num   float64
	Time  time.Time
	Class int // 1..5 for 1xx..5xx, else 0
	Kind  Kind
}

func (v Value) String() string {
	switch {
	case v.Class > 0:
		return fmt.Sprintf("%dxx", v.Class)
	case v.Kind == KindNumber:
		return strconv.FormatFloat(v.Num, 'f', -1, 64)
	case v.Kind == KindTime:
		return "'" + v.Time.Format(time.RFC3339Nano) + "'"
	}
	return strconv.Quote(v.Str)
}

type token struct {
	kind string // "ident", "str", "num", "op", "(", ")", ",", "eof"
	text string
	pos  int
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == ',':
			out = append(out, token{kind: string(c), text: string(c), pos: i})
			i++
		case c == '=':
			out = append(out, token{kind: "op", text: "=", pos: i})
			i++
		case c == '!' || c == '<' || c == '>':
			if i+1 < len(s) && s[i+1] == '=' {
				out = append(out, token{kind: "op", text: s[i : i+2], pos: i})
				i += 2
			} else if c == '!' {
				return nil, fmt.Errorf("%w at %d: '!' must be followed by '='", ErrSyntax, i)
			} else {
				out = append(out, token{kind: "op", text: string(c), pos: i})
				i++
			}
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if s[j] == c {
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("%w at %d: unterminated string", ErrSyntax, i)
			}
			out = append(out, token{kind: "str", text: b.String(), pos: i})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n(),=!<>'\"", rune(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("%w at %d: unexpected %q", ErrSyntax, i, c)
			}
			w := s[i:j]
			kind := "ident"
			if _, err := strconv.ParseFloat(w, 64); err == nil && (unicode.IsDigit(rune(w[0])) || w[0] == '-' || w[0] == '.') {
				kind = "num"
			}
			out = append(out, token{kind: kind, text: w, pos: i})
			i = j
		}
	}
	return append(out, token{kind: "eof", pos: len(s)}), nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }
func (p *parser) keyword(k string) bool {
	t := p.peek()
	if t.kind == "ident" && strings.EqualFold(t.text, k) {
		p.i++
		return true
	}
	return false
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// Parse parses an expression; an empty string matches everything (nil).
func Parse(s string) (Expr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > 64<<10 {
		return nil, fmt.Errorf("%w: expression longer than 64 KiB", ErrSyntax)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != "eof" {
		return nil, fmt.Errorf("%w at %d: unexpected %q (missing AND/OR?)", ErrSyntax, t.pos, t.text)
	}
	return e, nil
}

func (p *parser) or(d int) (Expr, error) {
	l, err := p.and(d)
	if err != nil {
		return nil, err
	}
	for p.keyword("OR") {
		r, err := p.and(d)
		if err != nil {
			return nil, err
		}
		l = &Or{l, r}
	}
	return l, nil
}

func (p *parser) and(d int) (Expr, error) {
	l, err := p.unary(d)
	if err != nil {
		return nil, err
	}
	for p.keyword("AND") {
		r, err := p.unary(d)
		if err != nil {
			return nil, err
		}
		l = &And{l, r}
	}
	return l, nil
}

func (p *parser) unary(d int) (Expr, error) {
	if d > maxDepth {
		return nil, fmt.Errorf("%w: nested more than %d deep", ErrSyntax, maxDepth)
	}
	if p.keyword("NOT") {
		x, err := p.unary(d + 1)
		if err != nil {
			return nil, err
		}
		return &Not{x}, nil
	}
	if p.peek().kind == "(" {
		p.next()
		e, err := p.or(d + 1)
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != ")" {
			return nil, fmt.Errorf("%w at %d: expected ')'", ErrSyntax, t.pos)
		}
		return e, nil
	}
	return p.cmp()
}

func (p *parser) cmp() (Expr, error) {
	t := p.next()
	if t.kind != "ident" {
		return nil, fmt.Errorf("%w at %d: expected a field name, got %q", ErrSyntax, t.pos, t.text)
	}
	f, err := LookupField(t.text)
	if err != nil {
		return nil, err
	}
	c := &Cmp{Field: f}
	if p.keyword("NOT") {
		if !p.keyword("IN") {
			return nil, fmt.Errorf("%w at %d: expected IN after NOT", ErrSyntax, p.peek().pos)
		}
		c.Negate = true
		c.Op = OpIn
	} else if p.keyword("IN") {
		c.Op = OpIn
	}
	if c.Op == OpIn {
		if tk := p.next(); tk.kind != "(" {
			return nil, fmt.Errorf("%w at %d: expected '(' after IN", ErrSyntax, tk.pos)
		}
		for {
			v, err := p.value(f)
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
			if len(c.Values) > 1000 {
				return nil, fmt.Errorf("%w: IN list longer than 1000", ErrSyntax)
			}
			tk := p.next()
			if tk.kind == ")" {
				break
			}
			if tk.kind != "," {
				return nil, fmt.Errorf("%w at %d: expected ',' or ')'", ErrSyntax, tk.pos)
			}
		}
		return c, nil
	}
	op := p.next()
	if op.kind != "op" {
		return nil, fmt.Errorf("%w at %d: expected a comparison after %s", ErrSyntax, op.pos, f.Name)
	}
	c.Op = Op(op.text)
	v, err := p.value(f)
	if err != nil {
		return nil, err
	}
	if v.Class > 0 && c.Op != OpEq && c.Op != OpNe {
		return nil, fmt.Errorf("%w: a status class takes = or !=", ErrBadValue)
	}
	if f.Kind == KindString && c.Op != OpEq && c.Op != OpNe {
		return nil, fmt.Errorf("%w: %s is a string field: use =, != or IN", ErrBadValue, f.Name)
	}
	c.Values = []Value{v}
	return c, nil
}

func (p *parser) value(f *Field) (Value, error) {
	t := p.next()
	if t.kind != "str" && t.kind != "num" && t.kind != "ident" {
		return Value{}, fmt.Errorf("%w at %d: expected a value for %s", ErrSyntax, t.pos, f.Name)
	}
	return f.parseValue(t.text)
}
