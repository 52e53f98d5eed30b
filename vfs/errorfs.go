package vfs

import (
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Op names a file-system operation that ErrorFS can fail.
type Op int

const (
	OpCreate Op = iota
	OpOpen
	OpWrite
	OpRead
	OpSync
	OpTruncate
	OpRemove
	OpRename
	OpSyncDir
	OpList
)

var opNames = [...]string{"create", "open", "write", "read", "sync", "truncate", "remove", "rename", "syncdir", "list"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op?"
}

// ErrInjected is wrapped by every error ErrorFS injects.
var ErrInjected = errors.New("vfs: injected fault")

// Common faults to inject.
var (
	ErrNoSpace = &injected{errno: syscall.ENOSPC}
	ErrIO      = &injected{errno: syscall.EIO}
)

type injected struct{ errno syscall.Errno }

func (e *injected) Error() string        { return "vfs: injected fault: " + e.errno.Error() }
func (e *injected) Is(target error) bool { return target == ErrInjected || target == e.errno }

// Injector decides whether an operation on name fails; nil means it proceeds.
type Injector func(op Op, name string) error

// ErrorFS wraps an FS and consults an Injector before every operation, the way
// pebble's vfs/errorfs does, so tests can fail the n-th write or fsync.
type ErrorFS struct {
	FS
	mu  sync.Mutex // guards inj
	inj Injector
}

// NewErrorFS wraps fs; with a nil injector it passes every call through.
func NewErrorFS(fs FS, inj Injector) *ErrorFS { return &ErrorFS{FS: fs, inj: inj} }

// SetInjector replaces the injector.
func (e *ErrorFS) SetInjector(inj Injector) {
	e.mu.Lock()
	e.inj = inj
	e.mu.Unlock()
}

func (e *ErrorFS) maybe(op Op, name string) error {
	e.mu.Lock()
	inj := e.inj
	e.mu.Unlock()
	if inj == nil {
		return nil
	}
	if err := inj(op, name); err != nil {
		return &os.PathError{Op: op.String(), Path: name, Err: err}
	}
	return nil
}

// FailNth returns an Injector that fails the n-th (1-based) call of op on
// files whose name contains substr with err, and counts calls in *count.
func FailNth(op Op, substr string, n int64, err error, count *atomic.Int64) Injector {
	return func(o Op, name string) error {
		if o != op || !strings.Contains(name, substr) {
			return nil
		}
		if count.Add(1) == n {
			return err
		}
		return nil
	}
}

func (e *ErrorFS) wrap(f File, err error, name string) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errFile{File: f, fs: e, name: name}, nil
}

func (e *ErrorFS) Create(name string) (File, error) {
	if err := e.maybe(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := e.FS.Create(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) OpenReadWrite(name string) (File, error) {
	if err := e.maybe(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.FS.OpenReadWrite(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) Open(name string) (File, error) {
	if err := e.maybe(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.FS.Open(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.maybe(OpRemove, name); err != nil {
		return err
	}
	return e.FS.Remove(name)
}

func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.maybe(OpRename, newname); err != nil {
		return err
	}
	return e.FS.Rename(oldname, newname)
}

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.maybe(OpSyncDir, dir); err != nil {
		return err
	}
	return e.FS.SyncDir(dir)
}

func (e *ErrorFS) List(dir string) ([]string, error) {
	if err := e.maybe(OpList, dir); err != nil {
		return nil, err
	}
	return e.FS.List(dir)
}

type errFile struct {
	File
	fs   *ErrorFS
	name string
}

func (f *errFile) Write(p []byte) (int, error) {
	if err := f.fs.maybe(OpWrite, f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *errFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.maybe(OpWrite, f.name); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *errFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.maybe(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *errFile) Sync() error {
	if err := f.fs.maybe(OpSync, f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errFile) Truncate(size int64) error {
	if err := f.fs.maybe(OpTruncate, f.name); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
