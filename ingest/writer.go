package ingest

import (
	"fmt"
	"io"

	"github.com/logstore/logstore/engine"
)

// RecordWriter writes records in a format ingest reads back (ids and every
// field kept): JSONL (JSONLWriter) or HAR (HARWriter). Close ends the output
// (it does not close the underlying writer).
type RecordWriter interface {
	Write(rec engine.Record) error
	Close() error
}

// NewWriter returns a RecordWriter for format, FormatJSONL or FormatHAR;
// creator names the program (HARWriter).
func NewWriter(format Format, w io.Writer, creator string) (RecordWriter, error) {
	switch format {
	case FormatJSONL:
		return &JSONLWriter{w: w}, nil
	case FormatHAR:
		return NewHARWriter(w, creator), nil
	}
	return nil, fmt.Errorf("%w: cannot write the format %q (want jsonl or har)", ErrUsage, format)
}

// JSONLWriter writes one MarshalJSONL line per record (NewWriter(FormatJSONL, ...)).
type JSONLWriter struct {
	w   io.Writer
	err error
}

func (j *JSONLWriter) Write(rec engine.Record) error {
	if j.err != nil {
		return j.err
	}
	line, err := MarshalJSONL(rec)
	if err != nil {
		return err
	}
	_, j.err = j.w.Write(append(line, '\n'))
	return j.err
}

func (j *JSONLWriter) Close() error { return j.err }
