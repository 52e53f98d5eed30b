package engine

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	pvfs "github.com/cockroachdb/pebble/v2/vfs"
)

// indexFS wraps Pebble's file system: it forces private modes, notices
// write errors before Pebble reports them, reserves MANIFEST space and
// paces the creation of sstables while writes fail.
type indexFS struct {
	pvfs.FS
	h *indexHealth
}

func (fs indexFS) Unwrap() pvfs.FS { return fs.FS }

func (fs indexFS) note(err error) error {
	if err != nil && isNoSpace(err) {
		fs.h.noteNoSpace(err)
	}
	return err
}

func (fs indexFS) private(name string, dir bool) {
	if !fs.h.osFS {
		return
	}
	mode := os.FileMode(0o600)
	if dir {
		mode = 0o700
	}
	_ = os.Chmod(name, mode) // chmod ignores the umask
}

func (fs indexFS) Create(name string, cat pvfs.DiskWriteCategory) (pvfs.File, error) {
	base := filepath.Base(name)
	if strings.HasSuffix(base, pebbleTableExt) || strings.HasSuffix(base, pebbleBlobExt) {
		fs.h.pause()
	}
	f, err := fs.FS.Create(name, cat)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(name, false)
	w := &indexFile{File: f, fs: fs}
	if strings.HasPrefix(base, pebbleManifestPrefix) {
		w.manifest = true
		w.reserve()
	}
	return w, nil
}

func (fs indexFS) OpenReadWrite(name string, cat pvfs.DiskWriteCategory, opts ...pvfs.OpenOption) (pvfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(name, false)
	return &indexFile{File: f, fs: fs}, nil
}

func (fs indexFS) ReuseForWrite(oldname, newname string, cat pvfs.DiskWriteCategory) (pvfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	if err != nil {
		return nil, fs.note(err)
	}
	fs.private(newname, false)
	return &indexFile{File: f, fs: fs}, nil
}

func (fs indexFS) MkdirAll(dir string, _ os.FileMode) error {
	if err := fs.FS.MkdirAll(dir, 0o700); err != nil {
		return fs.note(err)
	}
	fs.private(dir, true)
	return nil
}

func (fs indexFS) Lock(name string) (io.Closer, error) {
	c, err := fs.FS.Lock(name)
	if err == nil {
		fs.private(name, false)
	}
	return c, fs.note(err)
}

func (fs indexFS) Rename(oldname, newname string) error {
	return fs.note(fs.FS.Rename(oldname, newname))
}
func (fs indexFS) Link(oldname, newname string) error { return fs.note(fs.FS.Link(oldname, newname)) }

// indexFile reports write errors to the health; a MANIFEST keeps
// manifestReserve bytes preallocated past its end.
type indexFile struct {
	pvfs.File
	fs       indexFS
	manifest bool
	off      int64 // bytes written (MANIFEST only)
	reserved int64 // preallocated up to here (MANIFEST only)
}

func (f *indexFile) reserve() {
	if f.reserved-f.off >= manifestReserve/4 {
		return
	}
	if err := f.File.Preallocate(f.off, manifestReserve); err != nil {
		// Not fatal: the reserve left covers the next edits, and the index
		// stops taking writes now.
		f.fs.note(err)
		return
	}
	f.reserved = f.off + manifestReserve
}

func (f *indexFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.manifest {
		f.off += int64(n)
		if err == nil {
			f.reserve()
		}
	}
	return n, f.fs.note(err)
}

func (f *indexFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.fs.note(err)
}

func (f *indexFile) Preallocate(off, n int64) error { return f.fs.note(f.File.Preallocate(off, n)) }
func (f *indexFile) Sync() error                    { return f.fs.note(f.File.Sync()) }
func (f *indexFile) SyncData() error                { return f.fs.note(f.File.SyncData()) }
func (f *indexFile) SyncTo(n int64) (bool, error) {
	full, err := f.File.SyncTo(n)
	return full, f.fs.note(err)
}
func (f *indexFile) Close() error { return f.fs.note(f.File.Close()) }
