package engine

// Index format 1 held nine entries per record ('r', 't', 'i', 'p'); format
// 2 holds one summary per block ('b'). Both are derived from the segments,
// so migrating is deleting: one atomic batch removes every per-record entry
// and every segment state ('s'), and Open's recovery then indexes every
// segment again, exactly as after Options.RebuildIndex. A crash before the
// batch commits leaves format 1 (migrated on the next Open); after it, the
// states are gone and recovery indexes again. The non-derived entries ('c',
// 'm') are kept in place.

import (
	"errors"
	"fmt"
)

// errStopIter ends an index scan early.
var errStopIter = errors.New("stop")

// legacyKinds are the per-record key kinds of index format 1.
var legacyKinds = []byte{keyRecord, keyTime, keyIndex, keyPayload}

// migrateIndex removes format 1's entries, if any; it reports whether it
// did (the index then holds no segment state, and recovery rebuilds it).
func (x *index) migrateIndex() (bool, error) {
	legacy := false
	for _, k := range legacyKinds {
		err := x.scan([]byte{k}, []byte{k + 1}, func(_, _ []byte) error {
			legacy = true
			return errStopIter
		})
		if err != nil && err != errStopIter {
			return false, x.typed(err)
		}
	}
	if !legacy {
		return false, nil
	}
	if err := x.writable(); err != nil {
		return false, fmt.Errorf("logstore/engine: the index is in format 1 and must be migrated, which needs to write: %w", err)
	}
	b := x.newBatch()
	defer b.close()
	kinds := append([]byte{keySegment, keyBlock}, legacyKinds...)
	for _, k := range kinds {
		if err := b.deleteRange([]byte{k}, []byte{k + 1}); err != nil {
			return false, err
		}
	}
	if err := x.commit(b); err != nil {
		return false, fmt.Errorf("logstore/engine: migrate index from format 1: %w", err)
	}
	if err := x.flush(); err != nil {
		return false, err
	}
	// The old entries held plaintext metadata: compact them out of the
	// files now rather than whenever Pebble gets to them.
	for _, k := range legacyKinds {
		if err := x.compact([]byte{k}, []byte{k + 1}); err != nil {
			return true, err
		}
	}
	return true, nil
}
