package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/logstore/logstore/vfs"
)

// ReadOptions configure Open.
type ReadOptions struct {
	// FS defaults to vfs.Default.
	FS vfs.FS
	// Tenant, when set, must equal the segment's tenant (ErrTenantMismatch).
	Tenant string
	// AllowPlaintext accepts segments without encryption (cipher suite
	// none). Default false: such a segment authenticates nothing, so anyone
	// who can write a file could forge records; Open refuses it with
	// ErrPlaintext. Only a store opened in plaintext mode sets it.
	AllowPlaintext bool
}

// Reader reads one segment. Metadata needs no key; bodies need Unlock.
// A Reader is safe for concurrent use once opened and unlocked.
type Reader struct {
	f    vfs.File
	path string
	// size is the file size last seen; an unsealed segment may grow while
	// it is read (the engine reads its active segment), so readFrame
	// refreshes it before calling a frame truncated.
	size   int64
	sizeMu sync.Mutex // guards size after Open
	hdr    *Header
	blocks []BlockInfo
	sealed bool
	// tailErr is the first invalid frame found by a scan (torn tail or
	// corruption); validEnd is where the valid prefix ends.
	tailErr  error
	validEnd int64
	// midCorrupt: a valid frame exists after the bad one, so the damage is not
	// a torn tail and truncating would lose data.
	midCorrupt bool
	footerErr  error
	bc         *blockCipher
	// slotChecked: the v2 slot MAC was verified with the segment's DEK.
	slotChecked atomic.Bool
}

// Open reads a segment's header and block index: from the footer when the
// segment is sealed, else by scanning every frame.
func Open(path string, o *ReadOptions) (*Reader, error) {
	var opts ReadOptions
	if o != nil {
		opts = *o
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	f, err := opts.FS.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := newReader(f, path, &opts)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return r, nil
}

func newReader(f vfs.File, path string, opts *ReadOptions) (*Reader, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	r := &Reader{f: f, path: path, size: size}
	raw := make([]byte, min(size, HeaderSize))
	if _, err := f.ReadAt(raw, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	h, err := decodePreamble(raw, path)
	if err != nil {
		return nil, err
	}
	if len(raw) < HeaderSize {
		return nil, corruptf(ErrCorrupt, path, 0, -1, "file is %d bytes, shorter than the %d-byte header", size, HeaderSize)
	}
	if h.Cipher == CipherNone && !opts.AllowPlaintext {
		return nil, errorf(ErrPlaintext, "%s", path)
	}
	if err := chooseSlot(h, raw, path); err != nil {
		return nil, err
	}
	r.hdr = h
	if opts.Tenant != "" && opts.Tenant != h.Tenant {
		return nil, errorf(ErrTenantMismatch, "%s belongs to tenant %q, not %q", path, h.Tenant, opts.Tenant)
	}
	if err := r.loadFooter(); err != nil {
		r.footerErr = err
		r.scan()
	}
	return r, nil
}

// loadFooter reads the block index from a sealed segment's footer.
func (r *Reader) loadFooter() error {
	if r.size < HeaderSize+trailerSize {
		return errNoTrailer
	}
	t := make([]byte, trailerSize)
	if _, err := r.f.ReadAt(t, r.size-trailerSize); err != nil {
		return err
	}
	if string(t[16:24]) != trailerMagic {
		return errNoTrailer
	}
	if crc(t[:12]) != binary.LittleEndian.Uint32(t[12:]) {
		return corruptf(ErrCorrupt, r.path, r.size-trailerSize, -1, "trailer checksum mismatch")
	}
	off := int64(binary.LittleEndian.Uint64(t[0:]))
	flen := int64(binary.LittleEndian.Uint32(t[8:]))
	if off < HeaderSize || flen < 12 || off+flen != r.size-trailerSize || (flen-12)%footerEntry != 0 {
		return corruptf(ErrCorrupt, r.path, r.size-trailerSize, -1, "trailer points outside the file")
	}
	if err := r.checkFooterHead(off, flen); err != nil {
		return err
	}
	b := make([]byte, flen)
	if _, err := r.f.ReadAt(b, off); err != nil {
		return err
	}
	if string(b[:4]) != footerMagic || crc(b[:flen-4]) != binary.LittleEndian.Uint32(b[flen-4:]) {
		return corruptf(ErrCorrupt, r.path, off, -1, "footer checksum mismatch")
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if int64(n) != (flen-12)/footerEntry {
		return corruptf(ErrCorrupt, r.path, off, -1, "footer block count %d disagrees with its length", n)
	}
	blocks := make([]BlockInfo, n)
	prevEnd := int64(HeaderSize)
	for i := range blocks {
		e := b[8+i*footerEntry:]
		bi := BlockInfo{Seq: uint64(i), Offset: int64(binary.LittleEndian.Uint64(e)), Records: int(binary.LittleEndian.Uint32(e[8:])),
			MinTime: int64(binary.LittleEndian.Uint64(e[12:])), MaxTime: int64(binary.LittleEndian.Uint64(e[20:]))}
		if (i == 0 && bi.Offset != HeaderSize) || bi.Offset < prevEnd || bi.Offset >= off {
			return corruptf(ErrCorrupt, r.path, off, -1, "footer entry %d offset %d out of order", i, bi.Offset)
		}
		if i > 0 {
			blocks[i-1].Length = bi.Offset - blocks[i-1].Offset
		}
		prevEnd = bi.Offset + frameHdrSize
		blocks[i] = bi
	}
	if n > 0 {
		blocks[n-1].Length = off - blocks[n-1].Offset
	} else if off != HeaderSize {
		return corruptf(ErrCorrupt, r.path, off, -1, "empty footer not at the header's end")
	}
	r.blocks, r.sealed, r.validEnd = blocks, true, off
	return nil
}

var errNoTrailer = errors.New("no trailer")

// checkFooterHead reads a footer's magic and block count before the footer
// is read whole: the count must match the length, and fit the blocks that
// the bytes before the footer can hold, so a planted trailer cannot make a
// reader allocate gigabytes.
func (r *Reader) checkFooterHead(off, flen int64) error {
	var h [8]byte
	if _, err := r.f.ReadAt(h[:], off); err != nil {
		return err
	}
	n := int64(binary.LittleEndian.Uint32(h[4:]))
	maxBlocks := (off - HeaderSize) / (frameHdrSize + frameCRCSize)
	if string(h[:4]) != footerMagic || 12+n*footerEntry != flen || n > maxBlocks {
		return corruptf(ErrCorrupt, r.path, off, -1, "footer header does not match its length")
	}
	return nil
}

// scan walks the frames from the header to the first invalid one.
func (r *Reader) scan() {
	off := int64(HeaderSize)
	var blocks []BlockInfo
	for off < r.size {
		h, frame, err := r.readFrame(off, uint64(len(blocks)))
		putBuf(frame)
		if err != nil {
			if r.isFooterAt(off) {
				break
			}
			r.tailErr = err
			r.midCorrupt = r.validFrameAfter(off + 1)
			break
		}
		blocks = append(blocks, BlockInfo{Seq: h.seq, Offset: off, Length: h.frameLen(), Records: int(h.records),
			MinTime: h.minTime, MaxTime: h.maxTime, Codec: h.codec, MetaLen: int(h.metaLen), RawLen: int(h.rawLen), BodyLen: int(h.bodyLen)})
		off += h.frameLen()
	}
	r.blocks, r.validEnd = blocks, off
}

// isFooterAt reports whether a well-formed footer and trailer end the file at
// off: a sealed segment whose trailer was damaged is still fully readable.
func (r *Reader) isFooterAt(off int64) bool {
	flen := r.size - trailerSize - off
	if flen < 12 || flen > 1<<30 || (flen-12)%footerEntry != 0 || r.checkFooterHead(off, flen) != nil {
		return false
	}
	b := make([]byte, flen)
	if _, err := r.f.ReadAt(b, off); err != nil {
		return false
	}
	return string(b[:4]) == footerMagic && crc(b[:flen-4]) == binary.LittleEndian.Uint32(b[flen-4:])
}

// validFrameAfter searches for an intact frame header of this segment at or
// after off.
func (r *Reader) validFrameAfter(off int64) bool {
	const chunk = 1 << 20
	buf := make([]byte, chunk+frameHdrSize)
	for ; off < r.size; off += chunk {
		n, err := r.f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return false
		}
		b := buf[:n]
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(blockMagic))
			if j < 0 {
				break
			}
			i += j
			if h, err := parseFrameHeader(b[i:], r.hdr.Cipher, r.hdr.Version); err == nil && h.id == r.hdr.ID {
				return true
			}
			i++
		}
	}
	return false
}

// readFrame reads and checks the frame at off: checksums, segment identity and
// expected sequence. It does not decrypt. The frame comes from a pool: the
// caller returns it with putBuf once nothing aliases it.
func (r *Reader) currentSize(atLeast int64) int64 {
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	if atLeast > r.size && !r.sealed {
		if n, err := r.f.Size(); err == nil {
			r.size = n
		}
	}
	return r.size
}

func (r *Reader) readFrame(off int64, wantSeq uint64) (frameHeader, []byte, error) {
	blk := int(wantSeq)
	var hb [frameHdrSize]byte
	size := r.currentSize(off + frameHdrSize)
	if off+frameHdrSize > size {
		return frameHeader{}, nil, corruptf(ErrCorrupt, r.path, off, blk, "truncated frame header")
	}
	if _, err := r.f.ReadAt(hb[:], off); err != nil {
		return frameHeader{}, nil, err
	}
	h, err := parseFrameHeader(hb[:], r.hdr.Cipher, r.hdr.Version)
	if err != nil {
		return h, nil, corruptf(ErrCorrupt, r.path, off, blk, "%v", err)
	}
	if off+h.frameLen() > size {
		size = r.currentSize(off + h.frameLen())
	}
	if off+h.frameLen() > size {
		return h, nil, corruptf(ErrCorrupt, r.path, off, blk, "frame of %d bytes runs past the end of the file", h.frameLen())
	}
	frame := getBuf(int(h.frameLen()))
	fail := func(err error) (frameHeader, []byte, error) {
		putBuf(frame)
		return h, nil, err
	}
	if _, err := r.f.ReadAt(frame, off); err != nil {
		return fail(err)
	}
	body := frame[:len(frame)-frameCRCSize]
	if crc(body) != binary.LittleEndian.Uint32(frame[len(body):]) {
		return fail(corruptf(ErrCorrupt, r.path, off, blk, "frame checksum mismatch"))
	}
	if h.id != r.hdr.ID {
		return fail(corruptf(ErrForeignBlock, r.path, off, blk, "frame belongs to segment %x", h.id[:]))
	}
	if h.seq != wantSeq {
		return fail(corruptf(ErrBlockOrder, r.path, off, blk, "frame has sequence %d, expected %d", h.seq, wantSeq))
	}
	return h, body, nil
}

// Header returns the decoded header.
func (r *Reader) Header() Header { return *r.hdr }

// Path is the file path.
func (r *Reader) Path() string { return r.path }

// Size is the file size.
func (r *Reader) Size() int64 { return r.currentSize(0) }

// Blocks returns the block index.
func (r *Reader) Blocks() []BlockInfo { return r.blocks }

// Sealed reports whether the segment has an intact footer.
func (r *Reader) Sealed() bool { return r.sealed }

// TailError is the error that ended the scan of an unsealed segment, or nil.
func (r *Reader) TailError() error { return r.tailErr }

// MidCorrupt reports whether the damage TailError describes has intact
// frames after it: not a torn tail, so cutting there would lose blocks.
func (r *Reader) MidCorrupt() bool { return r.midCorrupt }

// FooterError is why the footer could not be used (nil when sealed).
func (r *Reader) FooterError() error {
	if errors.Is(r.footerErr, errNoTrailer) {
		return nil
	}
	return r.footerErr
}

// Unlock supplies the DEK, checked against the key commitment first so that a
// wrong key is reported as ErrWrongKey rather than as corruption.
func (r *Reader) Unlock(dek []byte) error {
	if r.hdr.Cipher == CipherNone {
		return nil
	}
	if err := r.hdr.CheckKey(dek); err != nil {
		return err
	}
	bc, err := newBlockCipher(r.hdr, dek)
	if err != nil {
		return err
	}
	r.bc.close()
	r.bc = bc
	return nil
}

// checkKeyOnce checks dek against the commitment on every call (a caller may
// hold another key) and the v2 slot MAC once per reader: the slot does not
// change under an open reader (a rewrap invalidates the engine's readers).
func (r *Reader) checkKeyOnce(dek []byte) error {
	if err := checkCommitment(r.hdr, dek); err != nil {
		return err
	}
	if r.slotChecked.Load() {
		return nil
	}
	if err := checkSlotMAC(r.hdr, dek); err != nil {
		return err
	}
	r.slotChecked.Store(true)
	return nil
}

// Unlocked reports whether bodies can be read.
func (r *Reader) Unlocked() bool { return r.hdr.Cipher == CipherNone || r.bc != nil }

// Close releases the file and zeroes the block key.
func (r *Reader) Close() error {
	r.bc.close()
	r.bc = nil
	return r.f.Close()
}

// Block is one decoded block. Meta and Data alias buffers owned by the Block.
type Block struct {
	Info BlockInfo
	Meta [][]byte
	Data [][]byte // nil when read with ReadMeta
	raw  []byte   // the decompressed body Data aliases
}

// Release recycles the block's decrypted body and zeroes it. Data must not be
// used afterwards. Calling it is optional (an optimisation of the read path).
func (b *Block) Release() {
	if b.raw == nil {
		return
	}
	zero(b.raw)
	putBuf(b.raw)
	b.raw, b.Data = nil, nil
}

// ReadMeta returns the plaintext metadata of block i, checksum-verified; it
// needs no key. (Its authenticity is proven only by ReadBlock.)
func (r *Reader) ReadMeta(i int) (*Block, error) {
	if i < 0 || i >= len(r.blocks) {
		return nil, errorf(ErrNotFound, "%s has no block %d", r.path, i)
	}
	return r.readAt(r.blocks[i].Offset, uint64(i), false)
}

// ReadMetaSectionAt returns the plaintext metadata of the block with
// sequence seq at file offset off, reading only the frame header and the
// metadata section, not the body. The header's checksum, segment id and
// sequence are checked, but not the frame checksum, which covers the body:
// the caller must check the section itself (the engine compares its hash
// with the one its index recorded). It needs no key.
func (r *Reader) ReadMetaSectionAt(off int64, seq uint64) (*Block, error) {
	if off < HeaderSize {
		return nil, errorf(ErrNotFound, "%s: offset %d is inside the header", r.path, off)
	}
	blk := int(seq)
	var hb [frameHdrSize]byte
	if off+frameHdrSize > r.currentSize(off+frameHdrSize) {
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "truncated frame header")
	}
	if _, err := r.f.ReadAt(hb[:], off); err != nil {
		return nil, err
	}
	h, err := parseFrameHeader(hb[:], r.hdr.Cipher, r.hdr.Version)
	switch {
	case err != nil:
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "%v", err)
	case h.id != r.hdr.ID:
		return nil, corruptf(ErrForeignBlock, r.path, off, blk, "frame belongs to segment %x", h.id[:])
	case h.seq != seq:
		return nil, corruptf(ErrBlockOrder, r.path, off, blk, "frame has sequence %d, expected %d", h.seq, seq)
	case off+h.frameLen() > r.currentSize(off+h.frameLen()):
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "frame of %d bytes runs past the end of the file", h.frameLen())
	}
	meta := make([]byte, h.metaLen)
	if _, err := r.f.ReadAt(meta, off+frameHdrSize); err != nil {
		return nil, err
	}
	metas, err := metaSection(h, meta)
	if err != nil {
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "metadata section: %v", err)
	}
	info := BlockInfo{Seq: seq, Offset: off, Length: h.frameLen(), Records: int(h.records), MinTime: h.minTime, MaxTime: h.maxTime,
		Codec: h.codec, MetaLen: int(h.metaLen), RawLen: int(h.rawLen), BodyLen: int(h.bodyLen)}
	return &Block{Info: info, Meta: metas}, nil
}

// ReadBlock decrypts and returns block i.
func (r *Reader) ReadBlock(i int) (*Block, error) {
	if i < 0 || i >= len(r.blocks) {
		return nil, errorf(ErrNotFound, "%s has no block %d", r.path, i)
	}
	return r.readAt(r.blocks[i].Offset, uint64(i), true)
}

// ReadBlockAt decrypts the block with sequence seq at file offset off (a
// locator from an index), without consulting the block list.
func (r *Reader) ReadBlockAt(off int64, seq uint64) (*Block, error) {
	return r.readAt(off, seq, true)
}

// ReadRecord returns record idx of the block at (off, seq), decrypting only
// that block.
func (r *Reader) ReadRecord(off int64, seq uint64, idx int) (Entry, error) {
	b, err := r.readAt(off, seq, true)
	if err != nil {
		return Entry{}, err
	}
	if idx < 0 || idx >= len(b.Data) {
		return Entry{}, errorf(ErrNotFound, "%s block %d has no record %d", r.path, seq, idx)
	}
	// Entry.Time is not stored per record; the metadata carries it.
	return Entry{Meta: b.Meta[idx], Data: b.Data[idx]}, nil
}

// ReadBlockWith decrypts the block at (off, seq) with dek, checked against the
// key commitment, without storing the key in the Reader: a caller that must
// re-validate its key on every read (the engine's DEK cache) uses this.
func (r *Reader) ReadBlockWith(dek []byte, off int64, seq uint64) (*Block, error) {
	if r.hdr.Cipher == CipherNone {
		return r.readAt(off, seq, true)
	}
	if err := r.checkKeyOnce(dek); err != nil {
		return nil, err
	}
	bc, err := newBlockCipher(r.hdr, dek)
	if err != nil {
		return nil, err
	}
	defer bc.close()
	return r.readAtWith(bc, off, seq, true)
}

func (r *Reader) readAt(off int64, seq uint64, decrypt bool) (*Block, error) {
	return r.readAtWith(r.bc, off, seq, decrypt)
}

func (r *Reader) readAtWith(bc *blockCipher, off int64, seq uint64, decrypt bool) (*Block, error) {
	if off < HeaderSize {
		return nil, errorf(ErrNotFound, "%s: offset %d is inside the header", r.path, off)
	}
	h, frame, err := r.readFrame(off, seq)
	if err != nil {
		return nil, err
	}
	defer func() { zero(frame); putBuf(frame) }() // everything returned is copied out of it
	blk := int(seq)
	info := BlockInfo{Seq: seq, Offset: off, Length: h.frameLen(), Records: int(h.records), MinTime: h.minTime, MaxTime: h.maxTime,
		Codec: h.codec, MetaLen: int(h.metaLen), RawLen: int(h.rawLen), BodyLen: int(h.bodyLen)}
	metaEnd := frameHdrSize + int(h.metaLen)
	metas, err := metaSection(h, frame[frameHdrSize:metaEnd])
	if err != nil {
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "metadata section: %v", err)
	}
	b := &Block{Info: info, Meta: metas}
	if !decrypt {
		return b, nil
	}
	body := frame[metaEnd:]
	if r.hdr.Cipher == CipherAES256GCM {
		if bc == nil {
			return nil, errorf(ErrLocked, "%s", r.path)
		}
		aad := bc.aad(nil, frame[:metaEnd])
		nonce := nonceFor(seq)
		// Open in place: body is ours.
		body, err = bc.aead.Open(body[:0], nonce[:], body, aad)
		if err != nil {
			return nil, corruptf(ErrAuth, r.path, off, blk, "AES-GCM open failed: the block or its metadata was altered")
		}
	}
	raw, err := Decompress(h.codec, getBuf(int(h.rawLen))[:0], body, int(h.rawLen))
	if err != nil {
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "decompress: %v", err)
	}
	b.Data, err = splitRecords(raw, int(h.records))
	if err != nil {
		putBuf(raw)
		return nil, corruptf(ErrCorrupt, r.path, off, blk, "body: %v", err)
	}
	b.raw = raw
	return b, nil
}
