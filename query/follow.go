package query

import (
	"context"
	"fmt"
	"iter"

	"github.com/logstore/logstore/engine"
)

// Follower is what a follow runs against (*engine.Tenant).
type Follower interface {
	Follow(ctx context.Context, o engine.FollowOptions) iter.Seq2[*engine.Meta, error]
}

// Follow yields every record that req selects (Where, From, To) among those
// t acknowledges after the follow starts, as engine.Tenant.Follow does:
// each once, in batches ordered by time within a batch, whatever the
// records' capture times. opts sets the interval, the failure threshold and
// the Started callback; its Index, From, To and Ranges are set from req (the
// first indexable comparison of the expression narrows the blocks read, the
// numeric ones are tested on encoded metadata, the whole expression is
// tested on every record). req.Limit, Cursor and Count make no sense for a
// follow and are refused (ErrBadValue); so is a Where that does not parse
// (ErrSyntax and the others of Parse).
func Follow(ctx context.Context, t Follower, req Request, opts engine.FollowOptions) iter.Seq2[*engine.Meta, error] {
	return func(yield func(*engine.Meta, error) bool) {
		expr, err := followPlan(req, &opts)
		if err != nil {
			yield(nil, err)
			return
		}
		for m, err := range t.Follow(ctx, opts) {
			if err != nil {
				if !yield(nil, err) {
					return
				}
				continue
			}
			if match(expr, m) && !yield(m, nil) {
				return
			}
		}
	}
}

// followPlan parses req and sets the selection of opts from it.
func followPlan(req Request, opts *engine.FollowOptions) (Expr, error) {
	switch {
	case req.Limit != 0:
		return nil, fmt.Errorf("%w: a follow has no limit (%d)", ErrBadValue, req.Limit)
	case req.Cursor != "":
		return nil, fmt.Errorf("%w: a follow starts now: no cursor", ErrBadValue)
	case req.Count:
		return nil, fmt.Errorf("%w: a follow yields rows, not a count", ErrBadValue)
	}
	expr, err := Parse(req.Where)
	if err != nil {
		return nil, err
	}
	base := engine.ScanOptions{}
	base.From, base.To = narrowTime(expr, req.From, req.To)
	cs := conjuncts(expr)
	var indexed Expr
	for _, c := range cs {
		if cmp, ok := c.(*Cmp); ok {
			if o, ok := indexOptions(cmp, base); ok {
				base, indexed = o, c
				break
			}
		}
	}
	pushRanges(cs, indexed, &base)
	opts.Index, opts.From, opts.To, opts.Ranges = base.Index, base.From, base.To, base.Ranges
	return expr, nil
}

// FollowTenant is what FollowLast runs against (*engine.Tenant).
type FollowTenant interface {
	Tenant
	Follower
}

// FollowLast is Follow that first yields the newest n existing records req
// selects, oldest first, like `tail -n N -f`. The page is read once the
// follow's position is taken, and a followed record that is on it is not
// yielded again: every record is yielded once, in the page or after it.
// n is at most MaxLimit (ErrBadValue); 0 is Follow.
func FollowLast(ctx context.Context, t FollowTenant, req Request, n int, opts engine.FollowOptions) iter.Seq2[*engine.Meta, error] {
	if n == 0 {
		return Follow(ctx, t, req, opts)
	}
	return func(yield func(*engine.Meta, error) bool) {
		if n < 0 || n > MaxLimit {
			yield(nil, fmt.Errorf("%w: %d existing records to show first: from 0 to %d", ErrBadValue, n, MaxLimit))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var onPage map[engine.ID]bool
		stopped := false
		started := opts.Started
		opts.Started = func() {
			res, err := Run(ctx, t, Request{From: req.From, To: req.To, Where: req.Where, Limit: n})
			if err != nil {
				yield(nil, err) // the follow cannot start as asked
				stopped = true
				cancel()
				return
			}
			if started != nil {
				started()
			}
			onPage = make(map[engine.ID]bool, len(res.Rows))
			for i := len(res.Rows) - 1; i >= 0 && !stopped; i-- {
				onPage[res.Rows[i].ID] = true
				stopped = !yield(&res.Rows[i], nil)
			}
			if stopped {
				cancel()
			}
		}
		for m, err := range Follow(ctx, t, req, opts) {
			if stopped {
				return
			}
			if err == nil && onPage[m.ID] {
				delete(onPage, m.ID)
				continue
			}
			if !yield(m, err) {
				return
			}
		}
	}
}
