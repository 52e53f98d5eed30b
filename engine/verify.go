package engine

// Verify: every segment file of a tenant checked against its checksums, its
// key, the tenant manifest (verifymanifest.go) and the index
// (indexverify.go).

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
)

// SegmentCheck is the verification result of one segment file.
type SegmentCheck struct {
	Tenant  string
	Path    string
	KeyURI  string // the key the segment's DEK is wrapped under
	Result  segment.VerifyResult
	KeyErr  error // why bodies could not be authenticated (checksums still checked)
	OpenErr error // also set, for a segment file that is missing, when index entries point into it
	// IndexChecked counts the segment's entries (request logs and
	// payloads) in the blocks compared with the index.
	IndexChecked int
	// IndexProblems lists where the index disagrees with the segment's
	// blocks, authenticated unless KeyErr is set: a block without an index
	// entry, or whose entry differs from the summary the block yields; an
	// index entry for a block the segment does not hold.
	IndexProblems []IndexProblem
}

// IsSegment reports whether the check is of a segment file (the others are
// of a tenant's manifest, the audit trail or blocks a crash cut off).
func (c SegmentCheck) IsSegment() bool { return strings.HasSuffix(c.Path, segmentExt) }

// IndexProblem is one disagreement between the index and a segment. Err
// matches ErrIndexMismatch.
type IndexProblem struct {
	// ID is the record involved; zero when the problem is a whole block's
	// index entry (the index holds one entry per block).
	ID    ID
	Block int // the block of the segment involved, -1 if none
	Err   error
}

// verify implements Admin.Verify (documented there).
func (db *DB) verify(ctx context.Context, tenant string) ([]SegmentCheck, error) {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = db.listTenants(); err != nil {
			return nil, err
		}
	}
	var out []SegmentCheck
	for _, t := range tenants {
		checks, err := db.verifyTenant(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, checks...)
	}
	return out, nil
}

func (db *DB) verifyTenant(ctx context.Context, t string) ([]SegmentCheck, error) {
	iv, err := db.newIndexVerifier(ctx, t)
	if err != nil {
		return nil, err
	}
	files, err := db.listSegmentFiles(t)
	if err != nil {
		return nil, err
	}
	for _, id := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !iv.known[id] {
			continue // created after the snapshot: the next Verify compares it
		}
		if err := db.verifySegment(ctx, iv, id); err != nil {
			return nil, err
		}
	}
	iv.manifestGaps(db.manifestGaps(t))
	iv.orphans()
	for _, c := range iv.checks {
		sort.SliceStable(c.IndexProblems, func(i, j int) bool {
			a, b := c.IndexProblems[i], c.IndexProblems[j]
			return a.Block < b.Block || a.Block == b.Block && bytes.Compare(a.ID[:], b.ID[:]) < 0
		})
	}
	return iv.checks, nil
}

// verifySegment checks one segment file: that reads would accept it, its
// checksums, its blocks' authentication when the key is available, and its
// records against the index (iv).
func (db *DB) verifySegment(ctx context.Context, iv *indexVerifier, id [16]byte) error {
	t := iv.tenant
	c := iv.addCheck(id, SegmentCheck{Tenant: t, Path: db.segPath(t, id)})
	r, err := segment.Open(c.Path, db.readOpts(t))
	if err != nil {
		c.OpenErr = err
		iv.damaged[id] = nil // the whole segment
		return nil
	}
	defer r.Close()
	h := r.Header()
	c.KeyURI = h.Slot.KeyURI
	if err := db.verifyAdmission(t, r, c); err != nil {
		c.OpenErr = err
		iv.damaged[id] = nil
		return nil
	}
	if h.Cipher != segment.CipherNone && c.KeyErr == nil {
		c.KeyErr = db.unlockSegment(ctx, t, r)
	}
	c.Result = r.Verify()
	if p, _ := db.summaryFileProblem(t, id); p != nil {
		c.IndexProblems = append(c.IndexProblems, IndexProblem{Block: -1, Err: p})
	}
	return iv.segment(id, r, c)
}

// verifyAdmission is what reads refuse, and what the manifest says the file
// must be; a manifest that could not be authenticated for want of its key
// is a key error (c.KeyErr), not damage.
func (db *DB) verifyAdmission(tenant string, r *segment.Reader, c *SegmentCheck) error {
	err := db.manifestCheck(tenant, r)
	var ke *keys.Error
	if errors.As(err, &ke) {
		c.KeyErr, err = err, nil
	}
	if err != nil {
		return err
	}
	return db.checkSlotGeneration(tenant, r)
}

// unlockSegment unwraps r's DEK and lets r authenticate its blocks.
func (db *DB) unlockSegment(ctx context.Context, tenant string, r *segment.Reader) error {
	dek, err := db.segmentDEK(ctx, tenant, r.Header())
	if err != nil {
		return err
	}
	defer keys.Zero(dek)
	return r.Unlock(dek)
}
