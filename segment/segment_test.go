package segment

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

func TestRoundTripSizesAndCodecs(t *testing.T) {
	sizes := map[string][]int{"0B": {0}, "1B": {1}, "1KiB": {1 << 10}, "1MiB": {1 << 20}, "mixed": {0, 1, 100, 1 << 10, 70_000, 3}}
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		for name, sz := range sizes {
			for _, seal := range []bool{true, false} {
				t.Run(codec.String()+"/"+name, func(t *testing.T) {
					rng := rand.New(rand.NewSource(1))
					n := 5
					if sz[0] == 1<<20 {
						n = 2
					}
					blocks := [][]Entry{makeEntries(rng, n, sz...), makeEntries(rng, 1, sz...), makeEntries(rng, n*2, sz...)}
					fs := vfs.NewMem()
					path := writeSeg(t, segSpec{fs: fs, codec: codec, cipher: CipherAES256GCM, blocks: blocks, seal: seal})
					got, r, err := readAll(fs, path, testDEK)
					require.NoError(t, err)
					require.Equal(t, seal, r.Sealed())
					want := flatten(blocks)
					require.Len(t, got, len(want))
					for i := range want {
						require.Equal(t, want[i].Meta, got[i].Meta, "meta %d", i)
						require.True(t, bytes.Equal(want[i].Data, got[i].Data), "data %d differs", i)
					}
				})
			}
		}
	}
}

func TestRandomAccessRecord(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	blocks := [][]Entry{makeEntries(rng, 3, 10), makeEntries(rng, 4, 20), makeEntries(rng, 2, 30)}
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: blocks, seal: true})
	r, err := Open(path, &ReadOptions{FS: fs, Tenant: testTenant})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.ReadBlock(1)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, r.Unlock(testDEK))
	bi := r.Blocks()[1]
	e, err := r.ReadRecord(bi.Offset, bi.Seq, 2)
	require.NoError(t, err)
	require.Equal(t, blocks[1][2].Data, e.Data)
	require.Equal(t, blocks[1][2].Meta, e.Meta)
	_, err = r.ReadRecord(bi.Offset, bi.Seq, 9)
	require.ErrorIs(t, err, ErrNotFound)
	// A locator naming the wrong sequence for an offset is rejected.
	_, err = r.ReadRecord(bi.Offset, 0, 0)
	require.ErrorIs(t, err, ErrBlockOrder)
	// Metadata needs no key: a fresh reader, never unlocked.
	r2, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
	require.NoError(t, err)
	defer r2.Close()
	m, err := r2.ReadMeta(2)
	require.NoError(t, err)
	require.Equal(t, blocks[2][1].Meta, m.Meta[1])
	require.Equal(t, blocks[2][0].Time, r2.Blocks()[2].MinTime)
}

func TestPlaintextBaseline(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	blocks := [][]Entry{makeEntries(rng, 3, 100)}
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherNone, blocks: blocks, seal: true})
	got, r, err := readAll(fs, path, nil)
	require.NoError(t, err)
	require.Equal(t, CipherNone, r.Header().Cipher)
	require.Equal(t, blocks[0][2].Data, got[2].Data)
	_, err = Create("/x", Params{Tenant: "t", Cipher: CipherNone, FS: fs, DEK: testDEK})
	require.ErrorIs(t, err, ErrInvalidArgument, "a plaintext segment must not silently drop a key it was given")
}

func TestWriterRejectsBadInput(t *testing.T) {
	fs := vfs.NewMem()
	_, err := Create("/a", Params{Tenant: "", Cipher: CipherAES256GCM, FS: fs, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = Create("/a", Params{Tenant: "t", Cipher: CipherAES256GCM, FS: fs, DEK: testDEK[:16], KeyURI: testURI, Wrapped: testWrap})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = Create("/a", Params{Tenant: "t", Cipher: CipherAES256GCM, FS: fs, DEK: testDEK})
	require.ErrorIs(t, err, ErrInvalidArgument, "no key URI")
	w, err := Create("/a", Params{Tenant: "t", Cipher: CipherAES256GCM, FS: fs, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap})
	require.NoError(t, err)
	_, err = w.Append(nil)
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.NoError(t, w.Seal())
	_, err = w.Append([]Entry{{Data: []byte("x")}})
	require.ErrorIs(t, err, ErrSealed)
	require.NoError(t, w.Close())
}

func TestWrongKeySwappedForeignTenant(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	blocks := [][]Entry{makeEntries(rng, 2, 50), makeEntries(rng, 2, 60), makeEntries(rng, 2, 70)}
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: blocks, seal: false})

	t.Run("wrong key", func(t *testing.T) {
		_, _, err := readAll(fs, path, testOther)
		require.ErrorIs(t, err, ErrWrongKey)
		require.NotErrorIs(t, err, ErrCorrupt)
	})
	t.Run("other tenant", func(t *testing.T) {
		_, err := Open(path, &ReadOptions{FS: fs, Tenant: "globex"})
		require.ErrorIs(t, err, ErrTenantMismatch)
	})
	r, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
	require.NoError(t, err)
	bl := r.Blocks()
	require.NoError(t, r.Close())
	orig, _ := fs.Bytes(path)
	frame := func(i int) []byte { return orig[bl[i].Offset : bl[i].Offset+bl[i].Length] }

	t.Run("swapped blocks", func(t *testing.T) {
		mfs := messWith(t, fs, path, func(b []byte) []byte {
			out := append([]byte(nil), b[:bl[0].Offset]...)
			out = append(out, frame(1)...)
			out = append(out, frame(0)...)
			return append(out, frame(2)...)
		})
		_, _, err := readAll(mfs, path, testDEK)
		require.ErrorIs(t, err, ErrBlockOrder)
		require.NotErrorIs(t, err, ErrCorrupt)
		var ce *CorruptionError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, 0, ce.Block)
	})
	t.Run("block from another segment", func(t *testing.T) {
		ofs := vfs.NewMem()
		opath := writeSeg(t, segSpec{fs: ofs, cipher: CipherAES256GCM, blocks: blocks})
		ob, _ := ofs.Bytes(opath)
		mfs := messWith(t, fs, path, func(b []byte) []byte {
			out := append([]byte(nil), b[:bl[1].Offset]...)
			return append(out, ob[bl[1].Offset:bl[1].Offset+bl[1].Length]...)
		})
		_, _, err := readAll(mfs, path, testDEK)
		require.ErrorIs(t, err, ErrForeignBlock)
	})
	t.Run("tampered with valid checksums", func(t *testing.T) {
		// Rewrite a metadata byte and fix every checksum: only GCM notices.
		mfs := messWith(t, fs, path, func(b []byte) []byte {
			off := bl[1].Offset
			fr := b[off : off+bl[1].Length]
			fr[frameHdrSize+5] ^= 1
			refreshFrameCRC(fr)
			return b
		})
		r, err := Open(path, &ReadOptions{FS: mfs, AllowPlaintext: true})
		require.NoError(t, err)
		require.NoError(t, r.Unlock(testDEK))
		_, err = r.ReadMeta(1)
		require.NoError(t, err, "checksums are valid, so metadata reads")
		_, err = r.ReadBlock(1)
		require.ErrorIs(t, err, ErrAuth)
		require.False(t, errors.Is(err, ErrWrongKey))
		res := r.Verify()
		require.Len(t, res.Problems, 1)
		require.Equal(t, 1, res.Problems[0].Block)
	})
}

func refreshFrameCRC(fr []byte) {
	n := len(fr) - frameCRCSize
	c := crc(fr[:n])
	fr[n], fr[n+1], fr[n+2], fr[n+3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

func TestUnknownVersionIsNotCorruption(t *testing.T) {
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: [][]Entry{makeEntries(rand.New(rand.NewSource(1)), 1, 10)}})
	mfs := messWith(t, fs, path, func(b []byte) []byte {
		b[8] = 4 // version 4, checksum recomputed: a future file, not a damaged one
		c := crc(b[:crcOffsetTail])
		b[1020], b[1021], b[1022], b[1023] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		return b
	})
	_, err := Open(path, &ReadOptions{FS: mfs, AllowPlaintext: true})
	require.ErrorIs(t, err, ErrUnknownVersion)
	require.NotErrorIs(t, err, ErrCorrupt)
	bad := messWith(t, fs, path, func(b []byte) []byte { b[8] = 4; return b })
	_, err = Open(path, &ReadOptions{FS: bad, AllowPlaintext: true})
	require.ErrorIs(t, err, ErrCorrupt)
	junk := messWith(t, fs, path, func(b []byte) []byte { copy(b, "NOTASEGM"); return b })
	_, err = Open(path, &ReadOptions{FS: junk, AllowPlaintext: true})
	require.ErrorIs(t, err, ErrNotSegment)
}

// TestReadMetaSectionAt: the metadata section alone, read without the body,
// equals ReadMeta's; a damaged body does not matter to it (its caller checks
// the section's hash), a damaged header, a wrong sequence or a frame cut
// short does.
func TestReadMetaSectionAt(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	blocks := [][]Entry{makeEntries(rng, 3, 10), makeEntries(rng, 4, 2000), makeEntries(rng, 2, 30)}
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: blocks, seal: true})
	r, err := Open(path, &ReadOptions{FS: fs, Tenant: testTenant})
	require.NoError(t, err)
	bi := r.Blocks()[1]
	want, err := r.ReadMeta(1)
	require.NoError(t, err)
	got, err := r.ReadMetaSectionAt(bi.Offset, bi.Seq)
	require.NoError(t, err)
	require.Equal(t, want.Meta, got.Meta)
	require.Equal(t, want.Info, got.Info)
	require.Positive(t, want.Info.MetaLen)
	_, err = r.ReadMetaSectionAt(bi.Offset, 0)
	require.ErrorIs(t, err, ErrBlockOrder)
	require.NoError(t, r.Close())

	orig, _ := fs.Bytes(path)
	body := bi.Offset + int64(frameHdrSize) + int64(want.Info.MetaLen) + 5 // Blocks() from the footer has no MetaLen
	mfs := messWith(t, fs, path, func(b []byte) []byte { b[body] ^= 1; return b })
	r, err = Open(path, &ReadOptions{FS: mfs, Tenant: testTenant})
	require.NoError(t, err)
	got, err = r.ReadMetaSectionAt(bi.Offset, bi.Seq)
	require.NoError(t, err, "a damaged body is not this read's concern")
	require.Equal(t, want.Meta, got.Meta)
	require.NoError(t, r.Close())

	for name, mess := range map[string]func(b []byte) []byte{
		"header": func(b []byte) []byte { b[bi.Offset+30] ^= 1; return b },
		"cut":    func(b []byte) []byte { return b[:bi.Offset+int64(frameHdrSize)+2] },
	} {
		mfs := messWith(t, fs, path, mess)
		r, err := Open(path, &ReadOptions{FS: mfs, Tenant: testTenant})
		require.NoError(t, err, name)
		_, err = r.ReadMetaSectionAt(bi.Offset, bi.Seq)
		require.ErrorIs(t, err, ErrCorrupt, name)
		require.NoError(t, r.Close())
	}
	_ = orig
}

// TestAppendBlocksEqualsAppend: blocks sealed in parallel by AppendBlocks,
// between blocks appended one by one, read back in order with their own
// sequence numbers and contents, and the segment verifies.
func TestAppendBlocksEqualsAppend(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	fs := vfs.NewMem()
	w, err := Create("/s", Params{Tenant: "t", Cipher: CipherAES256GCM, FS: fs, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap, Codec: CodecZstd})
	require.NoError(t, err)
	var want []Entry
	first := makeEntries(rng, 3, 100, 2000)
	_, err = w.AppendCodec(first, CodecZstd)
	require.NoError(t, err)
	want = append(want, first...)
	var batch [][]Entry
	for i := 0; i < 9; i++ {
		batch = append(batch, makeEntries(rng, 1+rng.Intn(20), 10, 700, 5000))
		want = append(want, batch[i]...)
	}
	infos, err := w.AppendBlocks(batch, CodecZstd)
	require.NoError(t, err)
	require.Len(t, infos, 9)
	for i, info := range infos {
		require.Equal(t, uint64(i+1), info.Seq)
		if i > 0 {
			require.Equal(t, infos[i-1].Offset+infos[i-1].Length, info.Offset)
		}
	}
	last := makeEntries(rng, 2, 300)
	_, err = w.AppendCodec(last, CodecS2)
	require.NoError(t, err)
	want = append(want, last...)
	require.NoError(t, w.Seal())
	require.NoError(t, w.Close())
	r, err := Open("/s", &ReadOptions{FS: fs})
	require.NoError(t, err)
	defer r.Close()
	require.Empty(t, r.Verify().Problems)
	got, r2, err := readAll(fs, "/s", testDEK)
	require.NoError(t, err)
	require.Len(t, r2.Blocks(), 11)
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].Meta, got[i].Meta, "meta %d", i)
		require.True(t, bytes.Equal(want[i].Data, got[i].Data), "data %d differs", i)
	}
	_, err = w.AppendBlocks([][]Entry{last}, CodecZstd)
	require.ErrorIs(t, err, ErrSealed)
	_, err = (&Writer{}).AppendBlocks([][]Entry{{}}, CodecZstd)
	require.Error(t, err)
}
