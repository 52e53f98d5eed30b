package s3test

import (
	"fmt"
	"math/rand"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Faults sits in front of a real S3 server and, with the probabilities set,
// answers a request itself with a fault instead of passing it on: a 500, a
// 503 SlowDown, a stall longer than the client waits, or (for GETs) a body
// cut short after its headers promised more. Down and Deny fail every request.
// All fields are set with Set and are safe to change while requests run.
type Faults struct {
	next http.Handler

	mu   sync.Mutex // guards cfg and rng
	cfg  FaultConfig
	rng  *rand.Rand
	down atomic.Bool

	// Injected counts the faults injected, by kind.
	injected sync.Map // string -> *atomic.Int64
}

// FaultConfig are per-request probabilities in [0,1].
type FaultConfig struct {
	Err500    float64
	SlowDown  float64
	Stall     float64       // sleep StallFor, then pass the request on
	StallFor  time.Duration // default 3s
	Truncate  float64       // GET only: half the body, then the connection is closed
	Deny      bool          // every request: 403 AccessDenied
	Latency   time.Duration // every request waits this long first (a distant region)
	OnlyPaths func(r *http.Request) bool
}

func newFaults(next http.Handler) *Faults {
	return &Faults{next: next, rng: rand.New(rand.NewSource(1))}
}

// Set replaces the fault configuration.
func (f *Faults) Set(c FaultConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.StallFor == 0 {
		c.StallFor = 3 * time.Second
	}
	f.cfg = c
}

// SetDown makes the server drop every connection at once (unreachable).
func (f *Faults) SetDown(down bool) { f.down.Store(down) }

// Count is how many faults of kind ("500", "503", "stall", "truncate",
// "deny", "down") were injected.
func (f *Faults) Count(kind string) int64 {
	v, ok := f.injected.Load(kind)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (f *Faults) count(kind string) {
	v, _ := f.injected.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (f *Faults) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	return f.rng.Float64() < p
}

func (f *Faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		f.count("down")
		hijackClose(w)
		return
	}
	f.mu.Lock()
	c := f.cfg
	f.mu.Unlock()
	if c.Latency > 0 {
		select {
		case <-time.After(c.Latency):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	applies := c.OnlyPaths == nil || c.OnlyPaths(r)
	var e500, slow, stall, trunc bool
	if applies {
		e500, slow, stall = f.roll(c.Err500), f.roll(c.SlowDown), f.roll(c.Stall)
		trunc = r.Method == http.MethodGet && f.roll(c.Truncate)
	}
	f.mu.Unlock()
	switch {
	case applies && c.Deny:
		f.count("deny")
		s3Error(w, http.StatusForbidden, "AccessDenied", "Access Denied")
	case e500:
		f.count("500")
		s3Error(w, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	case slow:
		f.count("503")
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case stall:
		f.count("stall")
		select {
		case <-time.After(c.StallFor):
		case <-r.Context().Done():
			return
		}
		f.next.ServeHTTP(w, r)
	case trunc:
		f.count("truncate")
		rec := &bufferWriter{header: http.Header{}, code: http.StatusOK}
		f.next.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
		w.WriteHeader(rec.code)
		_, _ = w.Write(rec.body[:len(rec.body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		hijackClose(w)
	default:
		f.next.ServeHTTP(w, r)
	}
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

// hijackClose closes the connection under w without a (complete) reply.
func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return // not an HTTP/1 connection: the reply just ends
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

type bufferWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (b *bufferWriter) Header() http.Header  { return b.header }
func (b *bufferWriter) WriteHeader(code int) { b.code = code }
func (b *bufferWriter) Write(p []byte) (int, error) {
	b.body = append(b.body, p...)
	return len(p), nil
}
