// Package s3store implements objstore.Bucket over the S3 API with
// aws-sdk-go-v2, for AWS S3 and the servers that speak its protocol (MinIO,
// Ceph RGW, SeaweedFS, moto, gofakes3).
//
// Configuration is the SDK's standard chain: credentials from the
// environment, shared files, SSO or the instance role; the region from
// AWS_REGION or the shared config (us-east-1 when neither sets one); the
// endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL. A custom endpoint
// gets path-style addressing (http://HOST/BUCKET/KEY), which local servers
// need; Options.PathStyle overrides that.
//
//	b, err := s3store.Open(ctx, "s3://my-bucket/logstore", nil)
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/logstore/logstore/objstore"
)

// Options configure Open. A nil *Options is valid: every field has a default.
type Options struct {
	// Endpoint overrides the S3 endpoint (default: the SDK's resolution,
	// which honours AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL).
	Endpoint string
	// Region overrides the region (default: the SDK's chain, else us-east-1).
	Region string
	// PathStyle forces path-style (true) or virtual-hosted (false)
	// addressing (default: path-style exactly when a custom endpoint is set).
	PathStyle *bool
	// Credentials overrides the credential chain (tests).
	Credentials aws.CredentialsProvider
	// MaxAttempts bounds the SDK's attempts per request, throttling and
	// server errors included (default 5).
	MaxAttempts int
	// MaxBackoff bounds the SDK's wait between attempts (default 2s).
	MaxBackoff time.Duration
	// OpTimeout bounds one operation, retries included, when the caller's
	// context has no earlier deadline (default 2m).
	OpTimeout time.Duration
	// HTTPClient is the client the SDK uses (default: the SDK's).
	HTTPClient *http.Client
}

// Bucket is an objstore.Bucket on S3.
type Bucket struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
	opts   Options
}

var _ objstore.Bucket = (*Bucket)(nil)

// ParseURL splits s3://BUCKET/PREFIX.
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("%w: bucket %q: want s3://BUCKET[/PREFIX]", objstore.ErrInvalid, raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("%w: bucket %q: empty path element", objstore.ErrInvalid, raw)
	}
	return u.Host, prefix, nil
}

// Open returns the bucket named by rawURL (s3://BUCKET[/PREFIX]). It does
// not contact the server: the first request reports a missing bucket or
// refused credentials.
func Open(ctx context.Context, rawURL string, opts *Options) (*Bucket, error) {
	name, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 2 * time.Minute
	}
	loads := []func(*config.LoadOptions) error{
		// A library does not print: failures come back as typed errors.
		config.WithLogger(logging.Nop{}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
			})
		}),
	}
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.Credentials != nil {
		loads = append(loads, config.WithCredentialsProvider(o.Credentials))
	}
	if o.HTTPClient != nil {
		loads = append(loads, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("%w: AWS configuration: %w", objstore.ErrInvalid, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	pathStyle := endpoint != ""
	if o.PathStyle != nil {
		pathStyle = *o.PathStyle
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = pathStyle
		// We send our own SHA-256 with every put; no extra CRC trailer,
		// which some S3-compatible servers store as part of the body.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if prefix != "" {
		prefix += "/"
	}
	return &Bucket{client: client, bucket: name, prefix: prefix, opts: o}, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (b *Bucket) String() string { return "s3://" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/") }

func (b *Bucket) full(key string) string { return b.prefix + key }

func (b *Bucket) rel(full string) string { return strings.TrimPrefix(full, b.prefix) }

func (b *Bucket) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < b.opts.OpTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.opts.OpTimeout)
}

// Put implements objstore.Bucket. The server is sent the SHA-256 to check on
// receipt; the put is then verified by the checksum the server reports for
// the stored object, or, from servers that report none, by reading the
// object back and hashing it.
func (b *Bucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, sum []byte, cond objstore.Cond) (objstore.ObjectInfo, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if len(sum) != sha256.Size {
		return objstore.ObjectInfo{}, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrInvalid, Err: errors.New("a SHA-256 is required")}
	}
	md, got, err := hashBody(body)
	if err != nil {
		return objstore.ObjectInfo{}, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrInvalid, Err: err}
	}
	if !bytes.Equal(got, sum) {
		return objstore.ObjectInfo{}, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrChecksum, Retryable: true,
			Err: errors.New("the body does not hash to the SHA-256 given (it changed since it was hashed?)")}
	}
	in := &s3.PutObjectInput{
		Bucket:         aws.String(b.bucket),
		Key:            aws.String(b.full(key)),
		Body:           body,
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
		// Content-MD5 too: servers without SHA-256 checksums check it.
		ContentMD5:  aws.String(base64.StdEncoding.EncodeToString(md)),
		ContentType: aws.String("application/octet-stream"),
	}
	if cond.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if cond.IfMatch != "" {
		in.IfMatch = aws.String(quote(cond.IfMatch))
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return objstore.ObjectInfo{}, classify("put", key, err)
	}
	info := objstore.ObjectInfo{Key: key, Size: size, ETag: unquote(aws.ToString(out.ETag)), Modified: time.Now()}
	if got := aws.ToString(out.ChecksumSHA256); got != "" {
		if got != *in.ChecksumSHA256 {
			return info, &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrChecksum, Retryable: true,
				Err: fmt.Errorf("server stored SHA-256 %s, sent %s", got, *in.ChecksumSHA256)}
		}
		return info, nil
	}
	if info.ETag == hex.EncodeToString(md) {
		return info, nil // a single-part object's ETag is its MD5 (S3, MinIO, moto...)
	}
	return info, b.verifyByReading(ctx, key, size, sum, &info)
}

// hashBody returns the MD5 and SHA-256 of body and rewinds it.
func hashBody(body io.ReadSeeker) (md, sum []byte, err error) {
	hm, hs := md5.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(hm, hs), body); err != nil {
		return nil, nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	return hm.Sum(nil), hs.Sum(nil), nil
}

// verifyByReading reads a just-written object back and compares its hash.
func (b *Bucket) verifyByReading(ctx context.Context, key string, size int64, sum []byte, info *objstore.ObjectInfo) error {
	data, got, err := b.GetRange(ctx, key, 0, -1, info.ETag)
	if errors.Is(err, objstore.ErrPrecondition) && info.ETag != "" {
		return nil // replaced since by a newer version (a conditional writer's): ours was there
	}
	if err != nil {
		return err
	}
	h := sha256.Sum256(data)
	if int64(len(data)) != size || !bytes.Equal(h[:], sum) {
		return &objstore.Error{Op: "put", Key: key, Kind: objstore.ErrChecksum, Retryable: true,
			Err: fmt.Errorf("read back %d bytes that do not hash to what was sent (%d bytes)", len(data), size)}
	}
	if info.ETag == "" {
		info.ETag = got.ETag
	}
	return nil
}

// GetRange implements objstore.Bucket. A body cut short in transit is read
// again (up to 3 times) before it is reported as ErrTruncated.
func (b *Bucket) GetRange(ctx context.Context, key string, off, n int64, etag string) ([]byte, objstore.ObjectInfo, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		data, info, err := b.getOnce(ctx, key, off, n, etag)
		if err == nil || !errors.Is(err, objstore.ErrTruncated) || ctx.Err() != nil {
			return data, info, err
		}
		lastErr = err
	}
	return nil, objstore.ObjectInfo{}, lastErr
}

func (b *Bucket) getOnce(ctx context.Context, key string, off, n int64, etag string) ([]byte, objstore.ObjectInfo, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.full(key))}
	switch {
	case n > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case n < 0 && off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	case n == 0:
		return nil, objstore.ObjectInfo{Key: key}, nil
	}
	if etag != "" {
		in.IfMatch = aws.String(quote(etag))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		return nil, objstore.ObjectInfo{}, classify("get", key, err)
	}
	defer out.Body.Close()
	info := objstore.ObjectInfo{Key: key, ETag: unquote(aws.ToString(out.ETag)), Modified: aws.ToTime(out.LastModified)}
	info.Size = objectSize(out)
	want := aws.ToInt64(out.ContentLength)
	body := io.Reader(out.Body)
	if in.Range != nil {
		start, ranged := rangeStart(aws.ToString(out.ContentRange))
		switch {
		case !ranged && off > 0:
			// The Range was ignored (HTTP allows it): the whole object came;
			// skip to off instead of taking byte 0 for byte off.
			if _, err := io.CopyN(io.Discard, body, off); err != nil {
				return nil, info, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrTruncated, Retryable: true, Err: err}
			}
			want -= off
		case ranged && start != off:
			return nil, info, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrInvalid,
				Err: fmt.Errorf("asked for bytes from %d, the reply starts at %d", off, start)}
		}
		if n > 0 && want > n {
			want = n
		}
	}
	data, err := io.ReadAll(io.LimitReader(body, want))
	if err != nil || int64(len(data)) != want {
		return nil, info, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrTruncated, Retryable: true,
			Err: fmt.Errorf("read %d of %d bytes: %v", len(data), want, err)}
	}
	if n > 0 && int64(len(data)) < n {
		return nil, info, &objstore.Error{Op: "get", Key: key, Kind: objstore.ErrTruncated,
			Err: fmt.Errorf("asked for %d bytes at %d, the object gave %d (size %d)", n, off, len(data), info.Size)}
	}
	return data, info, nil
}

// rangeStart parses the first byte of a Content-Range ("bytes 10-19/100").
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(first, 10, 64)
	return v, err == nil
}

// objectSize is the whole object's size: from Content-Range for a ranged
// reply, else the body's length.
func objectSize(out *s3.GetObjectOutput) int64 {
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			var total int64
			if _, err := fmt.Sscan(cr[i+1:], &total); err == nil {
				return total
			}
		}
	}
	return aws.ToInt64(out.ContentLength)
}

// Head implements objstore.Bucket.
func (b *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.full(key))})
	if err != nil {
		return objstore.ObjectInfo{}, classify("head", key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag)),
		Modified: aws.ToTime(out.LastModified)}, nil
}

// List implements objstore.Bucket.
func (b *Bucket) List(ctx context.Context, prefix, delimiter string) (objstore.Listing, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	in := &s3.ListObjectsV2Input{Bucket: aws.String(b.bucket), Prefix: aws.String(b.full(prefix))}
	if delimiter != "" {
		in.Delimiter = aws.String(delimiter)
	}
	var l objstore.Listing
	p := s3.NewListObjectsV2Paginator(b.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		for attempt := 1; attempt < 3 && errors.Is(err, io.ErrUnexpectedEOF) && ctx.Err() == nil; attempt++ {
			page, err = p.NextPage(ctx) // a page cut short in transit: the SDK does not retry those
		}
		if err != nil {
			return objstore.Listing{}, classify("list", prefix, err)
		}
		for _, o := range page.Contents {
			l.Objects = append(l.Objects, objstore.ObjectInfo{Key: b.rel(aws.ToString(o.Key)), Size: aws.ToInt64(o.Size),
				ETag: unquote(aws.ToString(o.ETag)), Modified: aws.ToTime(o.LastModified)})
		}
		for _, cp := range page.CommonPrefixes {
			l.Prefixes = append(l.Prefixes, b.rel(aws.ToString(cp.Prefix)))
		}
	}
	return l, nil
}

// Delete implements objstore.Bucket. On a bucket with versioning, every
// version of key and its delete markers go too: a deleted segment must not
// stay readable as a noncurrent version (retention, erase, tenant deletion).
// A version the bucket refuses to delete (an object lock) is an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.full(key))})
	if err != nil {
		if e := classify("delete", key, err); !errors.Is(e, objstore.ErrNotFound) || isNoSuchBucket(err) {
			return e
		}
	}
	return b.deleteVersions(ctx, key)
}

// maxVersionPages bounds the listing of one key's versions (1000 per page).
const maxVersionPages = 1000

// deleteVersions removes the versions and delete markers of exactly key:
// it lists the first page of them, deletes what it lists, and lists again
// until none is left (never relying on the server's markers advancing).
// A server without versioning support answers the listing with an error or
// with none: nothing to do.
func (b *Bucket) deleteVersions(ctx context.Context, key string) error {
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(b.bucket), Prefix: aws.String(b.full(key))}
	for round := 0; round < maxVersionPages; round++ {
		out, err := b.client.ListObjectVersions(ctx, in)
		if err != nil {
			if e := classify("delete", key, err); errors.Is(e, objstore.ErrInvalid) || errors.Is(e, objstore.ErrNotFound) {
				return nil // no versioning API here
			}
			return classify("delete", key, err)
		}
		var ids []*string
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == b.full(key) && aws.ToString(v.VersionId) != "" && aws.ToString(v.VersionId) != "null" {
				ids = append(ids, v.VersionId)
			}
		}
		for _, m := range out.DeleteMarkers {
			if aws.ToString(m.Key) == b.full(key) && aws.ToString(m.VersionId) != "" && aws.ToString(m.VersionId) != "null" {
				ids = append(ids, m.VersionId)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		for _, id := range ids {
			_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(b.full(key)), VersionId: id})
			if err != nil && !errors.Is(classify("delete", key, err), objstore.ErrNotFound) {
				return classify("delete", key, err)
			}
		}
	}
	return &objstore.Error{Op: "delete", Key: key, Kind: objstore.ErrUnavailable, Retryable: true,
		Err: fmt.Errorf("versions still listed after %d rounds", maxVersionPages)}
}

// CreateBucket creates the bucket (tests, `logstore segments upload
// --create-bucket`); one that exists and is ours is not an error.
func (b *Bucket) CreateBucket(ctx context.Context) error {
	_, err := b.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b.bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return classify("create-bucket", b.bucket, err)
	}
	return nil
}

func quote(etag string) string   { return `"` + unquote(etag) + `"` }
func unquote(etag string) string { return strings.Trim(etag, `"`) }

func isNoSuchBucket(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"
}

// classify turns an SDK error into an *objstore.Error.
func classify(op, key string, err error) error {
	kind, retry := kindOf(err)
	return &objstore.Error{Op: op, Key: key, Kind: kind, Retryable: retry, Err: err}
}

func kindOf(err error) (kind error, retryable bool) {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return objstore.ErrUnavailable, true // a reply cut short in transit
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if kind, retryable, ok := codeKind(ae.ErrorCode()); ok {
			return kind, retryable
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return statusKind(re.HTTPStatusCode())
	}
	if errors.Is(err, context.Canceled) {
		return objstore.ErrUnavailable, false // the caller gave up
	}
	// Timeouts, refused or reset connections, retries exhausted: the store
	// did not answer.
	return objstore.ErrUnavailable, true
}

// codeKind classifies S3's error codes; ok is false for a code it does not know.
func codeKind(code string) (kind error, retryable, ok bool) {
	switch code {
	case "NoSuchKey", "NotFound", "NoSuchBucket":
		return objstore.ErrNotFound, false, true
	case "PreconditionFailed", "ConditionalRequestConflict":
		return objstore.ErrPrecondition, false, true
	case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled":
		return objstore.ErrAccessDenied, false, true
	case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException":
		return objstore.ErrUnavailable, true, true
	case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum":
		return objstore.ErrChecksum, true, true
	case "InvalidRange":
		return objstore.ErrTruncated, false, true
	case "NotImplemented":
		return objstore.ErrInvalid, false, true
	}
	return nil, false, false
}

// statusKind classifies an HTTP status without a known error code.
func statusKind(code int) (kind error, retryable bool) {
	switch {
	case code == 0: // no response: the request was never answered
		return objstore.ErrUnavailable, true
	case code == http.StatusNotFound:
		return objstore.ErrNotFound, false
	case code == http.StatusPreconditionFailed || code == http.StatusConflict:
		return objstore.ErrPrecondition, false
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		return objstore.ErrAccessDenied, false
	case code == http.StatusRequestedRangeNotSatisfiable:
		return objstore.ErrTruncated, false
	case code == http.StatusNotImplemented:
		return objstore.ErrInvalid, false // a feature the server lacks (conditional writes): not an outage
	case code >= 500 || code == http.StatusTooManyRequests:
		return objstore.ErrUnavailable, true
	}
	return objstore.ErrInvalid, false
}
