package engine

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/segment"
	"github.com/logstore/logstore/vfs"
)

// TestLeakScan writes records whose sealed fields carry a marker, then scans
// every byte under the data directory (segments, Pebble's tables, the audit
// trail, lock and key files) for the marker and for every segment's DEK:
// after writing, after retention and after a tenant's deletion.
func TestLeakScan(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	db := openTest(t, vfs.Default, dir, func(o *Options) { o.Now = clk.Now; o.SegmentSize = 1 << 20 })
	defer db.Close()
	for i := 0; i < 4; i++ {
		_, err := db.tn("acme").Append(bg, markedRecords(200))
		require.NoError(t, err)
		require.NoError(t, db.control(bg, func() error { _ = db.sealActive(db.tenants["acme"]); return nil }))
	}
	_, err := db.tn("beta").Append(bg, markedRecords(50))
	require.NoError(t, err)

	// Every DEK, recovered through the key provider.
	var deks [][]byte
	for _, tenant := range []string{"acme", "beta"} {
		files, err := db.listSegmentFiles(tenant)
		require.NoError(t, err)
		for _, id := range files {
			r, err := segment.Open(db.segPath(tenant, id), &segment.ReadOptions{FS: db.fs})
			require.NoError(t, err)
			h := r.Header()
			require.NoError(t, r.Close())
			dek, err := db.local.Unwrap(bg, h.Slot.KeyURI, h.Slot.Wrapped, keys.SegmentContext(tenant, segHex(id)))
			require.NoError(t, err)
			deks = append(deks, dek)
		}
	}
	require.GreaterOrEqual(t, len(deks), 5)
	check := func(when string) {
		require.NoError(t, db.index.db.Flush())
		needles := append([][]byte{[]byte(marker)}, deks...)
		require.Empty(t, scanDir(t, dir, needles...), "%s: a sealed field or a DEK is on disk", when)
	}
	check("after writing")

	require.NoError(t, db.Admin().SetRetention(bg, "acme", time.Hour))
	clk.Add(10000 * time.Hour)
	_, err = db.Admin().ApplyRetention(bg)
	require.NoError(t, err)
	check("after retention")

	_, err = db.Admin().DeleteTenant(bg, "beta")
	require.NoError(t, err)
	check("after tenants delete")
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*", "*.lss"))
	require.Empty(t, segs)
}
