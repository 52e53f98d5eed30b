// Package bench measures the encrypt/decrypt hot path of logstore beside its
// baselines (encryption off, compression alone, AES-GCM alone) and beside the
// designs a team would otherwise build (a KMS data key per record; one DEK
// with every record sealed separately in Pebble), in one run so the ratios
// hold on a noisy machine. `logstore bench` and the Go benchmarks in this
// package share the workload and the peers.
package bench

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
)

// Workload generates realistic request logs: JSON-API traffic with
// user-agents, bearer tokens, request ids, trace headers and JSON bodies.
// It is seeded: the same seed yields the same records.
type Workload struct {
	rng   *rand.Rand
	start time.Time
	n     int
}

// NewWorkload returns a generator starting at start.
func NewWorkload(seed int64, start time.Time) *Workload {
	return &Workload{rng: rand.New(rand.NewSource(seed)), start: start}
}

var (
	agents = []string{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
		"okhttp/4.12.0", "python-requests/2.31.0", "curl/8.5.0", "Go-http-client/2.0"}
	routes   = []string{"/v1/orders", "/v1/orders/{id}", "/v1/users/{id}", "/v2/payments", "/v1/catalog/items", "/healthz", "/v1/carts/{id}/items"}
	services = []string{"orders", "users", "payments", "catalog", "carts"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"}
	statuses = []int{200, 200, 200, 200, 201, 204, 301, 400, 401, 404, 429, 500, 502, 503}
)

// Record returns the next request log, padded with realistic headers to
// about size bytes of sealed data; a payload of about bodySize bytes is
// attached when bodySize > 0.
func (w *Workload) Record(size, bodySize int) engine.Record {
	r := w.rng
	w.n++
	ri := r.Intn(len(routes))
	path := routes[ri]
	path = fmt.Sprintf("%s", replaceID(path, r))
	rec := engine.Record{
		Meta: engine.Meta{
			Time:              w.start.Add(time.Duration(w.n) * time.Millisecond),
			SessionID:         fmt.Sprintf("sess-%04d", r.Intn(2000)),
			TraceID:           fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()),
			SpanID:            fmt.Sprintf("%016x", r.Uint64()),
			Method:            methods[r.Intn(len(methods))],
			Host:              "api.example.com",
			Status:            statuses[r.Intn(len(statuses))],
			UpstreamStatus:    200,
			ResponseSource:    "upstream",
			LatencyMs:         float64(r.Intn(4000)) / 10,
			UpstreamLatencyMs: float64(r.Intn(3000)) / 10,
			GatewayLatencyMs:  float64(r.Intn(100)) / 10,
			RouteID:           fmt.Sprintf("route-%d", ri),
			ServiceID:         "svc-" + services[ri%len(services)],
			RequestSize:       int64(200 + r.Intn(2000)),
			ResponseSize:      int64(300 + r.Intn(20000)),
		},
		Path:       path,
		Query:      fmt.Sprintf("page=%d&per_page=50&sort=-created_at", r.Intn(40)),
		ClientIP:   fmt.Sprintf("%d.%d.%d.%d", 1+r.Intn(223), r.Intn(256), r.Intn(256), 1+r.Intn(254)),
		ConsumerID: fmt.Sprintf("consumer-%d", r.Intn(500)),
		RequestHeaders: []engine.Header{{Name: "host", Value: "api.example.com"}, {Name: "user-agent", Value: agents[r.Intn(len(agents))]},
			{Name: "accept", Value: "application/json"}, {Name: "accept-encoding", Value: "gzip, deflate, br"},
			{Name: "authorization", Value: fmt.Sprintf("Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64())},
			{Name: "x-request-id", Value: fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Intn(65536), r.Intn(65536), r.Intn(65536), r.Int63n(1<<48))},
			{Name: "traceparent", Value: fmt.Sprintf("00-%016x%016x-%016x-01", r.Uint64(), r.Uint64(), r.Uint64())}},
		ResponseHeaders: []engine.Header{{Name: "content-type", Value: "application/json; charset=utf-8"}, {Name: "cache-control", Value: "no-store"},
			{Name: "x-kong-upstream-latency", Value: fmt.Sprint(r.Intn(900))}, {Name: "x-kong-proxy-latency", Value: fmt.Sprint(r.Intn(20))},
			{Name: "via", Value: "kong/3.6.1"}},
	}
	for k := 0; sealedSize(&rec) < size; k++ {
		rec.ResponseHeaders = append(rec.ResponseHeaders, engine.Header{Name: fmt.Sprintf("x-debug-%d", k),
			Value: fmt.Sprintf("upstream=10.%d.%d.%d:8080;attempt=%d;pool=%s;region=eu-west-%d", r.Intn(256), r.Intn(256), r.Intn(256), 1+r.Intn(3), services[r.Intn(len(services))], 1+r.Intn(3))})
	}
	if bodySize > 0 {
		rec.Payload = &engine.Payload{RequestContentType: "application/json", RequestBody: w.jsonBody(bodySize / 4),
			ResponseContentType: "application/json", ResponseBody: w.jsonBody(bodySize - bodySize/4)}
	}
	return rec
}

func replaceID(p string, r *rand.Rand) string {
	out := []byte{}
	for i := 0; i < len(p); i++ {
		if p[i] == '{' {
			out = fmt.Appendf(out, "%d", 10000+r.Intn(900000))
			for i < len(p) && p[i] != '}' {
				i++
			}
			continue
		}
		out = append(out, p[i])
	}
	return string(out)
}

func (w *Workload) jsonBody(n int) []byte {
	r := w.rng
	b := []byte(`{"items":[`)
	for i := 0; len(b) < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"sku":"SKU-%05d","name":"%s item %d","qty":%d,"price":{"amount":%d.%02d,"currency":"EUR"},"tags":["%s","sale"]}`,
			r.Intn(99999), services[r.Intn(len(services))], r.Intn(1000), 1+r.Intn(9), r.Intn(500), r.Intn(100), methods[r.Intn(len(methods))])
	}
	return append(b, `],"total":1}`...)
}

func sealedSize(r *engine.Record) int {
	n := len(r.Path) + len(r.Query) + len(r.ClientIP) + len(r.ConsumerID)
	for _, h := range r.RequestHeaders {
		n += len(h.Name) + len(h.Value) + 2
	}
	for _, h := range r.ResponseHeaders {
		n += len(h.Name) + len(h.Value) + 2
	}
	return n
}

// Records returns n records of about size bytes, no payloads.
func (w *Workload) Records(n, size int) []engine.Record {
	out := make([]engine.Record, n)
	for i := range out {
		out[i] = w.Record(size, 0)
	}
	return out
}

// HARRecords replays the HAR captures in dir (e.g. ../shared/testdata/har).
func HARRecords(dir string) ([]engine.Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.har"))
	if err != nil {
		return nil, err
	}
	c := &collector{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		_, err = ingest.Ingest(context.Background(), c, f, fh, ingest.Options{})
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return c.recs, nil
}

type collector struct{ recs []engine.Record }

func (c *collector) Append(_ context.Context, recs []engine.Record) ([]engine.ID, error) {
	c.recs = append(c.recs, recs...)
	return make([]engine.ID, len(recs)), nil
}
