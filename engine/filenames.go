package engine

import "path/filepath"

func indexDirOf(dir string) string    { return filepath.Join(dir, "index") }
func segmentsDirOf(dir string) string { return filepath.Join(dir, "segments") }
