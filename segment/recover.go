package segment

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/logstore/logstore/vfs"
)

// RecoverResult says what Recover did.
type RecoverResult struct {
	Blocks         int   // valid blocks kept
	TruncatedBytes int64 // torn tail removed
	Sealed         bool  // Recover wrote the footer
	AlreadySealed  bool
}

// Recover makes an unsealed segment (left by a crash or an abandoned writer)
// final: the torn tail after the last valid block is truncated and a footer is
// written, so the segment is never appended to again under its DEK.
//
// If an intact frame follows the damaged one, the damage is not a torn tail
// and Recover refuses (ErrCorrupt) rather than cut acknowledged blocks off.
// The caller decides whether this segment may be cut at all: only the active
// segment of a crashed writer may (the engine's manifest says which).
// Options are those of Open (nil: defaults, which refuse plaintext).
func Recover(path string, o *ReadOptions) (RecoverResult, error) {
	return RecoverBlocks(path, o, -1)
}

// RecoverBlocks is Recover that also cuts every block after the first keep
// (keep < 0: none). The engine's writer uses it when a write or fsync fails:
// the blocks of the failed, unacknowledged write are cut, not kept, since
// copies of the acknowledged records among them are elsewhere (its journal).
func RecoverBlocks(path string, o *ReadOptions, keep int) (RecoverResult, error) {
	var opts ReadOptions
	if o != nil {
		opts = *o
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return RecoverResult{}, err
	}
	defer f.Close()
	r, err := newReader(f, path, &opts)
	if err != nil {
		return RecoverResult{}, err
	}
	if r.sealed {
		return RecoverResult{Blocks: len(r.blocks), AlreadySealed: true}, nil
	}
	blocks, end := r.blocks, r.validEnd
	if keep >= 0 && keep < len(blocks) {
		blocks, end = blocks[:keep], blocks[keep].Offset
	} else if r.midCorrupt {
		return RecoverResult{Blocks: len(r.blocks)}, fmt.Errorf("%w (intact blocks follow it; not truncating)", r.tailErr)
	}
	res := RecoverResult{Blocks: len(blocks), TruncatedBytes: r.size - end, Sealed: true}
	if err := f.Truncate(end); err != nil {
		return res, err
	}
	if _, err := f.Write(appendFooter(nil, blocks)); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, err
	}
	return res, nil
}

// RewriteKeySlot stores a new wrapped copy of the segment's DEK (after a
// rewrap to another key) without touching any block:
//
//  1. the inactive slot gets generation+1 and is synced: a crash before or
//     during this write leaves the old slot active (a torn slot fails its CRC
//     and is ignored);
//  2. the old slot is zeroed and synced, so the old key is no longer needed.
//     A crash before this leaves both valid and the higher generation wins.
//
// It is idempotent: if the active slot already names keyURI it only finishes
// step 2. dek is the segment's data key: it is checked against the key
// commitment and keys the new slot's MAC (version 2). The caller proves that
// wrapped unwraps to dek before calling. A version-1 segment's new slot is
// written in the version-2 slot format only if the whole segment were v2, so
// v1 slots stay v1 (unauthenticated; the engine's manifest records their
// generation).
func RewriteKeySlot(path string, fs vfs.FS, keyURI string, wrapped, dek []byte) (KeySlot, error) {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return KeySlot{}, err
	}
	defer f.Close()
	raw := make([]byte, HeaderSize)
	if _, err := f.ReadAt(raw, 0); err != nil {
		return KeySlot{}, err
	}
	h, err := decodePreamble(raw, path)
	if err != nil {
		return KeySlot{}, err
	}
	if h.Cipher == CipherNone {
		return KeySlot{}, errorf(ErrInvalidArgument, "%s is a plaintext segment", path)
	}
	if err := chooseSlot(h, raw, path); err != nil {
		return KeySlot{}, err
	}
	if err := checkCommitment(h, dek); err != nil {
		return KeySlot{}, err
	}
	active := h.SlotIndex
	cur := h.Slot
	target := active
	if cur.KeyURI != keyURI {
		target = 1 - active
		next := KeySlot{Generation: cur.Generation + 1, KeyURI: keyURI, Wrapped: wrapped}
		b, err := encodeSlot(h, next, dek)
		if err != nil {
			return KeySlot{}, err
		}
		if _, err := f.WriteAt(b, int64(preambleSize+target*slotSize)); err != nil {
			return KeySlot{}, err
		}
		if err := f.Sync(); err != nil {
			return KeySlot{}, err
		}
		cur = next
	}
	other := int64(preambleSize + (1-target)*slotSize)
	if string(raw[other:other+slotSize]) != string(emptySlot) || target != active {
		if _, err := f.WriteAt(emptySlot, other); err != nil {
			return KeySlot{}, err
		}
		if err := f.Sync(); err != nil {
			return KeySlot{}, err
		}
	}
	return cur, nil
}

// Digest is the SHA-256 of the segment's bytes other than its key slots
// (which a rewrap rewrites): the preamble and everything from HeaderSize to
// the end of the file. A manifest records it when the segment is sealed, so
// a replaced or edited segment is detected even where no key is at hand.
func (r *Reader) Digest() ([32]byte, error) { return r.digest(r.Size(), nil) }

// SealedDigest is the Digest the segment would have once Recover sealed it
// (its valid blocks followed by their footer), computed without writing: a
// caller can check it against a recorded digest before letting Recover
// touch the file.
func (r *Reader) SealedDigest() ([32]byte, error) {
	if r.sealed {
		return r.Digest()
	}
	return r.digest(r.validEnd, appendFooter(nil, r.blocks))
}

// digest hashes the preamble, the file from HeaderSize to end, then tail.
func (r *Reader) digest(end int64, tail []byte) ([32]byte, error) {
	var out [32]byte
	h := sha256.New()
	buf := getBuf(1 << 20)
	defer putBuf(buf)
	for _, rg := range [][2]int64{{0, preambleSize}, {HeaderSize, end}} {
		for off := rg[0]; off < rg[1]; {
			n := min(int64(len(buf)), rg[1]-off)
			if _, err := r.f.ReadAt(buf[:n], off); err != nil {
				return out, err
			}
			h.Write(buf[:n])
			off += n
		}
	}
	h.Write(tail)
	copy(out[:], h.Sum(nil))
	return out, nil
}

// BlockProblem names one bad block found by Verify.
type BlockProblem struct {
	Block  int
	Offset int64
	Err    error
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Blocks        int
	Records       int
	Authenticated bool // bodies were decrypted and authenticated, not only checksummed
	Sealed        bool
	Problems      []BlockProblem
}

// Verify checks every block's checksums and, when the reader is unlocked,
// its authentication and decompression. Problems name each bad block.
func (r *Reader) Verify() VerifyResult {
	res := VerifyResult{Blocks: len(r.blocks), Authenticated: r.Unlocked(), Sealed: r.sealed}
	if err := r.FooterError(); err != nil {
		res.Problems = append(res.Problems, BlockProblem{Block: -1, Offset: r.size - trailerSize, Err: err})
	}
	for i, b := range r.blocks {
		blk, err := r.readAt(b.Offset, uint64(i), res.Authenticated)
		if err != nil {
			res.Problems = append(res.Problems, BlockProblem{Block: i, Offset: b.Offset, Err: err})
			continue
		}
		if blk.Info.Records != b.Records && r.sealed {
			res.Problems = append(res.Problems, BlockProblem{Block: i, Offset: b.Offset,
				Err: corruptf(ErrCorrupt, r.path, b.Offset, i, "footer says %d records, block has %d", b.Records, blk.Info.Records)})
		}
		res.Records += blk.Info.Records
	}
	if r.tailErr != nil {
		var ce *CorruptionError
		p := BlockProblem{Block: len(r.blocks), Offset: r.validEnd, Err: r.tailErr}
		if errors.As(r.tailErr, &ce) {
			p.Block = ce.Block
		}
		res.Problems = append(res.Problems, p)
	}
	return res
}
