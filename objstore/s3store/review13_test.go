package s3store_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/objstore/s3store"
)

// r13Open opens s3://b/p on an S3 endpoint the test serves itself.
func r13Open(t *testing.T, h http.Handler) *s3store.Bucket {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b, err := s3store.Open(bg, "s3://b/p", &s3store.Options{
		Endpoint: srv.URL, Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		MaxAttempts: 3, MaxBackoff: 10 * time.Millisecond, OpTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	return b
}

// TestReview13NotImplementedIsNotRetryable: a server that does not
// implement a feature the engine needs (conditional writes: If-None-Match /
// If-Match on PutObject, which older MinIO, Ceph RGW and others answer with
// 501 NotImplemented) gets "ErrUnavailable, retryable" from classify (every
// 5xx is), so the uploader retries every interval forever and reports an
// outage, never the unsupported server. 501 is not a transient condition.
func TestReview13NotImplementedIsNotRetryable(t *testing.T) {
	var calls atomic.Int64
	b := r13Open(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`)
	}))
	_, err := put(t, b, "k", []byte("hello"), objstore.Cond{IfNoneMatch: true})
	require.Error(t, err)
	t.Logf("%d request(s): %v", calls.Load(), err)
	require.False(t, objstore.IsRetryable(err), "501 NotImplemented classified as retryable")
	require.NotErrorIs(t, err, objstore.ErrUnavailable, "501 NotImplemented classified as an outage")
}

// TestReview13RangeIgnoredByServer: HTTP lets a server (or a proxy or
// cache in front of it) ignore Range and answer 200 with the whole object.
// getOnce checks only that it got at least n bytes, not that they are the
// range asked for (206, Content-Range starting at off, exactly n bytes):
// GetRange(key, off, n) then returns the object from byte 0, and every
// length. The engine's page cache stores those bytes as the pages at off:
// reads fail as tampering (a false ErrSegmentTampered) and each page read
// pulls the whole object into memory.
func TestReview13RangeIgnoredByServer(t *testing.T) {
	obj := bytes.Repeat([]byte("0123456789"), 1000)
	b := r13Open(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		w.WriteHeader(http.StatusOK) // Range ignored
		_, _ = w.Write(obj)
	}))
	got, _, err := b.GetRange(bg, "k", 1234, 10, "")
	if err == nil {
		require.Equal(t, obj[1234:1244], got, "GetRange(off 1234, n 10) returned %d bytes from offset 0", len(got))
	}
}
