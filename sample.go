// Package logstore holds the module's bundled data; the engine is in
// package engine, the CLI in cmd/logstore.
package logstore

import _ "embed"

// DemoSample is testdata/demo-sample.jsonl: 300 request logs replayed from
// the real HAR captures in the project's shared test data (mitmproxy's, MIT
// licence), in the JSONL ingest schema. `logstore demo` ingests it.
//
//go:embed testdata/demo-sample.jsonl
var DemoSample []byte
