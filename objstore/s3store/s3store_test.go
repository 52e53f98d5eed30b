package s3store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/internal/s3test"
	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/objstore/s3store"
)

var bg = context.Background()

func put(t *testing.T, b objstore.Bucket, key string, data []byte, cond objstore.Cond) (objstore.ObjectInfo, error) {
	t.Helper()
	sum := sha256.Sum256(data)
	return b.Put(bg, key, bytes.NewReader(data), int64(len(data)), sum[:], cond)
}

// exercise runs the Bucket contract against one real server.
func exercise(t *testing.T, b objstore.Bucket) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	info, err := put(t, b, "segments/acme/a.lss", data, objstore.Cond{IfNoneMatch: true})
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), info.Size)
	require.NotEmpty(t, info.ETag)

	_, err = put(t, b, "segments/acme/a.lss", data, objstore.Cond{IfNoneMatch: true})
	require.ErrorIs(t, err, objstore.ErrPrecondition, "create-only put of an existing key")

	got, gi, err := b.GetRange(bg, "segments/acme/a.lss", 100, 50, "")
	require.NoError(t, err)
	require.Equal(t, data[100:150], got)
	require.Equal(t, int64(len(data)), gi.Size)
	got, _, err = b.GetRange(bg, "segments/acme/a.lss", 0, -1, info.ETag)
	require.NoError(t, err)
	require.Equal(t, data, got)

	_, _, err = b.GetRange(bg, "segments/acme/a.lss", int64(len(data))-10, 50, "")
	require.ErrorIs(t, err, objstore.ErrTruncated, "a range past the end")

	h, err := b.Head(bg, "segments/acme/a.lss")
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), h.Size)

	_, err = b.Head(bg, "segments/acme/missing.lss")
	require.ErrorIs(t, err, objstore.ErrNotFound)
	_, _, err = b.GetRange(bg, "segments/acme/missing.lss", 0, 10, "")
	require.ErrorIs(t, err, objstore.ErrNotFound)

	// Conditional replace: only the version we read.
	data2 := append([]byte("v2"), data...)
	_, err = put(t, b, "segments/acme/a.lss", data2, objstore.Cond{IfMatch: "0123456789abcdef0123456789abcdef"})
	require.ErrorIs(t, err, objstore.ErrPrecondition)
	info2, err := put(t, b, "segments/acme/a.lss", data2, objstore.Cond{IfMatch: info.ETag})
	require.NoError(t, err)
	require.NotEqual(t, info.ETag, info2.ETag)

	_, err = put(t, b, "segments/acme/b.lsb", []byte("x"), objstore.Cond{})
	require.NoError(t, err)
	_, err = put(t, b, "segments/other/c.lss", []byte("y"), objstore.Cond{})
	require.NoError(t, err)
	l, err := b.List(bg, "segments/", "/")
	require.NoError(t, err)
	require.Equal(t, []string{"segments/acme/", "segments/other/"}, l.Prefixes)
	l, err = b.List(bg, "segments/acme/", "")
	require.NoError(t, err)
	require.Len(t, l.Objects, 2)
	require.Equal(t, "segments/acme/a.lss", l.Objects[0].Key)

	require.NoError(t, b.Delete(bg, "segments/acme/b.lsb"))
	require.NoError(t, b.Delete(bg, "segments/acme/b.lsb"), "deleting a missing key")
	_, err = b.Head(bg, "segments/acme/b.lsb")
	require.ErrorIs(t, err, objstore.ErrNotFound)

	// A SHA-256 that is not the body's (the file changed after it was
	// hashed) is refused before anything is sent.
	sum := sha256.Sum256([]byte("not these bytes"))
	_, err = b.Put(bg, "segments/acme/bad.lss", bytes.NewReader(data), int64(len(data)), sum[:], objstore.Cond{})
	require.ErrorIs(t, err, objstore.ErrChecksum)
}

func TestGofakes3Contract(t *testing.T) {
	s := s3test.StartGofakes3(t)
	exercise(t, s.Bucket(t, "logs", "prod/eu"))
}

func TestMotoContract(t *testing.T) {
	s := s3test.StartMoto(t)
	exercise(t, s.Bucket(t, "logs", "prod"))
}

func TestFaultsAreTyped(t *testing.T) {
	s := s3test.StartGofakes3(t)
	b := s.Bucket(t, "logs", "")
	_, err := put(t, b, "k", []byte("hello"), objstore.Cond{})
	require.NoError(t, err)

	s.Faults.Set(s3test.FaultConfig{SlowDown: 1})
	_, err = b.Head(bg, "k")
	require.ErrorIs(t, err, objstore.ErrUnavailable)
	require.True(t, objstore.IsRetryable(err))
	require.GreaterOrEqual(t, s.Faults.Count("503"), int64(3), "the SDK retried, bounded by MaxAttempts")

	s.Faults.Set(s3test.FaultConfig{Deny: true})
	_, _, err = b.GetRange(bg, "k", 0, -1, "")
	require.ErrorIs(t, err, objstore.ErrAccessDenied)
	require.False(t, objstore.IsRetryable(err))

	s.Faults.Set(s3test.FaultConfig{Truncate: 1})
	_, _, err = b.GetRange(bg, "k", 0, -1, "")
	require.ErrorIs(t, err, objstore.ErrTruncated)

	s.Faults.Set(s3test.FaultConfig{})
	s.Faults.SetDown(true)
	_, err = b.Head(bg, "k")
	require.ErrorIs(t, err, objstore.ErrUnavailable)
	s.Faults.SetDown(false)

	// Half the requests fail: the SDK's retries hide them.
	s.Faults.Set(s3test.FaultConfig{Err500: 0.3, SlowDown: 0.2})
	for i := 0; i < 20; i++ {
		got, _, err := b.GetRange(bg, "k", 0, -1, "")
		if err != nil {
			require.ErrorIs(t, err, objstore.ErrUnavailable)
			continue
		}
		require.Equal(t, "hello", string(got))
	}

	// Nothing listens: unavailable, retryable, within the op timeout.
	dead, err := s3store.Open(bg, "s3://logs/x", &s3store.Options{Endpoint: "http://127.0.0.1:1", Region: "us-east-1",
		Credentials: s.Options().Credentials, MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	_, err = dead.Head(bg, "k")
	require.ErrorIs(t, err, objstore.ErrUnavailable)
	require.True(t, objstore.IsRetryable(err))
	var oe *objstore.Error
	require.True(t, errors.As(err, &oe))
	require.Contains(t, err.Error(), "logstore/objstore:")
}

func TestParseURL(t *testing.T) {
	b, p, err := s3store.ParseURL("s3://logs/prod/eu/")
	require.NoError(t, err)
	require.Equal(t, "logs", b)
	require.Equal(t, "prod/eu", p)
	for _, bad := range []string{"", "logs", "http://logs/x", "s3:///x", "s3://logs/a//b"} {
		_, _, err := s3store.ParseURL(bad)
		require.ErrorIs(t, err, objstore.ErrInvalid, bad)
	}
}
