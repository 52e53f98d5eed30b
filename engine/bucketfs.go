package engine

// bucketFS is a stateless reader's file system (remote.go): the paths under
// DIR/segments are served from the bucket, read-only, through a bounded
// cache of fixed-size pages of objects; every other path (DIR/keys for the
// local:// keys) is the local file system. It knows only the objects that
// the tenants' authenticated node manifests list (setTenant), so a file the
// engine asks for maps to exactly one object: tenants/TENANT/NODE/NAME.

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstore/logstore/objstore"
	"github.com/logstore/logstore/vfs"
)

// bucketPageSize is the unit of ranged reads and of the cache: a segment's
// header, a block or two, a summary file's head.
const bucketPageSize = 128 << 10

// bucketPrefetch bounds the ranged GETs a prefetch runs at once.
const bucketPrefetch = 16

// bucketReadTimeout bounds one ranged read (the SDK retries inside it).
const bucketReadTimeout = time.Minute

// BucketReadStats are a stateless reader's bucket counters (Stats.Bucket).
type BucketReadStats struct {
	Gets, Lists    uint64 // requests made (Gets counts GETs and HEADs)
	BytesFetched   uint64
	CacheHits      uint64 // pages served from the cache
	CacheBytes     int64
	ObjectsVisible int // objects the node manifests list
}

type bucketFS struct {
	local vfs.FS
	root  string // DIR/segments
	b     objstore.Bucket
	cache *pageCache

	mu      sync.Mutex                     // guards objects
	objects map[string]objstore.ObjectInfo // "TENANT/NAME" -> its object

	gets, lists, fetched, hits atomic.Uint64
}

func newBucketFS(local vfs.FS, root string, b objstore.Bucket, cacheBytes int) *bucketFS {
	return &bucketFS{local: local, root: filepath.Clean(root), b: b, cache: newPageCache(int64(cacheBytes)),
		objects: map[string]objstore.ObjectInfo{}}
}

// setTenant replaces what tenant's files map to: name (HEXID.lss, HEXID.lsb)
// -> object.
func (fs *bucketFS) setTenant(tenant string, objs map[string]objstore.ObjectInfo) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for k := range fs.objects {
		if strings.HasPrefix(k, tenant+"/") {
			delete(fs.objects, k)
		}
	}
	for name, o := range objs {
		fs.objects[tenant+"/"+name] = o
	}
}

func (fs *bucketFS) stats() BucketReadStats {
	fs.mu.Lock()
	n := len(fs.objects)
	fs.mu.Unlock()
	return BucketReadStats{Gets: fs.gets.Load(), Lists: fs.lists.Load(), BytesFetched: fs.fetched.Load(),
		CacheHits: fs.hits.Load(), CacheBytes: fs.cache.size(), ObjectsVisible: n}
}

// rel returns name relative to the root, and whether it is under it.
func (fs *bucketFS) rel(name string) (string, bool) {
	r, err := filepath.Rel(fs.root, filepath.Clean(name))
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", false
	}
	if r == "." {
		return "", true
	}
	return filepath.ToSlash(r), true
}

func (fs *bucketFS) lookup(rel string) (objstore.ObjectInfo, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	o, ok := fs.objects[rel]
	return o, ok
}

func errReadOnlyPath(op, name string) error {
	return &os.PathError{Op: op, Path: name, Err: fmt.Errorf("%w: the bucket is read through a stateless reader", ErrReadOnly)}
}

func (fs *bucketFS) Create(name string) (vfs.File, error) {
	if _, ok := fs.rel(name); ok {
		return nil, errReadOnlyPath("create", name)
	}
	return fs.local.Create(name)
}

func (fs *bucketFS) OpenReadWrite(name string) (vfs.File, error) {
	if _, ok := fs.rel(name); ok {
		return nil, errReadOnlyPath("open", name)
	}
	return fs.local.OpenReadWrite(name)
}

func (fs *bucketFS) Open(name string) (vfs.File, error) {
	rel, ok := fs.rel(name)
	if !ok {
		return fs.local.Open(name)
	}
	o, ok := fs.lookup(rel)
	if !ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: vfs.ErrNotExist}
	}
	return &bucketFile{fs: fs, o: o}, nil
}

func (fs *bucketFS) Remove(name string) error {
	if _, ok := fs.rel(name); ok {
		return errReadOnlyPath("remove", name)
	}
	return fs.local.Remove(name)
}

func (fs *bucketFS) Rename(oldname, newname string) error {
	_, a := fs.rel(oldname)
	_, b := fs.rel(newname)
	if a || b {
		return errReadOnlyPath("rename", newname)
	}
	return fs.local.Rename(oldname, newname)
}

func (fs *bucketFS) MkdirAll(dir string) error {
	if _, ok := fs.rel(dir); ok {
		return errReadOnlyPath("mkdir", dir)
	}
	return fs.local.MkdirAll(dir)
}

func (fs *bucketFS) SyncDir(dir string) error {
	if _, ok := fs.rel(dir); ok {
		return nil
	}
	return fs.local.SyncDir(dir)
}

// List lists the tenants in the bucket (the root), or the files of one
// tenant that its node manifests list.
func (fs *bucketFS) List(dir string) ([]string, error) {
	rel, ok := fs.rel(dir)
	if !ok {
		return fs.local.List(dir)
	}
	if rel == "" {
		ctx, cancel := context.WithTimeout(context.Background(), bucketReadTimeout)
		defer cancel()
		fs.lists.Add(1)
		l, err := fs.b.List(ctx, bucketTenantsDir, "/")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, p := range l.Prefixes {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(p, bucketTenantsDir), "/"))
		}
		return out, nil
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []string
	for k := range fs.objects {
		if name, ok := strings.CutPrefix(k, rel+"/"); ok {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, &os.PathError{Op: "list", Path: dir, Err: vfs.ErrNotExist}
	}
	sort.Strings(out)
	return out, nil
}

func (fs *bucketFS) Stat(name string) (os.FileInfo, error) {
	rel, ok := fs.rel(name)
	if !ok {
		return fs.local.Stat(name)
	}
	if rel == "" || !strings.Contains(rel, "/") {
		return bucketFileInfo{name: filepath.Base(name), dir: true}, nil
	}
	o, ok := fs.lookup(rel)
	if !ok {
		return nil, &os.PathError{Op: "stat", Path: name, Err: vfs.ErrNotExist}
	}
	return bucketFileInfo{name: filepath.Base(name), size: o.Size, mod: o.Modified}, nil
}

type bucketFileInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func (i bucketFileInfo) Name() string       { return i.name }
func (i bucketFileInfo) Size() int64        { return i.size }
func (i bucketFileInfo) ModTime() time.Time { return i.mod }
func (i bucketFileInfo) IsDir() bool        { return i.dir }
func (i bucketFileInfo) Sys() any           { return nil }
func (i bucketFileInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o500
	}
	return 0o400
}

// bucketFile reads one object version (its ETag: a replaced object is a
// precondition failure, never a mix of two versions).
type bucketFile struct {
	fs *bucketFS
	o  objstore.ObjectInfo
}

func (f *bucketFile) Write([]byte) (int, error)          { return 0, errReadOnlyPath("write", f.o.Key) }
func (f *bucketFile) WriteAt([]byte, int64) (int, error) { return 0, errReadOnlyPath("write", f.o.Key) }
func (f *bucketFile) Sync() error                        { return nil }
func (f *bucketFile) Truncate(int64) error               { return errReadOnlyPath("truncate", f.o.Key) }
func (f *bucketFile) Size() (int64, error)               { return f.o.Size, nil }
func (f *bucketFile) Close() error                       { return nil }

// ReadAt reads through the page cache; the pages it lacks are fetched with
// one ranged GET.
func (f *bucketFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("logstore/engine: read %s at negative offset", f.o.Key)
	}
	if off >= f.o.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), f.o.Size-off)
	first, last := off/bucketPageSize, (off+want-1)/bucketPageSize
	pages := make([][]byte, last-first+1)
	missFrom := int64(-1)
	for i := first; i <= last; i++ {
		if pg, ok := f.fs.cache.get(f.o.Key, f.o.ETag, i); ok {
			pages[i-first] = pg
			f.fs.hits.Add(1)
			continue
		}
		if missFrom < 0 {
			missFrom = i
		}
	}
	if missFrom >= 0 {
		// One GET from the first missing page to the last page asked for.
		if err := f.fetch(missFrom, last, pages[missFrom-first:]); err != nil {
			return 0, err
		}
	}
	n := 0
	for i, pg := range pages {
		start := int64(0)
		if i == 0 {
			start = off - first*bucketPageSize
		}
		n += copy(p[n:want], pg[start:])
	}
	if int64(n) < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (f *bucketFile) fetch(from, to int64, into [][]byte) error {
	start := from * bucketPageSize
	end := min((to+1)*bucketPageSize, f.o.Size)
	ctx, cancel := context.WithTimeout(context.Background(), bucketReadTimeout)
	defer cancel()
	f.fs.gets.Add(1)
	data, _, err := f.fs.b.GetRange(ctx, f.o.Key, start, end-start, f.o.ETag)
	if err != nil {
		return err
	}
	f.fs.fetched.Add(uint64(len(data)))
	for i := range into {
		lo := int64(i) * bucketPageSize
		if lo >= int64(len(data)) {
			return fmt.Errorf("%w: %s: short read", objstore.ErrTruncated, f.o.Key)
		}
		// A copy: a page must not pin the whole fetch's buffer, or the
		// cache's bound would not bound memory.
		pg := bytes.Clone(data[lo:min(lo+bucketPageSize, int64(len(data)))])
		into[i] = pg
		f.fs.cache.put(f.o.Key, f.o.ETag, from+int64(i), pg)
	}
	return nil
}

// pageCache is an LRU of object pages bounded in bytes; safe to drop at
// any time (it only holds bytes the bucket has, checked by readers as they
// would check a file).
type pageCache struct {
	max   int64
	mu    sync.Mutex // guards everything below
	bytes int64
	lru   *list.List // of *pageEntry, most recent first
	byKey map[pageKey]*list.Element
}

type pageKey struct {
	key, etag string
	page      int64
}

type pageEntry struct {
	k    pageKey
	data []byte
}

func newPageCache(max int64) *pageCache {
	return &pageCache{max: max, lru: list.New(), byKey: map[pageKey]*list.Element{}}
}

func (c *pageCache) get(key, etag string, page int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[pageKey{key, etag, page}]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*pageEntry).data, true
}

func (c *pageCache) put(key, etag string, page int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pageKey{key, etag, page}
	if _, ok := c.byKey[k]; ok || int64(len(data)) > c.max {
		return
	}
	c.byKey[k] = c.lru.PushFront(&pageEntry{k: k, data: data})
	c.bytes += int64(len(data))
	for c.bytes > c.max {
		el := c.lru.Back()
		e := el.Value.(*pageEntry)
		c.lru.Remove(el)
		delete(c.byKey, e.k)
		c.bytes -= int64(len(e.data))
	}
}

func (c *pageCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// prefetchSegmentEnds fetches, a few at a time, the first and last pages of
// the segments a count is about to open one after another (a count checks
// that each may be read: its header and trailer), so those opens hit the
// cache instead of making two round trips each in turn. Failures are left
// to the opens, which report them.
func (db *DB) prefetchSegmentEnds(tenant string, cands []candidate, wantSummary func(candidate) bool) {
	fs := db.remote.fs
	seen := map[[16]byte]bool{}
	sem := make(chan struct{}, bucketPrefetch)
	var wg sync.WaitGroup
	budget := fs.cache.max / 2 // never evict what it fetches before the opens use it
	for _, c := range cands {
		if budget < 2*bucketPageSize {
			break
		}
		if seen[c.seg] || (c.sum != nil && c.sum.mem != nil) {
			continue
		}
		seen[c.seg] = true
		path := db.segPath(tenant, c.seg)
		jobs := []struct {
			path string
			all  bool
		}{{path, false}}
		if wantSummary(c) {
			jobs = append(jobs, struct {
				path string
				all  bool
			}{summaryPathOf(path), true}) // its summaries are loaded whole
		}
		for _, j := range jobs {
			budget -= fs.prefetchFile(j.path, j.all, sem, &wg)
		}
	}
	wg.Wait()
}

// prefetchFile starts fetching the first and last pages of the object at
// path (every page with all) that the cache lacks, and returns the bytes it
// asked for.
func (fs *bucketFS) prefetchFile(path string, all bool, sem chan struct{}, wg *sync.WaitGroup) int64 {
	rel, ok := fs.rel(path)
	if !ok {
		return 0
	}
	o, ok := fs.lookup(rel)
	if !ok || o.Size == 0 {
		return 0
	}
	f := &bucketFile{fs: fs, o: o}
	last := (o.Size - 1) / bucketPageSize
	// Page ranges, each one GET: the whole object, or its first and last
	// pages.
	ranges := [][2]int64{{0, last}}
	if !all {
		ranges = [][2]int64{{0, 0}}
		if last > 0 {
			ranges = append(ranges, [2]int64{last, last})
		}
	}
	var asked int64
	for _, r := range ranges {
		if _, hit := fs.cache.get(o.Key, o.ETag, r[0]); hit && r[0] == r[1] {
			continue
		}
		asked += (r[1] - r[0] + 1) * bucketPageSize
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = f.fetch(r[0], r[1], make([][]byte, r[1]-r[0]+1))
		}()
	}
	return asked
}
