package engine

// Block summaries: the index holds one entry per block, not nine per record.
// A summary says where the block is and what it could hold (time range, id
// range, status and latency range, and a bloom filter over its ids and
// indexed values), so a scan or a Get reads only the blocks that may match
// and takes the records' metadata from the block itself. Layout:
// docs/format/index.md.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
)

// blockSummary is one block's index entry.
type blockSummary struct {
	seg    [16]byte
	seq    uint64
	offset int64
	kind   byte // kindLog or kindPayload
	count  int
	// minTime and maxTime bound the records' times (unix ns); minID and
	// maxID bound their ids (byte order), which is what a Get by id narrows
	// by: an engine-assigned id starts with its record's time.
	minTime, maxTime int64
	minID, maxID     ID
	// metaHash is the hash of the block's metadata section (metaHashOf):
	// a read of the section checks it, and a sealed segment's summaries
	// are anchored in its manifest entry, so the plaintext metadata
	// queries serve from a sealed segment is authenticated without a key.
	metaHash [16]byte
	// Request-log blocks only: ranges of status and latency.
	minStatus, maxStatus   uint16
	minLatency, maxLatency float64
	bloom                  bloom
	// exact are the value lists of the fields with few values in the
	// block (blockcounts.go), by field byte; or lazyExact holds them
	// encoded until first use (an anchored summary, decodeAnchoredSummary).
	exact     []fieldCounts
	lazyExact *lazyExact
	// mem, for a journal block (journal.go), holds its records: reads take
	// them from memory, not from the file. Never encoded.
	mem *memBlock
	// group, on the last block of a group (blockgroup.go), filters the
	// indexed string values of the whole group's request logs.
	group *bloom
	// values are the hashes of the block's indexed string values, kept
	// by summarize for a groupBuilder, which drops them. Never encoded.
	values []uint64
	// version is the encoding it was decoded from (summaryVersion1 has no
	// group filter); 0 for a summary computed now (summaryVersion). A
	// summary re-encodes to the bytes it came from: a sealed segment's
	// are anchored by their hash.
	version byte
}

// Bloom entries are hashed with a one-byte domain: an id, or a field's
// index byte (format.go) followed by its value.
const bloomDomainID = 0

// bloomBitsPerEntry and bloomHashes give a false-positive rate near 1%.
const (
	bloomBitsPerEntry = 10
	bloomHashes       = 7
	// summaryVersion is written: version 1 (still read) is the same
	// without the group filter trailer (docs/format/index.md).
	summaryVersion1 = 1
	summaryVersion  = 2
	// maxBloomWords bounds a decoded filter: a block holds at most 2^20
	// records (segment.MaxBlockRecords) with 8 entries each.
	maxBloomWords = (1 << 20) * 8 * bloomBitsPerEntry / 64
)

// bloom is a bloom filter of 64-bit words; k probes by double hashing.
type bloom struct {
	k     uint8
	words []uint64
}

func newBloom(entries int) bloom {
	bits := max(entries*bloomBitsPerEntry, 64)
	return bloom{k: bloomHashes, words: make([]uint64, (bits+63)/64)}
}

func (b *bloom) addHash(h uint64) {
	m := uint64(len(b.words) * 64)
	h1, h2 := h, h>>32|1
	for i := uint64(0); i < uint64(b.k); i++ {
		p := (h1 + i*h2) % m
		b.words[p/64] |= 1 << (p % 64)
	}
}

func (b *bloom) hasHash(h uint64) bool {
	if len(b.words) == 0 {
		return false
	}
	m := uint64(len(b.words) * 64)
	h1, h2 := h, h>>32|1
	for i := uint64(0); i < uint64(b.k); i++ {
		p := (h1 + i*h2) % m
		if b.words[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

// bloomKey hashes one entry: a domain byte and its bytes.
func bloomKey(domain byte, v string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{domain})
	_, _ = d.WriteString(v)
	return d.Sum64()
}

func idHash(id ID) uint64 { return bloomKey(bloomDomainID, string(id[:])) }

func statusHash(s int) uint64 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(s))
	return bloomKey(idxStatus, string(b[:]))
}

// metaHashOf hashes a block's metadata section, its entries as stored:
// SHA-256 over each entry's uvarint length and bytes, cut to 16 bytes.
func metaHashOf(raw [][]byte) [16]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, e := range raw {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(e)))])
		h.Write(e)
	}
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// summarize builds the summary of a block from its records' metadata
// (metas, decoded from raw, the entries as stored).
func summarize(seg [16]byte, seq uint64, offset int64, kind byte, metas []*Meta, raw [][]byte) *blockSummary {
	s := &blockSummary{seg: seg, seq: seq, offset: offset, kind: kind, count: len(metas), metaHash: metaHashOf(raw)}
	hashes := make(map[uint64]struct{}, len(metas)*3)
	counter := exactCounter{}
	for i, m := range metas {
		t := m.Time.UnixNano()
		if i == 0 {
			s.minTime, s.maxTime, s.minID, s.maxID = t, t, m.ID, m.ID
			if kind == kindLog {
				s.minStatus, s.maxStatus = uint16(m.Status), uint16(m.Status)
				s.minLatency, s.maxLatency = m.LatencyMs, m.LatencyMs
			}
		}
		s.minTime, s.maxTime = min(s.minTime, t), max(s.maxTime, t)
		if string(m.ID[:]) < string(s.minID[:]) {
			s.minID = m.ID
		}
		if string(m.ID[:]) > string(s.maxID[:]) {
			s.maxID = m.ID
		}
		hashes[idHash(m.ID)] = struct{}{}
		if kind != kindLog {
			continue
		}
		s.minStatus, s.maxStatus = min(s.minStatus, uint16(m.Status)), max(s.maxStatus, uint16(m.Status))
		s.minLatency, s.maxLatency = minFloat(s.minLatency, m.LatencyMs), maxFloat(s.maxLatency, m.LatencyMs)
		hashes[statusHash(m.Status)] = struct{}{}
		counter.addMeta(m)
		for _, f := range indexedStrings {
			if v := *f.str(m); v != "" {
				h := bloomKey(f.index, v)
				if _, seen := hashes[h]; !seen {
					hashes[h] = struct{}{}
					s.values = append(s.values, h)
				}
			}
		}
	}
	s.bloom = newBloom(len(hashes))
	for h := range hashes {
		s.bloom.addHash(h)
	}
	s.exact = counter.lists()
	return s
}

// minFloat and maxFloat order NaN below every number, so a NaN latency
// (refused by validation, but possible in a damaged block) never hides one.
func minFloat(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return math.Min(a, b)
}

func maxFloat(a, b float64) float64 {
	if math.IsNaN(a) {
		return b
	}
	if math.IsNaN(b) {
		return a
	}
	return math.Max(a, b)
}

// asVersion1 returns sums as version-1 summaries (no group filters): what
// a segment sealed before version 2 anchored.
func asVersion1(sums []*blockSummary) []*blockSummary {
	out := make([]*blockSummary, len(sums))
	for i, s := range sums {
		c := *s
		c.version, c.group = summaryVersion1, nil
		out[i] = &c
	}
	return out
}

// mayHoldID reports whether the block may hold the record id.
func (s *blockSummary) mayHoldID(id ID) bool {
	if string(id[:]) < string(s.minID[:]) || string(id[:]) > string(s.maxID[:]) {
		return false
	}
	return s.mem != nil || s.bloom.hasHash(idHash(id))
}

// summarizeMem is the summary of a journal block (served from memory,
// never encoded): ranges only. Its records are filtered in memory, so it
// skips the filters and value lists that spare a read of a block on disk.
func summarizeMem(seg [16]byte, seq uint64, offset int64, kind byte, metas []*Meta, mb *memBlock) *blockSummary {
	s := &blockSummary{seg: seg, seq: seq, offset: offset, kind: kind, count: len(metas), mem: mb}
	for i, m := range metas {
		t := m.Time.UnixNano()
		if i == 0 {
			s.minTime, s.maxTime, s.minID, s.maxID = t, t, m.ID, m.ID
		}
		s.minTime, s.maxTime = min(s.minTime, t), max(s.maxTime, t)
		if string(m.ID[:]) < string(s.minID[:]) {
			s.minID = m.ID
		}
		if string(m.ID[:]) > string(s.maxID[:]) {
			s.maxID = m.ID
		}
	}
	return s
}

// mayMatch reports whether the block may hold a request log that ix
// selects (any of its values).
func (s *blockSummary) mayMatch(ix *Index) bool {
	if s.kind != kindLog {
		return false
	}
	if ix.field == nil || s.mem != nil {
		return true // a journal block has no filters: its records are in memory
	}
	if n, ok := s.exactCount(ix); ok {
		return n > 0
	}
	for _, st := range ix.statuses {
		if uint16(st) >= s.minStatus && uint16(st) <= s.maxStatus && s.bloom.hasHash(statusHash(st)) {
			return true
		}
	}
	for _, v := range ix.values {
		if v != "" && s.bloom.hasHash(bloomKey(ix.field.index, v)) {
			return true
		}
	}
	return false
}

// appendSummary encodes s as an index value (docs/format/index.md).
func appendSummary(b []byte, s *blockSummary) []byte {
	ver := s.version
	if ver == 0 {
		ver = summaryVersion
	}
	b = append(b, ver, s.kind)
	b = binary.AppendUvarint(b, uint64(s.offset))
	b = binary.AppendUvarint(b, uint64(s.count))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.minTime))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.maxTime))
	b = append(b, s.minID[:]...)
	b = append(b, s.maxID[:]...)
	b = append(b, s.metaHash[:]...)
	b = binary.LittleEndian.AppendUint16(b, s.minStatus)
	b = binary.LittleEndian.AppendUint16(b, s.maxStatus)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.minLatency))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.maxLatency))
	b = append(b, s.bloom.k)
	b = binary.AppendUvarint(b, uint64(len(s.bloom.words)))
	for _, w := range s.bloom.words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	if s.lazyExact != nil {
		b = append(b, s.lazyExact.raw...)
	} else {
		b = appendExact(b, s.exact)
	}
	if ver == summaryVersion1 {
		return b
	}
	if s.group == nil {
		return append(b, 0)
	}
	b = append(b, 1, s.group.k)
	b = binary.AppendUvarint(b, uint64(len(s.group.words)))
	for _, w := range s.group.words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

// decodeSummary decodes an index value written by appendSummary; seg and
// seq come from its key.
func decodeSummary(seg [16]byte, seq uint64, v []byte) (*blockSummary, error) {
	return decodeSummaryAs(seg, seq, v, false)
}

// decodeAnchoredSummary is decodeSummary for bytes a sealed segment's
// manifest anchors (this engine wrote them): the value lists are decoded
// on first use (lazyExact), not now.
func decodeAnchoredSummary(seg [16]byte, seq uint64, v []byte) (*blockSummary, error) {
	return decodeSummaryAs(seg, seq, v, true)
}

func decodeSummaryAs(seg [16]byte, seq uint64, v []byte, lazy bool) (*blockSummary, error) {
	d := decoder{b: v}
	ver := d.u8()
	if d.err == nil && ver != summaryVersion1 && ver != summaryVersion {
		return nil, fmt.Errorf("%w: block summary version %d", ErrUnknownVersion, ver)
	}
	s := &blockSummary{seg: seg, seq: seq, version: ver, kind: d.u8()}
	off, count := d.uvarint(), d.uvarint()
	s.minTime, s.maxTime = int64(d.u64()), int64(d.u64())
	copy(s.minID[:], d.fixed(16))
	copy(s.maxID[:], d.fixed(16))
	copy(s.metaHash[:], d.fixed(16))
	s.minStatus, s.maxStatus = d.u16(), d.u16()
	s.minLatency, s.maxLatency = math.Float64frombits(d.u64()), math.Float64frombits(d.u64())
	s.bloom.k = d.u8()
	n := decodeBloomWords(&d, &s.bloom)
	if lazy && d.err == nil {
		s.lazyExact = skipExact(&d)
	} else if d.err == nil && count <= 1<<20 {
		var err error
		if s.exact, err = decodeExact(&d, int(count)); err != nil && d.err == nil {
			return nil, err
		}
	}
	if ver >= summaryVersion && d.err == nil {
		decodeGroup(&d, s)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: block summary: %w", ErrCorrupt, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after a block summary", ErrCorrupt, len(d.b))
	}
	if err := s.check(off, count, n); err != nil {
		return nil, err
	}
	s.offset, s.count = int64(off), int(count)
	return s, nil
}

// decodeGroup reads a version-2 summary's group filter (a flag, then the
// filter); only a group's last block may carry one.
func decodeGroup(d *decoder, s *blockSummary) {
	switch flag := d.u8(); {
	case d.err != nil || flag == 0:
	case flag != 1 || s.seq%groupBlocks != groupBlocks-1:
		d.fail(fmt.Errorf("group filter flag %d on block %d", flag, s.seq))
	default:
		s.group = &bloom{k: d.u8()}
		if n := decodeBloomWords(d, s.group); d.err == nil && (s.group.k == 0 || s.group.k > 32 || n == 0) {
			d.fail(fmt.Errorf("group filter k=%d words=%d", s.group.k, n))
		}
	}
}

// decodeBloomWords reads the filter's word count and words into b,
// refusing a count the bytes left cannot hold (no allocation from a forged
// count); it returns the count.
func decodeBloomWords(d *decoder, b *bloom) uint64 {
	n := d.uvarint()
	if d.err == nil && (n > maxBloomWords || n*8 > uint64(len(d.b))) {
		d.fail(fmt.Errorf("bloom of %d words in %d bytes", n, len(d.b)))
	}
	if d.err != nil {
		return n
	}
	b.words = make([]uint64, n)
	for i := range b.words {
		b.words[i] = d.u64()
	}
	return n
}

// check refuses a decoded summary whose fields cannot describe a block.
func (s *blockSummary) check(off, count, words uint64) error {
	switch {
	case s.kind != kindLog && s.kind != kindPayload:
		return fmt.Errorf("%w: block summary kind %d", ErrCorrupt, s.kind)
	case off > math.MaxInt64 || count == 0 || count > 1<<20:
		return fmt.Errorf("%w: block summary offset %d, count %d", ErrCorrupt, off, count)
	case s.bloom.k == 0 || s.bloom.k > 32 || words == 0:
		return fmt.Errorf("%w: block summary bloom k=%d words=%d", ErrCorrupt, s.bloom.k, words)
	case s.minTime > s.maxTime || string(s.minID[:]) > string(s.maxID[:]):
		return fmt.Errorf("%w: block summary ranges inverted", ErrCorrupt)
	}
	return nil
}

// blockKey is the index key of a block's summary: 'b' tenant segment seq,
// so a tenant's blocks sort by segment, then in file order.
func blockKey(tenant string, seg [16]byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(tenantPrefix(keyBlock, tenant), seg[:]...), seq)
}

// segmentBlocksPrefix is the key prefix of every block summary of one
// segment.
func segmentBlocksPrefix(tenant string, seg [16]byte) []byte {
	return append(tenantPrefix(keyBlock, tenant), seg[:]...)
}
