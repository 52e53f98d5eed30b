package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/vfs"
)

// The bucket's format marker, the object LOGSTORE at the bucket prefix
// (docs/format/bucket.md). It says the prefix holds a logstore bucket and in
// which layout version, so a reader never takes another layout's objects for
// its own and a newer layout is ErrUnknownVersion, not corruption. It holds
// no secret and needs none of the tenants' keys: what a reader trusts is
// authenticated per tenant by the node manifests.
//
//	{"format":"logstore-bucket","version":1}
const (
	bucketFormatName = "logstore-bucket"
	bucketVersion    = 1
	bucketMarkerMax  = 4 << 10
)

type bucketMarker struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// checkBucketMarker reads the bucket's marker; create writes it when it is
// missing (a writer's first use; a create-only put, so two writers starting
// at once agree).
func checkBucketMarker(ctx context.Context, b objstore.Bucket, create bool) error {
	for attempt := 0; attempt < 2; attempt++ {
		raw, _, err := getSmall(ctx, b, bucketMarkerKey, bucketMarkerMax)
		if errors.Is(err, objstore.ErrNotFound) && create {
			want, _ := json.Marshal(bucketMarker{Format: bucketFormatName, Version: bucketVersion})
			sum := sha256.Sum256(want)
			_, err = b.Put(ctx, bucketMarkerKey, bytes.NewReader(want), int64(len(want)), sum[:], objstore.Cond{IfNoneMatch: true})
			if err == nil || errors.Is(err, objstore.ErrPrecondition) {
				continue // read back what won
			}
			return fmt.Errorf("logstore/engine: write the format marker of %s: %w", b, err)
		}
		if errors.Is(err, objstore.ErrNotFound) {
			return fmt.Errorf("%w: %s holds no logstore data (no %s marker)", ErrNotFound, b, bucketMarkerKey)
		}
		if err != nil {
			return fmt.Errorf("logstore/engine: read the format marker of %s: %w", b, err)
		}
		return parseBucketMarker(raw, b.String())
	}
	return fmt.Errorf("%w: %s: the marker vanished while it was written", ErrBucketCorrupt, b)
}

// getSmall reads a small object whole: its size is checked first (a HEAD),
// so an object someone made huge is refused (ErrManifestCorrupt) rather
// than read into memory, and the read is pinned to the version the HEAD saw.
func getSmall(ctx context.Context, b objstore.Bucket, key string, limit int64) ([]byte, objstore.ObjectInfo, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		info, err := b.Head(ctx, key)
		if err != nil {
			return nil, info, err
		}
		if info.Size > limit {
			return nil, info, fmt.Errorf("%w: %s in %s is %d bytes, at most %d are read", ErrManifestCorrupt, key, b, info.Size, limit)
		}
		raw, got, err := b.GetRange(ctx, key, 0, -1, info.ETag)
		switch {
		case errors.Is(err, objstore.ErrPrecondition):
			lastErr = err // replaced since the HEAD (a config's compare-and-swap): again
			continue
		case err != nil:
			return nil, info, err
		case int64(len(raw)) != info.Size:
			lastErr = fmt.Errorf("%w: %s changed between its HEAD and its GET", objstore.ErrPrecondition, key)
			continue // a server that ignores If-Match on GET
		}
		got.Size = info.Size
		if got.ETag == "" {
			got.ETag = info.ETag
		}
		return raw, got, nil
	}
	return nil, objstore.ObjectInfo{}, lastErr
}

func parseBucketMarker(raw []byte, where string) error {
	var m bucketMarker
	if len(raw) > bucketMarkerMax || json.Unmarshal(raw, &m) != nil || m.Format != bucketFormatName {
		return fmt.Errorf("%w: %s", ErrBucketCorrupt, where)
	}
	if m.Version != bucketVersion {
		return fmt.Errorf("%w: %s: bucket layout version %d (this build reads %d)", ErrUnknownVersion, where, m.Version, bucketVersion)
	}
	return nil
}

// nodeID returns this data directory's writer-node id, creating DIR/NODE
// on first use. The id only has to be unique (128 random bits): it names
// the node's directories in the bucket, which no other node writes.
func (db *DB) nodeID() (string, error) {
	path := filepath.Join(db.dir, nodeFileName)
	raw, err := vfs.ReadFileLimit(db.fs, path, 64)
	if err == nil {
		id := strings.TrimSpace(string(raw))
		if !isNodeID(id) {
			return "", fmt.Errorf("%w: %s does not hold a node id", ErrCorrupt, path)
		}
		return id, nil
	}
	if !errors.Is(err, vfs.ErrNotExist) {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	if err := vfs.WriteFileAtomic(db.fs, path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("logstore/engine: write the node id: %w", err)
	}
	return id, nil
}
