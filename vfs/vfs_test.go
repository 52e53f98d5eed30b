package vfs

import (
	"errors"
	"io"
	"math/rand"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMemCrashKeepsOnlySyncedData(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	f, err := m.Create("/d/a")
	require.NoError(t, err)
	_, err = f.Write([]byte("hello "))
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, m.SyncDir("/d"))
	_, err = f.Write([]byte("world"))
	require.NoError(t, err)
	g, err := m.Create("/d/unsynced-entry")
	require.NoError(t, err)
	require.NoError(t, g.Sync()) // contents synced, directory entry not
	m.Crash()
	b, err := m.Bytes("/d/a")
	require.NoError(t, err)
	require.Equal(t, "hello ", string(b))
	_, err = m.Stat("/d/unsynced-entry")
	require.ErrorIs(t, err, ErrNotExist, "a directory entry needs SyncDir to survive")
}

func TestMemCrashTornKeepsAPrefix(t *testing.T) {
	for i := 0; i < 50; i++ {
		m := NewMem()
		require.NoError(t, m.MkdirAll("/d"))
		f, _ := m.Create("/d/a")
		_, _ = f.Write([]byte("durable"))
		_ = f.Sync()
		_ = m.SyncDir("/d")
		_, _ = f.Write([]byte("-torn-tail"))
		m.CrashTorn(rand.New(rand.NewSource(int64(i))))
		b, _ := m.Bytes("/d/a")
		require.True(t, len(b) >= 7 && string(b) == "durable-torn-tail"[:len(b)], "%q", b)
	}
}

func TestMemRenameAndLock(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	require.NoError(t, WriteFileAtomic(m, "/d/k", []byte("v1")))
	require.NoError(t, WriteFileAtomic(m, "/d/k", []byte("v2")))
	m.Crash()
	b, err := ReadFile(m, "/d/k")
	require.NoError(t, err)
	require.Equal(t, "v2", string(b))
	names, err := m.List("/d")
	require.NoError(t, err)
	require.Equal(t, []string{"k"}, names)
	l, err := Lock(m, "/d/LOCK")
	require.NoError(t, err)
	_, err = Lock(m, "/d/LOCK")
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, l.Close())
	_, err = Lock(m, "/d/LOCK")
	require.NoError(t, err)
}

func TestOSLockIsExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "LOCK")
	l, err := Lock(Default, p)
	require.NoError(t, err)
	_, err = Lock(Default, p)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, l.Close())
}

func TestErrorFSInjects(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	var n atomic.Int64
	e := NewErrorFS(m, FailNth(OpSync, "seg", 2, ErrNoSpace, &n))
	f, err := e.Create("/d/seg")
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	err = f.Sync()
	require.ErrorIs(t, err, ErrInjected)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.NoError(t, f.Sync())
	_, err = f.ReadAt(make([]byte, 1), 0)
	require.True(t, errors.Is(err, io.EOF))
}
