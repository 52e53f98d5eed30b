package segment

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Entry is one record as the segment sees it: an opaque plaintext metadata
// blob (indexable, readable without the key) and an opaque sealed blob.
type Entry struct {
	Time int64 // unix nanoseconds; feeds the block's time range
	Meta []byte
	Data []byte
}

// BlockInfo locates one block frame.
type BlockInfo struct {
	Seq     uint64
	Offset  int64 // file offset of the frame
	Length  int64 // frame length in bytes
	Records int
	MinTime int64
	MaxTime int64
	Codec   Codec
	MetaLen int
	RawLen  int // uncompressed body length
	BodyLen int // stored body length
}

// frameHeader is the fixed part of a block frame.
type frameHeader struct {
	codec   Codec
	flags   byte // frameMetaCompressed (v3)
	id      ID
	seq     uint64
	records uint32
	metaLen uint32
	rawLen  uint32
	bodyLen uint32
	minTime int64
	maxTime int64
}

func (h *frameHeader) put(b []byte) {
	copy(b[0:4], blockMagic)
	b[4] = byte(h.codec)
	b[5], b[6], b[7] = h.flags, 0, 0
	copy(b[8:24], h.id[:])
	binary.LittleEndian.PutUint64(b[24:], h.seq)
	binary.LittleEndian.PutUint32(b[32:], h.records)
	binary.LittleEndian.PutUint32(b[36:], h.metaLen)
	binary.LittleEndian.PutUint32(b[40:], h.rawLen)
	binary.LittleEndian.PutUint32(b[44:], h.bodyLen)
	binary.LittleEndian.PutUint64(b[48:], uint64(h.minTime))
	binary.LittleEndian.PutUint64(b[56:], uint64(h.maxTime))
	binary.LittleEndian.PutUint32(b[64:], crc(b[:64]))
}

// parseFrameHeader validates the fixed header; it never trusts a length it has
// not bounded, so corrupt input cannot cause a large allocation.
func parseFrameHeader(b []byte, cipherSuite Cipher, version uint16) (frameHeader, error) {
	var h frameHeader
	if len(b) < frameHdrSize {
		return h, fmt.Errorf("frame header truncated (%d bytes)", len(b))
	}
	if string(b[0:4]) != blockMagic {
		return h, fmt.Errorf("bad block magic %q", b[0:4])
	}
	if crc(b[:64]) != binary.LittleEndian.Uint32(b[64:]) {
		return h, fmt.Errorf("block header checksum mismatch")
	}
	h.codec, h.flags = Codec(b[4]), b[5]
	allowed := byte(0)
	if version >= Version3 && h.codec != CodecNone {
		allowed = frameMetaCompressed
	}
	if h.codec > CodecS2 || h.flags&^allowed != 0 || b[6] != 0 || b[7] != 0 {
		return h, fmt.Errorf("unknown codec %d or flags %#x", b[4], b[5])
	}
	copy(h.id[:], b[8:24])
	h.seq = binary.LittleEndian.Uint64(b[24:])
	h.records = binary.LittleEndian.Uint32(b[32:])
	h.metaLen = binary.LittleEndian.Uint32(b[36:])
	h.rawLen = binary.LittleEndian.Uint32(b[40:])
	h.bodyLen = binary.LittleEndian.Uint32(b[44:])
	h.minTime = int64(binary.LittleEndian.Uint64(b[48:]))
	h.maxTime = int64(binary.LittleEndian.Uint64(b[56:]))
	overhead := uint32(0)
	if cipherSuite == CipherAES256GCM {
		overhead = gcmTagSize
	}
	switch {
	case h.records > maxBlockRecords:
		return h, fmt.Errorf("record count %d out of range", h.records)
	case h.metaLen > MaxBlockRaw || h.rawLen > MaxBlockRaw:
		return h, fmt.Errorf("section lengths out of range")
	case h.bodyLen < overhead || h.bodyLen-overhead > MaxBlockRaw+MaxBlockRaw/8:
		return h, fmt.Errorf("body length %d out of range", h.bodyLen)
	case h.minTime > h.maxTime:
		return h, fmt.Errorf("time range inverted")
	}
	return h, nil
}

func (h *frameHeader) frameLen() int64 {
	return frameHdrSize + int64(h.metaLen) + int64(h.bodyLen) + frameCRCSize
}

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		// The frame checksum is redundant: GCM authenticates every body.
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderCRC(false), zstd.WithEncoderLevel(zstd.SpeedFastest))
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxBlockRaw), zstd.IgnoreChecksum(true))
	})
	return zstdEnc, zstdDec
}

// Compress appends src compressed with codec to dst.
func Compress(codec Codec, dst, src []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecZstd:
		enc, _ := zstdCodecs()
		return enc.EncodeAll(src, dst), nil
	case CodecS2:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return nil, errorf(ErrInvalidArgument, "block too large for s2")
		}
		start := len(dst)
		dst = grow(dst, n)
		out := s2.Encode(dst[start:start+n], src)
		return dst[:start+len(out)], nil
	}
	return nil, errorf(ErrInvalidArgument, "unknown codec %d", codec)
}

// Decompress appends the decompression of src to dst; rawLen is the expected
// size, checked before and after so a bad length cannot balloon memory.
func Decompress(codec Codec, dst, src []byte, rawLen int) ([]byte, error) {
	switch codec {
	case CodecNone:
		if len(src) != rawLen {
			return nil, fmt.Errorf("stored length %d != raw length %d", len(src), rawLen)
		}
		return append(dst, src...), nil
	case CodecZstd:
		_, dec := zstdCodecs()
		start := len(dst)
		out, err := dec.DecodeAll(src, grow(dst, rawLen)[:start])
		if err != nil {
			return nil, err
		}
		if len(out)-start != rawLen {
			return nil, fmt.Errorf("zstd produced %d bytes, want %d", len(out)-start, rawLen)
		}
		return out, nil
	case CodecS2:
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, err
		}
		if n != rawLen {
			return nil, fmt.Errorf("s2 length %d != raw length %d", n, rawLen)
		}
		start := len(dst)
		dst = grow(dst, n)
		out, err := s2.Decode(dst[start:start+n], src)
		if err != nil {
			return nil, err
		}
		return dst[:start+len(out)], nil
	}
	return nil, fmt.Errorf("unknown codec %d", codec)
}

// bufPool recycles frame and body buffers of the read path (one frame and
// one decompressed body per block read would otherwise be garbage).
var bufPool sync.Pool

func getBuf(n int) []byte {
	if p, ok := bufPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) {
	if b == nil || cap(b) > 4*MaxBlockRaw {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}

// grow returns b with capacity for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// blockCipher seals and opens block bodies of one segment. It owns the
// derived block key, which Close zeroes.
type blockCipher struct {
	suite  Cipher
	aead   cipher.AEAD
	key    []byte
	prefix []byte // the AAD's fixed part (format.go: "AAD")
}

func newBlockCipher(h *Header, dek []byte) (*blockCipher, error) {
	bc := &blockCipher{suite: h.Cipher}
	if h.Version >= Version2 {
		bc.prefix = append(bc.prefix, aadPrefixV2...)
		bc.prefix = append(bc.prefix, h.authPrefix()...)
	} else {
		bc.prefix = append(bc.prefix, aadPrefix...)
		bc.prefix = append(bc.prefix, h.ID[:]...)
		bc.prefix = binary.LittleEndian.AppendUint16(bc.prefix, uint16(len(h.Tenant)))
		bc.prefix = append(bc.prefix, h.Tenant...)
	}
	if h.Cipher == CipherNone {
		return bc, nil
	}
	key, err := derive(dek, h.ID, infoBlockKey)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		zero(key)
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		zero(key)
		return nil, err
	}
	bc.aead, bc.key = aead, key
	return bc, nil
}

func (bc *blockCipher) close() {
	if bc == nil {
		return
	}
	zero(bc.key)
	bc.aead = nil
}

func nonceFor(seq uint64) [gcmNonceSize]byte {
	var n [gcmNonceSize]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

func (bc *blockCipher) aad(buf, headerAndMeta []byte) []byte {
	buf = append(buf[:0], bc.prefix...)
	return append(buf, headerAndMeta...)
}

func appendUvarintBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// compressMeta encodes a metadata section in v3: the section's raw length
// (uvarint), then the section compressed with the block's codec.
func compressMeta(codec Codec, dst, raw []byte) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(raw)))
	return Compress(codec, dst, raw)
}

// metaSection returns the records' metadata entries of a frame's metadata
// section (sec), decompressing it when the header says it is compressed.
// The raw length is bounded before anything is allocated.
func metaSection(h frameHeader, sec []byte) ([][]byte, error) {
	if h.flags&frameMetaCompressed != 0 {
		n, k := binary.Uvarint(sec)
		if k <= 0 || n > MaxBlockRaw {
			return nil, fmt.Errorf("compressed metadata section: bad raw length")
		}
		raw, err := Decompress(h.codec, nil, sec[k:], int(n))
		if err != nil {
			return nil, fmt.Errorf("compressed metadata section: %v", err)
		}
		sec = raw
	} else {
		sec = append([]byte(nil), sec...)
	}
	return splitRecords(sec, int(h.records))
}

// splitRecords parses n uvarint-length-prefixed records out of b. The returned
// slices alias b.
func splitRecords(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("record %d: bad length", i)
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes after %d records", len(b), n)
	}
	return out, nil
}
