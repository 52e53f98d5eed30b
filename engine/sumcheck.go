package engine

// Checks of a sealed segment's derived summary data against its manifest
// entry: the block-summary file (HEXID.lsb) must hash to the entry's
// `summaries` digest, and the entry's rollup must be what those summaries
// say. Verify reports a difference; Reindex rewrites a summary file that
// is missing or differs (from the segment's own metadata, anchored).

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"

	"github.com/logstore/logstore/vfs"
)

// summaryFileProblem returns why sealed segment id's summary file or rollup
// disagrees with its manifest entry (nil: they agree, or the entry anchors
// no summaries). fileBad is set when the file itself is the problem.
func (db *DB) summaryFileProblem(tenant string, id [16]byte) (problem error, fileBad bool) {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil, false
	}
	e := tm.entry(segHex(id))
	if e == nil || e.State != segSealed || len(e.Summaries) == 0 || e.Blocks == 0 {
		return nil, false
	}
	path := summaryPathOf(db.segPath(tenant, id))
	b, err := vfs.ReadFileLimit(db.fs, path, summaryFileMax)
	switch {
	case errors.Is(err, vfs.ErrNotExist):
		return fmt.Errorf("%w: summary file %s is missing (a writer's Open or `logstore segments reindex` writes it)", ErrIndexMismatch, path), true
	case err != nil:
		return fmt.Errorf("%w: summary file %s: %w", ErrIndexMismatch, path, err), true
	}
	if d := sha256.Sum256(b); !bytes.Equal(d[:], e.Summaries) {
		return fmt.Errorf("%w: summary file %s is not the one the manifest anchors (`logstore segments reindex` rewrites it)", ErrIndexMismatch, path), true
	}
	if e.Rollup == nil {
		return nil, false
	}
	sums, err := decodeSummaryFile(id, b)
	if err != nil {
		return fmt.Errorf("%w: summary file %s: %w", ErrIndexMismatch, path, err), true
	}
	if got := rollupOf(sums); !reflect.DeepEqual(got, e.Rollup) {
		return fmt.Errorf("%w: segment %s: the manifest's rollup %+v is not what its summaries say (%+v)", ErrIndexMismatch, e.ID, *e.Rollup, *got), false
	}
	return nil, false
}

// rewriteSummaryFile writes sealed segment id's summary file again from
// the segment's metadata when it is missing or differs from its anchor,
// and returns whether it did.
func (db *DB) rewriteSummaryFile(tenant string, id [16]byte) bool {
	if _, fileBad := db.summaryFileProblem(tenant, id); !fileBad {
		return false
	}
	a := db.anchorOf(tenant, id)
	if a == nil {
		return false
	}
	// From the segment only: the index and the file are what is doubted.
	_ = db.fs.Remove(summaryPathOf(db.segPath(tenant, id)))
	sums, err := db.anchoredSummariesAt(tenant, id, nil, *a)
	if err != nil {
		db.stats.summaryFileFailures.Add(1)
		return false
	}
	db.writeSummaryFile(db.segPath(tenant, id), id, sums)
	return true
}
