package segment

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// These tests attack a version-2 segment as someone who can write the file
// but holds no key: every parameter that changes how bytes are read must be
// authenticated, so a forged one is refused, never served.

func recomputePreambleCRC(b []byte) {
	binary.LittleEndian.PutUint32(b[crcOffsetTail:], crc(b[:crcOffsetTail]))
}

func recomputeSlotCRC(b []byte, slot int) {
	s := b[preambleSize+slot*slotSize:]
	binary.LittleEndian.PutUint32(s[crcOffsetTail:], crc(s[:crcOffsetTail]))
}

func authSegment(t *testing.T) (*vfs.MemFS, string) {
	fs := vfs.NewMem()
	rng := rand.New(rand.NewSource(7))
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: [][]Entry{makeEntries(rng, 3, 40), makeEntries(rng, 2, 40)}, seal: true})
	return fs, path
}

// TestPlaintextSegmentRefused is finding 1: a segment with cipher suite 0
// carries no authentication, so a reader that did not ask for plaintext
// refuses it with a typed error, and so does Recover.
func TestPlaintextSegmentRefused(t *testing.T) {
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherNone, blocks: [][]Entry{makeEntries(rand.New(rand.NewSource(1)), 2, 10)}, seal: true})
	_, err := Open(path, &ReadOptions{FS: fs})
	require.ErrorIs(t, err, ErrPlaintext)
	_, err = Recover(path, &ReadOptions{FS: fs})
	require.ErrorIs(t, err, ErrPlaintext)
	r, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
	require.NoError(t, err)
	require.NoError(t, r.Close())
}

// TestPreambleFieldsAuthenticated flips each preamble field of a v2 segment
// and recomputes the CRC: the block AAD covers the preamble, so decryption
// fails (or the plaintext policy refuses a downgraded cipher suite).
func TestPreambleFieldsAuthenticated(t *testing.T) {
	fs, path := authSegment(t)
	cases := map[string]func(b []byte){
		"version=1":     func(b []byte) { binary.LittleEndian.PutUint16(b[8:], Version1) },
		"created":       func(b []byte) { b[33] ^= 1 },
		"commitment":    func(b []byte) { b[41] ^= 1 },
		"tenant":        func(b []byte) { b[74] ^= 0x20 },
		"cipher=none":   func(b []byte) { binary.LittleEndian.PutUint16(b[10:], uint16(CipherNone)) },
		"tenant-length": func(b []byte) { b[72]-- },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := messWith(t, fs, path, func(b []byte) []byte { mutate(b); recomputePreambleCRC(b); return b })
			_, _, err := readAll(m, path, testDEK)
			require.Error(t, err, "a forged preamble must not decrypt")
			if name == "cipher=none" {
				_, err := Open(path, &ReadOptions{FS: m})
				require.ErrorIs(t, err, ErrPlaintext)
			}
		})
	}
}

// TestSlotGenerationAuthenticated is finding 8: a slot rewritten with a higher
// generation (CRC fixed) fails its MAC.
func TestSlotGenerationAuthenticated(t *testing.T) {
	fs, path := authSegment(t)
	m := messWith(t, fs, path, func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[preambleSize+4:], 99)
		recomputeSlotCRC(b, 0)
		return b
	})
	r, err := Open(path, &ReadOptions{FS: m})
	require.NoError(t, err, "the CRC is intact: only the key holder can tell")
	require.Equal(t, uint64(99), r.Header().Slot.Generation)
	require.ErrorIs(t, r.Unlock(testDEK), ErrKeySlot)
	_, err = r.ReadBlockWith(testDEK, HeaderSize, 0)
	require.ErrorIs(t, err, ErrKeySlot)
	require.ErrorIs(t, r.Header().CheckKey(testDEK), ErrKeySlot)

	// A slot copied from another segment (same key URI, same DEK even) is
	// refused too: its MAC covers the other segment's preamble.
	other := writeSeg(t, segSpec{fs: fs, path: "/other.lss", cipher: CipherAES256GCM, blocks: [][]Entry{makeEntries(rand.New(rand.NewSource(2)), 1, 5)}, seal: true})
	ob, err := fs.Bytes(other)
	require.NoError(t, err)
	m = messWith(t, fs, path, func(b []byte) []byte {
		copy(b[preambleSize:preambleSize+slotSize], ob[preambleSize:preambleSize+slotSize])
		return b
	})
	r, err = Open(path, &ReadOptions{FS: m})
	require.NoError(t, err)
	require.ErrorIs(t, r.Unlock(testDEK), ErrKeySlot)
}

// TestRewrittenSlotAuthenticated: a rewrap writes a slot with a valid MAC,
// and the digest ignores key slots (a rewrap does not change it) but sees
// every other byte.
func TestRewrittenSlotAuthenticated(t *testing.T) {
	fs, path := authSegment(t)
	r, err := Open(path, &ReadOptions{FS: fs})
	require.NoError(t, err)
	before, err := r.Digest()
	require.NoError(t, err)
	require.NoError(t, r.Close())

	_, err = RewriteKeySlot(path, fs, "local://next", []byte("wrapped-again"), testDEK)
	require.NoError(t, err)
	_, err = RewriteKeySlot(path, fs, "local://other", []byte("x"), []byte("0123456789abcdef0123456789abcdef"))
	require.ErrorIs(t, err, ErrWrongKey, "a rewrap needs the segment's own DEK")
	got, r, err := readAll(fs, path, testDEK)
	require.NoError(t, err)
	require.Len(t, got, 5)
	require.Equal(t, uint64(2), r.Header().Slot.Generation)

	r, err = Open(path, &ReadOptions{FS: fs})
	require.NoError(t, err)
	after, err := r.Digest()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, before, after)

	for _, off := range []int64{5, HeaderSize + 3, -30} {
		m := messWith(t, fs, path, func(b []byte) []byte {
			if off < 0 {
				off += int64(len(b))
			}
			b[off] ^= 1
			return b
		})
		r, err := Open(path, &ReadOptions{FS: m})
		if err != nil {
			continue // refused outright is fine too
		}
		d, err := r.Digest()
		require.NoError(t, err)
		require.NotEqual(t, before, d, "offset %d", off)
		require.NoError(t, r.Close())
	}
}

// TestSealedDigestPredictsRecover: the digest of an unsealed segment as
// Recover would seal it equals the digest after Recover, and a sealed
// segment's SealedDigest is its Digest.
func TestSealedDigestPredictsRecover(t *testing.T) {
	fs := vfs.NewMem()
	rng := rand.New(rand.NewSource(11))
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: [][]Entry{makeEntries(rng, 3, 40), makeEntries(rng, 2, 40)}})
	r, err := Open(path, &ReadOptions{FS: fs})
	require.NoError(t, err)
	want, err := r.SealedDigest()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	_, err = Recover(path, &ReadOptions{FS: fs})
	require.NoError(t, err)
	r, err = Open(path, &ReadOptions{FS: fs})
	require.NoError(t, err)
	defer r.Close()
	got, err := r.Digest()
	require.NoError(t, err)
	require.Equal(t, want, got)
	again, err := r.SealedDigest()
	require.NoError(t, err)
	require.Equal(t, got, again)
}
