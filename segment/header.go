package segment

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash/crc32"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ID is a segment's random 128-bit identity.
type ID [idSize]byte

// Header is the decoded preamble plus the active key slot.
type Header struct {
	Version    uint16
	Cipher     Cipher
	ID         ID
	Tenant     string
	Created    time.Time
	Commitment [commitSize]byte
	// Slot is the active key slot (highest valid generation); zero for CipherNone.
	Slot KeySlot
	// SlotIndex is which of the two slots is active (0 or 1), -1 if none.
	SlotIndex int

	// preamble is the encoded preamble [0,1020): a v2 block's AAD covers its
	// first 74+len(Tenant) bytes and a v2 slot MAC all of it.
	preamble []byte
	// slotRaw is the active slot's encoded bytes, for its MAC.
	slotRaw []byte
}

// KeySlot is one wrapped copy of the segment's DEK.
type KeySlot struct {
	Generation uint64
	KeyURI     string
	Wrapped    []byte
}

func encodePreamble(h *Header) []byte {
	b := make([]byte, preambleSize)
	defer func() { h.preamble = b[:crcOffsetTail] }()
	copy(b[0:8], preambleMagic)
	binary.LittleEndian.PutUint16(b[8:], h.Version)
	binary.LittleEndian.PutUint16(b[10:], uint16(h.Cipher))
	copy(b[16:32], h.ID[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(h.Created.UnixNano()))
	copy(b[40:72], h.Commitment[:])
	binary.LittleEndian.PutUint16(b[72:], uint16(len(h.Tenant)))
	copy(b[74:], h.Tenant)
	binary.LittleEndian.PutUint32(b[crcOffsetTail:], crc(b[:crcOffsetTail]))
	return b
}

// decodePreamble distinguishes "not a segment", "corrupt" and "unknown
// version": the magic is checked first, then the checksum, then the version,
// so a future version with a valid checksum is never called corrupt.
func decodePreamble(b []byte, path string) (*Header, error) {
	if len(b) < preambleSize {
		if len(b) >= 8 && string(b[:8]) != preambleMagic {
			return nil, errorf(ErrNotSegment, "%s: bad magic", path)
		}
		return nil, corruptf(ErrCorrupt, path, 0, -1, "file is %d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	if string(b[:8]) != preambleMagic {
		return nil, errorf(ErrNotSegment, "%s: bad magic %q", path, b[:8])
	}
	if got, want := crc(b[:crcOffsetTail]), binary.LittleEndian.Uint32(b[crcOffsetTail:]); got != want {
		return nil, corruptf(ErrCorrupt, path, 0, -1, "preamble checksum mismatch")
	}
	h := &Header{SlotIndex: -1, preamble: append([]byte(nil), b[:crcOffsetTail]...)}
	h.Version = binary.LittleEndian.Uint16(b[8:])
	if h.Version < Version1 || h.Version > Version3 {
		return nil, errorf(ErrUnknownVersion, "%s: format version %d (this build reads %d to %d)", path, h.Version, Version1, Version3)
	}
	h.Cipher = Cipher(binary.LittleEndian.Uint16(b[10:]))
	if h.Cipher != CipherNone && h.Cipher != CipherAES256GCM {
		return nil, errorf(ErrUnknownVersion, "%s: cipher suite %d unknown", path, h.Cipher)
	}
	if flags := binary.LittleEndian.Uint32(b[12:]); flags != 0 {
		return nil, errorf(ErrUnknownVersion, "%s: unknown flags %#x", path, flags)
	}
	copy(h.ID[:], b[16:32])
	h.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[32:]))).UTC()
	copy(h.Commitment[:], b[40:72])
	tl := int(binary.LittleEndian.Uint16(b[72:]))
	if tl == 0 || tl > MaxTenantLen {
		return nil, corruptf(ErrCorrupt, path, 72, -1, "tenant length %d out of range", tl)
	}
	h.Tenant = string(b[74 : 74+tl])
	return h, nil
}

// encodeSlot encodes a slot in the format of h's version: v2 with a MAC keyed
// by dek and the header's preamble, v1 (a rewrap of an old segment) with only
// its CRC.
func encodeSlot(h *Header, s KeySlot, dek []byte) ([]byte, error) {
	limit := maxSlotPayload
	if h.Version == Version1 {
		limit = crcOffsetTail - 16
	}
	if s.Generation == 0 {
		return nil, errorf(ErrInvalidArgument, "key slot generation must be >= 1")
	}
	if len(s.KeyURI) == 0 || len(s.Wrapped) == 0 || len(s.KeyURI)+len(s.Wrapped) > limit {
		return nil, errorf(ErrInvalidArgument, "key URI (%d bytes) and wrapped DEK (%d bytes) must be non-empty and fit %d bytes",
			len(s.KeyURI), len(s.Wrapped), limit)
	}
	b := make([]byte, slotSize)
	copy(b[0:4], slotMagic)
	binary.LittleEndian.PutUint64(b[4:], s.Generation)
	binary.LittleEndian.PutUint16(b[12:], uint16(len(s.KeyURI)))
	binary.LittleEndian.PutUint16(b[14:], uint16(len(s.Wrapped)))
	n := copy(b[16:], s.KeyURI)
	copy(b[16+n:], s.Wrapped)
	if h.Version >= Version2 {
		mac, err := slotMAC(h, b, dek)
		if err != nil {
			return nil, err
		}
		copy(b[slotMACOffset:], mac)
	}
	binary.LittleEndian.PutUint32(b[crcOffsetTail:], crc(b[:crcOffsetTail]))
	return b, nil
}

// slotMAC computes a v2 slot's MAC over the preamble and the slot's bytes
// before the MAC, under a key derived from the DEK: only a holder of the DEK
// can produce a slot (with its generation) that a reader accepts.
func slotMAC(h *Header, slot, dek []byte) ([]byte, error) {
	if len(dek) != 32 {
		return nil, errorf(ErrInvalidArgument, "data key must be 32 bytes, got %d", len(dek))
	}
	k, err := derive(dek, h.ID, infoSlotMAC)
	if err != nil {
		return nil, err
	}
	defer zero(k)
	m := hmac.New(sha256.New, k)
	m.Write(h.preamble)
	m.Write(slot[:slotMACOffset])
	return m.Sum(nil), nil
}

// checkSlotMAC authenticates the active slot of a v2 segment with the DEK
// (already checked against the commitment). Version 1 slots carry no MAC; the
// engine's manifest records their generation instead.
func checkSlotMAC(h *Header, dek []byte) error {
	if h.Version < Version2 || h.Cipher == CipherNone {
		return nil
	}
	if len(h.slotRaw) != slotSize {
		return errorf(ErrKeySlot, "segment %x: no active key slot", h.ID)
	}
	mac, err := slotMAC(h, h.slotRaw, dek)
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, h.slotRaw[slotMACOffset:crcOffsetTail]) {
		return errorf(ErrKeySlot, "segment %x: key slot %d (generation %d) fails its MAC: it was not written by a holder of the data key",
			h.ID, h.SlotIndex, h.Slot.Generation)
	}
	return nil
}

var emptySlot = make([]byte, slotSize)

// decodeSlot returns (slot, empty, error).
func decodeSlot(b []byte, version uint16, path string, off int64) (KeySlot, bool, error) {
	if bytes.Equal(b, emptySlot) {
		return KeySlot{}, true, nil
	}
	if string(b[:4]) != slotMagic || crc(b[:crcOffsetTail]) != binary.LittleEndian.Uint32(b[crcOffsetTail:]) {
		return KeySlot{}, false, corruptf(ErrCorrupt, path, off, -1, "key slot checksum mismatch")
	}
	s := KeySlot{Generation: binary.LittleEndian.Uint64(b[4:])}
	ul, wl := int(binary.LittleEndian.Uint16(b[12:])), int(binary.LittleEndian.Uint16(b[14:]))
	limit := maxSlotPayload
	if version == Version1 {
		limit = crcOffsetTail - 16
	}
	if s.Generation == 0 || ul == 0 || wl == 0 || ul+wl > limit {
		return KeySlot{}, false, corruptf(ErrCorrupt, path, off, -1, "key slot fields out of range")
	}
	s.KeyURI = string(b[16 : 16+ul])
	s.Wrapped = append([]byte(nil), b[16+ul:16+ul+wl]...)
	return s, false, nil
}

// chooseSlot picks the valid slot with the highest generation. A damaged slot
// is tolerated while the other one is valid: that is what makes a rewrap
// crash-safe (the slot being written may be torn).
func chooseSlot(h *Header, raw []byte, path string) error {
	var best KeySlot
	var firstErr error
	bestIdx := -1
	for i := 0; i < slotCount; i++ {
		off := int64(preambleSize + i*slotSize)
		s, empty, err := decodeSlot(raw[off:off+slotSize], h.Version, path, off)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if empty {
			continue
		}
		if bestIdx < 0 || s.Generation > best.Generation {
			best, bestIdx = s, i
		}
	}
	if h.Cipher == CipherNone {
		if bestIdx >= 0 {
			return corruptf(ErrCorrupt, path, preambleSize, -1, "plaintext segment carries a key slot")
		}
		return nil
	}
	if bestIdx < 0 {
		if firstErr != nil {
			return firstErr
		}
		return corruptf(ErrCorrupt, path, preambleSize, -1, "no key slot holds a wrapped data key")
	}
	h.Slot, h.SlotIndex = best, bestIdx
	off := preambleSize + bestIdx*slotSize
	h.slotRaw = append([]byte(nil), raw[off:off+slotSize]...)
	return nil
}

// derive expands the DEK into a purpose-bound 32-byte key.
func derive(dek []byte, id ID, info string) ([]byte, error) {
	return hkdf.Key(sha256.New, dek, id[:], info, 32)
}

func commitment(dek []byte, id ID) ([commitSize]byte, error) {
	var c [commitSize]byte
	k, err := derive(dek, id, infoCommitment)
	if err != nil {
		return c, err
	}
	copy(c[:], k)
	return c, nil
}

func checkCommitment(h *Header, dek []byte) error {
	if len(dek) != 32 {
		return errorf(ErrInvalidArgument, "data key must be 32 bytes, got %d", len(dek))
	}
	c, err := commitment(dek, h.ID)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(c[:], h.Commitment[:]) != 1 {
		return errorf(ErrWrongKey, "data key does not match segment %x's key commitment", h.ID)
	}
	return nil
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// CheckKey reports whether dek is this segment's data key (ErrWrongKey if
// not) and, for version 2, whether the active key slot was written by a holder
// of that key (ErrKeySlot if not).
func (h Header) CheckKey(dek []byte) error {
	if err := checkCommitment(&h, dek); err != nil {
		return err
	}
	return checkSlotMAC(&h, dek)
}

// authPrefix is the part of the preamble a v2 block's AAD covers.
func (h *Header) authPrefix() []byte { return h.preamble[:preambleTenantOff+len(h.Tenant)] }
