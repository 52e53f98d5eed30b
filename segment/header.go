package segment

import (
	"bytes"
	"crypto/hkdf"
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
}

// KeySlot is one wrapped copy of the segment's DEK.
type KeySlot struct {
	Generation uint64
	KeyURI     string
	Wrapped    []byte
}

func encodePreamble(h *Header) []byte {
	b := make([]byte, preambleSize)
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
	h := &Header{SlotIndex: -1}
	h.Version = binary.LittleEndian.Uint16(b[8:])
	if h.Version != Version1 {
		return nil, errorf(ErrUnknownVersion, "%s: format version %d (this build reads %d)", path, h.Version, Version1)
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

func encodeSlot(s KeySlot) ([]byte, error) {
	if s.Generation == 0 {
		return nil, errorf(ErrInvalidArgument, "key slot generation must be >= 1")
	}
	if len(s.KeyURI) == 0 || len(s.Wrapped) == 0 || len(s.KeyURI)+len(s.Wrapped) > maxSlotPayload {
		return nil, errorf(ErrInvalidArgument, "key URI (%d bytes) and wrapped DEK (%d bytes) must be non-empty and fit %d bytes",
			len(s.KeyURI), len(s.Wrapped), maxSlotPayload)
	}
	b := make([]byte, slotSize)
	copy(b[0:4], slotMagic)
	binary.LittleEndian.PutUint64(b[4:], s.Generation)
	binary.LittleEndian.PutUint16(b[12:], uint16(len(s.KeyURI)))
	binary.LittleEndian.PutUint16(b[14:], uint16(len(s.Wrapped)))
	n := copy(b[16:], s.KeyURI)
	copy(b[16+n:], s.Wrapped)
	binary.LittleEndian.PutUint32(b[crcOffsetTail:], crc(b[:crcOffsetTail]))
	return b, nil
}

var emptySlot = make([]byte, slotSize)

// decodeSlot returns (slot, empty, error).
func decodeSlot(b []byte, path string, off int64) (KeySlot, bool, error) {
	if bytes.Equal(b, emptySlot) {
		return KeySlot{}, true, nil
	}
	if string(b[:4]) != slotMagic || crc(b[:crcOffsetTail]) != binary.LittleEndian.Uint32(b[crcOffsetTail:]) {
		return KeySlot{}, false, corruptf(ErrCorrupt, path, off, -1, "key slot checksum mismatch")
	}
	s := KeySlot{Generation: binary.LittleEndian.Uint64(b[4:])}
	ul, wl := int(binary.LittleEndian.Uint16(b[12:])), int(binary.LittleEndian.Uint16(b[14:]))
	if s.Generation == 0 || ul == 0 || wl == 0 || ul+wl > maxSlotPayload {
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
		s, empty, err := decodeSlot(raw[off:off+slotSize], path, off)
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

// CheckKey reports whether dek is this segment's data key (ErrWrongKey if not).
func (h Header) CheckKey(dek []byte) error { return checkCommitment(&h, dek) }
