package engine

// Block-summary files: a sealed segment's block summaries (blocksum.go) in
// one immutable file beside it, HEXID.lsb, so a read-only open (another
// process beside the writer, a read-only copy) finds a segment's blocks
// without reading the segment or the writer's Pebble index. The file is
// derived: written after the seal, rewritten when missing or unusable, and
// never trusted over the segment (a reader that finds it missing, damaged
// or disagreeing with the manifest's block count reads the segment's
// metadata instead). Layout, little-endian (docs/format/summary.md):
//
//	+---------------------------------------------------+
//	|  0  magic "LSTBSUMS"                        8 B   |
//	|  8  format version (1)                      u16   |
//	| 10  reserved (0)                            u16   |
//	| 12  block count n                           u32   |
//	| 16  segment id                              [16]  |
//	| 32  n x (uvarint length, block summary)           |
//	|     block i has sequence number i                 |
//	| ..  CRC-32C of every byte before it         u32   |
//	+---------------------------------------------------+

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

const (
	summaryMagic     = "LSTBSUMS"
	summaryFileV1    = 1
	summaryHeaderLen = 32
	// summaryFileMax bounds what a reader loads: a segment holds at most
	// a few thousand blocks of summaries of a few hundred bytes.
	summaryFileMax = 64 << 20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// encodeSummaryFile encodes the summaries of segment seg, in sequence order.
func encodeSummaryFile(seg [16]byte, sums []*blockSummary) []byte {
	b := make([]byte, 0, summaryHeaderLen+len(sums)*128)
	b = append(b, summaryMagic...)
	b = binary.LittleEndian.AppendUint16(b, summaryFileV1)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(sums)))
	b = append(b, seg[:]...)
	var one []byte
	for _, s := range sums {
		one = appendSummary(one[:0], s)
		b = binary.AppendUvarint(b, uint64(len(one)))
		b = append(b, one...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

// summaryFileDigest is the SHA-256 of the summary file of segment seg
// whose block summaries, in sequence order, are encoded as raws: what
// sha256(encodeSummaryFile(seg, sums)) gives when each raw is
// appendSummary of its summary, computed without re-encoding (the catalog
// checks a sealed segment's index entries against its anchor this way).
func summaryFileDigest(seg [16]byte, raws [][]byte) [32]byte {
	h := sha256.New()
	c := uint32(0)
	write := func(b []byte) {
		h.Write(b)
		c = crc32.Update(c, crc32c, b)
	}
	var hdr [summaryHeaderLen]byte
	copy(hdr[:], summaryMagic)
	binary.LittleEndian.PutUint16(hdr[8:], summaryFileV1)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(raws)))
	copy(hdr[16:], seg[:])
	write(hdr[:])
	var n [binary.MaxVarintLen64]byte
	for _, r := range raws {
		write(n[:binary.PutUvarint(n[:], uint64(len(r)))])
		write(r)
	}
	h.Write(binary.LittleEndian.AppendUint32(nil, c))
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// decodeSummaryFile decodes a summary file of segment seg: ErrCorrupt when
// it is damaged or names another segment, ErrUnknownVersion for a newer
// format.
func decodeSummaryFile(seg [16]byte, b []byte) ([]*blockSummary, error) {
	return decodeSummaryFileAs(seg, b, decodeSummary)
}

func decodeSummaryFileAs(seg [16]byte, b []byte, decode func([16]byte, uint64, []byte) (*blockSummary, error)) ([]*blockSummary, error) {
	if len(b) < summaryHeaderLen+4 || string(b[:8]) != summaryMagic {
		return nil, fmt.Errorf("%w: not a block-summary file", ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crc32c) != sum {
		return nil, fmt.Errorf("%w: block-summary file checksum", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != summaryFileV1 {
		return nil, fmt.Errorf("%w: block-summary file version %d", ErrUnknownVersion, v)
	}
	if [16]byte(b[16:32]) != seg {
		return nil, fmt.Errorf("%w: block-summary file of segment %x, not %s", ErrCorrupt, b[16:32], segHex(seg))
	}
	n := binary.LittleEndian.Uint32(b[12:])
	d := decoder{b: body[summaryHeaderLen:]}
	if uint64(n) > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: block-summary file claims %d blocks in %d bytes", ErrCorrupt, n, len(d.b))
	}
	sums := make([]*blockSummary, 0, n)
	for i := uint32(0); i < n; i++ {
		v := d.bytes()
		if d.err != nil {
			return nil, fmt.Errorf("%w: block-summary file: block %d: %w", ErrCorrupt, i, d.err)
		}
		s, err := decode(seg, uint64(i), v)
		if err != nil {
			return nil, fmt.Errorf("block-summary file: block %d: %w", i, err)
		}
		sums = append(sums, s)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the block summaries", ErrCorrupt, len(d.b))
	}
	return sums, nil
}

// summarizeSegment derives the summaries of every block of r from its
// metadata sections (checksummed; no key).
func summarizeSegment(r *segment.Reader) ([]*blockSummary, error) {
	id := r.Header().ID
	blocks := r.Blocks()
	sums := make([]*blockSummary, 0, len(blocks))
	var groups groupBuilder
	for i := range blocks {
		blk, err := r.ReadMeta(i)
		if err != nil {
			return nil, err
		}
		metas, kind, err := decodeBlockMetas(blk.Meta)
		if err != nil {
			blk.Release()
			return nil, fmt.Errorf("%s block %d: %w", r.Path(), i, err)
		}
		s := summarize(id, blk.Info.Seq, blk.Info.Offset, kind, metas, blk.Meta)
		groups.add(s)
		sums = append(sums, s)
		blk.Release()
	}
	return sums, nil
}

// writeSummaryFile writes the summary file of segment seg (at segPath) and
// returns the SHA-256 of its bytes (what a manifest entry anchors). The file
// is derived data: a failure to write it is counted, not returned (readers
// then use the index or the segment instead).
func (db *DB) writeSummaryFile(segPath string, seg [16]byte, sums []*blockSummary) [32]byte {
	file := encodeSummaryFile(seg, sums)
	if err := vfs.WriteFileAtomic(db.fs, summaryPathOf(segPath), file); err != nil {
		db.stats.summaryFileFailures.Add(1)
	}
	return sha256.Sum256(file)
}

// readSummaryFile returns the summaries of the segment at segPath from its
// summary file when that file is usable and holds exactly blocks blocks;
// ok is false otherwise (the caller derives them from the segment).
// anchored is true when the file's SHA-256 is digest (its value lists are
// then decoded on first use, decodeAnchoredSummary).
func (db *DB) readSummaryFile(segPath string, seg [16]byte, blocks int, digest []byte) (sums []*blockSummary, anchored, ok bool) {
	b, err := vfs.ReadFileLimit(db.fs, summaryPathOf(segPath), summaryFileMax)
	if err != nil {
		if !errors.Is(err, vfs.ErrNotExist) {
			db.stats.summaryFileFailures.Add(1)
		}
		return nil, false, false
	}
	decode := decodeSummary
	if d := sha256.Sum256(b); len(digest) > 0 && bytes.Equal(d[:], digest) {
		decode, anchored = decodeAnchoredSummary, true
	}
	sums, err = decodeSummaryFileAs(seg, b, decode)
	if err != nil || len(sums) != blocks {
		db.stats.summaryFileFailures.Add(1)
		return nil, false, false
	}
	return sums, anchored, true
}

// ensureSummaryFiles writes the summary file of every sealed segment of
// tenant that lacks one: a store from before summary files, a seal that
// crashed before writing it, a segment sealed by recovery. It runs on Open
// (for writing); it reads each such segment's metadata once.
func (db *DB) ensureSummaryFiles(tenant string) {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return
	}
	for _, e := range tm.body.Segments {
		if e.State != segSealed || tm.problems[e.ID] != nil {
			continue
		}
		id, err := parseSegHex(e.ID)
		if err != nil {
			continue
		}
		path := db.segPath(tenant, id)
		if _, err := db.fs.Stat(summaryPathOf(path)); err == nil {
			continue
		}
		r, err := segment.Open(path, db.readOpts(tenant))
		if err != nil {
			db.stats.summaryFileFailures.Add(1)
			continue
		}
		if sums, err := summarizeSegment(r); err == nil {
			db.writeSummaryFile(path, id, anchoredEncoding(id, sums, e.Summaries))
		} else {
			db.stats.summaryFileFailures.Add(1)
		}
		_ = r.Close() // read-only
	}
}

// anchoredEncoding returns sums in the summary version the anchor digest
// covers: version 1 for a segment sealed before group filters (sums, as
// computed now, when no digest or neither matches).
func anchoredEncoding(seg [16]byte, sums []*blockSummary, digest []byte) []*blockSummary {
	if len(digest) == 0 {
		return sums
	}
	if d := sha256.Sum256(encodeSummaryFile(seg, sums)); bytes.Equal(d[:], digest) {
		return sums
	}
	v1 := asVersion1(sums)
	if d := sha256.Sum256(encodeSummaryFile(seg, v1)); bytes.Equal(d[:], digest) {
		return v1
	}
	return sums
}

// anchoredSummaries returns the summaries of segment seg that the tenant's
// manifest vouches for: have (the index's, or the summary file's) when
// they are what the manifest's summary digest covers, else the summary
// file's, else the ones the segment's metadata yields. A segment whose
// manifest entry has no digest (sealed before digests, or still active)
// is not anchored: have is returned as it is. None matching is
// ErrSegmentTampered (the segment's metadata or every copy of its
// summaries was edited).
func (db *DB) anchoredSummaries(tenant string, seg [16]byte, have []*blockSummary) (sums []*blockSummary, anchored bool, err error) {
	a := db.anchorOf(tenant, seg)
	if a == nil {
		return have, false, nil
	}
	sums, err = db.anchoredSummariesAt(tenant, seg, have, *a)
	return sums, true, err
}

// segAnchor is what a sealed segment's manifest entry anchors its summaries
// with: the summary file's SHA-256 and the block count.
type segAnchor struct {
	digest []byte
	blocks int
}

// anchorOf returns the anchor of tenant's segment seg in the manifest as it
// is now: nil unless sealed with a digest.
func (db *DB) anchorOf(tenant string, seg [16]byte) *segAnchor {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil {
		return nil
	}
	if e := tm.entry(segHex(seg)); e != nil && e.State == segSealed && len(e.Summaries) > 0 {
		return &segAnchor{digest: e.Summaries, blocks: e.Blocks}
	}
	return nil
}

// anchoredSummariesAt is anchoredSummaries against anchor a, taken by the
// caller (a lazy catalog entry keeps the anchor it was entered with, so a
// load after the manifest changed, as retention marks the segment, still
// accepts only the summaries that anchor covers).
func (db *DB) anchoredSummariesAt(tenant string, seg [16]byte, have []*blockSummary, a segAnchor) ([]*blockSummary, error) {
	e := manifestEntry{Summaries: a.digest, Blocks: a.blocks}
	var sums []*blockSummary
	var err error
	matches := func(sums []*blockSummary) bool {
		d := sha256.Sum256(encodeSummaryFile(seg, sums))
		return len(sums) == e.Blocks && bytes.Equal(d[:], e.Summaries)
	}
	if have != nil && sequential(have) && matches(have) {
		return have, nil
	}
	path := db.segPath(tenant, seg)
	if fsums, anchored, ok := db.readSummaryFile(path, seg, e.Blocks, e.Summaries); ok && (anchored || matches(fsums)) {
		return fsums, nil
	}
	r, err := db.readers.acquire(path, tenant, true)
	if err != nil {
		return nil, err
	}
	sums, err = summarizeSegment(r)
	db.readers.release(path, r)
	if err != nil {
		return nil, err
	}
	if !matches(sums) && matches(asVersion1(sums)) {
		sums = asVersion1(sums) // sealed before group filters
	}
	if !matches(sums) {
		return nil, fmt.Errorf("%w: segment %s: its blocks' metadata is not what its manifest recorded at seal (edited after it was sealed)", ErrSegmentTampered, segHex(seg))
	}
	return sums, nil
}
