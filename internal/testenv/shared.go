// Package testenv locates the team's shared test data for tests.
//
// The real-world captures live beside the repository, in ../shared/testdata
// relative to the module root; testdata/shared is this repository's copy of
// them (MIT and Apache-2.0, licenses beside them) for a fresh clone. Tests find that directory from the module
// root rather than from their own package directory, so a package that
// moves (internal/ingest became ingest) cannot silently lose its data.
package testenv

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// SharedTestdata returns the directory of the real-world captures: the
// team's ../shared/testdata (relative to the module root) when it is there,
// so data added there is tested, and otherwise the copy of it this
// repository carries in testdata/shared (a user's fresh clone), so no test
// is skipped for want of it. In CI (CI set) ../shared must be there: its
// absence fails the test.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	team := filepath.Join(filepath.Dir(root), "shared", "testdata")
	if _, err := os.Stat(team); err == nil {
		return team
	} else if os.Getenv("CI") != "" {
		t.Fatalf("../shared/testdata not found (%v), and CI is set: CI must have it", err)
	}
	return filepath.Join(root, "testdata", "shared")
}

// Path is SharedTestdata for uses that need no testing.TB (fuzz seeds,
// package variables): the same choice, "" if the module root is not found.
func Path() string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	team := filepath.Join(filepath.Dir(root), "shared", "testdata")
	if _, err := os.Stat(team); err == nil || os.Getenv("CI") != "" {
		return team
	}
	return filepath.Join(root, "testdata", "shared")
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

// FilesContaining is a leak scan: the files under dir (every file, any
// depth) that hold any of needles, as "path: needle". A walk or read error
// fails the test.
func FilesContaining(t testing.TB, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, path+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("leak scan of %s: %v", dir, err)
	}
	return hits
}
