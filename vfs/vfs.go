// Package vfs is the small file-system interface that the engine and the
// segment package use for every file access, so that tests can simulate
// crashes (MemFS drops unsynced writes) and I/O faults (ErrorFS).
package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// File is an open file. Writes through Write append at the current end;
// WriteAt is used only for the fixed-size header regions.
type File interface {
	io.Writer
	io.WriterAt
	io.ReaderAt
	io.Closer
	// Sync makes the file's contents durable.
	Sync() error
	// Truncate changes the size of the file; the write offset moves to the new end.
	Truncate(size int64) error
	// Size reports the current size.
	Size() (int64, error)
}

// FS is the file system. Names are slash or OS paths; implementations treat
// them as opaque keys except for Dir/Base.
type FS interface {
	// Create creates a new file (mode 0600) that must not exist yet.
	Create(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and appending.
	OpenReadWrite(name string) (File, error)
	// Open opens an existing file read-only.
	Open(name string) (File, error)
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and its parents with mode 0700.
	MkdirAll(dir string) error
	// List returns the sorted names (not paths) of the entries in dir.
	List(dir string) ([]string, error)
	// Stat reports whether name exists and its size.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory entries of dir (creations, renames,
	// removals) durable.
	SyncDir(dir string) error
}

// ErrNotExist and ErrExist are the errors every FS returns (wrapped) for a
// missing file and for Create of an existing one.
var (
	ErrNotExist = os.ErrNotExist
	ErrExist    = os.ErrExist
)

// Default is the operating system's file system.
var Default FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f osFile) Truncate(size int64) error {
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	_, err := f.File.Seek(size, io.SeekStart)
	return err
}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenReadWrite(name string) (File, error) {
	f, err := openRegular(name, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		_ = f.Close()
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := openRegular(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// ErrNotRegular is returned (wrapped) when a path the store expects to be a
// regular file is a named pipe, device, socket or directory: opening such a
// thing could block forever or read without end.
var ErrNotRegular = errors.New("vfs: not a regular file")

// openRegular opens name without blocking on a FIFO and refuses anything but
// a regular file (symlinks are followed to what they name).
func openRegular(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = &os.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o700) }
func (osFS) Stat(name string) (os.FileInfo, error) {
	return os.Stat(name)
}

func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems refuse fsync on a directory; that is not a durability
	// failure we can do anything about.
	if errors.Is(err, os.ErrInvalid) {
		return nil
	}
	return err
}

// WriteFileAtomic writes data to name through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory, so a crash leaves either the
// old or the new contents.
func WriteFileAtomic(fs FS, name string, data []byte) error {
	tmp := name + ".tmp"
	_ = fs.Remove(tmp)
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, name); err != nil {
		return err
	}
	return fs.SyncDir(filepath.Dir(name))
}

// ErrTooLarge is returned (wrapped) by ReadFileLimit for a file over its limit.
var ErrTooLarge = errors.New("vfs: file larger than allowed")

// ReadFile reads a whole file.
func ReadFile(fs FS, name string) ([]byte, error) { return ReadFileLimit(fs, name, -1) }

// ReadFileLimit reads a whole file of at most limit bytes (negative: no
// limit), checking the size before allocating, so a huge or sparse file
// planted where a small one belongs cannot exhaust memory.
func ReadFileLimit(fs FS, name string, limit int64) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	if limit >= 0 && n > limit {
		return nil, &os.PathError{Op: "read", Path: name, Err: fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, limit)}
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// Locker is implemented by file systems that can take an exclusive,
// process-level lock on a file (flock on the OS, a set in MemFS).
type Locker interface {
	Lock(name string) (io.Closer, error)
}

// ErrLocked is returned (wrapped) when a lock is held elsewhere.
var ErrLocked = errors.New("vfs: lock held by another process")

// Lock takes the lock on name through fs, if fs supports locking.
func Lock(fs FS, name string) (io.Closer, error) {
	if l, ok := fs.(Locker); ok {
		return l.Lock(name)
	}
	if e, ok := fs.(*ErrorFS); ok {
		return Lock(e.FS, name)
	}
	return io.NopCloser(nil), nil
}
