package engine

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/segment"
)

// dumpIndex returns every derived index entry (configuration and manifest
// sequences excluded,
// segment states reduced to what a rebuild reproduces).
func dumpIndex(t testing.TB, db *DB) map[string]string {
	it, err := db.index.db.NewIter(&pebble.IterOptions{})
	require.NoError(t, err)
	defer it.Close()
	out := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if k[0] == keyConfig || k[0] == keyManifestSeq {
			continue
		}
		out[string(k)] = string(it.Value())
	}
	return out
}

func openSegment(t testing.TB, db *DB, tenant string, st SegmentInfo) *segment.Reader {
	id, err := st.segID()
	require.NoError(t, err)
	r, err := segment.Open(db.segPath(tenant, id), &segment.ReadOptions{FS: db.fs, Tenant: tenant})
	require.NoError(t, err)
	return r
}

// requireSameIndex compares two dumps and reports the first difference only
// (a full dump is unreadable).
func requireSameIndex(t testing.TB, want, got map[string]string, skipStates bool, msg string) {
	t.Helper()
	for k, v := range want {
		if skipStates && k[0] == keySegment {
			continue
		}
		gv, ok := got[k]
		if !ok {
			t.Fatalf("%s: key %q missing (%d vs %d keys)", msg, k, len(want), len(got))
		}
		if gv != v {
			t.Fatalf("%s: key %q: value %q, want %q", msg, k, gv, v)
		}
	}
	for k := range got {
		if skipStates && k[0] == keySegment {
			continue
		}
		if _, ok := want[k]; !ok {
			t.Fatalf("%s: unexpected key %q", msg, k)
		}
	}
}
