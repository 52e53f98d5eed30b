package engine

// Reading a journal file (journal.go) from disk: a writer's Open replays
// what a crash left in one (journalreplay.go), and a read-only DB serves the
// records of the active segment's journal that no block holds yet. Every
// block is decrypted, so what either takes from a journal is authenticated.

import (
	"context"
	"errors"
	"fmt"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// journalData is a journal file's blocks, decrypted.
type journalData struct {
	id     [16]byte // the journal's own file id
	seg    [16]byte // the segment it belongs to
	blocks []journalBlockData
	// tailErr is why reading stopped before the end (a torn tail is
	// expected after a crash; damage with intact blocks after it is not).
	tailErr    error
	midCorrupt bool
	// validEnd is where its last complete block ends.
	validEnd int64
	// keyURI, wrapped and ec name the DEK that decrypted it.
	keyURI  string
	wrapped []byte
	ec      keys.EncryptionContext
}

type journalBlockData struct {
	seq        uint64
	offset     int64
	kind       byte
	meta, data [][]byte // copies: the decrypted block is released
	metas      []*Meta
}

// readJournal reads and decrypts journal jid of tenant's segment seg. It
// returns nil and no error when there is none (retired meanwhile). The
// journal's DEK is the segment's, unwrapped under the segment's encryption
// context, so a journal copied beside another segment or tenant fails to
// decrypt; its file id must be the one its name says (a checkpoint names
// the journal it vouches for by that id).
func (db *DB) readJournal(ctx context.Context, tenant string, seg, jid [16]byte) (*journalData, error) {
	path := journalPathOf(db.segPath(tenant, seg), jid)
	r, err := segment.Open(path, db.readOpts(tenant))
	if errors.Is(err, vfs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		if fi, serr := db.fs.Stat(path); serr == nil && fi.Size() < segment.HeaderSize {
			return nil, nil // being created (or a crash cut its creation): no record in it
		}
		return nil, fmt.Errorf("logstore/engine: journal %s: %w", path, err)
	}
	defer r.Close()
	h := r.Header()
	if h.ID != jid {
		return nil, fmt.Errorf("%w: journal %s holds file %s", ErrSegmentTampered, path, segHex(h.ID))
	}
	jd := &journalData{id: h.ID, seg: seg, tailErr: r.TailError(), midCorrupt: r.MidCorrupt(), validEnd: segment.HeaderSize}
	if bs := r.Blocks(); len(bs) > 0 {
		jd.validEnd = bs[len(bs)-1].Offset + bs[len(bs)-1].Length
	}
	var dek []byte
	if h.Cipher != segment.CipherNone {
		jd.ec = keys.SegmentContext(tenant, segHex(seg))
		if dek, jd.keyURI, jd.wrapped, err = db.journalDEK(ctx, tenant, seg, h, jd.ec); err != nil {
			return nil, fmt.Errorf("logstore/engine: journal %s: %w", path, err)
		}
		defer keys.Zero(dek)
	}
	for _, bi := range r.Blocks() {
		blk, err := r.ReadBlockWith(dek, bi.Offset, bi.Seq)
		if err != nil {
			return nil, fmt.Errorf("logstore/engine: journal %s block %d: %w", path, bi.Seq, err)
		}
		b := journalBlockData{seq: bi.Seq, offset: bi.Offset}
		b.metas, b.kind, err = decodeBlockMetas(blk.Meta)
		for i := range blk.Meta {
			b.meta = append(b.meta, append([]byte(nil), blk.Meta[i]...))
			b.data = append(b.data, append([]byte(nil), blk.Data[i]...))
		}
		blk.Release()
		if err != nil {
			return nil, fmt.Errorf("logstore/engine: journal %s block %d: %w", path, bi.Seq, err)
		}
		jd.blocks = append(jd.blocks, b)
	}
	return jd, nil
}

// journalDEK unwraps the DEK of a journal: the wrapped copy in its own key
// slot, or (after a rewrap of its sealed segment changed the key) the
// segment's.
func (db *DB) journalDEK(ctx context.Context, tenant string, seg [16]byte, h segment.Header, ec keys.EncryptionContext) ([]byte, string, []byte, error) {
	dek, err := db.cache.Unwrap(ctx, h.Slot.KeyURI, h.Slot.Wrapped, ec)
	if err == nil {
		return dek, h.Slot.KeyURI, h.Slot.Wrapped, nil
	}
	sr, serr := segment.Open(db.segPath(tenant, seg), db.readOpts(tenant))
	if serr != nil {
		return nil, "", nil, err
	}
	sh := sr.Header()
	_ = sr.Close() // read-only
	if sh.Slot.KeyURI == h.Slot.KeyURI && string(sh.Slot.Wrapped) == string(h.Slot.Wrapped) {
		return nil, "", nil, err
	}
	dek, serr = db.cache.Unwrap(ctx, sh.Slot.KeyURI, sh.Slot.Wrapped, ec)
	if serr != nil {
		return nil, "", nil, errors.Join(err, serr)
	}
	return dek, sh.Slot.KeyURI, sh.Slot.Wrapped, nil
}

// recordSet holds record ids by kind.
type recordSet [kindPayload + 1]map[ID]bool

func (s *recordSet) add(kind byte, id ID) {
	if s[kind] == nil {
		s[kind] = map[ID]bool{}
	}
	s[kind][id] = true
}

// idsOfBlocks returns the ids of the records in the given blocks of one
// segment, read from their metadata sections (checked against their
// summaries).
func (db *DB) idsOfBlocks(tenant string, seg [16]byte, sums []*blockSummary) (recordSet, error) {
	var set recordSet
	for _, s := range sums {
		if s.mem != nil {
			continue
		}
		metas, err := db.readBlockMetas(tenant, seg, s, nil)
		if err != nil {
			return set, err
		}
		for _, m := range metas {
			set.add(s.kind, m.ID)
		}
	}
	return set, nil
}

// unstored keeps of jd's records those stored nowhere else: not in have
// (the ids of the journal's own segment) and, by stored, not in any other
// block. It returns the journal's blocks with just those records.
func (jd *journalData) unstored(have recordSet, stored func(id ID, kind byte) (bool, error)) ([]journalBlockData, error) {
	var out []journalBlockData
	for _, b := range jd.blocks {
		keep := journalBlockData{seq: b.seq, offset: b.offset, kind: b.kind}
		for i, m := range b.metas {
			if have[b.kind][m.ID] {
				continue
			}
			ok, err := stored(m.ID, b.kind)
			if err != nil {
				return nil, err
			}
			if ok {
				continue
			}
			keep.meta = append(keep.meta, b.meta[i])
			keep.data = append(keep.data, b.data[i])
			keep.metas = append(keep.metas, m)
		}
		if len(keep.metas) > 0 {
			out = append(out, keep)
		}
	}
	return out, nil
}

// memSummary is the catalog entry that serves a journal block's records.
func (jd *journalData) memSummary(b journalBlockData) *blockSummary {
	return summarizeMem(jd.id, b.seq, b.offset, b.kind, b.metas, &memBlock{meta: b.meta, data: b.data, keyURI: jd.keyURI, wrapped: jd.wrapped, ec: jd.ec})
}
