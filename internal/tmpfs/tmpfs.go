// Package tmpfs mounts real, small tmpfs file systems for disk-full tests.
// It is test support: only _test.go files import it.
package tmpfs

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Mount mounts a tmpfs of sizeMiB on a fresh temporary directory and
// unmounts it when the test ends. It skips the test when it cannot mount
// (not root, no mount(8)), saying why, except under CI=true, where CI runs
// as root and the test must run: there it fails.
func Mount(t testing.TB, sizeMiB int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %d MiB tmpfs (CI runs as root and must run this test): %v: %s", sizeMiB, err, out)
		}
		t.Skipf("cannot mount a tmpfs here (needs root and mount(8)): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			_ = exec.Command("umount", "-l", dir).Run()
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Resize changes a mounted tmpfs's size (more space returning, or less).
func Resize(t testing.TB, dir string, sizeMiB int) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%dm", sizeMiB), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", dir, err, out)
	}
}

// Remount remounts a mounted tmpfs with options (e.g. "ro" to make it
// read-only, "rw" to make it writable again).
func Remount(t testing.TB, dir, options string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+options, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, options, err, out)
	}
}
