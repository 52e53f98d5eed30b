package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// errShort marks a truncated encoding; decoders wrap it in ErrCorrupt.
var errShort = errors.New("truncated")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encodings above with bounds checks; the first error
// sticks, so callers check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) u8() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16() uint16 {
	if b := d.fixed(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.fixed(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	// Only the minimal encoding is valid, so every value has one encoding
	// (a fuzzing find: 0xff 0x00 also decodes to 127).
	if n != uvarintLen(v) {
		d.fail(errors.New("non-minimal varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

// count reads a list length, bounded by the bytes left (each item takes at
// least minItem bytes) so corrupt input cannot make us allocate much.
func (d *decoder) count(minItem int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minItem) {
		d.fail(fmt.Errorf("list of %d items in %d bytes", n, len(d.b)))
		return 0
	}
	return int(n)
}

func appendMeta(b []byte, m *Meta, kind byte) []byte {
	b = append(b, encodingV1, kind)
	b = append(b, m.ID[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	if kind == kindPayload {
		return b
	}
	var flags byte
	if m.HasPayload {
		flags |= flagHasPayload
	}
	b = append(b, flags)
	// The wire groups and their order come from the schema (schema.go).
	for _, f := range wireU16 {
		b = binary.LittleEndian.AppendUint16(b, uint16(*f.int16(m)))
	}
	for _, f := range wireF64 {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(*f.float(m)))
	}
	for _, f := range wireUvarint {
		b = binary.AppendUvarint(b, uint64(*f.int64(m)))
	}
	for _, f := range wireString {
		b = appendString(b, *f.str(m))
	}
	return b
}

// decodeMeta parses record metadata; it returns the kind.
func decodeMeta(b []byte, m *Meta) (byte, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != encodingV1 {
		return 0, fmt.Errorf("%w: record metadata version %d", ErrUnknownVersion, v)
	}
	kind := d.u8()
	copy(m.ID[:], d.fixed(16))
	m.Time = time.Unix(0, int64(d.u64())).UTC()
	switch {
	case d.err != nil:
		return 0, fmt.Errorf("%w: record metadata: %v", ErrCorrupt, d.err)
	case kind == kindPayload:
		if len(d.b) != 0 {
			return 0, fmt.Errorf("%w: payload metadata has %d trailing bytes", ErrCorrupt, len(d.b))
		}
		return kind, nil
	case kind != kindLog:
		return 0, fmt.Errorf("%w: record kind %d", ErrCorrupt, kind)
	}
	flags := d.u8()
	m.HasPayload = flags&flagHasPayload != 0
	for _, f := range wireU16 {
		*f.int16(m) = int(d.u16())
	}
	for _, f := range wireF64 {
		*f.float(m) = math.Float64frombits(d.u64())
	}
	sizesOK := true
	for _, f := range wireUvarint {
		v := int64(d.uvarint())
		sizesOK = sizesOK && v >= 0
		*f.int64(m) = v
	}
	for _, f := range wireString {
		*f.str(m) = d.str()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	if d.err == nil && (flags&^flagHasPayload != 0 || !sizesOK) {
		d.fail(errors.New("field out of range"))
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: record metadata: %v", ErrCorrupt, d.err)
	}
	return kindLog, nil
}

// appendSealedLog writes version 1 unless the record has sealed originals:
// records without any stay byte-identical to what older builds wrote.
func appendSealedLog(b []byte, r *Record) []byte {
	v := byte(encodingV1)
	if len(r.Originals) > 0 {
		v = sealedLogV2
	}
	b = append(b, v)
	for _, s := range []string{r.Path, r.Query, r.ClientIP, r.ConsumerID} {
		b = appendString(b, s)
	}
	for _, hs := range [][]Header{r.RequestHeaders, r.ResponseHeaders} {
		b = binary.AppendUvarint(b, uint64(len(hs)))
		for _, h := range hs {
			b = appendString(b, h.Name)
			b = appendString(b, h.Value)
		}
	}
	ks := make([]string, 0, len(r.Attributes))
	for k := range r.Attributes {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	b = binary.AppendUvarint(b, uint64(len(ks)))
	for _, k := range ks {
		b = appendString(b, k)
		b = appendString(b, r.Attributes[k])
	}
	if v == sealedLogV2 {
		b = binary.AppendUvarint(b, uint64(len(r.Originals)))
		for _, o := range r.Originals {
			b = appendString(b, o.Where)
			b = appendString(b, o.Value)
		}
	}
	return b
}

func decodeSealedLog(b []byte, r *Record) error {
	d := decoder{b: b}
	v := d.u8()
	if d.err == nil && v != encodingV1 && v != sealedLogV2 {
		return fmt.Errorf("%w: sealed record version %d", ErrUnknownVersion, v)
	}
	for _, p := range []*string{&r.Path, &r.Query, &r.ClientIP, &r.ConsumerID} {
		*p = d.str()
	}
	for _, hp := range []*[]Header{&r.RequestHeaders, &r.ResponseHeaders} {
		n := d.count(2)
		if n > 0 {
			*hp = make([]Header, n)
			for i := range *hp {
				(*hp)[i] = Header{Name: d.str(), Value: d.str()}
			}
		}
	}
	if n := d.count(2); n > 0 {
		r.Attributes = make(map[string]string, n)
		for i := 0; i < n; i++ {
			k := d.str()
			r.Attributes[k] = d.str()
		}
	}
	if v == sealedLogV2 {
		n := d.count(2)
		if n == 0 && d.err == nil {
			d.fail(errors.New("version 2 with no originals"))
		}
		if n > 0 {
			r.Originals = make([]Original, n)
			for i := range r.Originals {
				r.Originals[i] = Original{Where: d.str(), Value: d.str()}
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return fmt.Errorf("%w: sealed record: %v", ErrCorrupt, d.err)
	}
	return nil
}

func appendSealedPayload(b []byte, p *Payload) []byte {
	b = append(b, encodingV1)
	b = appendString(b, p.RequestContentType)
	b = appendBytes(b, p.RequestBody)
	b = appendString(b, p.ResponseContentType)
	return appendBytes(b, p.ResponseBody)
}

func decodeSealedPayload(b []byte) (*Payload, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != encodingV1 {
		return nil, fmt.Errorf("%w: sealed payload version %d", ErrUnknownVersion, v)
	}
	p := &Payload{RequestContentType: d.str()}
	p.RequestBody = append([]byte(nil), d.bytes()...)
	p.ResponseContentType = d.str()
	p.ResponseBody = append([]byte(nil), d.bytes()...)
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: sealed payload: %v", ErrCorrupt, d.err)
	}
	if len(p.RequestBody) == 0 {
		p.RequestBody = nil
	}
	if len(p.ResponseBody) == 0 {
		p.ResponseBody = nil
	}
	return p, nil
}

// estimateSealed sizes the sealed encoding of r, to allocate once.
func estimateSealed(r *Record) int {
	n := 16 + len(r.Path) + len(r.Query) + len(r.ClientIP) + len(r.ConsumerID)
	for _, h := range r.RequestHeaders {
		n += len(h.Name) + len(h.Value) + 4
	}
	for _, h := range r.ResponseHeaders {
		n += len(h.Name) + len(h.Value) + 4
	}
	for k, v := range r.Attributes {
		n += len(k) + len(v) + 4
	}
	for _, o := range r.Originals {
		n += len(o.Where) + len(o.Value) + 4
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
