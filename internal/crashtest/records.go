// Package crashtest holds what the process-crash test shares with its driver
// program: the deterministic records the driver writes.
package crashtest

import (
	"fmt"
	"math/rand"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/objstore/s3store"
)

// The bucket test hands the driver its S3 endpoint in BucketEndpointEnv;
// both sides open BucketURL with BucketOptions.
const (
	BucketEndpointEnv = "LOGSTORE_CRASH_S3_ENDPOINT"
	BucketURL         = "s3://crash/fleet"
)

// BucketOptions are the S3 options for the test server at endpoint.
func BucketOptions(endpoint string) *s3store.Options {
	return &s3store.Options{Endpoint: endpoint, Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		MaxAttempts: 2, MaxBackoff: 20 * time.Millisecond, OpTimeout: 5 * time.Second}
}

// Marker is carried by every sealed field, so leak scans can look for it.
const Marker = "CRASH-SEALED-7d1e"

// Record returns the n-th record of a run; the test regenerates it to
// compare what it reads back.
func Record(run, n int) engine.Record {
	rng := rand.New(rand.NewSource(int64(run)<<32 | int64(n)))
	r := engine.Record{
		Meta: engine.Meta{
			Time:      time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(run)*time.Hour + time.Duration(n)*time.Millisecond),
			Method:    []string{"GET", "POST"}[rng.Intn(2)],
			Status:    []int{200, 404, 500}[rng.Intn(3)],
			SessionID: fmt.Sprintf("run-%d", run),
		},
		Path:     fmt.Sprintf("/%s/%d", Marker, n),
		ClientIP: Marker + "-ip",
		RequestHeaders: []engine.Header{{Name: "x-sealed-marker", Value: "sealed " + Marker},
			{Name: "x-n", Value: fmt.Sprint(n)}},
	}
	if n%2 == 0 {
		body := make([]byte, 100+rng.Intn(3000))
		rng.Read(body)
		copy(body, Marker)
		r.Payload = &engine.Payload{RequestBody: body, ResponseBody: []byte(Marker + " response")}
	}
	return r
}
