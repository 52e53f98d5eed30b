package vfs_test

import (
	"fmt"
	"io"
	"log"

	"github.com/logstore/logstore/vfs"
)

// MemFS keeps a file's contents only up to its last Sync, and a new file's
// directory entry only once its directory was synced: Crash throws the rest
// away, as a power loss would.
func ExampleMemFS_Crash() {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/data"); err != nil {
		log.Fatal(err)
	}
	f, err := mem.Create("/data/log")
	if err != nil {
		log.Fatal(err)
	}
	_, _ = f.Write([]byte("acknowledged;"))
	_ = f.Sync()
	_ = mem.SyncDir("/data")
	_, _ = f.Write([]byte("in flight"))

	mem.Crash()

	f, err = mem.Open("/data/log")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	fmt.Printf("%q\n", b)
	// Output: "acknowledged;"
}

// ErrorFS fails chosen operations, here every fsync, the way a dying disk
// would.
func ExampleErrorFS() {
	efs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, name string) error {
		if op == vfs.OpSync {
			return vfs.ErrIO
		}
		return nil
	})
	f, err := efs.Create("/x")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Sync())
	// Output: sync /x: vfs: injected fault: input/output error
}
