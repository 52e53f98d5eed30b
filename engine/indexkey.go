package engine

import (
	"encoding/binary"
	"fmt"
	"time"
)

// appendEscaped appends s with 0x00 escaped as 0x00 0xFF and the terminator
// 0x00 0x01, so escaped strings sort like the strings and none is a prefix of
// another.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, 0xff)
		} else {
			b = append(b, s[i])
		}
	}
	return append(b, 0, 1)
}

// readEscaped decodes an escaped string at the start of b.
func readEscaped(b []byte) (string, []byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			out = append(out, b[i])
			continue
		}
		if i+1 >= len(b) {
			return "", nil, fmt.Errorf("%w: unterminated escaped string", ErrCorrupt)
		}
		switch b[i+1] {
		case 0xff:
			out = append(out, 0)
			i++
		case 1:
			return string(out), b[i+2:], nil
		default:
			return "", nil, fmt.Errorf("%w: bad escape 0x00 0x%02x", ErrCorrupt, b[i+1])
		}
	}
	return "", nil, fmt.Errorf("%w: unterminated escaped string", ErrCorrupt)
}

func tenantPrefix(kind byte, tenant string) []byte {
	return appendEscaped([]byte{kind}, tenant)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano())^(1<<63))
}

func readTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

func recordKey(tenant string, id ID) []byte { return append(tenantPrefix(keyRecord, tenant), id[:]...) }

func payloadKey(tenant string, id ID) []byte {
	return append(tenantPrefix(keyPayload, tenant), id[:]...)
}

func segmentKey(tenant string, seg [16]byte) []byte {
	return append(tenantPrefix(keySegment, tenant), seg[:]...)
}

func timeKey(tenant string, t time.Time, id ID) []byte {
	return append(appendTime(tenantPrefix(keyTime, tenant), t), id[:]...)
}

// fieldPrefix is the 'i' key prefix for one value of a string field.
func fieldPrefix(tenant string, field byte, value string) []byte {
	return appendEscaped(append(tenantPrefix(keyIndex, tenant), field), value)
}

func statusPrefix(tenant string, status int) []byte {
	return binary.BigEndian.AppendUint16(append(tenantPrefix(keyIndex, tenant), idxStatus), uint16(status))
}

// appendIndexKeys builds the secondary index keys of m in buf (growing it if
// needed) and passes each, capacity-capped, to fn.
func appendIndexKeys(buf []byte, tenant string, m *Meta, fn func(key []byte)) {
	emit := func(start int) {
		fn(buf[start:len(buf):len(buf)])
	}
	var suffix [24]byte
	binary.BigEndian.PutUint64(suffix[:], uint64(m.Time.UnixNano())^(1<<63))
	copy(suffix[8:], m.ID[:])
	start := len(buf)
	buf = append(appendEscaped(append(buf, keyTime), tenant), suffix[:]...)
	emit(start)
	start = len(buf)
	buf = appendEscaped(append(buf, keyIndex), tenant)
	buf = binary.BigEndian.AppendUint16(append(buf, idxStatus), uint16(m.Status))
	buf = append(buf, suffix[:]...)
	emit(start)
	for _, f := range indexedStrings {
		v := *f.str(m)
		if v == "" {
			continue
		}
		start = len(buf)
		buf = appendEscaped(append(appendEscaped(append(buf, keyIndex), tenant), f.index), v)
		buf = append(buf, suffix[:]...)
		emit(start)
	}
}

// indexEntries calls fn with every secondary index key of m.
func indexEntries(tenant string, m *Meta, fn func(key []byte)) {
	appendIndexKeys(nil, tenant, m, fn)
}

// indexKeyParts is a decoded index key (Verify's reports, fuzzing).
type indexKeyParts struct {
	Kind    byte
	Tenant  string
	Field   string // the indexed field's name ('i' keys)
	Value   string // its value, for a string field
	Status  int    // its value, for status
	Time    time.Time
	ID      ID
	Segment [16]byte
}

// decodeIndexKey parses any key the engine writes.
func decodeIndexKey(k []byte) (indexKeyParts, error) {
	var ik indexKeyParts
	if len(k) < 1 {
		return ik, fmt.Errorf("%w: empty index key", ErrCorrupt)
	}
	ik.Kind = k[0]
	tenant, rest, err := readEscaped(k[1:])
	if err != nil {
		return ik, err
	}
	ik.Tenant = tenant
	need := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("%w: index key kind %q: %d bytes after the tenant, want %d", ErrCorrupt, ik.Kind, len(rest), n)
		}
		return nil
	}
	switch ik.Kind {
	case keyConfig:
		return ik, need(0)
	case keySegment:
		if err := need(16); err != nil {
			return ik, err
		}
		copy(ik.Segment[:], rest)
	case keyRecord, keyPayload:
		if err := need(16); err != nil {
			return ik, err
		}
		copy(ik.ID[:], rest)
	case keyTime:
		if err := need(24); err != nil {
			return ik, err
		}
		ik.Time = readTime(rest)
		copy(ik.ID[:], rest[8:])
	case keyIndex:
		if len(rest) < 1 {
			return ik, fmt.Errorf("%w: index key without field", ErrCorrupt)
		}
		field := rest[0]
		rest = rest[1:]
		if f := indexes[field]; f != nil {
			ik.Field = f.name
		}
		switch {
		case field == idxStatus:
			if len(rest) < 2 {
				return ik, fmt.Errorf("%w: status key truncated", ErrCorrupt)
			}
			ik.Status = int(binary.BigEndian.Uint16(rest))
			rest = rest[2:]
		case stringIndexes[field] != nil:
			ik.Value, rest, err = readEscaped(rest)
			if err != nil {
				return ik, err
			}
		default:
			return ik, fmt.Errorf("%w: unknown index field %d", ErrCorrupt, field)
		}
		if err := need(24); err != nil {
			return ik, err
		}
		ik.Time = readTime(rest)
		copy(ik.ID[:], rest[8:])
	default:
		return ik, fmt.Errorf("%w: unknown index key kind %q", ErrCorrupt, ik.Kind)
	}
	return ik, nil
}
