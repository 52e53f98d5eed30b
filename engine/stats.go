package engine

// Stats: per-tenant figures read from the index, and the engine's counters.

import (
	"context"
	"sort"
	"sync/atomic"

	"github.com/logstore/logstore/keys"
)

// Stats are per-tenant and engine-wide figures.
type Stats struct {
	Tenants map[string]TenantStats
	// Upload is the uploader's counters (nil without Options.Bucket);
	// Bucket a stateless reader's (nil unless ReadOnly with a Bucket).
	Upload *UploadStats
	Bucket *BucketReadStats
	// SharedErasures counts the erases this node ran because another
	// writer node requested them through the bucket's shared config.
	SharedErasures  uint64
	DEKCache        keys.CacheStats
	AppendedRecords uint64
	// RedactedValues counts the values of appended records that redaction
	// policies masked, dropped or sealed (redaction.go).
	RedactedValues uint64
	GroupCommits   uint64
	// AppendFsyncs counts the segment fsyncs of SyncAlways appends (one per
	// tenant per group commit), AppendFsyncRecords the records they made
	// durable: AppendFsyncRecords/AppendFsyncs is the records per fsync
	// that group commit achieved.
	AppendFsyncs, AppendFsyncRecords uint64
	BlocksWritten                    uint64
	// JournalBlocks counts the journal blocks of appends too small to fill a
	// block (journal.go); JournalFlushes the flushes that took their records
	// into blocks of the segment; JournalsRetired the journals removed once
	// all their records were in blocks; JournalRecordsReplayed the records
	// a writer's Open re-appended from journals a crash left.
	JournalBlocks, JournalFlushes, JournalsRetired, JournalRecordsReplayed uint64
	SegmentsCreated                                                        uint64
	BlocksReplayed                                                         uint64
	// BlockCacheHits and BlockCacheMisses count the block reads of Get
	// served from the cache of decrypted blocks and those that decrypted
	// (Options.BlockCacheBytes); BlockCacheEntries and BlockCacheBytes are
	// what it holds now.
	BlockCacheHits, BlockCacheMisses uint64
	BlockCacheEntries                int
	BlockCacheBytes                  int64
	// CheckpointFailures counts manifest checkpoints of active segments that
	// could not be written (disk full, key unreachable): the records were
	// durable, but a truncation of the active segment's tail since the last
	// checkpoint would go unreported.
	CheckpointFailures uint64
	// Failures the engine tolerates on purpose, counted so none goes
	// unnoticed:
	//
	// SegmentsAbandoned counts active segments given up after a write or
	// fsync error (the appends of that group failed; recovery seals what
	// the segment holds). AbandonRepairsDeferred counts those the writer
	// could not truncate, seal and index at once: the next Open does.
	SegmentsAbandoned      uint64
	AbandonRepairsDeferred uint64
	// SealFailures counts seals of an active segment that failed where the
	// caller went on (Close, a failed key check, retention, DeleteTenant):
	// the next Open finishes them.
	SealFailures uint64
	// ManifestSeqFailures counts manifest sequence numbers the index could
	// not record: its check against an older manifest put back is weaker
	// until the next manifest write (docs/security.md).
	ManifestSeqFailures uint64
	// RetentionFailures counts background retention passes that failed;
	// the next pass tries again (ApplyRetention returns the error).
	// RetentionDeferred counts expired segments retention kept because a
	// journal beside them awaits replay by the next Open.
	RetentionFailures, RetentionDeferred uint64
	// CleanupFailures counts files a cleanup could not remove: a new
	// segment file whose manifest listing failed (Open removes it as
	// debris), a deleted tenant's directory.
	CleanupFailures uint64
	// SummaryFileFailures counts block-summary files (HEXID.lsb) that could
	// not be written after a seal, or were found missing their segment's
	// block count or damaged by a read-only open, which then read the
	// segment's metadata instead.
	SummaryFileFailures uint64
	// IndexMisses counts sealed segments whose block summaries the index
	// did not hold as anchored when the catalog loaded them (entries
	// deleted or damaged, or not committed yet right after a seal): they
	// were taken from the summary file or the segment's metadata instead.
	// `logstore segments verify` names damaged entries; reindex rebuilds.
	IndexMisses uint64
}

// TenantStats summarise one tenant's storage.
type TenantStats struct {
	Segments int
	Records  int
	Payloads int
	// Journaled are the records (of Records) and payloads (of Payloads)
	// held in the active segment's journal, not yet in a block.
	Journaled, JournaledPayloads int
	RawBytes                     int64 // before compression
	StoredBytes                  int64 // segment files on disk
	KeysInUse                    []string
}

// Stats reads the figures from the index (per-tenant records, sizes, keys
// in use) and the engine's counters. It reads the whole segment-state part
// of the index, so it is not for a request path.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	if ctx == nil {
		return Stats{}, errNilContext
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	if err := db.enter(); err != nil {
		return Stats{}, err
	}
	defer db.leave()
	s := Stats{Tenants: map[string]TenantStats{}, DEKCache: db.cache.Stats(),
		AppendedRecords: db.stats.appendedRecords.Load(), RedactedValues: db.stats.redactedValues.Load(), GroupCommits: db.stats.groupCommits.Load(),
		BlocksWritten: db.stats.blocksWritten.Load(), SegmentsCreated: db.stats.segmentsCreated.Load(),
		BlocksReplayed: db.stats.replayedBlocks.Load(), CheckpointFailures: db.stats.checkpointFailures.Load(),
		SegmentsAbandoned: db.stats.segmentsAbandoned.Load(), AbandonRepairsDeferred: db.stats.abandonRepairsDeferred.Load(),
		SealFailures: db.stats.sealFailures.Load(), ManifestSeqFailures: db.stats.manifestSeqFailures.Load(),
		RetentionFailures: db.stats.retentionFailures.Load(), RetentionDeferred: db.stats.retentionDeferred.Load(),
		CleanupFailures:     db.stats.cleanupFailures.Load(),
		SummaryFileFailures: db.stats.summaryFileFailures.Load(), IndexMisses: db.stats.indexMisses.Load()}
	s.AppendFsyncs, s.AppendFsyncRecords = db.stats.appendFsyncs.Load(), db.stats.appendFsyncRecords.Load()
	s.JournalBlocks, s.JournalFlushes = db.stats.journalBlocks.Load(), db.stats.journalFlushes.Load()
	s.JournalsRetired = db.stats.journalsRetired.Load()
	s.JournalRecordsReplayed = db.stats.journalReplayed.Load()
	s.BlockCacheHits, s.BlockCacheMisses, s.BlockCacheEntries, s.BlockCacheBytes = db.blocks.stats()
	s.SharedErasures = db.stats.sharedErasures.Load()
	if db.uploader != nil {
		us := db.uploader.stats()
		s.Upload = &us
	}
	if db.remote != nil {
		rs := db.remote.fs.stats()
		s.Bucket = &rs
	}
	if db.index == nil {
		return s, nil // a read-only DB: the segment states are the writer's index (and listing a bucket costs a LIST)
	}
	tenants, err := db.listTenants()
	if err != nil {
		return s, err
	}
	for _, t := range tenants {
		states, err := db.segmentStates(t)
		if err != nil {
			return s, err
		}
		var ts TenantStats
		uris := map[string]bool{}
		for _, st := range states {
			ts.Segments++
			ts.Records += st.Records
			ts.Payloads += st.Payloads
			ts.RawBytes += st.RawBytes
			ts.StoredBytes += st.Size
			if st.KeyURI != "" && !uris[st.KeyURI] {
				uris[st.KeyURI] = true
				ts.KeysInUse = append(ts.KeysInUse, st.KeyURI)
			}
		}
		ts.Journaled, ts.JournaledPayloads = db.catalog.memCounts(t)
		ts.Records += ts.Journaled
		ts.Payloads += ts.JournaledPayloads
		sort.Strings(ts.KeysInUse)
		s.Tenants[t] = ts
	}
	return s, nil
}

// dbStats are the counters behind Stats: atomics, bumped by the writer,
// the indexer and the operations that tolerate a failure.
type dbStats struct {
	appendedRecords atomic.Uint64
	redactedValues  atomic.Uint64
	appendedBytes   atomic.Uint64
	groupCommits    atomic.Uint64
	// appendFsyncs and appendFsyncRecords: SyncAlways segment fsyncs and
	// the records they covered (writer.go countFsync).
	appendFsyncs       atomic.Uint64
	appendFsyncRecords atomic.Uint64
	blocksWritten      atomic.Uint64
	journalBlocks      atomic.Uint64
	journalFlushes     atomic.Uint64
	journalsRetired    atomic.Uint64
	retentionDeferred  atomic.Uint64
	journalReplayed    atomic.Uint64
	segmentsCreated    atomic.Uint64
	replayedBlocks     atomic.Uint64
	recovered          atomic.Uint64
	// checkpointFailures counts manifest checkpoints of an active segment
	// that could not be written (the records were durable regardless).
	checkpointFailures atomic.Uint64
	// sharedErasures counts the erases this node ran for other nodes
	// (a bucket's shared config).
	sharedErasures atomic.Uint64
	// Failures tolerated on purpose (see Stats for each).
	segmentsAbandoned      atomic.Uint64
	abandonRepairsDeferred atomic.Uint64
	sealFailures           atomic.Uint64
	manifestSeqFailures    atomic.Uint64
	retentionFailures      atomic.Uint64
	cleanupFailures        atomic.Uint64
	summaryFileFailures    atomic.Uint64
	indexMisses            atomic.Uint64
}
