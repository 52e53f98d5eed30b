package query

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/logstore/logstore/engine"
)

// Request is one metadata query.
type Request struct {
	// From and To bound the record time to [From, To); zero is unbounded.
	From, To time.Time
	// Where is an expression over plaintext fields ("" matches all).
	Where string
	// Limit is the page size (default 100, at most MaxLimit; Stream has
	// no limit).
	Limit int
	// Cursor continues a previous page (Result.Next).
	Cursor string
	// Count asks for the number of matches instead of rows.
	Count bool
}

// Plan says how a query ran.
type Plan struct {
	Index      string // "time" or the secondary index's field
	Values     int    // index values scanned (IN lists, status classes)
	Estimate   int    // index entries counted when choosing (capped)
	Residual   bool   // rows are filtered after the index
	Ranges     int    // numeric comparisons the engine tests on encoded metadata
	Scanned    int    // index entries read
	Candidates map[string]int
}

// Result is a page of rows (newest first) or a count.
type Result struct {
	Rows  []engine.Meta
	Next  string // cursor of the next page; empty when exhausted
	Count int
	Plan  Plan
}

// Tenant is what queries run against (*engine.Tenant).
type Tenant interface {
	Name() string
	Scan(ctx context.Context, o engine.ScanOptions) iter.Seq2[*engine.Meta, error]
	Count(ctx context.Context, o engine.ScanOptions) (int, error)
}

// estimateCap bounds the index entries counted per candidate when planning.
const estimateCap = 10_000

// MaxLimit bounds Request.Limit: a page is held in memory. Stream has no
// bound.
const MaxLimit = 10_000

// Run plans and executes req on tenant t.
func Run(ctx context.Context, t Tenant, req Request) (*Result, error) {
	if req.Limit <= 0 {
		req.Limit = 100
	}
	if req.Limit > MaxLimit {
		return nil, fmt.Errorf("%w: limit %d over %d (stream every row with Stream, or `logstore query --all`)", ErrBadValue, req.Limit, MaxLimit)
	}
	p, err := prepare(ctx, t, req)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: p.plan}
	if req.Count && p.exact {
		res.Count, err = t.Count(ctx, p.opts)
		res.Plan.Scanned = res.Count
		return res, err
	}
	res.Plan.Residual = !p.exact
	var last *engine.Meta
	for m, err := range t.Scan(ctx, p.opts) {
		if err != nil {
			return nil, err
		}
		res.Plan.Scanned++
		if !match(p.expr, m) {
			continue
		}
		if req.Count {
			res.Count++
			continue
		}
		if len(res.Rows) == req.Limit {
			res.Next = encodeCursor(last, fingerprint(t.Name(), req))
			break
		}
		res.Rows = append(res.Rows, *m)
		last = &res.Rows[len(res.Rows)-1]
	}
	if req.Count {
		return res, nil
	}
	res.Count = len(res.Rows)
	return res, nil
}

// Stream plans req on tenant t and calls fn with every matching row, newest
// first, in constant memory (req.Limit and req.Count are ignored; a cursor
// continues as in Run), until fn returns an error, which Stream returns.
// It returns the plan, with the rows scanned.
func Stream(ctx context.Context, t Tenant, req Request, fn func(m *engine.Meta) error) (Plan, error) {
	p, err := prepare(ctx, t, Request{From: req.From, To: req.To, Where: req.Where, Cursor: req.Cursor})
	if err != nil {
		return Plan{}, err
	}
	p.plan.Residual = !p.exact
	for m, err := range t.Scan(ctx, p.opts) {
		if err != nil {
			return p.plan, err
		}
		p.plan.Scanned++
		if match(p.expr, m) {
			if err := fn(m); err != nil {
				return p.plan, err
			}
		}
	}
	return p.plan, nil
}

// prepared is a planned query.
type prepared struct {
	expr  Expr
	opts  engine.ScanOptions
	plan  Plan
	exact bool // opts select exactly the matches (no residual filter)
}

func prepare(ctx context.Context, t Tenant, req Request) (prepared, error) {
	expr, err := Parse(req.Where)
	if err != nil {
		return prepared{}, err
	}
	from, to := narrowTime(expr, req.From, req.To)
	base := engine.ScanOptions{From: from, To: to}
	if req.Cursor != "" && !req.Count {
		c, err := decodeCursor(req.Cursor, fingerprint(t.Name(), req))
		if err != nil {
			return prepared{}, err
		}
		base.After = c
	}
	opts, plan, exact, err := choose(ctx, t, expr, base)
	return prepared{expr: expr, opts: opts, plan: plan, exact: exact}, err
}

// conjuncts flattens top-level ANDs.
func conjuncts(e Expr) []Expr {
	if a, ok := e.(*And); ok {
		return append(conjuncts(a.L), conjuncts(a.R)...)
	}
	if e == nil {
		return nil
	}
	return []Expr{e}
}

// narrowTime folds top-level time comparisons into [from, to).
func narrowTime(e Expr, from, to time.Time) (time.Time, time.Time) {
	for _, c := range conjuncts(e) {
		cmp, ok := c.(*Cmp)
		if !ok || cmp.Field.Name != "time" || cmp.Op == OpIn || cmp.Op == OpNe {
			continue
		}
		t := cmp.Values[0].Time
		lo, hi := time.Time{}, time.Time{}
		switch cmp.Op {
		case OpEq:
			lo, hi = t, t.Add(time.Nanosecond)
		case OpGe:
			lo = t
		case OpGt:
			lo = t.Add(time.Nanosecond)
		case OpLt:
			hi = t
		case OpLe:
			hi = t.Add(time.Nanosecond)
		}
		if !lo.IsZero() && (from.IsZero() || lo.After(from)) {
			from = lo
		}
		if !hi.IsZero() && (to.IsZero() || hi.Before(to)) {
			to = hi
		}
	}
	return from, to
}

// indexOptions turns an indexable conjunct into scan options.
func indexOptions(c *Cmp, base engine.ScanOptions) (engine.ScanOptions, bool) {
	f := c.Field
	if !f.Schema.Indexed() || c.Negate || c.Op == OpNe {
		return base, false
	}
	o := base
	if f.Kind != KindNumber {
		if c.Op != OpEq && c.Op != OpIn {
			return base, false
		}
		values := make([]string, len(c.Values))
		for i, v := range c.Values {
			values[i] = v.Str
		}
		ix, err := engine.ByField(f.Schema, values...)
		o.Index = ix
		return o, err == nil
	}
	if f.Name != "status" { // the one numeric index
		return base, false
	}
	o.Index = engine.ByStatus(statusRange(c)...)
	return o, true
}

// statusRange lists the statuses (0..999) a comparison on a status selects.
func statusRange(c *Cmp) []int {
	var out []int
	lo, hi := 0, 1000 // statuses in [lo, hi)
	switch c.Op {
	case OpEq, OpIn:
		for _, v := range c.Values {
			if v.Class > 0 {
				for s := v.Class * 100; s < v.Class*100+100; s++ {
					out = append(out, s)
				}
			} else if v.Num == math.Trunc(v.Num) && v.Num >= 0 && v.Num < 1000 {
				out = append(out, int(v.Num))
			}
		}
		return out
	case OpLt:
		hi = int(math.Ceil(c.Values[0].Num))
	case OpLe:
		hi = int(math.Floor(c.Values[0].Num)) + 1
	case OpGt:
		lo = int(math.Floor(c.Values[0].Num)) + 1
	case OpGe:
		lo = int(math.Ceil(c.Values[0].Num))
	}
	lo, hi = max(lo, 0), min(hi, 1000)
	for s := lo; s < hi; s++ {
		out = append(out, s)
	}
	return out
}

// choose picks the most selective access path by counting, up to a cap,
// the index entries of each candidate; the time index is the fallback.
// exact reports that the index alone answers the whole expression.
func choose(ctx context.Context, t Tenant, e Expr, base engine.ScanOptions) (engine.ScanOptions, Plan, bool, error) {
	best, plan := base, Plan{Index: "time", Candidates: map[string]int{}}
	bestN := math.MaxInt
	var bestCmp Expr
	cs := conjuncts(e)
	for _, c := range cs {
		cmp, ok := c.(*Cmp)
		if !ok {
			continue
		}
		o, ok := indexOptions(cmp, base)
		if !ok {
			continue
		}
		probe := o
		probe.Limit, probe.After = estimateCap, nil
		n, err := t.Count(ctx, probe)
		if err != nil {
			return base, plan, false, err
		}
		plan.Candidates[cmp.Field.Name] = n
		if n < bestN {
			best, bestN, bestCmp = o, n, c
			plan.Index, plan.Estimate = cmp.Field.Name, n
			plan.Values = o.Index.Values()
		}
	}
	exact := pushRanges(cs, bestCmp, &best)
	plan.Ranges = len(best.Ranges)
	return best, plan, exact, nil
}

// pushRanges hands the engine the numeric comparisons among cs (other
// than the one its index answers) as ScanOptions.Ranges, which it tests on
// the encoded metadata, and reports whether the engine then answers every
// conjunct (the index, the time bounds, the ranges): no row needs the
// residual filter.
func pushRanges(cs []Expr, indexed Expr, o *engine.ScanOptions) bool {
	all := true
	for _, c := range cs {
		if c == indexed {
			continue
		}
		cmp, ok := c.(*Cmp)
		if ok && cmp.Field.Name == "time" && cmp.Op != OpNe && cmp.Op != OpIn {
			continue // folded into the time bounds (narrowTime)
		}
		if r, ok := rangeOf(cmp); ok {
			o.Ranges = append(o.Ranges, r)
			continue
		}
		all = false
	}
	return all
}

// rangeOf is the engine Range of a numeric comparison (nil: none).
func rangeOf(c *Cmp) (engine.Range, bool) {
	if c == nil || c.Negate || c.Field.Kind != KindNumber || c.Field.Schema == nil || len(c.Values) != 1 {
		return engine.Range{}, false
	}
	if k := c.Field.Schema.Kind(); k != engine.KindInt && k != engine.KindFloat {
		return engine.Range{}, false
	}
	v := c.Values[0]
	r := engine.Range{Field: c.Field.Name, Min: math.Inf(-1), Max: math.Inf(1)}
	switch {
	case v.Class > 0 && c.Op == OpEq:
		r.Min, r.Max = float64(v.Class*100), float64(v.Class*100+99)
	case v.Class > 0:
		return engine.Range{}, false
	case c.Op == OpEq:
		r.Min, r.Max = v.Num, v.Num
	case c.Op == OpLt:
		r.Max = math.Nextafter(v.Num, math.Inf(-1))
	case c.Op == OpLe:
		r.Max = v.Num
	case c.Op == OpGt:
		r.Min = math.Nextafter(v.Num, math.Inf(1))
	case c.Op == OpGe:
		r.Min = v.Num
	default:
		return engine.Range{}, false
	}
	if math.IsNaN(r.Min) || math.IsNaN(r.Max) || r.Min > r.Max {
		return engine.Range{}, false
	}
	return r, true
}

type cursorToken struct {
	V  int    `json:"v"`
	T  int64  `json:"t"`
	ID string `json:"id"`
	Q  string `json:"q"`
}

// fingerprint ties a cursor to the query it came from.
func fingerprint(tenant string, r Request) string {
	h := sha256.New()
	var b [8]byte
	for _, t := range []time.Time{r.From, r.To} {
		binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
		h.Write(b[:])
	}
	h.Write([]byte(tenant + "\x00" + r.Where))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:9])
}

func encodeCursor(m *engine.Meta, q string) string {
	b, _ := json.Marshal(cursorToken{V: 1, T: m.Time.UnixNano(), ID: m.ID.String(), Q: q})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, q string) (*engine.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 512 {
		return nil, fmt.Errorf("%w: not a cursor token", ErrBadCursor)
	}
	var c cursorToken
	if err := json.Unmarshal(b, &c); err != nil || c.V != 1 {
		return nil, fmt.Errorf("%w: not a cursor token", ErrBadCursor)
	}
	if c.Q != q {
		return nil, fmt.Errorf("%w: the cursor belongs to another query (tenant, --where or time range changed)", ErrBadCursor)
	}
	id, err := engine.ParseID(c.ID)
	if err != nil {
		return nil, errors.Join(ErrBadCursor, err)
	}
	return &engine.Cursor{Time: time.Unix(0, c.T).UTC(), ID: id}, nil
}
