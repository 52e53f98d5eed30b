package keys

// On-disk and wire formats of the local provider, version 1.
// docs/format/local-key.md describes the same bytes.
//
// Master key file DIR/NAME.key (mode 0600), 56 bytes, little-endian:
//
//	+----------------------------------------------+
//	|  0  magic "LSTLKEY\x00"                 [8]   |
//	|  8  format version (1)                  u16   |
//	| 10  state (0 enabled, 1 disabled)       u16   |
//	| 12  created, unix nanoseconds           i64   |
//	| 20  master key (AES-256)                [32]  |
//	| 52  crc32c of bytes [0,52)              u32   |
//	+----------------------------------------------+
//
// Wrapped DEK, 61 bytes:
//
//	+----------------------------------------------+
//	|  0  wrap version (1)                    u8    |
//	|  1  random nonce                        [12]  |
//	| 13  AES-256-GCM(master, DEK)            [48]  |
//	+----------------------------------------------+
//
//	AAD = "logstore/local/v1" || 0x00 || key URI || 0x00 || canonical context
//
// The AAD binds the wrapped DEK to its key URI and encryption context
// (tenant, segment, purpose), so a wrapped DEK copied to another segment or
// tenant does not unwrap.
const (
	localKeyMagic      = "LSTLKEY\x00"
	localKeyVersion    = 1
	localKeyFileSize   = 56
	localWrapVersion   = 1
	localWrappedSize   = 1 + 12 + DEKSize + 16
	localAADPrefix     = "logstore/local/v1"
	localStateEnabled  = 0
	localStateDisabled = 1
	// LocalScheme is the URI scheme of the local provider.
	LocalScheme = "local"
)
