package engine

// Checking the index: VerifyIndex reads every block of it (Pebble's
// checksums); indexVerifier compares one tenant's entries, in a snapshot,
// with the records its segments hold (Verify).

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	"github.com/logstore/logstore/segment"
)

// verifyIndex implements Admin.VerifyIndex (documented there).
func (db *DB) verifyIndex(ctx context.Context) error {
	n := 0
	err := guardIndex(func() error {
		return db.index.scan(nil, nil, func(_, _ []byte) error {
			if n++; n%4096 == 0 {
				return ctx.Err()
			}
			return nil
		})
	})
	if err != nil && isCorruption(err) {
		return db.index.typed(err)
	}
	return err
}

// indexVerifier compares one tenant's index with its segments.
type indexVerifier struct {
	db           *DB
	tenant       string
	snap         indexSnapshot
	active       [16]byte // the active segment, whose first activeBlocks blocks were indexed
	activeBlocks int
	checks       []SegmentCheck
	segs         map[[16]byte]int // segment -> its check
	// log and payload hold the ids found in readable blocks, true when
	// the index entry matched.
	log, payload map[ID]bool
	// damaged holds the unreadable blocks (by offset) of each segment, nil
	// for a segment that could not be opened at all.
	damaged map[[16]byte]map[int64]bool
	// tails holds, for a damaged segment, the end of its last readable
	// block: what lies beyond (a torn or truncated tail) is its problem.
	tails map[[16]byte]int64
	ends  map[[16]byte]int64 // the end of each segment's last readable block
	// Secondary index entries: a keyed hash sum of the ones the
	// authenticated records need (want) is compared with that of the ones
	// present; only when they differ is each entry looked up.
	seed   maphash.Seed
	want   uint64
	keyBuf []byte // scratch for the keys of one record
}

// newIndexVerifier starts the comparison of tenant's index with its
// segments from a snapshot taken on the writer goroutine: the index as of a
// moment when every block written so far is indexed; blocks the active
// segment gets later are not compared. Close iv.snap.
func (db *DB) newIndexVerifier(ctx context.Context, tenant string) (*indexVerifier, error) {
	iv := &indexVerifier{db: db, tenant: tenant, seed: maphash.MakeSeed(), log: map[ID]bool{}, payload: map[ID]bool{},
		damaged: map[[16]byte]map[int64]bool{}, tails: map[[16]byte]int64{}, ends: map[[16]byte]int64{}, segs: map[[16]byte]int{}, activeBlocks: -1, keyBuf: make([]byte, 0, 1024)}
	err := db.control(ctx, func() error {
		iv.snap = db.index.snapshot()
		if ts := db.tenants[tenant]; ts != nil && ts.info != nil {
			if id, err := ts.info.segID(); err == nil {
				iv.active, iv.activeBlocks = id, ts.info.Blocks
			}
		}
		return nil
	})
	return iv, err
}

// addCheck adds the check of segment id and returns it.
func (iv *indexVerifier) addCheck(id [16]byte, c SegmentCheck) *SegmentCheck {
	iv.segs[id] = len(iv.checks)
	iv.checks = append(iv.checks, c)
	return &iv.checks[len(iv.checks)-1]
}

// manifestGaps adds the checks of what the manifest lists but no file holds
// (gone segments, lost blocks, the manifest itself): index entries pointing
// into a gone segment are covered by its report.
func (iv *indexVerifier) manifestGaps(gaps []SegmentCheck) {
	for _, g := range gaps {
		// Blocks a crash cut off an active segment: their records are
		// reported lost here, not one by one.
		if id, ok := segmentIDOfLostBlocks(g.Path); ok {
			if end, ok := iv.ends[id]; ok {
				iv.tails[id] = end
			}
		}
		if id, ok := segmentIDOfPath(g.Path); ok {
			if _, dup := iv.segs[id]; !dup {
				iv.addCheck(id, g)
				iv.damaged[id] = nil
				continue
			}
		}
		iv.checks = append(iv.checks, g)
	}
}

func (iv *indexVerifier) problem(c *SegmentCheck, id ID, block int, format string, args ...any) {
	c.IndexProblems = append(c.IndexProblems, IndexProblem{ID: id, Block: block,
		Err: fmt.Errorf("%w: record %s: %s", ErrIndexMismatch, id, fmt.Sprintf(format, args...))})
}

func (iv *indexVerifier) get(key []byte) ([]byte, bool, error) { return iv.snap.get(key) }

// segment compares the entries of every readable block of r with the index.
func (iv *indexVerifier) segment(id [16]byte, r *segment.Reader, c *SegmentCheck) error {
	bad := map[int64]bool{}
	iv.damaged[id] = bad
	for _, p := range c.Result.Problems {
		if p.Block >= 0 {
			bad[p.Offset] = true
		}
	}
	end := int64(segment.HeaderSize)
	for _, b := range r.Blocks() {
		end = max(end, b.Offset+b.Length)
	}
	iv.ends[id] = end
	if len(c.Result.Problems) > 0 {
		iv.tails[id] = end
	}
	for i, b := range r.Blocks() {
		if bad[b.Offset] {
			continue
		}
		if id == iv.active && i >= iv.activeBlocks {
			break // written after the snapshot
		}
		var blk *segment.Block
		var err error
		if r.Unlocked() {
			blk, err = r.ReadBlock(i) // the metadata authenticated with the body
		} else {
			blk, err = r.ReadMeta(i) // checksums only: KeyErr says so
		}
		if err != nil {
			bad[b.Offset] = true
			continue
		}
		for j, raw := range blk.Meta {
			if err := iv.entry(c, locator{Segment: id, Offset: b.Offset, Seq: uint64(i), Index: j}, raw); err != nil {
				blk.Release()
				return err
			}
		}
		blk.Release()
	}
	return nil
}

// entry checks one record (or payload) of a block against the index.
func (iv *indexVerifier) entry(c *SegmentCheck, loc locator, raw []byte) error {
	c.IndexChecked++
	var m Meta
	kind, err := decodeMeta(raw, &m)
	if err != nil {
		iv.problem(c, m.ID, int(loc.Seq), "block %d entry %d: its metadata does not decode: %v", loc.Seq, loc.Index, err)
		return nil
	}
	found, matched := iv.log, false
	if kind == kindPayload {
		found = iv.payload
		matched, err = iv.payloadEntry(c, m.ID, loc)
	} else {
		appendIndexKeys(iv.keyBuf[:0], iv.tenant, &m, func(k []byte) { iv.want += maphash.Bytes(iv.seed, k) })
		matched, err = iv.logEntry(c, m.ID, loc, raw)
	}
	if err != nil {
		return err
	}
	if _, seen := found[m.ID]; matched || !seen {
		found[m.ID] = matched
	}
	return nil
}

// lookup reads the index entry key of record id, reporting it missing as
// "what in block N has no index entry".
func (iv *indexVerifier) lookup(c *SegmentCheck, id ID, loc locator, key []byte, what string) ([]byte, bool, error) {
	v, ok, err := iv.get(key)
	if err == nil && !ok {
		iv.problem(c, id, int(loc.Seq), "%s in block %d has no index entry", what, loc.Seq)
	}
	return v, ok, err
}

// payloadEntry compares payload id's index entry with where it is (loc).
func (iv *indexVerifier) payloadEntry(c *SegmentCheck, id ID, loc locator) (matched bool, err error) {
	v, ok, err := iv.lookup(c, id, loc, payloadKey(iv.tenant, id), "payload")
	if err != nil || !ok {
		return false, err
	}
	got, rest, derr := decodeLocator(v)
	if derr != nil || len(rest) != 0 || got != loc {
		iv.problem(c, id, int(loc.Seq), "payload entry points at %s, the payload is at %s", describeLoc(got, derr), describeLoc(loc, nil))
		return false, nil
	}
	return true, nil
}

// logEntry compares request log id's index entry with where it is (loc)
// and with its authenticated metadata (raw).
func (iv *indexVerifier) logEntry(c *SegmentCheck, id ID, loc locator, raw []byte) (matched bool, err error) {
	v, ok, err := iv.lookup(c, id, loc, recordKey(iv.tenant, id), "request log")
	if err != nil || !ok {
		return false, err
	}
	got, rest, derr := decodeLocator(v)
	switch {
	case derr != nil || got != loc:
		iv.problem(c, id, int(loc.Seq), "index entry points at %s, the request log is at %s", describeLoc(got, derr), describeLoc(loc, nil))
	case !bytes.Equal(rest, raw):
		iv.problem(c, id, int(loc.Seq), "%v", strings.Join(metaDiffRaw(rest, raw), ", "))
	default:
		return true, nil
	}
	return false, nil
}

func describeLoc(l locator, err error) string {
	if err != nil {
		return fmt.Sprintf("nothing decodable (%v)", err)
	}
	return fmt.Sprintf("segment %s block %d entry %d", segHex(l.Segment), l.Seq, l.Index)
}

// checkFor returns the check of segment id, adding one for a segment file
// that does not exist, or, for the zero id (an index entry naming no
// segment), one for the tenant's segment directory.
func (iv *indexVerifier) checkFor(id [16]byte) *SegmentCheck {
	if i, ok := iv.segs[id]; ok {
		return &iv.checks[i]
	}
	c := SegmentCheck{Tenant: iv.tenant, Path: iv.db.segPath(iv.tenant, id)}
	if id == ([16]byte{}) {
		c.Path = iv.db.segDir(iv.tenant)
	} else {
		c.OpenErr = fmt.Errorf("%w: the index points into segment %s, which does not exist", ErrIndexMismatch, c.Path)
	}
	iv.damaged[id] = map[int64]bool{}
	return iv.addCheck(id, c)
}

// unverifiable reports whether loc is in a segment or block that could not
// be read (its problem is reported already).
func (iv *indexVerifier) unverifiable(loc locator) bool {
	bad, ok := iv.damaged[loc.Segment]
	if !ok {
		return false
	}
	if tail, ok := iv.tails[loc.Segment]; ok && loc.Offset >= tail {
		return true
	}
	return bad == nil || bad[loc.Offset]
}

// orphans reports the index entries that no readable block holds.
func (iv *indexVerifier) orphans() error {
	for _, k := range []struct {
		kind byte
		seen map[ID]bool
		what string
	}{{keyRecord, iv.log, "request log"}, {keyPayload, iv.payload, "payload"}} {
		p := tenantPrefix(k.kind, iv.tenant)
		err := iv.snap.scanPrefix(p, func(key, v []byte) error {
			var id ID
			copy(id[:], key[len(p):])
			if _, seen := k.seen[id]; seen {
				return nil // compared (and reported) from the block's side
			}
			loc, _, err := decodeLocator(v)
			if err == nil && iv.unverifiable(loc) {
				return nil
			}
			block := -1
			if err == nil {
				block = int(loc.Seq)
			}
			iv.problem(iv.checkFor(loc.Segment), id, block, "the %s index entry points at %s, which holds no such record", k.what, describeLoc(loc, err))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// secondary compares the time and field index entries with the ones the
// records need: a keyed hash sum first, entry by entry only when it differs.
func (iv *indexVerifier) secondary() error {
	prefixes := [][]byte{tenantPrefix(keyTime, iv.tenant), tenantPrefix(keyIndex, iv.tenant)}
	var have uint64
	for _, p := range prefixes {
		if err := iv.snap.scanPrefix(p, func(k, _ []byte) error { have += maphash.Bytes(iv.seed, k); return nil }); err != nil {
			return err
		}
	}
	if have == iv.want {
		return nil
	}
	for id, ok := range iv.log {
		if !ok {
			continue
		}
		if err := iv.missingSecondary(id); err != nil {
			return err
		}
	}
	for _, p := range prefixes {
		if err := iv.snap.scanPrefix(p, iv.staleSecondary); err != nil {
			return err
		}
	}
	return nil
}

// missingSecondary reports the secondary entries missing for record id,
// whose index entry matched its block (so the entry's metadata is the
// authenticated one).
func (iv *indexVerifier) missingSecondary(id ID) error {
	v, found, err := iv.get(recordKey(iv.tenant, id))
	if err != nil || !found {
		return err
	}
	var m Meta
	loc, err := decodeRecordValue(v, &m)
	if err != nil {
		return err
	}
	var missing []string
	var gerr error
	indexEntries(iv.tenant, &m, func(k []byte) {
		if _, found, err := iv.get(k); err != nil {
			gerr = err
		} else if !found {
			missing = append(missing, describeIndexKey(k))
		}
	})
	if gerr != nil {
		return gerr
	}
	if len(missing) > 0 {
		iv.problem(iv.checkFor(loc.Segment), id, int(loc.Seq), "missing secondary index entries: %s", strings.Join(missing, ", "))
	}
	return nil
}

// staleSecondary reports the secondary entry k if no record's
// authenticated metadata produces it.
func (iv *indexVerifier) staleSecondary(k, _ []byte) error {
	if len(k) < 16 {
		return nil
	}
	var id ID
	copy(id[:], k[len(k)-16:])
	ok, seen := iv.log[id]
	if seen && !ok {
		return nil // the record's own problem is reported
	}
	v, found, err := iv.get(recordKey(iv.tenant, id))
	if err != nil {
		return err
	}
	if !seen && found {
		return nil // an orphan (reported) or a record in a damaged block
	}
	var loc locator // none: the entry names a record the index does not have
	stale := true
	var m Meta
	if seen {
		if l, err := decodeRecordValue(v, &m); err == nil {
			loc = l
			indexEntries(iv.tenant, &m, func(wk []byte) { stale = stale && !bytes.Equal(wk, k) })
		}
	}
	if stale {
		iv.problem(iv.checkFor(loc.Segment), id, -1, "stale secondary index entry %s", describeIndexKey(k))
	}
	return nil
}

func describeIndexKey(k []byte) string {
	ik, err := decodeIndexKey(k)
	if err != nil {
		return fmt.Sprintf("%x", k)
	}
	switch {
	case ik.Kind == keyTime:
		return "time " + ik.Time.Format(time.RFC3339Nano)
	case ik.Field == "status":
		return fmt.Sprintf("status %d", ik.Status)
	default:
		return fmt.Sprintf("%s %q", ik.Field, ik.Value)
	}
}
