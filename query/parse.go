// Package query is logstore's query language over the plaintext metadata
// of stored records: it parses an expression, plans which index answers it
// (the time index or a secondary index on one field) and evaluates it page
// by page behind a cursor. It reads only plaintext, indexed fields
// (Fields, LookupField): sealed fields are encrypted and cannot be searched,
// and a query never needs a key.
//
// Grammar (keywords are case-insensitive):
//
//	expr    = or
//	or      = and { "OR" and }
//	and     = unary { "AND" unary }
//	unary   = "NOT" unary | "(" expr ")" | cmp
//	cmp     = FIELD op value | FIELD ["NOT"] "IN" "(" value { "," value } ")"
//	op      = "=" | "!=" | "<" | "<=" | ">" | ">="
//	value   = 'string' | "string" | number | bare-word | status class (5xx)
//
// A string field takes only =, != and IN; a status class only = and !=.
// Nesting is bounded (64 levels), as are an IN list (1000 values) and an
// expression (64 KiB).
//
// The package prints nothing: the terminal rendering of rows and records
// (tables, JSON lines, record text) lives in the CLI, cmd/logstore.
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

// Bytes that separate tokens: white space, and those that end a bare word.
const (
	spaceBytes = " \t\r\n"
	wordEnds   = spaceBytes + "(),=!<>'\""
)

// lexer splits an expression into tokens, one method per token class.
type lexer struct {
	s    string
	i    int // next byte to read
	toks []token
}

func lex(s string) ([]token, error) {
	l := &lexer{s: s}
	for l.i < len(s) {
		if err := l.token(); err != nil {
			return nil, err
		}
	}
	return append(l.toks, token{kind: "eof", pos: len(s)}), nil
}

// token reads the white space or the token that starts at l.i.
func (l *lexer) token() error {
	switch c := l.s[l.i]; {
	case strings.IndexByte(spaceBytes, c) >= 0:
		l.i++
	case c == '(' || c == ')' || c == ',':
		l.emit(string(c), string(c))
	case c == '=' || c == '!' || c == '<' || c == '>':
		return l.operator()
	case c == '\'' || c == '"':
		return l.quoted()
	default:
		return l.word()
	}
	return nil
}

// emit adds a token of kind for text, which starts at l.i, and moves past it.
func (l *lexer) emit(kind, text string) {
	l.toks = append(l.toks, token{kind: kind, text: text, pos: l.i})
	l.i += len(text)
}

// operator reads =, !=, <, <=, > or >=.
func (l *lexer) operator() error {
	c := l.s[l.i]
	if c != '=' && l.i+1 < len(l.s) && l.s[l.i+1] == '=' {
		l.emit("op", l.s[l.i:l.i+2])
		return nil
	}
	if c == '!' {
		return fmt.Errorf("%w at %d: '!' must be followed by '='", ErrSyntax, l.i)
	}
	l.emit("op", string(c))
	return nil
}

// quoted reads a string in single or double quotes; a backslash takes the
// byte after it literally.
func (l *lexer) quoted() error {
	start, quote := l.i, l.s[l.i]
	var b strings.Builder
	j := start + 1
	for ; j < len(l.s) && l.s[j] != quote; j++ {
		if l.s[j] == '\\' && j+1 < len(l.s) {
			j++
		}
		b.WriteByte(l.s[j])
	}
	if j >= len(l.s) {
		return fmt.Errorf("%w at %d: unterminated string", ErrSyntax, start)
	}
	l.toks = append(l.toks, token{kind: "str", text: b.String(), pos: start})
	l.i = j + 1
	return nil
}

// word reads a bare word, up to white space, punctuation, an operator or a
// quote: a number if it parses as one and starts like one, else an ident.
func (l *lexer) word() error {
	j := l.i
	for j < len(l.s) && strings.IndexByte(wordEnds, l.s[j]) < 0 {
		j++
	}
	if j == l.i {
		return fmt.Errorf("%w at %d: unexpected %q", ErrSyntax, l.i, l.s[l.i])
	}
	w := l.s[l.i:j]
	if k := strings.IndexAny(w, ";&|`"); k >= 0 {
		return fmt.Errorf("%w at %d: unexpected %q (quote a value that contains it)", ErrSyntax, l.i+k, w[k])
	}
	kind := "ident"
	if _, err := strconv.ParseFloat(w, 64); err == nil && (unicode.IsDigit(rune(w[0])) || w[0] == '-' || w[0] == '.') {
		kind = "num"
	}
	l.emit(kind, w)
	return nil
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

// cmp reads a field name and then its comparison: an IN list or an operator
// and one value.
func (p *parser) cmp() (Expr, error) {
	t := p.next()
	if t.kind == "eof" {
		return nil, fmt.Errorf("%w at %d: expected a field name, got the end of the expression", ErrSyntax, t.pos)
	}
	if t.kind != "ident" {
		return nil, fmt.Errorf("%w at %d: expected a field name, got %q", ErrSyntax, t.pos, t.text)
	}
	for _, k := range []string{"AND", "OR", "NOT", "IN"} {
		if strings.EqualFold(t.text, k) {
			return nil, fmt.Errorf("%w at %d: expected a field name, got the keyword %s", ErrSyntax, t.pos, k)
		}
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
		return p.inList(c)
	}
	if p.keyword("IN") {
		return p.inList(c)
	}
	return p.comparison(c)
}

// maxInList bounds an IN list.
const maxInList = 1000

// inList reads the "(" value { "," value } ")" after IN or NOT IN.
func (p *parser) inList(c *Cmp) (Expr, error) {
	c.Op = OpIn
	if tk := p.next(); tk.kind != "(" {
		return nil, fmt.Errorf("%w at %d: expected '(' after IN", ErrSyntax, tk.pos)
	}
	for {
		v, err := p.value(c.Field)
		if err != nil {
			return nil, err
		}
		c.Values = append(c.Values, v)
		if len(c.Values) > maxInList {
			return nil, fmt.Errorf("%w: IN list longer than %d", ErrSyntax, maxInList)
		}
		tk := p.next()
		if tk.kind == ")" {
			return c, nil
		}
		if tk.kind != "," {
			return nil, fmt.Errorf("%w at %d: expected ',' or ')'", ErrSyntax, tk.pos)
		}
	}
}

// comparison reads an operator and one value, which the operator must suit.
func (p *parser) comparison(c *Cmp) (Expr, error) {
	op := p.next()
	if op.kind != "op" {
		return nil, fmt.Errorf("%w at %d: expected a comparison after %s", ErrSyntax, op.pos, c.Field.Name)
	}
	c.Op = Op(op.text)
	v, err := p.value(c.Field)
	if err != nil {
		return nil, err
	}
	if err := checkOrdering(c.Op, c.Field, v); err != nil {
		return nil, err
	}
	c.Values = []Value{v}
	return c, nil
}

// checkOrdering refuses <, <=, > and >= where they have no meaning: with a
// status class (5xx) or on a string field.
func checkOrdering(op Op, f *Field, v Value) error {
	if op == OpEq || op == OpNe {
		return nil
	}
	if v.Class > 0 {
		return fmt.Errorf("%w: a status class takes = or !=", ErrBadValue)
	}
	if f.Kind == KindString {
		return fmt.Errorf("%w: %s is a string field: use =, != or IN", ErrBadValue, f.Name)
	}
	return nil
}

func (p *parser) value(f *Field) (Value, error) {
	t := p.next()
	if t.kind != "str" && t.kind != "num" && t.kind != "ident" {
		return Value{}, fmt.Errorf("%w at %d: expected a value for %s", ErrSyntax, t.pos, f.Name)
	}
	return f.parseValue(t.text)
}
