package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/logstore/logstore/vfs"
)

// ErrCorruptKeyFile and ErrUnknownKeyVersion are the local key file's
// corruption and version errors, distinct as the format rules require.
var (
	ErrCorruptKeyFile    = errors.New("logstore/keys: corrupt local key file")
	ErrUnknownKeyVersion = errors.New("logstore/keys: unknown local key file version")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LocalOptions configure the local provider.
type LocalOptions struct {
	// Dir holds the master key files. Required.
	Dir string
	// FS defaults to vfs.Default.
	FS vfs.FS
	// AutoCreate creates a missing master key on GenerateDataKey or Wrap
	// (default false: keys are created by Create, e.g. from `keys link`).
	AutoCreate bool
	// ReadOnly never writes: Dir is not created when missing (its keys
	// are then simply not found), and AutoCreate is ignored (default
	// false). A reader beside the writer, or on a read-only copy, sets it.
	ReadOnly bool
}

// Local is the embedded default provider: one 256-bit master key per name in
// a 0600 file. It is meant for development and single-host deployments; the
// master key sits next to the data, so it protects against leaked segment
// files, not against a stolen disk.
type Local struct {
	opts LocalOptions
	mu   sync.Mutex // guards keys
	keys map[string]*localKey
}

type localKey struct {
	key      []byte
	disabled bool
	created  time.Time
}

var errReadOnly = fmt.Errorf("%w: the local provider is read-only", ErrUnsupported)

// NewLocal returns a local provider over opts.Dir (created 0700 if missing).
func NewLocal(opts LocalOptions) (*Local, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: local provider needs a directory", ErrBadURI)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.ReadOnly {
		opts.AutoCreate = false
	} else if err := opts.FS.MkdirAll(opts.Dir); err != nil {
		return nil, err
	}
	return &Local{opts: opts, keys: map[string]*localKey{}}, nil
}

func (l *Local) Scheme() string { return LocalScheme }

// LocalURI returns the URI of the named local key.
func LocalURI(name string) string { return LocalScheme + "://" + name }

func localName(uri string) (string, error) {
	name, ok := strings.CutPrefix(uri, LocalScheme+"://")
	if !ok || !keyNameRE.MatchString(name) {
		return "", fmt.Errorf("%w: %q (want local://NAME, NAME of letters, digits, '.', '_' or '-')", ErrBadURI, uri)
	}
	return name, nil
}

func (l *Local) path(name string) string { return filepath.Join(l.opts.Dir, name+".key") }

// Create makes a new master key for uri if it does not exist yet.
func (l *Local) Create(uri string) error {
	if l.opts.ReadOnly {
		return errReadOnly
	}
	name, err := localName(uri)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.loadLocked(name, true)
	return err
}

func encodeLocalKey(k *localKey) []byte {
	b := make([]byte, localKeyFileSize)
	copy(b, localKeyMagic)
	binary.LittleEndian.PutUint16(b[8:], localKeyVersion)
	if k.disabled {
		binary.LittleEndian.PutUint16(b[10:], localStateDisabled)
	}
	binary.LittleEndian.PutUint64(b[12:], uint64(k.created.UnixNano()))
	copy(b[20:52], k.key)
	binary.LittleEndian.PutUint32(b[52:], crc32c(b[:52]))
	return b
}

func decodeLocalKey(b []byte, path string) (*localKey, error) {
	if len(b) != localKeyFileSize || string(b[:8]) != localKeyMagic {
		return nil, fmt.Errorf("%w: %s: bad size or magic", ErrCorruptKeyFile, path)
	}
	if crc32c(b[:52]) != binary.LittleEndian.Uint32(b[52:]) {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrCorruptKeyFile, path)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != localKeyVersion {
		return nil, fmt.Errorf("%w: %s: version %d", ErrUnknownKeyVersion, path, v)
	}
	st := binary.LittleEndian.Uint16(b[10:])
	if st > localStateDisabled {
		return nil, fmt.Errorf("%w: %s: state %d", ErrCorruptKeyFile, path, st)
	}
	return &localKey{key: append([]byte(nil), b[20:52]...), disabled: st == localStateDisabled,
		created: time.Unix(0, int64(binary.LittleEndian.Uint64(b[12:]))).UTC()}, nil
}

// loadLocked returns the named key, reading it from disk (and creating it when
// create is set). Caller holds l.mu.
func (l *Local) loadLocked(name string, create bool) (*localKey, error) {
	if k, ok := l.keys[name]; ok {
		return k, nil
	}
	p := l.path(name)
	b, err := vfs.ReadFileLimit(l.opts.FS, p, 4096) // a key file is 56 bytes: never read a planted huge one whole
	if errors.Is(err, vfs.ErrTooLarge) || errors.Is(err, vfs.ErrNotRegular) {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorruptKeyFile, p, err)
	}
	switch {
	case err == nil:
		k, err := decodeLocalKey(b, p)
		if err != nil {
			return nil, err
		}
		l.keys[name] = k
		return k, nil
	case errors.Is(err, vfs.ErrNotExist) && create:
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		k := &localKey{key: key, created: time.Now().UTC()}
		if err := vfs.WriteFileAtomic(l.opts.FS, p, encodeLocalKey(k)); err != nil {
			return nil, err
		}
		l.keys[name] = k
		return k, nil
	case errors.Is(err, vfs.ErrNotExist):
		return nil, &Error{Op: "load", KeyURI: LocalURI(name), Kind: ErrKeyNotFound, Detail: "no master key file " + p}
	default:
		return nil, err
	}
}

// usable returns the key for an encryption operation.
func (l *Local) usable(op, uri string, create bool) (*localKey, error) {
	name, err := localName(uri)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k, err := l.loadLocked(name, create)
	if err != nil {
		var ke *Error
		if errors.As(err, &ke) {
			ke.Op = op
		}
		return nil, err
	}
	if k.disabled {
		return nil, &Error{Op: op, KeyURI: uri, Kind: ErrKeyDisabled, Detail: "the local key is disabled; run `logstore keys enable`"}
	}
	return k, nil
}

func localAAD(uri string, ec EncryptionContext) []byte {
	aad := []byte(localAADPrefix)
	aad = append(aad, 0)
	aad = append(aad, uri...)
	aad = append(aad, 0)
	return append(aad, ec.Canonical()...)
}

func gcmFor(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (l *Local) GenerateDataKey(ctx context.Context, uri string, ec EncryptionContext) (DataKey, error) {
	dek, err := NewDEK()
	if err != nil {
		return DataKey{}, err
	}
	w, err := l.wrap("generate", uri, dek, ec)
	if err != nil {
		Zero(dek)
		return DataKey{}, err
	}
	return DataKey{Plaintext: dek, Wrapped: w, KeyURI: uri}, nil
}

func (l *Local) Wrap(ctx context.Context, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	return l.wrap("wrap", uri, dek, ec)
}

func (l *Local) wrap(op, uri string, dek []byte, ec EncryptionContext) ([]byte, error) {
	if len(dek) != DEKSize {
		return nil, &Error{Op: op, KeyURI: uri, Kind: ErrUnsupported, Detail: fmt.Sprintf("DEK must be %d bytes", DEKSize)}
	}
	k, err := l.usable(op, uri, l.opts.AutoCreate)
	if err != nil {
		return nil, err
	}
	aead, err := gcmFor(k.key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+12, localWrappedSize)
	out[0] = localWrapVersion
	if _, err := rand.Read(out[1:13]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:13], dek, localAAD(uri, ec)), nil
}

func (l *Local) Unwrap(ctx context.Context, uri string, wrapped []byte, ec EncryptionContext) ([]byte, error) {
	k, err := l.usable("unwrap", uri, false)
	if err != nil {
		return nil, err
	}
	if len(wrapped) != localWrappedSize || wrapped[0] != localWrapVersion {
		return nil, &Error{Op: "unwrap", KeyURI: uri, Kind: ErrInvalidCiphertext, Detail: "not a local wrapped key of version 1"}
	}
	aead, err := gcmFor(k.key)
	if err != nil {
		return nil, err
	}
	dek, err := aead.Open(nil, wrapped[1:13], wrapped[13:], localAAD(uri, ec))
	if err != nil {
		return nil, &Error{Op: "unwrap", KeyURI: uri, Kind: ErrInvalidCiphertext, Detail: "authentication failed: wrong master key, wrong encryption context or tampered"}
	}
	return dek, nil
}

func (l *Local) Rewrap(ctx context.Context, from string, wrapped []byte, to string, ec EncryptionContext) ([]byte, error) {
	dek, err := l.Unwrap(ctx, from, wrapped, ec)
	if err != nil {
		return nil, err
	}
	defer Zero(dek)
	return l.wrap("rewrap", to, dek, ec)
}

func (l *Local) Describe(ctx context.Context, uri string) (KeyState, error) {
	name, err := localName(uri)
	if err != nil {
		return KeyState{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k, err := l.loadLocked(name, false)
	if err != nil {
		return KeyState{}, err
	}
	st := KeyState{URI: uri, Provider: LocalScheme, KeyID: name, Enabled: !k.disabled, State: "Enabled", Spec: "SYMMETRIC_DEFAULT"}
	if k.disabled {
		st.State = "Disabled"
	}
	return st, nil
}

// SetEnabled enables or disables a local key (the local analogue of KMS
// EnableKey/DisableKey), persisted atomically.
func (l *Local) SetEnabled(uri string, enabled bool) error {
	if l.opts.ReadOnly {
		return errReadOnly
	}
	name, err := localName(uri)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k, err := l.loadLocked(name, false)
	if err != nil {
		return err
	}
	nk := *k
	nk.disabled = !enabled
	if err := vfs.WriteFileAtomic(l.opts.FS, l.path(name), encodeLocalKey(&nk)); err != nil {
		return err
	}
	k.disabled = !enabled
	return nil
}

// Destroy deletes a master key file (crypto-shredding every DEK wrapped by it)
// and zeroes the cached copy.
func (l *Local) Destroy(uri string) error {
	if l.opts.ReadOnly {
		return errReadOnly
	}
	name, err := localName(uri)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if k, ok := l.keys[name]; ok {
		Zero(k.key)
		delete(l.keys, name)
	}
	if err := l.opts.FS.Remove(l.path(name)); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return err
	}
	return l.opts.FS.SyncDir(l.opts.Dir)
}

// Close zeroes every cached master key.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, k := range l.keys {
		Zero(k.key)
		delete(l.keys, n)
	}
	return nil
}
