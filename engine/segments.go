package engine

// Listing what the data directory holds: tenants, their segment files and,
// for operators, every file.

import (
	"errors"
	"path/filepath"
	"sort"

	"github.com/logstore/logstore/vfs"
)

// segments implements Admin.Segments (documented there).
func (db *DB) segments(tenant string) ([]SegmentInfo, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	states, err := db.segmentStates(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]SegmentInfo, 0, len(states))
	for _, st := range states {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// dataFiles lists every file under the data directory (for leak scans and
// `segments list`).
func (db *DB) dataFiles() ([]string, error) {
	var out []string
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := db.fs.List(dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			p := filepath.Join(dir, n)
			fi, err := db.fs.Stat(p)
			if errors.Is(err, vfs.ErrNotExist) {
				continue // removed meanwhile (Pebble deletes obsolete files)
			}
			if err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			out = append(out, p)
		}
		return nil
	}
	return out, walk(db.dir)
}

// listTenants returns the tenants that have a segment directory.
func (db *DB) listTenants() ([]string, error) {
	names, err := db.fs.List(segmentsDirOf(db.dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if ValidateTenant(n) == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// listSegmentFiles returns the segment ids in a tenant's directory.
func (db *DB) listSegmentFiles(tenant string) ([][16]byte, error) {
	names, err := db.fs.List(db.segDir(tenant))
	if errors.Is(err, vfs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][16]byte
	for _, n := range names {
		if id, ok := segmentIDOfPath(n); ok {
			out = append(out, id)
		}
	}
	return out, nil
}
