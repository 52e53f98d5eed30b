package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemFS is an in-memory FS that models what survives a power loss: a file's
// contents survive up to its last Sync, and a directory entry (creation,
// rename, removal) survives only once its directory was synced. Crash throws
// away everything else, as a kernel crash would.
type MemFS struct {
	mu sync.Mutex // guards every field below and every memNode
	// live is the namespace as running code sees it.
	live map[string]*memNode
	// durable is the namespace as it would be found after a crash.
	durable map[string]*memNode
	dirs    map[string]bool
	locks   map[string]bool
	// crashes counts Crash calls: a handle opened before the last one
	// belongs to the process that lost power, and every write or sync
	// through it fails (errCrashed), as nothing it does could land.
	crashes int
}

type memNode struct {
	data   []byte // what reads see
	synced []byte // what a crash leaves
}

// NewMem returns an empty MemFS.
func NewMem() *MemFS {
	return &MemFS{live: map[string]*memNode{}, durable: map[string]*memNode{}, dirs: map[string]bool{"/": true, ".": true}}
}

func clean(name string) string { return path.Clean(filepath.ToSlash(name)) }

// Crash simulates a power loss: unsynced data and unsynced directory entries
// are dropped. Open File handles must not be used afterwards.
func (m *MemFS) Crash() { m.CrashTorn(nil) }

// CrashTorn is Crash, but when rng is non-nil each file keeps a random prefix
// of its unsynced appended bytes, the way a torn write leaves a partial tail.
func (m *MemFS) CrashTorn(rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := make(map[string]*memNode, len(m.durable))
	for name, n := range m.durable {
		keep := append([]byte(nil), n.synced...)
		if rng != nil && len(n.data) > len(n.synced) && strings.HasPrefix(string(n.data), string(n.synced)) {
			extra := rng.Intn(len(n.data) - len(n.synced) + 1)
			keep = append(keep, n.data[len(n.synced):len(n.synced)+extra]...)
		}
		nn := &memNode{data: keep, synced: append([]byte(nil), keep...)}
		live[name] = nn
	}
	m.live = live
	m.crashes++
	m.locks = nil // the crashed process held them
	m.durable = make(map[string]*memNode, len(live))
	for k, v := range live {
		m.durable[k] = v
	}
}

func (m *MemFS) Create(name string) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[path.Dir(name)] {
		return nil, &os.PathError{Op: "create", Path: name, Err: ErrNotExist}
	}
	if _, ok := m.live[name]; ok {
		return nil, &os.PathError{Op: "create", Path: name, Err: ErrExist}
	}
	n := &memNode{}
	m.live[name] = n
	return &memFile{fs: m, name: name, node: n, writable: true, epoch: m.crashes}, nil
}

func (m *MemFS) open(name string, writable bool) (File, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.live[name]
	if !ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: ErrNotExist}
	}
	return &memFile{fs: m, name: name, node: n, writable: writable, epoch: m.crashes}, nil
}

func (m *MemFS) OpenReadWrite(name string) (File, error) { return m.open(name, true) }
func (m *MemFS) Open(name string) (File, error)          { return m.open(name, false) }

func (m *MemFS) Remove(name string) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: ErrNotExist}
	}
	delete(m.live, name)
	return nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.live[oldname]
	if !ok {
		return &os.PathError{Op: "rename", Path: oldname, Err: ErrNotExist}
	}
	delete(m.live, oldname)
	m.live[newname] = n
	return nil
}

func (m *MemFS) MkdirAll(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := dir; ; d = path.Dir(d) {
		m.dirs[d] = true
		if d == "/" || d == "." {
			break
		}
	}
	return nil
}

func (m *MemFS) List(dir string) ([]string, error) {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[dir] {
		return nil, &os.PathError{Op: "list", Path: dir, Err: ErrNotExist}
	}
	var names []string
	for name := range m.live {
		if path.Dir(name) == dir {
			names = append(names, path.Base(name))
		}
	}
	for d := range m.dirs {
		if d != dir && path.Dir(d) == dir {
			names = append(names, path.Base(d))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.live[name]; ok {
		return memInfo{name: path.Base(name), size: int64(len(n.data))}, nil
	}
	if m.dirs[name] {
		return memInfo{name: path.Base(name), dir: true}, nil
	}
	return nil, &os.PathError{Op: "stat", Path: name, Err: ErrNotExist}
}

// SyncDir makes the live entries of dir durable: new and renamed files appear
// after a crash, removed ones stay removed.
func (m *MemFS) SyncDir(dir string) error {
	dir = clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.durable {
		if path.Dir(name) == dir {
			if _, ok := m.live[name]; !ok {
				delete(m.durable, name)
			}
		}
	}
	for name, n := range m.live {
		if path.Dir(name) == dir {
			m.durable[name] = n
		}
	}
	return nil
}

// Bytes returns a copy of a file's live contents (for tests that scan bytes).
func (m *MemFS) Bytes(name string) ([]byte, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.live[name]
	if !ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: ErrNotExist}
	}
	return append([]byte(nil), n.data...), nil
}

// SetBytes replaces a file's live and synced contents (for corruption tests).
func (m *MemFS) SetBytes(name string, b []byte) error {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.live[name]
	if !ok {
		return &os.PathError{Op: "write", Path: name, Err: ErrNotExist}
	}
	n.data = append([]byte(nil), b...)
	n.synced = append([]byte(nil), b...)
	return nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	fs       *MemFS
	name     string
	node     *memNode
	writable bool
	closed   bool
	epoch    int // MemFS.crashes when opened
}

var (
	errClosed  = errors.New("vfs: file already closed")
	errCrashed = errors.New("vfs: the power failed since this file was opened (MemFS.Crash)")
)

func (f *memFile) check(write bool) error {
	if f.closed {
		return errClosed
	}
	if write && !f.writable {
		return fmt.Errorf("vfs: %s opened read-only: %w", f.name, os.ErrPermission)
	}
	if write && f.epoch != f.fs.crashes {
		return errCrashed
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	f.node.data = append(f.node.data, p...)
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("vfs: negative offset")
	}
	end := off + int64(len(p))
	if end > int64(len(f.node.data)) {
		grown := make([]byte, end)
		copy(grown, f.node.data)
		f.node.data = grown
	} else {
		// Copy on write so a synced snapshot sharing the array is untouched.
		f.node.data = append([]byte(nil), f.node.data...)
	}
	copy(f.node.data[off:], p)
	return len(p), nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("vfs: negative offset")
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(false); err != nil {
		return err
	}
	if f.epoch != f.fs.crashes {
		return errCrashed
	}
	f.node.synced = append([]byte(nil), f.node.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	if size < 0 {
		return errors.New("vfs: negative size")
	}
	if size <= int64(len(f.node.data)) {
		f.node.data = append([]byte(nil), f.node.data[:size]...)
	} else {
		grown := make([]byte, size)
		copy(grown, f.node.data)
		f.node.data = grown
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	return int64(len(f.node.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return errClosed
	}
	f.closed = true
	return nil
}

type memLock struct {
	m    *MemFS
	name string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	delete(l.m.locks, l.name)
	return nil
}

// Lock takes an in-process lock on name.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	name = clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks == nil {
		m.locks = map[string]bool{}
	}
	if m.locks[name] {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	m.locks[name] = true
	return memLock{m, name}, nil
}
