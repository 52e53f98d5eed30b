// Package ingest turns captures into engine records: HAR 1.2 files, JSONL in
// the engine's record schema, and Apache/nginx combined access logs. Every
// decoder reports the place of a malformed entry (file:line or HAR entry
// index) and never panics on bad input.
//
// Inputs are streamed, one HAR entry or one line at a time, so memory is
// bounded whatever the input size (limits.go: entry and line sizes, headers
// and encoded size per record). Error messages name the place, the field and
// the kind of problem but never a value from the input, which may hold
// sealed fields (redact.go).
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/logstore/logstore/engine"
)

// Format names an input format.
type Format string

const (
	FormatAuto     Format = "auto"
	FormatJSONL    Format = "jsonl"
	FormatHAR      Format = "har"
	FormatCombined Format = "combined"
)

// ParseFormat validates a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "", FormatAuto:
		return FormatAuto, nil
	case FormatJSONL, FormatHAR, FormatCombined:
		return f, nil
	}
	return "", fmt.Errorf("%w: unknown format %q (want auto, jsonl, har or combined)", ErrUsage, s)
}

// Errors.
var (
	// ErrMalformed wraps every bad-entry error (*EntryError says where).
	ErrMalformed = errors.New("logstore/ingest: malformed input")
	// ErrUnknownFormat: auto-detection recognised nothing.
	ErrUnknownFormat = errors.New("logstore/ingest: unrecognised input format")
	// ErrUsage: bad options.
	ErrUsage = errors.New("logstore/ingest: invalid options")
	// ErrTooLarge: an entry or line over the ingest limits (limits.go); it
	// comes inside an *EntryError naming the place, so it is also an
	// ErrMalformed, and SkipInvalid skips it.
	ErrTooLarge = errors.New("logstore/ingest: entry over the ingest limits")
)

// EntryError locates a malformed entry.
type EntryError struct {
	File  string
	Line  int // 1-based line, 0 if unknown
	Entry int // HAR entry index (0-based), -1 if not HAR
	Err   error
}

func (e *EntryError) Error() string {
	switch {
	case e.Entry >= 0 && e.Line > 0:
		return fmt.Sprintf("%s:%d: HAR entry %d: %v", e.File, e.Line, e.Entry, e.Err)
	case e.Entry >= 0:
		return fmt.Sprintf("%s: HAR entry %d: %v", e.File, e.Entry, e.Err)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *EntryError) Is(target error) bool { return target == ErrMalformed }
func (e *EntryError) Unwrap() error        { return e.Err }

// Options configure Ingest.
type Options struct {
	// Format is the input's format (default FormatAuto: detected).
	Format Format
	// Session, when set, becomes the session id of every record without one.
	Session string
	// SkipInvalid counts malformed entries and goes on (default: stop at the first).
	SkipInvalid bool
	// BatchSize is how many records go into one Append (default 500); a
	// batch is appended earlier when its records reach 8 MiB.
	BatchSize int
	// Progress, if set, is called after each stored batch with the totals.
	Progress func(Progress)
	// Idempotent gives every record without an id one derived from its
	// content and stores only the records the tenant does not hold yet
	// (dedupe.go): the Appender must be a Finder too. Default off (the
	// CLI turns it on).
	Idempotent bool
}

// Progress is reported after each batch.
type Progress struct {
	Records int
	Bytes   int64 // input bytes consumed
}

// Result sums up one input.
type Result struct {
	Format  Format
	Stored  int
	Skipped int
	// Duplicates counts records an idempotent ingest found stored already.
	Duplicates int
	Bytes      int64
	// Skips holds the reasons for skipped entries (at most 100).
	Skips []error
}

// Appender is what Ingest writes to: one tenant (*engine.Tenant).
type Appender interface {
	Append(ctx context.Context, recs []engine.Record) ([]engine.ID, error)
}

// Ingest reads one input named name from r and appends its records. On a
// malformed entry it stops (unless SkipInvalid) after storing every record
// before it, and returns the *EntryError with Result.Stored set; nothing
// acknowledged is lost either way.
func Ingest(ctx context.Context, db Appender, name string, r io.Reader, o Options) (Result, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	br := bufio.NewReaderSize(r, 1<<16)
	if o.Format == "" || o.Format == FormatAuto {
		head, _ := br.Peek(64 << 10)
		f, err := Detect(head)
		if err != nil {
			return Result{Format: o.Format}, fmt.Errorf("%s: %w", name, err)
		}
		o.Format = f
	}
	in := &ingestRun{ctx: ctx, db: db, o: o, res: Result{Format: o.Format}, cr: &countingReader{r: br}}
	if o.Idempotent {
		f, ok := db.(Finder)
		if !ok {
			return in.res, fmt.Errorf("%w: an idempotent ingest needs an Appender that can look records up (GetMeta)", ErrUsage)
		}
		in.finder = f
	}
	var err error
	switch o.Format {
	case FormatHAR:
		err = readHAR(in.cr, name, in.emit, in.bad)
	case FormatJSONL:
		err = readJSONL(in.cr, name, in.emit, in.bad)
	case FormatCombined:
		err = readCombined(in.cr, name, in.emit, in.bad)
	default:
		err = fmt.Errorf("%w: %q", ErrUsage, o.Format)
	}
	// Store what came before the failure, then report it.
	if ferr := in.flush(); ferr != nil {
		return in.res, errors.Join(ferr, err)
	}
	in.res.Bytes = in.cr.n
	return in.res, err
}

// ingestRun is one Ingest: the batch being filled and the totals.
type ingestRun struct {
	ctx        context.Context
	db         Appender
	finder     Finder // set for an idempotent ingest
	o          Options
	res        Result
	cr         *countingReader
	ids        contentIDs
	batch      []engine.Record
	batchBytes int
}

// flush appends the batch (for an idempotent ingest, the records the
// tenant does not hold yet).
func (in *ingestRun) flush() error {
	if len(in.batch) == 0 {
		return nil
	}
	todo := in.batch
	if in.finder != nil {
		var dups int
		var err error
		if todo, dups, err = unstored(in.ctx, in.finder, in.batch); err != nil {
			return err
		}
		in.res.Duplicates += dups
	}
	if len(todo) > 0 {
		if _, err := in.db.Append(in.ctx, todo); err != nil {
			return err
		}
	}
	in.res.Stored += len(todo)
	clear(in.batch) // drop the bodies now, not when the slots are reused
	in.batch, in.batchBytes = in.batch[:0], 0
	if in.o.Progress != nil {
		in.o.Progress(Progress{Records: in.res.Stored, Bytes: in.cr.n})
	}
	return nil
}

// emit adds a parsed record to the batch, appending the batch when full.
func (in *ingestRun) emit(rec engine.Record) error {
	if rec.SessionID == "" {
		rec.SessionID = in.o.Session
	}
	if err := checkRecord(&rec); err != nil {
		return errInvalid{err}
	}
	if err := rec.Validate(); err != nil {
		return errInvalid{err}
	}
	if in.finder != nil && rec.ID == (engine.ID{}) {
		id, err := in.ids.contentID(&rec)
		if err != nil {
			return errInvalid{err}
		}
		rec.ID = id
	}
	in.batch = append(in.batch, rec)
	in.batchBytes += encodedSizeBound(&rec)
	if len(in.batch) >= in.o.BatchSize || in.batchBytes >= maxBatchBytes {
		return in.flush()
	}
	return nil
}

// bad handles a malformed entry: the error, or (SkipInvalid) a count.
func (in *ingestRun) bad(err error) error {
	if !in.o.SkipInvalid {
		return err
	}
	in.res.Skipped++
	if len(in.res.Skips) < 100 {
		in.res.Skips = append(in.res.Skips, err)
	}
	return nil
}

// errInvalid marks a parsed record the engine would refuse; the readers
// turn it into an EntryError at the record's place.
type errInvalid struct{ error }

func (e errInvalid) Unwrap() error { return e.error }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// Detect guesses the format from the first bytes of an input.
func Detect(head []byte) (Format, error) {
	b := bytes.TrimLeft(bytes.TrimPrefix(head, bom), " \t\r\n")
	if len(b) == 0 {
		return "", fmt.Errorf("%w: the input is empty", ErrUnknownFormat)
	}
	if b[0] == '{' {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i]
		}
		line = bytes.TrimSpace(line)
		// One JSON object per line is JSONL; a HAR opens with {"log": ...}.
		if bytes.HasPrefix(bytes.TrimLeft(line[1:], " \t"), []byte(`"log"`)) || len(line) == 1 {
			return FormatHAR, nil
		}
		return FormatJSONL, nil
	}
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	if combinedRE.Match(line) {
		return FormatCombined, nil
	}
	return "", fmt.Errorf("%w: not HAR, JSONL or a combined access log (the first line is withheld: it may hold sealed fields)", ErrUnknownFormat)
}

// readLines runs parse on every non-blank line (a BOM on the first is
// dropped) and reports failures at file:line. A line longer than max bytes
// is an ErrTooLarge at its line (skipped with SkipInvalid) and never held in
// memory beyond max.
func readLines(r io.Reader, name string, max int, parse func([]byte) (engine.Record, error), emit func(engine.Record) error, bad func(error) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for line := 1; ; line++ {
		b, tooLong, rerr := readLine(br, &buf, max)
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
		if rerr == io.EOF && len(b) == 0 && !tooLong {
			return nil
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, bom)
		}
		var err error
		switch {
		case tooLong:
			err = fmt.Errorf("%w: the line is longer than %d bytes", ErrTooLarge, max)
		case len(bytes.TrimSpace(b)) == 0:
		default:
			var rec engine.Record
			if rec, err = parse(b); err == nil {
				err = emit(rec)
				var ie errInvalid
				if err != nil && !errors.As(err, &ie) {
					return err // the store failed: stop
				}
				if err != nil {
					err = ie.error
				}
			}
		}
		if err != nil {
			if err := bad(&EntryError{File: name, Line: line, Entry: -1, Err: err}); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// readLine reads one line without its end (\n or \r\n) into *buf, keeping at
// most max bytes: a longer line is read to its end and reported tooLong.
func readLine(br *bufio.Reader, buf *[]byte, max int) (line []byte, tooLong bool, err error) {
	if cap(*buf) > 1<<20 {
		*buf = nil // a long line's buffer is not kept for the short ones after it
	}
	*buf = (*buf)[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(*buf)+len(chunk) > max+2 { // room for the line end
				tooLong, *buf = true, nil
			} else {
				*buf = append(*buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		b := *buf
		if len(b) > 0 && b[len(b)-1] == '\n' {
			b = b[:len(b)-1]
			if len(b) > 0 && b[len(b)-1] == '\r' {
				b = b[:len(b)-1]
			}
		}
		if len(b) > max {
			tooLong, b = true, nil
		}
		return b, tooLong, err
	}
}
