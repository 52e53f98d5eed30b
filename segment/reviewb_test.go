package segment

import (
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/vfs"
)

// TestReviewBAppendBlocksPartialFailure: a write failing at the third of
// five frames, or the third block failing to seal (too large), leaves the
// blocks before it, fails the writer (the later sequence numbers were
// sealed: never reused), and a recovered file holds each sequence once.
// Pooled sealers come back zeroed.
func TestReviewBAppendBlocksPartialFailure(t *testing.T) {
	for _, mode := range []string{"write", "seal"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewSource(9))
			mem := vfs.NewMem()
			var writes atomic.Int64
			var armed atomic.Bool
			efs := vfs.NewErrorFS(mem, func(op vfs.Op, name string) error {
				if mode == "write" && armed.Load() && op == vfs.OpWrite && writes.Add(1) == 3 {
					return vfs.ErrIO
				}
				return nil
			})
			w, err := Create("/s", Params{Tenant: "t", Cipher: CipherAES256GCM, FS: efs, DEK: testDEK, KeyURI: testURI, Wrapped: testWrap, Codec: CodecZstd})
			require.NoError(t, err)
			_, err = w.AppendCodec(makeEntries(rng, 2, 100), CodecZstd)
			require.NoError(t, err)
			var batch [][]Entry
			for i := 0; i < 5; i++ {
				batch = append(batch, makeEntries(rng, 4, 50, 900))
			}
			if mode == "seal" {
				batch[2] = []Entry{{Time: 1, Meta: []byte("m"), Data: make([]byte, MaxBlockRaw+1)}}
			}
			armed.Store(true)
			infos, err := w.AppendBlocks(batch, CodecZstd)
			require.Error(t, err)
			require.Len(t, infos, 2)
			require.Equal(t, uint64(1), infos[0].Seq)
			require.Equal(t, uint64(2), infos[1].Seq)
			_, err = w.AppendCodec(makeEntries(rng, 1, 10), CodecZstd)
			require.Error(t, err, "a failed writer never appends again")
			_, err = w.AppendBlocks(batch[:1], CodecZstd)
			require.Error(t, err)
			for i := 0; i < 64; i++ {
				s := sealers.Get().(*sealer)
				for _, b := range [][]byte{s.scratch[:cap(s.scratch)], s.comp[:cap(s.comp)]} {
					nonzero := 0
					for _, c := range b {
						if c != 0 {
							nonzero++
						}
					}
					require.Zero(t, nonzero, "plaintext left in a pooled sealer")
				}
			}
			_ = w.Close()
			res, err := RecoverBlocks("/s", &ReadOptions{FS: mem}, -1)
			if err != nil {
				t.Logf("recover: %v", err)
				return
			}
			t.Logf("recovered %+v", res)
			r, err := Open("/s", &ReadOptions{FS: mem})
			require.NoError(t, err)
			defer r.Close()
			seen := map[uint64]bool{}
			for _, b := range r.Blocks() {
				require.False(t, seen[b.Seq], "sequence %d twice", b.Seq)
				seen[b.Seq] = true
			}
		})
	}
}
