// Package testenv locates the team's shared test data for tests.
//
// The real-world captures live beside the repository, in ../shared/testdata
// relative to the module root. Tests find that directory from the module
// root rather than from their own package directory, so a package that
// moves (internal/ingest became ingest) cannot silently lose its data.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedTestdata returns the absolute path of ../shared/testdata relative to
// the module root. A user's fresh clone has no such directory: the test is
// skipped, saying so. CI (CI set) always has it, so there its absence fails
// the test instead of skipping it.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir, err := sharedTestdata()
	if err == nil {
		return dir
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("shared test data not found (%v), and CI is set: CI must have it", err)
	}
	t.Skipf("shared test data not found (%v): a fresh clone has none; CI does", err)
	return ""
}

// Path returns where the shared test data is expected, whether or not it is
// there: for optional uses such as fuzz seeds. An empty string means the
// module root itself could not be found.
func Path() string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(root), "shared", "testdata")
}

func sharedTestdata() (string, error) {
	dir := Path()
	if dir == "" {
		return "", os.ErrNotExist
	}
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// moduleRoot walks up from the working directory (go test runs each test in
// its package directory) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
