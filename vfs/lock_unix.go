//go:build unix

package vfs

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

type flockCloser struct{ f *os.File }

func (c flockCloser) Close() error {
	_ = syscall.Flock(int(c.f.Fd()), syscall.LOCK_UN)
	return c.f.Close()
}

func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, name, err)
	}
	return flockCloser{f}, nil
}
