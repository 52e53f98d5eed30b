package keys

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

func newLocal(t *testing.T, auto bool) (*Local, string) {
	dir := filepath.Join(t.TempDir(), "keys")
	l, err := NewLocal(LocalOptions{Dir: dir, AutoCreate: auto})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, dir
}

func TestLocalRoundTrip(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t, true)
	uri := LocalURI("acme")
	ec := SegmentContext("acme", "seg-1")
	dk, err := l.GenerateDataKey(ctx, uri, ec)
	require.NoError(t, err)
	require.Len(t, dk.Plaintext, DEKSize)
	require.NotContains(t, string(dk.Wrapped), string(dk.Plaintext))

	st, err := os.Stat(filepath.Join(dir, "acme.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "master key file must be 0600")

	got, err := l.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)

	// A fresh provider reads the same master key from disk.
	l2, err := NewLocal(LocalOptions{Dir: dir})
	require.NoError(t, err)
	got, err = l2.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
}

func TestLocalRejects(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t, true)
	uri := LocalURI("acme")
	ec := SegmentContext("acme", "seg-1")
	dk, err := l.GenerateDataKey(ctx, uri, ec)
	require.NoError(t, err)

	_, err = l.Unwrap(ctx, uri, dk.Wrapped, SegmentContext("globex", "seg-1"))
	require.ErrorIs(t, err, ErrInvalidCiphertext, "another tenant's context")
	_, err = l.Unwrap(ctx, uri, dk.Wrapped, SegmentContext("acme", "seg-2"))
	require.ErrorIs(t, err, ErrInvalidCiphertext, "another segment's context")

	other := LocalURI("other")
	require.NoError(t, l.Create(other))
	_, err = l.Unwrap(ctx, other, dk.Wrapped, ec)
	require.ErrorIs(t, err, ErrInvalidCiphertext, "wrong master key")

	bad := bytes.Clone(dk.Wrapped)
	bad[20] ^= 1
	_, err = l.Unwrap(ctx, uri, bad, ec)
	require.ErrorIs(t, err, ErrInvalidCiphertext, "tampered")

	_, err = l.Unwrap(ctx, LocalURI("missing"), dk.Wrapped, ec)
	require.ErrorIs(t, err, ErrKeyNotFound)
	require.ErrorIs(t, err, ErrKeyUnusable)

	_, err = l.Unwrap(ctx, "local://../etc/passwd", dk.Wrapped, ec)
	require.ErrorIs(t, err, ErrBadURI)
}

func TestLocalNoAutoCreate(t *testing.T) {
	l, _ := newLocal(t, false)
	_, err := l.GenerateDataKey(context.Background(), LocalURI("acme"), SegmentContext("acme", "s"))
	require.ErrorIs(t, err, ErrKeyNotFound)
}

func TestLocalDisableDestroy(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t, true)
	uri := LocalURI("acme")
	ec := SegmentContext("acme", "s")
	dk, err := l.GenerateDataKey(ctx, uri, ec)
	require.NoError(t, err)
	require.NoError(t, l.SetEnabled(uri, false))
	_, err = l.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.ErrorIs(t, err, ErrKeyDisabled)
	require.ErrorIs(t, err, ErrKeyUnusable)
	_, err = l.GenerateDataKey(ctx, uri, ec)
	require.ErrorIs(t, err, ErrKeyDisabled)
	// Disabled state persists.
	l2, err := NewLocal(LocalOptions{Dir: dir})
	require.NoError(t, err)
	st, err := l2.Describe(ctx, uri)
	require.NoError(t, err)
	require.False(t, st.Enabled)
	require.NoError(t, l.SetEnabled(uri, true))
	_, err = l.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.NoError(t, err)

	require.NoError(t, l.Destroy(uri))
	_, err = l.Unwrap(ctx, uri, dk.Wrapped, ec)
	require.ErrorIs(t, err, ErrKeyNotFound)
	_, err = os.Stat(filepath.Join(dir, "acme.key"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLocalKeyFileCorruptionAndVersion(t *testing.T) {
	mem := vfs.NewMem()
	l, err := NewLocal(LocalOptions{Dir: "/k", FS: mem, AutoCreate: true})
	require.NoError(t, err)
	require.NoError(t, l.Create(LocalURI("a")))
	b, err := mem.Bytes("/k/a.key")
	require.NoError(t, err)
	require.Len(t, b, localKeyFileSize)

	flipped := bytes.Clone(b)
	flipped[25] ^= 1
	require.NoError(t, mem.SetBytes("/k/a.key", flipped))
	l2, _ := NewLocal(LocalOptions{Dir: "/k", FS: mem})
	_, err = l2.Describe(context.Background(), LocalURI("a"))
	require.ErrorIs(t, err, ErrCorruptKeyFile)

	// Version 2 with a valid checksum is "unknown version", not corruption.
	c := encodeLocalKey(&localKey{key: b[20:52]})
	c[8] = 2
	fixCRC(c)
	require.NoError(t, mem.SetBytes("/k/a.key", c))
	l3, _ := NewLocal(LocalOptions{Dir: "/k", FS: mem})
	_, err = l3.Describe(context.Background(), LocalURI("a"))
	require.ErrorIs(t, err, ErrUnknownKeyVersion)
}

func fixCRC(b []byte) {
	c := encodeLocalKey(&localKey{key: b[20:52]})
	// Recompute the checksum over the modified bytes.
	copy(c[:52], b[:52])
	sum := crc32c(c[:52])
	b[52], b[53], b[54], b[55] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
}

func TestRouterCrossSchemeRewrap(t *testing.T) {
	ctx := context.Background()
	a, _ := newLocal(t, true)
	r := NewRouter(a)
	ec := SegmentContext("acme", "s")
	dk, err := r.GenerateDataKey(ctx, LocalURI("old"), ec)
	require.NoError(t, err)
	w2, err := r.Rewrap(ctx, LocalURI("old"), dk.Wrapped, LocalURI("new"), ec)
	require.NoError(t, err)
	require.NoError(t, a.Destroy(LocalURI("old")))
	got, err := r.Unwrap(ctx, LocalURI("new"), w2, ec)
	require.NoError(t, err)
	require.Equal(t, dk.Plaintext, got)
	_, err = r.Unwrap(ctx, "aws-kms://arn:aws:kms:us-east-1:1:key/x", w2, ec)
	require.ErrorIs(t, err, ErrUnsupported)
	_, err = r.Unwrap(ctx, "nonsense", w2, ec)
	require.ErrorIs(t, err, ErrBadURI)
}

func TestEncryptionContextCanonical(t *testing.T) {
	a := EncryptionContext{"b": "2", "a": "1"}
	b := EncryptionContext{"a": "1", "b": "2"}
	require.Equal(t, a.Canonical(), b.Canonical())
	// Length prefixes make "a=1;b" and "a" + "1;b" distinct.
	require.NotEqual(t, EncryptionContext{"a": "1;b=2"}.Canonical(), EncryptionContext{"a": "1", "b": "2"}.Canonical())
}
