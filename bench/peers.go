package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/klauspost/compress/zstd"

	"github.com/logstore/logstore/engine"
	"github.com/logstore/logstore/keys"
)

// Store is what the append benchmarks drive: logstore and its peers.
type Store interface {
	Append(ctx context.Context, tenant string, recs []engine.Record) error
	Close() error
}

// LogstoreStore adapts an engine.DB.
type LogstoreStore struct{ DB *engine.DB }

func (s LogstoreStore) Append(ctx context.Context, tenant string, recs []engine.Record) error {
	t, err := s.DB.Tenant(tenant)
	if err != nil {
		return err
	}
	_, err = t.Append(ctx, recs)
	return err
}
func (s LogstoreStore) Close() error { return s.DB.Close() }

// PebbleAEAD is the design most teams would hand-roll: one DEK, every record
// JSON-encoded, sealed separately with AES-256-GCM (random nonce) and stored
// as a Pebble value, Pebble compressing its blocks. No secondary index.
type PebbleAEAD struct {
	db   *pebble.DB
	aead cipher.AEAD
	// Envelope, when set, makes it the per-record envelope peer: every
	// record gets its own data key from GenerateDataKey (what a per-message
	// encryption SDK without caching does) and stores the wrapped key beside
	// the ciphertext.
	Envelope keys.Provider
	KeyURI   string
	seq      uint64
}

// OpenPebbleAEAD opens the peer in dir.
func OpenPebbleAEAD(dir string) (*PebbleAEAD, error) {
	opts := &pebble.Options{Logger: quiet{}}
	opts.EnsureDefaults()
	for i := range opts.Levels {
		opts.Levels[i].Compression = func() *block.CompressionProfile { return block.ZstdCompression }
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	blk, _ := aes.NewCipher(dek)
	aead, _ := cipher.NewGCM(blk)
	return &PebbleAEAD{db: db, aead: aead}, nil
}

func (p *PebbleAEAD) Append(ctx context.Context, tenant string, recs []engine.Record) error {
	b := p.db.NewBatch()
	defer b.Close()
	for i := range recs {
		pt, err := json.Marshal(&recs[i])
		if err != nil {
			return err
		}
		aead := p.aead
		var wrapped []byte
		if p.Envelope != nil {
			p.seq++
			dk, err := p.Envelope.GenerateDataKey(ctx, p.KeyURI, keys.EncryptionContext{"tenant": tenant})
			if err != nil {
				return err
			}
			blk, _ := aes.NewCipher(dk.Plaintext)
			aead, _ = cipher.NewGCM(blk)
			keys.Zero(dk.Plaintext)
			wrapped = dk.Wrapped
		}
		val := make([]byte, 0, 2+len(wrapped)+12+len(pt)+16)
		val = binary.BigEndian.AppendUint16(val, uint16(len(wrapped)))
		val = append(val, wrapped...)
		nonce := make([]byte, 12)
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		val = append(val, nonce...)
		val = aead.Seal(val, nonce, pt, []byte(tenant))
		p.seq++
		key := fmt.Appendf(nil, "%s/%020d", tenant, p.seq)
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

func (p *PebbleAEAD) Close() error {
	_ = p.db.Flush()
	return p.db.Close()
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(f string, a ...any) {
	panic(fmt.Sprintf(f, a...))
}

// ZstdFiles is the floor a user would compare against: the same records
// JSON-encoded, gathered into 64 KiB chunks, zstd-compressed and appended
// to one plain file. No index, no encryption, no durability beyond the
// OS: what the storage costs with nothing on top.
type ZstdFiles struct {
	f   *os.File
	enc *zstd.Encoder
	buf []byte
	out []byte
}

// OpenZstdFiles opens the peer in dir.
func OpenZstdFiles(dir string) (*ZstdFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "records.zst"))
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &ZstdFiles{f: f, enc: enc}, nil
}

func (z *ZstdFiles) Append(_ context.Context, _ string, recs []engine.Record) error {
	for i := range recs {
		pt, err := json.Marshal(&recs[i])
		if err != nil {
			return err
		}
		z.buf = append(binary.AppendUvarint(z.buf, uint64(len(pt))), pt...)
		if len(z.buf) >= 64<<10 {
			if err := z.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (z *ZstdFiles) flush() error {
	z.out = z.enc.EncodeAll(z.buf, z.out[:0])
	z.buf = z.buf[:0]
	_, err := z.f.Write(z.out)
	return err
}

func (z *ZstdFiles) Close() error {
	err := z.flush()
	_ = z.enc.Close()
	return errors.Join(err, z.f.Close())
}
