package segment

// On-disk layout of a segment file, format version 2 (version 1 differs only
// where marked v1 below and is still read). docs/format/segment.md describes
// the same bytes in prose; keep the two in step.
//
// All integers are little-endian. CRCs are CRC-32C (Castagnoli).
//
//	+------------------------------------------------------------+ 0
//	| preamble                                      (1024 bytes) |
//	|   0  magic "LOGSTSEG"                               [8]     |
//	|   8  format version (1, 2 or 3)                    u16      |
//	|  10  cipher suite (0 none, 1 AES-256-GCM)          u16      |
//	|  12  flags (reserved, 0)                           u32      |
//	|  16  segment id (random)                           [16]     |
//	|  32  created, unix nanoseconds                     i64      |
//	|  40  key commitment HKDF(DEK, id, "commit")        [32]     |
//	|  72  tenant length                                 u16      |
//	|  74  tenant                                        [<=255]  |
//	|   .. zero padding                                           |
//	| 1020 crc32c of bytes [0,1020)                      u32      |
//	+------------------------------------------------------------+ 1024
//	| key slot 0                                    (1024 bytes) |
//	|   0  magic "KSLT" (all-zero slot = empty)          [4]      |
//	|   4  generation (>=1)                            u64      |
//	|  12  key URI length                              u16      |
//	|  14  wrapped DEK length                          u16      |
//	|  16  key URI, then wrapped DEK                   [...]    |
//	|   .. zero padding                                           |
//	|  988 slot MAC (v2; v1: padding)                  [32]     |
//	| 1020 crc32c of bytes [0,1020)                      u32      |
//	+------------------------------------------------------------+ 2048
//	| key slot 1                                    (1024 bytes) |
//	+------------------------------------------------------------+ 3072 = HeaderSize
//	| block frame 0                                               |
//	|   0  magic "LBLK"                                  [4]      |
//	|   4  codec (0 none, 1 zstd, 2 s2)                  u8       |
//	|   5  flags: bit 0 = metadata compressed (v3)       u8       |
//	|   6  reserved, 0                                   u16      |
//	|   8  segment id                                    [16]     |
//	|  24  block sequence (0,1,2,...)                    u64      |
//	|  32  record count                                  u32      |
//	|  36  metadata section length                       u32      |
//	|  40  raw (uncompressed) body length                u32      |
//	|  44  body length (ciphertext incl. 16-byte tag)    u32      |
//	|  48  min record time, unix nanoseconds             i64      |
//	|  56  max record time, unix nanoseconds             i64      |
//	|  64  crc32c of bytes [0,64)                        u32      |
//	|  68  metadata section (plaintext; v3 with bit 0:   [meta]   |
//	|      uvarint raw length || codec(section))                  |
//	|  ..  body (sealed)                                 [body]   |
//	|  ..  crc32c of the frame up to here                u32      |
//	+------------------------------------------------------------+
//	| block frame 1 ...                                           |
//	+------------------------------------------------------------+
//	| footer frame (sealed segments only)                         |
//	|   0  magic "LFTR"                                  [4]      |
//	|   4  block count n                                 u32      |
//	|   8  n entries: offset u64, records u32,                    |
//	|      min time i64, max time i64                 (28 bytes)  |
//	|  ..  crc32c of the footer up to here               u32      |
//	+------------------------------------------------------------+
//	| trailer                                         (24 bytes) |
//	|   0  footer offset                                 u64      |
//	|   8  footer length                                 u32      |
//	|  12  crc32c of bytes [0,12)                        u32      |
//	|  16  magic "LOGSTEND"                              [8]      |
//	+------------------------------------------------------------+ EOF
//
// The metadata section and the body both hold n records, each as a uvarint
// length followed by that many bytes. The body is compressed with the block's
// codec, then sealed with AES-256-GCM under the block key:
//
//	block key  = HKDF-SHA256(DEK, salt = segment id, info = "logstore/v1/block")
//	commitment = HKDF-SHA256(DEK, salt = segment id, info = "logstore/v1/commit")
//	nonce      = 4 zero bytes || block sequence (u64 big-endian)
//	AAD (v2)   = "logstore/v2/aad" || preamble bytes [0, 74+tenant length)
//	             || frame header bytes [0,64) || metadata section
//	AAD (v1)   = "logstore/v1/aad" || segment id || tenant length u16 || tenant
//	             || frame header bytes [0,64) || metadata section
//	slot MAC   = HMAC-SHA256(HKDF-SHA256(DEK, salt = segment id,
//	             info = "logstore/v2/slot"), preamble [0,1020) || slot [0,988))
//
// Version 2 authenticates every parameter that changes how bytes are read:
// the whole preamble (magic, version, cipher suite, flags, id, created,
// commitment, tenant) is in every block's AAD, the codec, counts and lengths
// of a block are in its frame header (also in the AAD), and a key slot's
// generation and key URI are under the slot MAC, which only a holder of the
// DEK can compute. A plaintext segment (cipher suite 0) authenticates
// nothing, so readers refuse it unless ReadOptions.AllowPlaintext is set.
//
// A DEK belongs to exactly one segment and a segment is never appended to
// after it was closed or crashed, so a block sequence never repeats under a
// DEK and the deterministic nonce is never reused.

const (
	// Versions form an append-only enum: a reader rejects any version it
	// does not know with ErrUnknownVersion. Version3 is written; Version1
	// (unauthenticated preamble and slots) and Version2 are read.
	Version1 uint16 = 1
	Version2 uint16 = 2
	// Version3 (written) is version 2 with the metadata section compressed
	// with the block's codec (frame flag frameMetaCompressed), which takes
	// most of the plaintext metadata's bytes away.
	Version3 uint16 = 3

	// frameMetaCompressed (frame flags, v3, codec not none): the metadata
	// section is uvarint(raw length) || codec(raw section).
	frameMetaCompressed byte = 1 << 0

	preambleMagic = "LOGSTSEG"
	slotMagic     = "KSLT"
	blockMagic    = "LBLK"
	footerMagic   = "LFTR"
	trailerMagic  = "LOGSTEND"

	preambleSize  = 1024
	slotSize      = 1024
	slotCount     = 2
	slot0Offset   = preambleSize
	slot1Offset   = preambleSize + slotSize
	HeaderSize    = preambleSize + slotCount*slotSize
	frameHdrSize  = 68 // including the header crc
	frameCRCSize  = 4
	footerEntry   = 28
	trailerSize   = 24
	commitSize    = 32
	idSize        = 16
	gcmTagSize    = 16
	gcmNonceSize  = 12
	crcOffsetTail = 1020 // crc position within preamble and slots

	// MaxTenantLen bounds the tenant id stored in the preamble.
	MaxTenantLen = 255
	// maxSlotPayload bounds key URI + wrapped DEK in one slot (v2 keeps the
	// last 32 bytes before the CRC for the slot MAC).
	slotMACOffset  = crcOffsetTail - 32
	maxSlotPayload = slotMACOffset - 16

	// MaxBlockRaw bounds the uncompressed body and the metadata section of one
	// block, so a corrupt length can never make a reader allocate without limit.
	MaxBlockRaw = 64 << 20
	// maxBlockRecords bounds the record count of one block.
	maxBlockRecords = 1 << 20

	infoBlockKey   = "logstore/v1/block"
	infoCommitment = "logstore/v1/commit"
	infoSlotMAC    = "logstore/v2/slot"
	aadPrefix      = "logstore/v1/aad"
	aadPrefixV2    = "logstore/v2/aad"
	// preambleTenantOff is where the tenant starts in the preamble; a v2
	// block's AAD covers the preamble up to the tenant's end.
	preambleTenantOff = 74
)

// Cipher identifies the block cipher suite, recorded in the preamble.
type Cipher uint16

const (
	// CipherNone stores bodies compressed but unencrypted. It exists only as the
	// plaintext baseline of benchmarks and must be requested explicitly.
	CipherNone Cipher = 0
	// CipherAES256GCM seals bodies with AES-256-GCM under an HKDF-derived key.
	CipherAES256GCM Cipher = 1
)

func (c Cipher) String() string {
	switch c {
	case CipherNone:
		return "none"
	case CipherAES256GCM:
		return "aes-256-gcm"
	}
	return "unknown"
}

// Codec identifies a block's body compression, recorded per block.
type Codec uint8

const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
	CodecS2   Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecS2:
		return "s2"
	}
	return "unknown"
}

// ParseCodec maps a codec name to its Codec.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "none":
		return CodecNone, nil
	case "zstd", "":
		return CodecZstd, nil
	case "s2":
		return CodecS2, nil
	}
	return 0, errorf(ErrInvalidArgument, "unknown codec %q (want zstd, s2 or none)", s)
}
