package segment

import (
	"bytes"
	"math/rand"
	"os"
	"testing"

	"github.com/logstore/logstore/vfs"
)

func fuzzSeeds(f *testing.F) {
	for _, path := range goldenPaths {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
			f.Add(b[:len(b)-trailerSize])
		}
	}
	for _, seal := range []bool{true, false} {
		rng := rand.New(rand.NewSource(9))
		fs := vfs.NewMem()
		path := writeSeg(f, segSpec{fs: fs, cipher: CipherAES256GCM, blocks: [][]Entry{makeEntries(rng, 2, 30), makeEntries(rng, 1, 0)}, seal: seal})
		b, _ := fs.Bytes(path)
		f.Add(b)
	}
}

// FuzzSegment feeds arbitrary bytes to every decoder of a segment file:
// preamble, key slots, footer, trailer, block frames, and recovery. It must
// never panic, and the golden DEK must never yield records that fail
// authentication.
func FuzzSegment(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		fh, _ := fs.Create("/f.lss")
		_, _ = fh.Write(data)
		_ = fh.Close()
		r, err := Open("/f.lss", &ReadOptions{FS: fs, AllowPlaintext: true})
		if err != nil {
			if !typed(err) && !bytes.Contains([]byte(err.Error()), []byte("logstore/segment")) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		_ = r.Unlock(testDEK)
		for i := range r.Blocks() {
			_, _ = r.ReadMeta(i)
			_, _ = r.ReadBlock(i)
		}
		_ = r.Verify()
		_ = r.Close()
		_, _ = Recover("/f.lss", &ReadOptions{FS: fs, AllowPlaintext: true})
	})
}

// FuzzFrameHeader targets the fixed block header and record splitting.
func FuzzFrameHeader(f *testing.F) {
	if b, err := os.ReadFile(goldenPaths[Version2]); err == nil && len(b) > HeaderSize+frameHdrSize {
		f.Add(b[HeaderSize:HeaderSize+frameHdrSize], uint8(3))
	}
	f.Add(make([]byte, frameHdrSize), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		for _, c := range []Cipher{CipherNone, CipherAES256GCM} {
			h, err := parseFrameHeader(b, c, Version3)
			if err == nil && h.frameLen() < frameHdrSize {
				t.Fatalf("frame length %d below header size", h.frameLen())
			}
		}
		recs, err := splitRecords(b, int(n))
		if err == nil && len(recs) != int(n) {
			t.Fatalf("split %d records, want %d", len(recs), n)
		}
	})
}

func TestNoPlaintextLeak(t *testing.T) {
	const marker = "SEALED-MARKER-7f3a91"
	for _, codec := range []Codec{CodecZstd, CodecS2, CodecNone} {
		fs := vfs.NewMem()
		var es []Entry
		for i := 0; i < 20; i++ {
			es = append(es, Entry{Time: int64(i), Meta: []byte(`{"status":200,"note":"PLAIN-OK"}`),
				Data: []byte(`{"path":"/` + marker + `","authorization":"Bearer ` + marker + `"}`)})
		}
		path := writeSeg(t, segSpec{fs: fs, codec: codec, cipher: CipherAES256GCM, blocks: [][]Entry{es}, seal: true})
		b, _ := fs.Bytes(path)
		if bytes.Contains(b, []byte(marker)) {
			t.Fatalf("codec %v: sealed marker found in segment bytes", codec)
		}
		if bytes.Contains(b, testDEK) {
			t.Fatalf("codec %v: DEK found in segment bytes", codec)
		}
		if !bytes.Contains(b, []byte("PLAIN-OK")) {
			t.Fatalf("codec %v: plaintext metadata missing (the test would prove nothing)", codec)
		}
	}
}
