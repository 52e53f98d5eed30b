package engine

// The write path, stage 4: packing a group's records into blocks of the
// active segment.

import "github.com/logstore/logstore/segment"

// packBlocks appends the group's payload blocks, then its request-log
// blocks, and stages their index entries and the segment state in kvs.
func (db *DB) packBlocks(ts *tenantState, reqs []*appendReq, kvs []kv) ([]kv, error) {
	if err := db.ensureSegment(ts); err != nil {
		return kvs, err
	}
	st := ts.info
	var entries []segment.Entry
	var metas []*Meta
	size := 0
	flush := func(payload bool) error {
		if len(entries) == 0 {
			return nil
		}
		info, err := ts.w.AppendCodec(entries, db.codec)
		if err != nil {
			db.abandon(ts)
			return err
		}
		db.stats.blocksWritten.Add(1)
		kind := byte(kindLog)
		if payload {
			kind = kindPayload
		}
		raw := make([][]byte, len(entries))
		for j := range entries {
			raw[j] = entries[j].Meta
		}
		sum := summarize(ts.w.Header().ID, info.Seq, info.Offset, kind, metas, raw)
		ts.sums = append(ts.sums, sum)
		kvs = stageBlock(kvs, ts.name, sum, metas, st)
		st.RawBytes += int64(info.RawLen)
		st.Blocks++
		entries, metas, size = entries[:0], metas[:0], 0
		return nil
	}
	for pass := 0; pass < 2; pass++ {
		payload := pass == 0
		for _, r := range reqs {
			for i := range r.recs {
				p := &r.recs[i]
				e := segment.Entry{Time: p.m.Time.UnixNano(), Meta: p.meta, Data: p.sealed}
				if payload {
					if p.pmeta == nil {
						continue
					}
					e.Meta, e.Data = p.pmeta, p.psealed
				}
				if size > 0 && size+len(e.Data) > db.opts.BlockSize {
					if err := flush(payload); err != nil {
						return kvs, err
					}
				}
				entries = append(entries, e)
				metas = append(metas, &p.m)
				size += len(e.Data) + len(e.Meta)
			}
		}
		if err := flush(payload); err != nil {
			return kvs, err
		}
	}
	ts.dirty = true
	st.Size = ts.w.Size()
	k, v, err := stateKV(st)
	if err != nil {
		return kvs, err
	}
	return append(kvs, kv{k: k, v: v}), nil
}
