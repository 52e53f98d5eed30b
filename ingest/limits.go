package ingest

import (
	"fmt"

	"github.com/logstore/logstore/engine"
)

// Ingest limits. They bound the memory one input can take whatever its size
// (the input is streamed: one HAR entry or one line at a time), and they
// mirror the engine's default Limits (engine/record.go), so that an entry
// the engine would refuse is reported at its place (and skipped with
// SkipInvalid) instead of failing the whole batch it would be appended with.
const (
	// MaxHAREntryBytes bounds the JSON text of one HAR entry (and of any
	// value before log.entries); a larger entry is an ErrTooLarge at its index.
	MaxHAREntryBytes = 32 << 20
	// MaxJSONLLineBytes bounds one JSONL line.
	MaxJSONLLineBytes = 16 << 20
	// MaxCombinedLineBytes bounds one combined-log line.
	MaxCombinedLineBytes = 1 << 20
	// MaxHeaders bounds request plus response headers of one record (the
	// engine's default Limits.MaxHeaders). A HAR header list is counted
	// before it is decoded, so a list of millions costs no memory.
	MaxHeaders = 256
	// MaxRecordBytes bounds one record's encoded size, payload included (the
	// engine's default Limits.MaxRecordBytes). Ingest refuses a record whose
	// encoding could exceed it, by an upper bound a few bytes per field above
	// the exact size.
	MaxRecordBytes = 8 << 20
	// MaxMethodBytes bounds the method (the engine's limit).
	MaxMethodBytes = engine.MaxMethodBytes

	// maxBatchBytes: a batch is appended once its records reach this size,
	// whatever BatchSize says.
	maxBatchBytes = 8 << 20
)

// checkRecord applies the ingest-side checks the engine's Validate does not
// (or does with a message quoting the value): method syntax, header count
// and encoded size. Its messages never show a value.
func checkRecord(r *engine.Record) error {
	if !isMethod(r.Method) {
		if r.Method == "" {
			return fmt.Errorf("method: missing")
		}
		return fmt.Errorf("method: not an HTTP method (1..%d token characters; value withheld: it may hold sealed fields)", MaxMethodBytes)
	}
	if n := len(r.RequestHeaders) + len(r.ResponseHeaders); n > MaxHeaders {
		return fmt.Errorf("%w: %d request and response headers, over the limit of %d per record", ErrTooLarge, n, MaxHeaders)
	}
	if n := encodedSizeBound(r); n > MaxRecordBytes {
		var req, resp int
		if r.Payload != nil {
			req, resp = len(r.Payload.RequestBody), len(r.Payload.ResponseBody)
		}
		return fmt.Errorf("%w: the record would encode to about %d bytes, over the limit of %d per record (request body %d bytes, response body %d bytes)",
			ErrTooLarge, n, MaxRecordBytes, req, resp)
	}
	return nil
}

// isMethod: 1..32 characters of an HTTP token, as the engine accepts.
func isMethod(m string) bool { return engine.ValidMethod(m) }

// encodedSizeBound is an upper bound of the record's encoded size as the
// engine counts it (metadata, sealed log, payload metadata and sealed
// payload): every string and count is given a 10-byte length prefix, the
// fixed parts 256 bytes.
func encodedSizeBound(r *engine.Record) int {
	n := 256
	for _, s := range []string{r.SessionID, r.TraceID, r.SpanID, r.Method, r.Host, r.ResponseSource, r.RouteID, r.ServiceID,
		r.Path, r.Query, r.ClientIP, r.ConsumerID} {
		n += len(s) + 10
	}
	for _, hs := range [][]engine.Header{r.RequestHeaders, r.ResponseHeaders} {
		for _, h := range hs {
			n += len(h.Name) + len(h.Value) + 20
		}
	}
	for k, v := range r.Attributes {
		n += len(k) + len(v) + 20
	}
	if p := r.Payload; p != nil {
		n += len(p.RequestContentType) + len(p.RequestBody) + len(p.ResponseContentType) + len(p.ResponseBody) + 40
	}
	return n
}
