package segment

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

var update = flag.Bool("update", false, "write the golden segment of the current version (only when a new version is added)")

// goldenPaths holds one golden segment per format version, each written by
// the build of its day: every version stays readable.
var goldenPaths = map[uint16]string{Version1: "testdata/golden-v1.lss", Version2: "testdata/golden-v2.lss", Version3: "testdata/golden-v3.lss"}

// goldenBlocks is the content of the golden segment: three blocks, one per codec.
func goldenBlocks() ([][]Entry, []Codec) {
	var blocks [][]Entry
	for b := 0; b < 3; b++ {
		var es []Entry
		for i := 0; i < 3; i++ {
			es = append(es, Entry{
				Time: time.Date(2026, 11, 1, 12, b, i, 0, time.UTC).UnixNano(),
				Meta: fmt.Appendf(nil, `{"id":"rec-%d-%d","method":"GET","status":%d}`, b, i, 200+b*100),
				Data: fmt.Appendf(nil, `{"path":"/v1/orders/%d","headers":{"authorization":"Bearer golden-%d-%d"}}`, b*10+i, b, i),
			})
		}
		blocks = append(blocks, es)
	}
	return blocks, []Codec{CodecZstd, CodecS2, CodecNone}
}

var goldenID = ID{0x6c, 0x6f, 0x67, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x2d, 0x67, 0x6f, 0x6c, 0x64, 0x65, 0x6e, 0x31}

func writeGolden(t *testing.T) {
	blocks, codecs := goldenBlocks()
	tmp := filepath.Join(t.TempDir(), "g.lss")
	w, err := Create(tmp, Params{ID: goldenID, Tenant: "golden-tenant", Cipher: CipherAES256GCM, DEK: testDEK,
		KeyURI: "local://golden", Wrapped: []byte("golden-wrapped-dek"), Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	for i, b := range blocks {
		_, err := w.AppendCodec(b, codecs[i])
		require.NoError(t, err)
	}
	require.NoError(t, w.Seal())
	require.NoError(t, w.Close())
	b, err := os.ReadFile(tmp)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(goldenPaths[Version3], b, 0o644))
}

// TestGolden reads a segment written by each format version. If this fails,
// the format drifted: add a new version instead of changing an old one.
func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	for v, path := range goldenPaths {
		t.Run(fmt.Sprintf("version=%d", v), func(t *testing.T) { checkGolden(t, v, path) })
	}
}

func checkGolden(t *testing.T, version uint16, path string) {
	blocks, codecs := goldenBlocks()
	r, err := Open(path, &ReadOptions{FS: vfs.Default, Tenant: "golden-tenant"})
	require.NoError(t, err)
	defer r.Close()
	h := r.Header()
	require.Equal(t, version, h.Version)
	require.Equal(t, goldenID, h.ID)
	require.Equal(t, CipherAES256GCM, h.Cipher)
	require.Equal(t, "local://golden", h.Slot.KeyURI)
	require.Equal(t, []byte("golden-wrapped-dek"), h.Slot.Wrapped)
	require.Equal(t, uint64(1), h.Slot.Generation)
	require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), h.Created)
	require.True(t, r.Sealed())
	require.Len(t, r.Blocks(), 3)
	require.NoError(t, r.Unlock(testDEK))
	for i, want := range blocks {
		b, err := r.ReadBlock(i)
		require.NoError(t, err)
		require.Equal(t, codecs[i], b.Info.Codec)
		require.Equal(t, want[0].Time, b.Info.MinTime)
		for j := range want {
			require.Equal(t, want[j].Meta, b.Meta[j])
			require.Equal(t, want[j].Data, b.Data[j])
		}
	}
	require.Empty(t, r.Verify().Problems)
}
