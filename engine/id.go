package engine

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// ID identifies a record: 48 bits of unix milliseconds then 80 bits that make
// it unique (an engine-assigned id: a per-process random prefix and a
// counter, see idSource; an id a caller supplies: any), laid out as a ULID,
// so ids sort by time. Its text form is 26 Crockford base32 chars.
type ID [16]byte

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordDec = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
		t[crockford[i]|0x20] = byte(i) // lower case
	}
	for _, p := range [][2]byte{{'O', 0}, {'o', 0}, {'I', 1}, {'i', 1}, {'L', 1}, {'l', 1}} {
		t[p[0]] = p[1]
	}
	return t
}()

// String is the 26-character ULID form.
func (id ID) String() string {
	var out [26]byte
	// 128 bits = 26*5 - 2: the first char carries 3 bits.
	hi := binary.BigEndian.Uint64(id[:8])
	lo := binary.BigEndian.Uint64(id[8:])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Time is the millisecond timestamp embedded in the id.
func (id ID) Time() time.Time {
	var b [8]byte
	copy(b[2:], id[:6])
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:]))).UTC()
}

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID decodes the 26-character form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 26 {
		return id, fmt.Errorf("%w: id %q must be 26 characters", ErrInvalidRecord, s)
	}
	if crockfordDec[s[0]] > 7 {
		return id, fmt.Errorf("%w: id %q overflows 128 bits", ErrInvalidRecord, s)
	}
	var hi, lo uint64
	for i := 0; i < 26; i++ {
		v := crockfordDec[s[i]]
		if v == 0xff {
			return id, fmt.Errorf("%w: id %q has invalid character %q", ErrInvalidRecord, s, s[i])
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id, nil
}

// idSource makes the ids the engine assigns: 48 bits of the record's unix
// milliseconds, then a 48-bit prefix drawn at random once per process (and
// again whenever the counter wraps), then a 32-bit counter. Ids are unique
// within a process (a counter value never repeats under one prefix) and,
// with overwhelming probability, across processes (two prefixes collide
// with probability 2^-48); within one millisecond they increase. Unlike 80
// random bits per id, the ids of one block share their prefix and differ in
// a counter, which the block's compressed metadata section stores in a few
// bytes instead of ten (docs/format/record.md).
type idSource struct {
	mu      sync.Mutex // guards prefix, counter and drawn
	prefix  [6]byte
	counter uint32
	drawn   bool
}

func (s *idSource) next(t time.Time) (ID, error) {
	var id ID
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixMilli()))
	copy(id[:6], b[2:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.drawn || s.counter == ^uint32(0) {
		if _, err := rand.Read(s.prefix[:]); err != nil {
			return ID{}, err
		}
		s.drawn, s.counter = true, 0
	}
	s.counter++
	copy(id[6:12], s.prefix[:])
	binary.BigEndian.PutUint32(id[12:], s.counter)
	return id, nil
}

// MarshalText encodes the 26-character form (JSON strings); the zero id
// (unassigned) encodes as "".
func (id ID) MarshalText() ([]byte, error) {
	if id.IsZero() {
		return nil, nil
	}
	return []byte(id.String()), nil
}

// UnmarshalText decodes the 26-character form; an empty string is the zero id.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
