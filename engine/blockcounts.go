package engine

// Exact value counts: for each indexed field with few distinct values in a
// block (status, method, host, route, service, and session or trace when
// they repeat), a block summary lists every value with its number of
// records. A count by such a field then adds the numbers without reading
// the block, and a scan skips a block whose list lacks the value (no bloom
// false positive). A field with more than maxExactValues values in a block
// has no list: the bloom filter answers for it.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// maxExactValues bounds a field's value list in one block summary.
const maxExactValues = 16

// fieldCounts is one field's value list in a block: values sorted, each
// with its count. A status is its u16, big-endian, as a 2-byte string.
type fieldCounts struct {
	field  byte
	values []string
	counts []int
}

// exactCounter gathers the value counts of one block.
type exactCounter map[byte]map[string]int

func (c exactCounter) add(field byte, v string) {
	m := c[field]
	if m == nil {
		m = map[string]int{}
		c[field] = m
	}
	if len(m) <= maxExactValues { // past the bound the list is dropped anyway
		m[v]++
	}
}

// addMeta counts the indexed values of a request log (empty strings are
// not indexed).
func (c exactCounter) addMeta(m *Meta) {
	c.add(idxStatus, statusKey(m.Status))
	for _, f := range indexedStrings {
		if v := *f.str(m); v != "" {
			c.add(f.index, v)
		}
	}
}

func statusKey(s int) string {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(s))
	return string(b[:])
}

// lists returns the fields' value lists, by field byte, values sorted (the
// encoding is deterministic: a sealed segment's summaries are hashed).
func (c exactCounter) lists() []fieldCounts {
	var out []fieldCounts
	for field, m := range c {
		if len(m) > maxExactValues {
			continue
		}
		fc := fieldCounts{field: field}
		for v := range m {
			fc.values = append(fc.values, v)
		}
		slices.Sort(fc.values)
		for _, v := range fc.values {
			fc.counts = append(fc.counts, m[v])
		}
		out = append(out, fc)
	}
	slices.SortFunc(out, func(a, b fieldCounts) int { return int(a.field) - int(b.field) })
	return out
}

// exactFor returns the value list of field, nil when the block has none.
func (s *blockSummary) exactFor(field byte) *fieldCounts {
	lists := s.exact
	if le := s.lazyExact; le != nil {
		if field >= 64 || le.fields&(1<<field) == 0 {
			return nil
		}
		lists = le.decoded(s.count)
	}
	for i := range lists {
		if lists[i].field == field {
			return &lists[i]
		}
	}
	return nil
}

// lazyExact holds a summary's value lists encoded until a read asks for
// one: a catalog load of anchored summaries (bytes this engine wrote, so
// they decode) only walks them. Most reads (a trace, a time range) never
// decode them at all.
type lazyExact struct {
	raw    string // the encoded section (appendExact)
	fields uint64 // bit f set: a list of field f is in raw
	once   sync.Once
	lists  []fieldCounts // decoded, once
}

// decoded returns the lists, decoding them on first use. Lists that do not
// decode (never for anchored bytes) read as none: the reads then test the
// bloom filter or read the block, which is always correct.
func (le *lazyExact) decoded(count int) []fieldCounts {
	le.once.Do(func() {
		d := decoder{b: []byte(le.raw)}
		if lists, err := decodeExact(&d, count); err == nil && d.err == nil && len(d.b) == 0 {
			le.lists = lists
		}
	})
	return le.lists
}

// skipExact walks the value-list section d starts with, without decoding
// it, and returns it as a lazyExact; d.err is set if it does not walk.
func skipExact(d *decoder) *lazyExact {
	b := d.b
	le := &lazyExact{}
	n := int(d.u8())
	if n > len(indexes) {
		d.fail(fmt.Errorf("%d value lists in a block summary", n))
	}
	for i := 0; i < n && d.err == nil; i++ {
		f := d.u8()
		if f >= 64 {
			d.fail(fmt.Errorf("value list of field %d", f))
		}
		le.fields |= 1 << f
		nv := d.uvarint()
		if nv > maxExactValues {
			d.fail(fmt.Errorf("value list of %d values", nv))
		}
		for j := uint64(0); j < nv && d.err == nil; j++ {
			d.bytes()
			d.uvarint()
		}
	}
	le.raw = string(b[:len(b)-len(d.b)])
	return le
}

// exactCount returns how many of the block's records ix selects, when the
// block's value list for ix's field answers it.
func (s *blockSummary) exactCount(ix *Index) (int, bool) {
	fc := s.exactFor(ix.field.index)
	if fc == nil {
		return 0, false
	}
	n := 0
	for _, v := range ix.keys() {
		if i, ok := slices.BinarySearch(fc.values, v); ok {
			n += fc.counts[i]
		}
	}
	return n, true
}

// keys are ix's values as value-list keys (statuses as statusKey), empty
// strings left out (never indexed); a value given twice counts once.
func (ix *Index) keys() []string {
	var out []string
	for _, st := range ix.statuses {
		out = append(out, statusKey(st))
	}
	for _, v := range ix.values {
		if v != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func appendExact(b []byte, lists []fieldCounts) []byte {
	b = append(b, byte(len(lists)))
	for _, fc := range lists {
		b = append(b, fc.field)
		b = binary.AppendUvarint(b, uint64(len(fc.values)))
		for i, v := range fc.values {
			b = appendBytes(b, []byte(v))
			b = binary.AppendUvarint(b, uint64(fc.counts[i]))
		}
	}
	return b
}

// validEntry reports whether value v with c records may follow fc's
// entries so far in a block of count records: values sorted and distinct,
// non-empty, a status 2 bytes, counts 1..count.
func (fc *fieldCounts) validEntry(v string, c uint64, count int) bool {
	n := len(fc.values)
	return v != "" && c > 0 && c <= uint64(count) &&
		(n == 0 || strings.Compare(v, fc.values[n-1]) > 0) &&
		(fc.field != idxStatus || len(v) == 2)
}

// exactBacking returns a copy of the value-list section d starts with as
// one string ("" when it does not walk: decodeExact then reports why).
func exactBacking(d decoder) string {
	le := skipExact(&d) // d is a copy: the caller's decoder does not move
	if d.err != nil {
		return ""
	}
	return le.raw
}

func decodeExact(d *decoder, count int) ([]fieldCounts, error) {
	// The lists' strings share one allocation, a copy of the section:
	// loading a catalog decodes millions of them.
	backing := exactBacking(*d)
	start := len(d.b)
	n := int(d.u8())
	if n > len(indexes) {
		return nil, fmt.Errorf("%w: %d value lists in a block summary", ErrCorrupt, n)
	}
	out := make([]fieldCounts, 0, n)
	total := -1
	for i := 0; i < n && d.err == nil; i++ {
		fc := fieldCounts{field: d.u8()}
		if indexes[fc.field] == nil || (i > 0 && fc.field <= out[i-1].field) {
			return nil, fmt.Errorf("%w: value list of field %d out of order or unknown", ErrCorrupt, fc.field)
		}
		nv := d.uvarint()
		if nv == 0 || nv > maxExactValues+0 {
			return nil, fmt.Errorf("%w: value list of %d values", ErrCorrupt, nv)
		}
		fc.values, fc.counts = make([]string, 0, nv), make([]int, 0, nv)
		sum := 0
		for j := uint64(0); j < nv && d.err == nil; j++ {
			var v string
			if b := d.bytes(); backing != "" {
				off := start - len(d.b) - len(b)
				v = backing[off : off+len(b)]
			} else {
				v = string(b)
			}
			c := d.uvarint()
			if !fc.validEntry(v, c, count) {
				return nil, fmt.Errorf("%w: value list of field %d: bad entry", ErrCorrupt, fc.field)
			}
			fc.values, fc.counts = append(fc.values, v), append(fc.counts, int(c))
			sum += int(c)
		}
		// Every request log has a status: its list covers the block.
		if fc.field == idxStatus {
			total = sum
		}
		if sum > count {
			return nil, fmt.Errorf("%w: value list of field %d counts %d of %d records", ErrCorrupt, fc.field, sum, count)
		}
		out = append(out, fc)
	}
	if total >= 0 && total != count {
		return nil, fmt.Errorf("%w: status list counts %d of %d records", ErrCorrupt, total, count)
	}
	return out, d.err
}
