package engine

// Segment rollups: what a sealed segment's block summaries say as a whole,
// kept in its manifest entry (manifest.go, docs/format/manifest.md). The
// catalog (catalog.go) loads a sealed segment's block summaries only when a
// read cannot be decided from its rollup: a count of a time range the
// segment lies inside, a scan whose time range or numeric ranges miss it,
// a Get of an id outside its id range. So Open and the first count cost a
// manifest read per tenant, not a decoding of every block summary.
//
// The rollup is computed at seal from the summaries the manifest anchors
// (sealEntry), and the manifest's MAC authenticates it like the rest of the
// entry: an edit of it without the tenant's key is refused with the
// manifest.

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
)

// segRollup is a sealed segment's rollup, as a manifest entry holds it.
// Latencies are float64 bits (JSON has no NaN, and a bound must read back
// exactly); ids are hex.
type segRollup struct {
	// LogRecords counts the request logs (payload records excluded).
	LogRecords int `json:"log_records"`
	// MinTime and MaxTime bound every record's time (unix ns); MinID and
	// MaxID every record's id, payloads included.
	MinTime int64  `json:"min_time"`
	MaxTime int64  `json:"max_time"`
	MinID   string `json:"min_id"`
	MaxID   string `json:"max_id"`
	// Status and latency bounds of the request logs (0 when none).
	MinStatus  uint16 `json:"min_status"`
	MaxStatus  uint16 `json:"max_status"`
	MinLatency uint64 `json:"min_latency_bits"`
	MaxLatency uint64 `json:"max_latency_bits"`
}

// rollupOf computes the rollup of a segment's summaries (nil: no block).
func rollupOf(sums []*blockSummary) *segRollup {
	if len(sums) == 0 {
		return nil
	}
	var s blockSummary
	logs := false
	for i, b := range sums {
		if i == 0 {
			s.minTime, s.maxTime, s.minID, s.maxID = b.minTime, b.maxTime, b.minID, b.maxID
		}
		s.minTime, s.maxTime = min(s.minTime, b.minTime), max(s.maxTime, b.maxTime)
		if string(b.minID[:]) < string(s.minID[:]) {
			s.minID = b.minID
		}
		if string(b.maxID[:]) > string(s.maxID[:]) {
			s.maxID = b.maxID
		}
		if b.kind != kindLog {
			continue
		}
		if !logs {
			s.minStatus, s.maxStatus, s.minLatency, s.maxLatency = b.minStatus, b.maxStatus, b.minLatency, b.maxLatency
			logs = true
		}
		s.count += b.count
		s.minStatus, s.maxStatus = min(s.minStatus, b.minStatus), max(s.maxStatus, b.maxStatus)
		s.minLatency, s.maxLatency = minFloat(s.minLatency, b.minLatency), maxFloat(s.maxLatency, b.maxLatency)
	}
	return &segRollup{
		LogRecords: s.count, MinTime: s.minTime, MaxTime: s.maxTime,
		MinID: hex.EncodeToString(s.minID[:]), MaxID: hex.EncodeToString(s.maxID[:]),
		MinStatus: s.minStatus, MaxStatus: s.maxStatus,
		MinLatency: math.Float64bits(s.minLatency), MaxLatency: math.Float64bits(s.maxLatency),
	}
}

// summary returns the rollup as the summary of one request-log block
// spanning the segment, so a scan tests it as it tests a block's ranges
// (scanBounds.inRange, wholeCount). It has no filters: only ranges.
func (r *segRollup) summary(seg [16]byte) (*blockSummary, error) {
	s := &blockSummary{seg: seg, kind: kindLog, count: r.LogRecords, minTime: r.MinTime, maxTime: r.MaxTime,
		minStatus: r.MinStatus, maxStatus: r.MaxStatus,
		minLatency: math.Float64frombits(r.MinLatency), maxLatency: math.Float64frombits(r.MaxLatency)}
	lo, err1 := hex.DecodeString(r.MinID)
	hi, err2 := hex.DecodeString(r.MaxID)
	switch {
	case err1 != nil || err2 != nil || len(lo) != len(s.minID) || len(hi) != len(s.maxID):
		return nil, fmt.Errorf("%w: segment %s: rollup ids %q, %q", ErrCorrupt, segHex(seg), r.MinID, r.MaxID)
	case r.LogRecords < 0 || r.MinTime > r.MaxTime || string(lo) > string(hi):
		return nil, fmt.Errorf("%w: segment %s: rollup ranges inverted or count %d", ErrCorrupt, segHex(seg), r.LogRecords)
	}
	copy(s.minID[:], lo)
	copy(s.maxID[:], hi)
	return s, nil
}

// addRollups gives every sealed segment of tenant whose manifest entry has
// anchored summaries but no rollup (sealed by a build before rollups) its
// rollup, in one manifest write, so a store written before loads lazily
// from its next Open on. It runs on Open, after recovery; it reads each such
// segment's summary file (or metadata) once. It returns how many entries
// it added; a failure leaves those segments loaded whole, as before, and is
// counted (Stats.SummaryFileFailures).
func (db *DB) addRollups(ctx context.Context, tenant string) int {
	tm := db.manifests.get(tenant)
	if tm == nil || tm.body == nil || tm.damaged != nil {
		return 0
	}
	rollups := map[string]*segRollup{}
	for _, e := range tm.body.Segments {
		if e.State != segSealed || e.Rollup != nil || len(e.Summaries) == 0 || tm.problems[e.ID] != nil || tm.lost[e.ID] != nil {
			continue
		}
		id, err := parseSegHex(e.ID)
		if err != nil {
			continue
		}
		sums, anchored, err := db.anchoredSummaries(tenant, id, nil)
		if err != nil || !anchored {
			db.stats.summaryFileFailures.Add(1)
			continue
		}
		if r := rollupOf(sums); r != nil {
			rollups[e.ID] = r
		}
	}
	if len(rollups) == 0 {
		return 0
	}
	err := db.updateManifest(ctx, tenant, false, func(body *manifestBody) error {
		for i := range body.Segments {
			if r := rollups[body.Segments[i].ID]; r != nil && body.Segments[i].State == segSealed {
				body.Segments[i].Rollup = r
			}
		}
		return nil
	})
	if err != nil {
		db.stats.summaryFileFailures.Add(1)
		return 0
	}
	return len(rollups)
}
