package segment

import (
	"bytes"
	"fmt"
	"math/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

var (
	testDEK    = bytes.Repeat([]byte{0x42}, 32)
	testOther  = bytes.Repeat([]byte{0x43}, 32)
	testTenant = "acme"
	testURI    = "local://acme"
	testWrap   = []byte("wrapped-dek-bytes-for-tests")
)

// makeEntries returns n entries with record bodies of the given sizes cycled.
func makeEntries(rng *rand.Rand, n int, sizes ...int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		sz := sizes[i%len(sizes)]
		data := make([]byte, sz)
		// Half random, half repetitive, so compression has work to do.
		rng.Read(data[:sz/2])
		for j := sz / 2; j < sz; j++ {
			data[j] = byte('a' + j%7)
		}
		out[i] = Entry{Time: int64(1_700_000_000_000_000_000 + i*1000), Meta: fmt.Appendf(nil, `{"id":%d,"status":200}`, i), Data: data}
	}
	return out
}

type segSpec struct {
	fs      vfs.FS
	path    string
	tenant  string
	dek     []byte
	codec   Codec
	cipher  Cipher
	id      ID
	blocks  [][]Entry
	seal    bool
	created time.Time
}

// writeSeg writes a segment per spec and returns its path.
func writeSeg(t testing.TB, s segSpec) string {
	t.Helper()
	if s.fs == nil {
		s.fs = vfs.NewMem()
	}
	if s.path == "" {
		s.path = "/seg.lss"
	}
	if s.tenant == "" {
		s.tenant = testTenant
	}
	p := Params{ID: s.id, Tenant: s.tenant, Codec: s.codec, Cipher: s.cipher, FS: s.fs, Created: s.created}
	if s.cipher == CipherAES256GCM {
		if s.dek == nil {
			s.dek = testDEK
		}
		p.DEK, p.KeyURI, p.Wrapped = s.dek, testURI, testWrap
	}
	w, err := Create(s.path, p)
	require.NoError(t, err)
	for _, b := range s.blocks {
		_, err := w.Append(b)
		require.NoError(t, err)
	}
	require.NoError(t, w.Sync())
	if s.seal {
		require.NoError(t, w.Seal())
	}
	require.NoError(t, w.Close())
	return s.path
}

// readAll opens path, unlocks with dek and returns every entry's meta and data.
func readAll(fs vfs.FS, path string, dek []byte) ([]Entry, *Reader, error) {
	r, err := Open(path, &ReadOptions{FS: fs, AllowPlaintext: true})
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if err := r.Unlock(dek); err != nil {
		return nil, r, err
	}
	var out []Entry
	for i := range r.Blocks() {
		b, err := r.ReadBlock(i)
		if err != nil {
			return out, r, err
		}
		for j := range b.Data {
			out = append(out, Entry{Meta: b.Meta[j], Data: b.Data[j]})
		}
	}
	return out, r, r.TailError()
}

// messWith copies the file at path in fs, applies f, and writes the result
// to a fresh MemFS at the same path (archive/zip's corruption-test helper).
func messWith(t testing.TB, fs *vfs.MemFS, path string, f func(b []byte) []byte) *vfs.MemFS {
	t.Helper()
	b, err := fs.Bytes(path)
	require.NoError(t, err)
	out := vfs.NewMem()
	fh, err := out.Create(path)
	require.NoError(t, err)
	_, err = fh.Write(f(b))
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	return out
}

func flatten(bs [][]Entry) []Entry {
	var out []Entry
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

type atomicCounter struct{ atomic.Int64 }
