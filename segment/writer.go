package segment

import (
	"crypto/rand"
	"encoding/binary"
	"path/filepath"
	"time"

	"github.com/logstore/logstore/vfs"
)

// Params describe a new segment.
type Params struct {
	// ID is the segment id; zero means a fresh random one.
	ID ID
	// Tenant owns the segment (1..MaxTenantLen bytes). Required.
	Tenant string
	// Cipher defaults to CipherAES256GCM. CipherNone must be asked for.
	Cipher Cipher
	// Codec is the default block codec (default zstd); AppendCodec overrides it.
	Codec Codec
	// KeyURI and Wrapped are stored in key slot 0 (generation 1). Required
	// unless Cipher is CipherNone.
	KeyURI  string
	Wrapped []byte
	// DEK is the 32-byte plaintext data key. The writer keeps a derived key
	// only, and zeroes it on Close; the caller zeroes its own copy.
	DEK []byte
	// Created defaults to time.Now().
	Created time.Time
	// FS defaults to vfs.Default.
	FS vfs.FS
}

// NewID returns a random segment id.
func NewID() (ID, error) {
	var id ID
	_, err := rand.Read(id[:])
	return id, err
}

// Writer appends blocks to one new segment file. It is not safe for
// concurrent use: the engine serialises appends per segment.
//
// After any write error the writer refuses further appends (ErrSealed wraps
// the cause): a block sequence, and so a nonce, is never reused, and the torn
// tail is left for recovery to truncate.
type Writer struct {
	fs       vfs.FS
	f        vfs.File
	path     string
	hdr      Header
	codec    Codec
	bc       *blockCipher
	seq      uint64
	off      int64
	blocks   []BlockInfo
	failed   error
	sealed   bool
	closed   bool
	scratch  []byte // raw body
	comp     []byte // compressed body
	metaComp []byte // compressed metadata section (v3)
	frame    []byte
	aadBuf   []byte
}

// Create writes a new segment's header and syncs it and its directory.
func Create(path string, p Params) (*Writer, error) {
	fs := p.FS
	if fs == nil {
		fs = vfs.Default
	}
	if len(p.Tenant) == 0 || len(p.Tenant) > MaxTenantLen {
		return nil, errorf(ErrInvalidArgument, "tenant must be 1..%d bytes", MaxTenantLen)
	}
	if p.Cipher != CipherNone && p.Cipher != CipherAES256GCM {
		return nil, errorf(ErrInvalidArgument, "unknown cipher suite %d", p.Cipher)
	}
	if p.Codec > CodecS2 {
		return nil, errorf(ErrInvalidArgument, "unknown codec %d", p.Codec)
	}
	if p.ID == (ID{}) {
		id, err := NewID()
		if err != nil {
			return nil, err
		}
		p.ID = id
	}
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	h := Header{Version: Version3, Cipher: p.Cipher, ID: p.ID, Tenant: p.Tenant, Created: p.Created.UTC(), SlotIndex: -1}
	raw := make([]byte, HeaderSize)
	if p.Cipher == CipherAES256GCM {
		if len(p.DEK) != 32 {
			return nil, errorf(ErrInvalidArgument, "data key must be 32 bytes, got %d", len(p.DEK))
		}
		c, err := commitment(p.DEK, p.ID)
		if err != nil {
			return nil, err
		}
		h.Commitment = c
	} else if p.KeyURI != "" || len(p.Wrapped) != 0 || len(p.DEK) != 0 {
		return nil, errorf(ErrInvalidArgument, "a plaintext segment takes no key")
	}
	copy(raw, encodePreamble(&h)) // the slot MAC covers the preamble
	if p.Cipher == CipherAES256GCM {
		h.Slot = KeySlot{Generation: 1, KeyURI: p.KeyURI, Wrapped: append([]byte(nil), p.Wrapped...)}
		h.SlotIndex = 0
		slot, err := encodeSlot(&h, h.Slot, p.DEK)
		if err != nil {
			return nil, err
		}
		copy(raw[slot0Offset:], slot)
		h.slotRaw = slot
	}
	bc, err := newBlockCipher(&h, p.DEK)
	if err != nil {
		return nil, err
	}
	f, err := fs.Create(path)
	if err != nil {
		bc.close()
		return nil, err
	}
	w := &Writer{fs: fs, f: f, path: path, hdr: h, codec: p.Codec, bc: bc, off: HeaderSize}
	if _, err := f.Write(raw); err != nil {
		w.abort()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		w.abort()
		return nil, err
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

func (w *Writer) abort() {
	w.bc.close()
	_ = w.f.Close()
	_ = w.fs.Remove(w.path)
	w.closed = true
}

// Header returns the segment header.
func (w *Writer) Header() Header { return w.hdr }

// Path is the file path.
func (w *Writer) Path() string { return w.path }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.off }

// Blocks returns the blocks written so far.
func (w *Writer) Blocks() []BlockInfo { return append([]BlockInfo(nil), w.blocks...) }

// BlockCount is the number of blocks written so far.
func (w *Writer) BlockCount() int { return len(w.blocks) }

// Append writes entries as one block with the writer's codec. The block is
// not durable until Sync.
func (w *Writer) Append(entries []Entry) (BlockInfo, error) {
	return w.AppendCodec(entries, w.codec)
}

// AppendCodec writes entries as one block compressed with codec.
func (w *Writer) AppendCodec(entries []Entry, codec Codec) (BlockInfo, error) {
	if err := w.usable(); err != nil {
		return BlockInfo{}, err
	}
	if len(entries) == 0 || len(entries) > maxBlockRecords {
		return BlockInfo{}, errorf(ErrInvalidArgument, "a block holds 1..%d records, got %d", maxBlockRecords, len(entries))
	}
	if codec > CodecS2 {
		return BlockInfo{}, errorf(ErrInvalidArgument, "unknown codec %d", codec)
	}
	frame, info, err := w.sealBlock(entries, codec)
	if err != nil {
		return BlockInfo{}, err
	}
	if _, err := w.f.Write(frame); err != nil {
		w.failed = err
		return BlockInfo{}, err
	}
	w.off += int64(len(frame))
	w.seq++
	w.blocks = append(w.blocks, info)
	return info, nil
}

func (w *Writer) sealBlock(entries []Entry, codec Codec) ([]byte, BlockInfo, error) {
	h := frameHeader{codec: codec, id: w.hdr.ID, seq: w.seq, records: uint32(len(entries))}
	h.minTime, h.maxTime = entries[0].Time, entries[0].Time
	frame := grow(w.frame[:0], frameHdrSize)[:frameHdrSize]
	raw := w.scratch[:0]
	for i := range entries {
		e := &entries[i]
		if e.Time < h.minTime {
			h.minTime = e.Time
		}
		if e.Time > h.maxTime {
			h.maxTime = e.Time
		}
		frame = appendUvarintBytes(frame, e.Meta)
		raw = appendUvarintBytes(raw, e.Data)
	}
	w.scratch = raw
	metaLen := len(frame) - frameHdrSize
	if metaLen > MaxBlockRaw || len(raw) > MaxBlockRaw {
		return nil, BlockInfo{}, errorf(ErrInvalidArgument, "block of %d metadata and %d body bytes exceeds %d", metaLen, len(raw), MaxBlockRaw)
	}
	if w.hdr.Version >= Version3 && codec != CodecNone {
		sec, err := compressMeta(codec, w.metaComp[:0], frame[frameHdrSize:])
		if err != nil {
			return nil, BlockInfo{}, err
		}
		w.metaComp = sec
		frame = append(frame[:frameHdrSize], sec...)
		metaLen = len(sec)
		h.flags = frameMetaCompressed
	}
	comp, err := Compress(codec, w.comp[:0], raw)
	if err != nil {
		return nil, BlockInfo{}, err
	}
	w.comp = comp
	h.metaLen, h.rawLen = uint32(metaLen), uint32(len(raw))
	h.bodyLen = uint32(len(comp))
	if w.bc.suite == CipherAES256GCM {
		h.bodyLen += gcmTagSize
	}
	h.put(frame[:frameHdrSize])
	if w.bc.suite == CipherAES256GCM {
		w.aadBuf = w.bc.aad(w.aadBuf, frame)
		nonce := nonceFor(h.seq)
		frame = w.bc.aead.Seal(frame, nonce[:], comp, w.aadBuf)
	} else {
		frame = append(frame, comp...)
	}
	frame = binary.LittleEndian.AppendUint32(frame, crc(frame))
	w.frame = frame
	info := BlockInfo{Seq: h.seq, Offset: w.off, Length: int64(len(frame)), Records: len(entries),
		MinTime: h.minTime, MaxTime: h.maxTime, Codec: codec, MetaLen: metaLen, RawLen: len(raw), BodyLen: int(h.bodyLen)}
	return frame, info, nil
}

func (w *Writer) usable() error {
	switch {
	case w.closed || w.sealed:
		return errorf(ErrSealed, "%s", w.path)
	case w.failed != nil:
		return errorf(ErrSealed, "%s: an earlier write failed: %v", w.path, w.failed)
	}
	return nil
}

// Sync makes every appended block durable.
func (w *Writer) Sync() error {
	if w.closed {
		return errorf(ErrSealed, "%s", w.path)
	}
	if w.failed != nil {
		return errorf(ErrSealed, "%s: an earlier write failed: %v", w.path, w.failed)
	}
	if err := w.f.Sync(); err != nil {
		// After a failed fsync the page cache state is unknown (fsyncgate):
		// never trust or extend this file again.
		w.failed = err
		return err
	}
	return nil
}

// Seal writes the footer and trailer and syncs. The segment is read-only
// afterwards.
func (w *Writer) Seal() error {
	if err := w.usable(); err != nil {
		return err
	}
	buf := appendFooter(nil, w.blocks)
	if _, err := w.f.Write(buf); err != nil {
		w.failed = err
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.failed = err
		return err
	}
	w.off += int64(len(buf))
	w.sealed = true
	return nil
}

// Close releases the file and zeroes the block key. It does not seal: an
// unsealed segment stays readable by scanning and is sealed by recovery.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.bc.close()
	zero(w.scratch)
	zero(w.comp)
	return w.f.Close()
}

// appendFooter appends the footer frame and the trailer for blocks, whose
// footer starts right at the end of the last block.
func appendFooter(dst []byte, blocks []BlockInfo) []byte {
	footerOff := int64(HeaderSize)
	if n := len(blocks); n > 0 {
		footerOff = blocks[n-1].Offset + blocks[n-1].Length
	}
	start := len(dst)
	dst = append(dst, footerMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(blocks)))
	for _, b := range blocks {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(b.Offset))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(b.Records))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(b.MinTime))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(b.MaxTime))
	}
	dst = binary.LittleEndian.AppendUint32(dst, crc(dst[start:]))
	footerLen := len(dst) - start
	t := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(footerOff))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(footerLen))
	dst = binary.LittleEndian.AppendUint32(dst, crc(dst[t:]))
	return append(dst, trailerMagic...)
}
