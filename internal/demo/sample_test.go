package demo

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"github.com/logstore/logstore/internal/testenv"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/ingest"
)

var updateSample = flag.Bool("update-sample", false, "regenerate testdata/demo-sample.jsonl from ../shared/testdata/har")

type collect struct{ recs []engine.Record }

func (c *collect) Append(_ context.Context, recs []engine.Record) ([]engine.ID, error) {
	c.recs = append(c.recs, recs...)
	return make([]engine.ID, len(recs)), nil
}

// TestGenerateSample rebuilds the demo sample: every entry of the shared HAR
// captures, replayed by five sessions, bodies capped at 8 KiB.
func TestGenerateSample(t *testing.T) {
	if !*updateSample {
		t.Skip("run with -update-sample to regenerate testdata/demo-sample.jsonl")
	}
	files, err := filepath.Glob(filepath.Join(testenv.SharedTestdata(t), "har", "*.har"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	var base []engine.Record
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		c := &collect{}
		_, err = ingest.Ingest(context.Background(), c, f, fh, ingest.Options{})
		fh.Close()
		require.NoError(t, err)
		base = append(base, c.recs...)
	}
	rng := rand.New(rand.NewSource(2026))
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	n := 0
	for s := 1; s <= 5; s++ {
		for _, r := range base {
			r.Time = start.Add(time.Duration(n) * 7 * time.Second)
			r.SessionID = fmt.Sprintf("sess-%d", s)
			if r.TraceID == "" {
				r.TraceID = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
			}
			seg := strings.Split(strings.Trim(r.Path, "/"), "/")[0]
			if seg == "" {
				seg = "root"
			}
			r.RouteID = "route-" + seg
			r.ServiceID = "svc-" + strings.Split(r.Host, ".")[0]
			r.ClientIP = fmt.Sprintf("198.51.100.%d", 1+rng.Intn(250))
			r.ConsumerID = fmt.Sprintf("consumer-%d", s)
			if p := r.Payload; p != nil {
				cp := *p
				cp.RequestBody, cp.ResponseBody = capBody(p.RequestBody), capBody(p.ResponseBody)
				r.Payload = &cp
			}
			line, err := ingest.MarshalJSONL(r)
			require.NoError(t, err)
			out.Write(line)
			out.WriteByte('\n')
			n++
		}
	}
	require.NoError(t, os.WriteFile("../../testdata/demo-sample.jsonl", out.Bytes(), 0o644))
	t.Logf("wrote %d records, %d bytes", n, out.Len())
}

func capBody(b []byte) []byte {
	if len(b) > 8<<10 {
		return b[:8<<10]
	}
	return b
}
