package engine

// Every name the engine gives a file or directory under the data directory
// DIR. docs/format/README.md draws the tree, says what writes each file and
// links its format.

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

const (
	// lockFileName is DIR/LOCK, held by the process that has the store open.
	lockFileName = "LOCK"
	// segmentsDirName is DIR/segments: one directory per tenant holding its
	// segment files and its manifest (the source of truth).
	segmentsDirName = "segments"
	// segmentExt ends a segment file's name: HEXID.lss.
	segmentExt = ".lss"
	// summaryExt ends a sealed segment's block-summary file: HEXID.lsb
	// beside HEXID.lss (sumfile.go). It is derived, written after the seal,
	// and read by read-only opens.
	summaryExt = ".lsb"
	// journalExt ends an active segment's journal: HEXID-JOURNALID.lsj
	// beside HEXID.lss (journal.go, docs/format/journal.md), JOURNALID
	// being the journal file's own id. It holds the records of small
	// appends until they fill a block of the segment; a journal whose
	// records are all in blocks is retired (removed) and the next small
	// append starts another. A writer's Open replays what a crash left.
	journalExt = ".lsj"
	// journalSep joins the segment's and the journal's ids in its name.
	journalSep = "-"
	// manifestFile is a tenant's manifest, DIR/segments/TENANT/MANIFEST. It
	// is replaced by vfs.WriteFileAtomic, which writes MANIFEST.tmp first.
	manifestFile = "MANIFEST"
	// indexDirName is DIR/index, the Pebble index (Options.IndexDir moves it).
	indexDirName = "index"
	// keysDirName is DIR/keys, the embedded local key provider's master keys.
	keysDirName = "keys"
	// localKeyExt ends a local master key's file name: NAME.key for
	// local://NAME (the naming of package keys' Local provider).
	localKeyExt = ".key"
	// auditDirName and auditLogName make DIR/audit/keys.log, the key audit
	// trail.
	auditDirName = "audit"
	auditLogName = "keys.log"
	// auditAsideInfix names a corrupt audit trail set aside by Open:
	// keys.log.corrupt-UNIXNANO.
	auditAsideInfix = ".corrupt-"
	// lostBlocksSep joins a manifest's path and a segment id in the path of
	// a Verify report about blocks a crash cut off an active segment
	// (MANIFEST#HEXID); no such file exists.
	lostBlocksSep = "#"
)

func lockPathOf(dir string) string     { return filepath.Join(dir, lockFileName) }
func segmentsDirOf(dir string) string  { return filepath.Join(dir, segmentsDirName) }
func indexDirOf(dir string) string     { return filepath.Join(dir, indexDirName) }
func keysDirOf(dir string) string      { return filepath.Join(dir, keysDirName) }
func tenantDirOf(dir, t string) string { return filepath.Join(segmentsDirOf(dir), t) }

// AuditPath is where the data directory dir keeps its key audit trail
// (docs/format/audit.md).
func AuditPath(dir string) string { return filepath.Join(dir, auditDirName, auditLogName) }

// LocalKeyPath is the file of the local master key local://name in the data
// directory dir (docs/format/local-key.md); a tenant's default key is
// local://TENANT.
func LocalKeyPath(dir, name string) string { return filepath.Join(keysDirOf(dir), name+localKeyExt) }

// auditAsidePath is where a corrupt audit trail found at time t is moved.
func auditAsidePath(dir string, t time.Time) string {
	return fmt.Sprintf("%s%s%d", AuditPath(dir), auditAsideInfix, t.UnixNano())
}

func segmentFileName(hexID string) string { return hexID + segmentExt }

// summaryPathOf is the block-summary file of the segment file at path.
func summaryPathOf(segPath string) string {
	return strings.TrimSuffix(segPath, segmentExt) + summaryExt
}

// journalPathOf is the journal with id jid of the segment file at path.
func journalPathOf(segPath string, jid [16]byte) string {
	return strings.TrimSuffix(segPath, segmentExt) + journalSep + segHex(jid) + journalExt
}

// idsOfJournal returns the segment a journal file path (or name) belongs
// to, and the journal's own id.
func idsOfJournal(path string) (seg, jid [16]byte, ok bool) {
	h, ok := strings.CutSuffix(filepath.Base(path), journalExt)
	if !ok {
		return seg, jid, false
	}
	s, j, ok := strings.Cut(h, journalSep)
	if !ok {
		return seg, jid, false
	}
	seg, ok1 := segmentIDOfPath(segmentFileName(s))
	jid, ok2 := segmentIDOfPath(segmentFileName(j))
	return seg, jid, ok1 && ok2
}

// segmentIDOfPath returns the id of a segment file path (or name).
func segmentIDOfPath(path string) ([16]byte, bool) {
	h, ok := strings.CutSuffix(filepath.Base(path), segmentExt)
	if !ok {
		return [16]byte{}, false
	}
	id, err := (&SegmentInfo{ID: h}).segID()
	return id, err == nil
}

// lostBlocksPath names a report of acknowledged blocks segment hexID lost.
func lostBlocksPath(manifest, hexID string) string { return manifest + lostBlocksSep + hexID }

// segmentIDOfLostBlocks returns the segment a lostBlocksPath names.
func segmentIDOfLostBlocks(path string) ([16]byte, bool) {
	_, hexID, ok := strings.Cut(path, lostBlocksSep)
	if !ok {
		return [16]byte{}, false
	}
	return segmentIDOfPath(segmentFileName(hexID))
}

func (db *DB) segDir(tenant string) string { return tenantDirOf(db.dir, tenant) }

func (db *DB) segPath(tenant string, id [16]byte) string {
	return filepath.Join(db.segDir(tenant), segmentFileName(segHex(id)))
}

func (db *DB) manifestPath(tenant string) string {
	return filepath.Join(db.segDir(tenant), manifestFile)
}

func (db *DB) auditPath() string { return AuditPath(db.dir) }

// Pebble's own names in the index directory (its file names are not
// configurable): a rebuild deletes only these, and indexFS paces the
// creation of tables and reserves space for a MANIFEST.
const (
	pebbleTableExt       = ".sst"
	pebbleBlobExt        = ".blob"
	pebbleManifestPrefix = "MANIFEST-"
)

var (
	pebbleFileExts     = []string{pebbleTableExt, ".log", pebbleBlobExt, ".dbtmp"}
	pebbleFilePrefixes = []string{pebbleManifestPrefix, "OPTIONS-", "marker."}
	pebbleFileNames    = []string{"LOCK", "CURRENT"}
)

// isPebbleFile matches the names Pebble gives its files, so a rebuild never
// deletes anything else from a directory given as Options.IndexDir.
func isPebbleFile(name string) bool {
	for _, s := range pebbleFileExts {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	for _, p := range pebbleFilePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, n := range pebbleFileNames {
		if name == n {
			return true
		}
	}
	return false
}

// Names in the bucket (Options.Bucket, docs/format/bucket.md,
// docs/scale-out.md), relative to its prefix. Each writer node owns its own
// directory under each tenant, so writers never write the same object:
//
//	LOGSTORE                           the bucket's format marker (bucketMarker)
//	tenants/TENANT/CONFIG              the tenant's shared configuration (tenantconfig.go)
//	tenants/TENANT/NODE/MANIFEST       node NODE's manifest of TENANT, verbatim
//	tenants/TENANT/NODE/HEXID.lss      a sealed segment, verbatim
//	tenants/TENANT/NODE/HEXID.lsb      its block-summary file, verbatim
const (
	// nodeFileName is DIR/NODE: this data directory's writer-node id (32 hex
	// digits, random), created by the first Open with a bucket.
	nodeFileName      = "NODE"
	bucketMarkerKey   = "LOGSTORE"
	bucketTenantsDir  = "tenants/"
	bucketManifestKey = manifestFile
	bucketConfigKey   = "CONFIG"
)

func bucketTenantDir(tenant string) string { return bucketTenantsDir + tenant + "/" }

func bucketNodeDir(tenant, node string) string { return bucketTenantDir(tenant) + node + "/" }

func bucketSegmentKey(tenant, node, hexID string) string {
	return bucketNodeDir(tenant, node) + segmentFileName(hexID)
}

func bucketSummaryKey(tenant, node, hexID string) string {
	return bucketNodeDir(tenant, node) + hexID + summaryExt
}

func bucketManifestOf(tenant, node string) string {
	return bucketNodeDir(tenant, node) + bucketManifestKey
}

// isNodeID matches a writer-node id: 32 lower-case hex digits.
func isNodeID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
