package ingest

// Idempotent ingest (Options.Idempotent): every record without an id gets
// one derived from its content, and a record whose id the tenant already
// holds is not stored again. So running the same ingest twice, or again
// after an interruption, stores each record once.
//
// "The same record" is the same tenant and the same content: every field of
// the record as the JSONL schema writes it (time to the nanosecond, method,
// URL, status, latencies, headers in order, bodies, attributes...), the id
// aside. Identical entries within one input (two requests alike in every
// field) stay distinct: the k-th occurrence of a content gets its own id, so
// they are stored k times on the first run and never again.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/logstore/logstore/engine"
)

// Finder is what an idempotent ingest asks whether a record is stored
// (*engine.Tenant).
type Finder interface {
	GetMeta(ctx context.Context, id engine.ID) (*engine.Meta, error)
}

// contentIDs assigns content-derived ids within one input.
type contentIDs struct {
	// seen counts the occurrences of each content digest so far. It is
	// cleared past maxSeen digests: identical records more than a million
	// records apart in one input would then share an id (and the later
	// one would be taken as already stored).
	seen map[[32]byte]uint32
}

const maxSeen = 1 << 20

// contentID is the id of rec: its time in milliseconds (6 bytes, so ids
// sort and range like the engine's own), then 10 bytes of the SHA-256 of
// its content and occurrence number.
func (c *contentIDs) contentID(rec *engine.Record) (engine.ID, error) {
	r := *rec
	r.ID = engine.ID{}
	js, err := MarshalJSONL(r)
	if err != nil {
		return engine.ID{}, err
	}
	d := sha256.Sum256(js)
	if c.seen == nil || len(c.seen) >= maxSeen {
		c.seen = map[[32]byte]uint32{}
	}
	k := c.seen[d]
	c.seen[d] = k + 1
	h := sha256.New()
	h.Write(d[:])
	h.Write(binary.BigEndian.AppendUint32(nil, k))
	var id engine.ID
	ms := uint64(rec.Time.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (8 * (5 - i)))
	}
	copy(id[6:], h.Sum(nil))
	return id, nil
}

// unstored returns the records of batch the tenant does not hold yet (by
// id), in order, and how many it already held. A lookup that fails other
// than with ErrNotFound fails the batch: storing a record twice is not
// what an idempotent ingest may do silently.
func unstored(ctx context.Context, f Finder, batch []engine.Record) ([]engine.Record, int, error) {
	out := batch[:0]
	dups := 0
	for i := range batch {
		_, err := f.GetMeta(ctx, batch[i].ID)
		switch {
		case err == nil:
			dups++
		case errors.Is(err, engine.ErrNotFound):
			out = append(out, batch[i])
		default:
			return nil, 0, fmt.Errorf("checking whether record %s is already stored: %w", batch[i].ID, err)
		}
	}
	return out, dups, nil
}
