package segment

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// typed reports whether err is one of the errors a damaged file may produce.
func typed(err error) bool {
	for _, s := range []error{ErrCorrupt, ErrAuth, ErrBlockOrder, ErrForeignBlock, ErrNotSegment} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// requirePrefix checks that got is a prefix of want, record by record.
func requirePrefix(t *testing.T, want, got []Entry, what string) {
	t.Helper()
	require.LessOrEqual(t, len(got), len(want), what)
	for i := range got {
		if !bytes.Equal(want[i].Data, got[i].Data) || !bytes.Equal(want[i].Meta, got[i].Meta) {
			t.Fatalf("%s: record %d differs from what was written", what, i)
		}
	}
}

func smallSegment(t *testing.T, seal bool) (*vfs.MemFS, string, []Entry) {
	rng := rand.New(rand.NewSource(5))
	blocks := [][]Entry{makeEntries(rng, 2, 40), makeEntries(rng, 3, 25)}
	fs := vfs.NewMem()
	path := writeSeg(t, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: blocks, seal: seal})
	return fs, path, flatten(blocks)
}

func TestTruncateEveryOffset(t *testing.T) {
	fs, path, want := smallSegment(t, true)
	orig, _ := fs.Bytes(path)
	for n := 0; n < len(orig); n++ {
		mfs := messWith(t, fs, path, func(b []byte) []byte { return b[:n] })
		got, r, err := readAll(mfs, path, testDEK)
		if n < HeaderSize {
			require.Error(t, err, "n=%d", n)
			require.True(t, typed(err), "n=%d: untyped error %v", n, err)
			continue
		}
		requirePrefix(t, want, got, "truncated")
		if err != nil {
			require.True(t, typed(err), "n=%d: untyped error %v", n, err)
			var ce *CorruptionError
			require.ErrorAs(t, err, &ce, "n=%d", n)
			require.Equal(t, len(r.Blocks()), ce.Block, "the error names the first missing block")
		}
		// Recovery keeps exactly the valid prefix and seals it.
		res, err := Recover(path, &ReadOptions{FS: mfs, AllowPlaintext: true})
		require.NoError(t, err, "n=%d", n)
		got2, r2, err := readAll(mfs, path, testDEK)
		require.NoError(t, err, "n=%d after recovery", n)
		require.True(t, r2.Sealed())
		require.Equal(t, got, got2)
		require.Equal(t, res.Blocks, len(r2.Blocks()))
	}
}

func TestFlipEveryBit(t *testing.T) {
	for _, seal := range []bool{true, false} {
		fs, path, want := smallSegment(t, seal)
		orig, _ := fs.Bytes(path)
		for bit := 0; bit < len(orig)*8; bit++ {
			mfs := messWith(t, fs, path, func(b []byte) []byte { b[bit/8] ^= 1 << (bit % 8); return b })
			got, _, err := readAll(mfs, path, testDEK)
			requirePrefix(t, want, got, "flipped")
			if err != nil && !typed(err) {
				t.Fatalf("bit %d (byte %d): untyped error %v", bit, bit/8, err)
			}
			if err == nil && len(got) != len(want) {
				t.Fatalf("bit %d: %d of %d records and no error", bit, len(got), len(want))
			}
		}
	}
}

func TestRecoverRefusesMidSegmentCorruption(t *testing.T) {
	fs, path, want := smallSegment(t, false)
	r, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
	require.NoError(t, err)
	first := r.Blocks()[0]
	require.NoError(t, r.Close())
	mfs := messWith(t, fs, path, func(b []byte) []byte { b[first.Offset+frameHdrSize+2] ^= 0xff; return b })
	before, _ := mfs.Bytes(path)
	_, err = Recover(path, &ReadOptions{FS: mfs, AllowPlaintext: true})
	require.ErrorIs(t, err, ErrCorrupt)
	after, _ := mfs.Bytes(path)
	require.Equal(t, before, after, "a refused recovery must not modify the file")
	_ = want
}

func TestCrashDropsOnlyUnsynced(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for iter := 0; iter < 50; iter++ {
		fs := vfs.NewMem()
		require.NoError(t, fs.MkdirAll("/d"))
		w, err := Create("/d/s.lss", Params{Tenant: testTenant, Cipher: CipherAES256GCM, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap, FS: fs})
		require.NoError(t, err)
		var synced []Entry
		var pending []Entry
		nb := 1 + rng.Intn(6)
		for i := 0; i < nb; i++ {
			es := makeEntries(rng, 1+rng.Intn(4), 1+rng.Intn(3000))
			_, err := w.Append(es)
			require.NoError(t, err)
			pending = append(pending, es...)
			if rng.Intn(2) == 0 {
				require.NoError(t, w.Sync())
				synced = append(synced, pending...)
				pending = nil
			}
		}
		fs.CrashTorn(rng)
		res, err := Recover("/d/s.lss", &ReadOptions{FS: fs, AllowPlaintext: true})
		require.NoError(t, err, "iter %d", iter)
		require.True(t, res.Sealed)
		got, r, err := readAll(fs, "/d/s.lss", testDEK)
		require.NoError(t, err)
		require.True(t, r.Sealed())
		require.GreaterOrEqual(t, len(got), len(synced), "iter %d: a synced record was lost", iter)
		requirePrefix(t, append(synced, pending...), got, "after crash")
	}
}

func TestCrashBeforeDirSyncLosesUnacknowledgedFileOnly(t *testing.T) {
	fs := vfs.NewMem()
	require.NoError(t, fs.MkdirAll("/d"))
	// Create syncs the directory, so even an empty segment survives.
	w, err := Create("/d/s.lss", Params{Tenant: testTenant, Cipher: CipherAES256GCM, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap, FS: fs})
	require.NoError(t, err)
	fs.Crash()
	_ = w
	r, err := Open("/d/s.lss", &ReadOptions{FS: fs, AllowPlaintext: true})
	require.NoError(t, err)
	require.Empty(t, r.Blocks())
	require.NoError(t, r.TailError())
}

func TestRewriteKeySlot(t *testing.T) {
	fs, path, want := smallSegment(t, true)
	newWrap := []byte("wrapped-under-new-key")
	slot, err := RewriteKeySlot(path, fs, "aws-kms://arn:aws:kms:us-east-1:111122223333:key/abc", newWrap, testDEK)
	require.NoError(t, err)
	require.Equal(t, uint64(2), slot.Generation)
	got, r, err := readAll(fs, path, testDEK)
	require.NoError(t, err)
	require.Equal(t, len(want), len(got))
	h := r.Header()
	require.Equal(t, newWrap, h.Slot.Wrapped)
	require.Equal(t, 1, h.SlotIndex)
	b, _ := fs.Bytes(path)
	require.Equal(t, emptySlot, b[slot0Offset:slot0Offset+slotSize], "the old wrapped DEK is erased")
	// Idempotent: a second call with the same URI changes nothing.
	slot2, err := RewriteKeySlot(path, fs, slot.KeyURI, []byte("other"), testDEK)
	require.NoError(t, err)
	require.Equal(t, slot, slot2)
}

func TestRewriteKeySlotCrashSafety(t *testing.T) {
	// Fail every write and every sync of the rewrite in turn, then crash: the
	// segment must open with either the old or the new slot.
	for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync} {
		for n := int64(1); n <= 2; n++ {
			mem, path, _ := smallSegment(t, true)
			var count atomicCounter
			efs := vfs.NewErrorFS(mem, vfs.FailNth(op, "seg", n, vfs.ErrIO, &count.Int64))
			_, err := RewriteKeySlot(path, efs, "local://new", []byte("new-wrap"), testDEK)
			require.Error(t, err)
			mem.CrashTorn(rand.New(rand.NewSource(n)))
			r, err := Open(path, &ReadOptions{FS: mem, AllowPlaintext: true})
			require.NoError(t, err, "%v #%d", op, n)
			uri := r.Header().Slot.KeyURI
			require.Contains(t, []string{testURI, "local://new"}, uri)
			require.NoError(t, r.Close())
			// Resuming completes the rewrap.
			s, err := RewriteKeySlot(path, mem, "local://new", []byte("new-wrap"), testDEK)
			require.NoError(t, err)
			require.Equal(t, "local://new", s.KeyURI)
		}
	}
}
