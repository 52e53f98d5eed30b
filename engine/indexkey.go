package engine

import (
	"encoding/binary"
	"fmt"
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
func segmentKey(tenant string, seg [16]byte) []byte {
	return append(tenantPrefix(keySegment, tenant), seg[:]...)
}

// indexKeyParts is a decoded index key (fuzzing, reports).
type indexKeyParts struct {
	Kind    byte
	Tenant  string
	Segment [16]byte
	Seq     uint64 // 'b' keys: the block's sequence number
}

// decodeIndexKey parses any key the engine writes ('c', 'm', 's', 'b').
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
	case keyConfig, keyManifestSeq:
		return ik, need(0)
	case keySegment:
		if err := need(16); err != nil {
			return ik, err
		}
		copy(ik.Segment[:], rest)
	case keyBlock:
		if err := need(24); err != nil {
			return ik, err
		}
		copy(ik.Segment[:], rest)
		ik.Seq = binary.BigEndian.Uint64(rest[16:])
	default:
		return ik, fmt.Errorf("%w: unknown index key kind %q", ErrCorrupt, ik.Kind)
	}
	return ik, nil
}
