package ingest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func seedFiles(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join(shared, g))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	if b, err := os.ReadFile("../../testdata/demo-sample.jsonl"); err == nil {
		f.Add(b[:bytes.IndexByte(b, '\n')+1])
	}
}

// fuzzFormat runs one decoder on arbitrary input: it must never panic, and
// every failure is a typed error.
func fuzzFormat(f *testing.F, format Format) {
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Ingest(context.Background(), &sink{}, "fuzz", bytes.NewReader(data), Options{Tenant: "t", Format: format})
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

func FuzzHAR(f *testing.F) {
	seedFiles(f, "har/*.har", "har-bad/*.har")
	fuzzFormat(f, FormatHAR)
}

func FuzzJSONL(f *testing.F) {
	seedFiles(f, "har-bad/*.jsonl")
	fuzzFormat(f, FormatJSONL)
}

func FuzzCombined(f *testing.F) {
	f.Add([]byte(`83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0"` + "\n"))
	if b, err := os.ReadFile(filepath.Join(shared, "access", "apache_logs")); err == nil {
		f.Add(b[:4096])
	}
	fuzzFormat(f, FormatCombined)
}

func FuzzDetect(f *testing.F) {
	seedFiles(f, "har-bad/*")
	fuzzFormat(f, FormatAuto)
}
