package segment

import (
	"crypto/rand"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"sync"
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
	fs     vfs.FS
	f      vfs.File
	path   string
	hdr    Header
	codec  Codec
	bc     *blockCipher
	seq    uint64
	off    int64
	blocks []BlockInfo
	failed error
	sealed bool
	closed bool
	sealer sealer // AppendCodec's buffers
}

// sealer holds the buffers that building one block frame reuses; blocks
// built at once (AppendBlocks) each take their own.
type sealer struct {
	scratch  []byte // raw body
	comp     []byte // compressed body
	metaComp []byte // compressed metadata section (v3)
	frame    []byte
	aadBuf   []byte
}

var sealers = sync.Pool{New: func() any { return new(sealer) }}

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
	if err := checkBlock(entries, codec); err != nil {
		return BlockInfo{}, err
	}
	frame, info, err := w.sealBlock(&w.sealer, entries, codec, w.seq)
	if err != nil {
		return BlockInfo{}, err
	}
	return info, w.writeFrame(frame, &info)
}

func checkBlock(entries []Entry, codec Codec) error {
	if len(entries) == 0 || len(entries) > maxBlockRecords {
		return errorf(ErrInvalidArgument, "a block holds 1..%d records, got %d", maxBlockRecords, len(entries))
	}
	if codec > CodecS2 {
		return errorf(ErrInvalidArgument, "unknown codec %d", codec)
	}
	return nil
}

// writeFrame appends a sealed frame (of block w.seq) and records it.
func (w *Writer) writeFrame(frame []byte, info *BlockInfo) error {
	if _, err := w.f.Write(frame); err != nil {
		w.failed = err
		return err
	}
	info.Offset = w.off
	w.off += int64(len(frame))
	w.seq++
	w.blocks = append(w.blocks, *info)
	return nil
}

// AppendBlocks writes each of blocks as one block compressed with codec,
// in order, compressing and sealing them in parallel (up to GOMAXPROCS at
// once): what a large group commit costs in the single writer goroutine.
// It returns the infos of the blocks written; on an error the writer
// fails, as for AppendCodec (the blocks before the failure are written).
// The blocks are not durable until Sync.
func (w *Writer) AppendBlocks(blocks [][]Entry, codec Codec) ([]BlockInfo, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	for _, entries := range blocks {
		if err := checkBlock(entries, codec); err != nil {
			return nil, err
		}
	}
	base := w.seq
	infos := make([]BlockInfo, 0, len(blocks))
	// Waves of GOMAXPROCS blocks: the frames of one wave are held until
	// written, so memory stays a few blocks' worth whatever the group.
	wave := runtime.GOMAXPROCS(0)
	for start := 0; start < len(blocks); start += wave {
		end := min(start+wave, len(blocks))
		if err := w.appendWave(blocks[start:end], codec, base+uint64(start), &infos); err != nil {
			return infos, err
		}
	}
	return infos, nil
}

// appendWave seals blocks (sequence numbers seq, seq+1, ...) concurrently,
// then writes them in order.
func (w *Writer) appendWave(blocks [][]Entry, codec Codec, seq uint64, infos *[]BlockInfo) error {
	type sealed struct {
		s     *sealer
		frame []byte
		info  BlockInfo
		err   error
	}
	out := make([]sealed, len(blocks))
	var wg sync.WaitGroup
	for i := range blocks {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := sealers.Get().(*sealer)
			// Sequence numbers are fixed before sealing: each block's nonce
			// is its own, whatever order the sealing ends in.
			frame, info, err := w.sealBlock(s, blocks[i], codec, seq+uint64(i))
			out[i] = sealed{s, frame, info, err}
		}(i)
	}
	wg.Wait()
	var err error
	for i := range out {
		if err == nil {
			if err = out[i].err; err == nil {
				err = w.writeFrame(out[i].frame, &out[i].info)
			}
			if err == nil {
				*infos = append(*infos, out[i].info)
			} else if w.failed == nil {
				w.failed = err // a later block's sequence was sealed: never reuse it
			}
		}
		out[i].s.zero() // plaintext goes back to the pool zeroed
		sealers.Put(out[i].s)
	}
	return err
}

// zero clears the plaintext the buffers held (the raw and compressed body).
func (s *sealer) zero() {
	zero(s.scratch)
	zero(s.comp)
}

// sealBlock builds the frame of block seq from entries in s's buffers; the
// frame's offset is set when it is written. It reads only w's header and
// cipher, so blocks may be sealed concurrently.
func (w *Writer) sealBlock(s *sealer, entries []Entry, codec Codec, seq uint64) ([]byte, BlockInfo, error) {
	h := frameHeader{codec: codec, id: w.hdr.ID, seq: seq, records: uint32(len(entries))}
	h.minTime, h.maxTime = entries[0].Time, entries[0].Time
	frame := grow(s.frame[:0], frameHdrSize)[:frameHdrSize]
	raw := s.scratch[:0]
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
	s.scratch = raw
	metaLen := len(frame) - frameHdrSize
	if metaLen > MaxBlockRaw || len(raw) > MaxBlockRaw {
		return nil, BlockInfo{}, errorf(ErrInvalidArgument, "block of %d metadata and %d body bytes exceeds %d", metaLen, len(raw), MaxBlockRaw)
	}
	if w.hdr.Version >= Version3 && codec != CodecNone {
		sec, err := compressMeta(codec, s.metaComp[:0], frame[frameHdrSize:])
		if err != nil {
			return nil, BlockInfo{}, err
		}
		s.metaComp = sec
		frame = append(frame[:frameHdrSize], sec...)
		metaLen = len(sec)
		h.flags = frameMetaCompressed
	}
	comp, err := Compress(codec, s.comp[:0], raw)
	if err != nil {
		return nil, BlockInfo{}, err
	}
	s.comp = comp
	h.metaLen, h.rawLen = uint32(metaLen), uint32(len(raw))
	h.bodyLen = uint32(len(comp))
	if w.bc.suite == CipherAES256GCM {
		h.bodyLen += gcmTagSize
	}
	h.put(frame[:frameHdrSize])
	if w.bc.suite == CipherAES256GCM {
		s.aadBuf = w.bc.aad(s.aadBuf, frame)
		nonce := nonceFor(h.seq)
		frame = w.bc.aead.Seal(frame, nonce[:], comp, s.aadBuf)
	} else {
		frame = append(frame, comp...)
	}
	frame = binary.LittleEndian.AppendUint32(frame, crc(frame))
	s.frame = frame
	info := BlockInfo{Seq: h.seq, Length: int64(len(frame)), Records: len(entries),
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
	w.sealer.zero()
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
