package engine

// Encodings owned by the engine, version 1. docs/format/record.md and
// docs/format/index.md describe the same bytes. Integers are little-endian
// inside values and big-endian inside index keys (so keys sort numerically).
//
// Record metadata (a segment block's metadata section entry; plaintext):
//
//	+----------------------------------------------------------+
//	|  0  encoding version (1)                           u8    |
//	|  1  kind: 1 request log, 2 payload                 u8    |
//	|  2  record id                                      [16]  |
//	| 18  time, unix nanoseconds                         i64   |
//	|     -- request log only --                               |
//	| 26  flags: bit 0 = has payload                     u8    |
//	| 27  status, upstream status                   u16, u16   |
//	| 31  latency, upstream, gateway latency (ms)   3 x f64    |
//	| 55  request size, response size            2 x uvarint   |
//	| ..  session id, trace id, span id, method, host,         |
//	|     response source, route id, service id:               |
//	|     each uvarint length + bytes                          |
//	+----------------------------------------------------------+
//
// Sealed request log (inside the encrypted body):
//
//	version u8 (1) | path | query | client ip | consumer id      (strings)
//	| uvarint n, n x (name, value)  request headers
//	| uvarint n, n x (name, value)  response headers
//	| uvarint n, n x (key, value)   attributes, sorted by key
//	version 2 only, when the record has sealed originals (n >= 1):
//	| uvarint n, n x (where, value) originals of masked values, in order
//
// Sealed payload (inside the encrypted body of a payload block):
//
//	version u8 (1) | request content type | request body
//	| response content type | response body          (uvarint length + bytes)
//
// Index keys (Pebble), format 2 (docs/format/index.md). Every key starts
// with a one-byte kind and the escaped tenant (0x00 -> 0x00 0xFF, terminated
// by 0x00 0x01, so no tenant is a prefix of another):
//
//	'c' tenant                      -> tenant config (JSON, versioned; before
//	                                   manifests: read only to adopt such a store)
//	'm' tenant                      -> newest manifest sequence seen, u64
//	's' tenant segment-id[16]       -> segment state (JSON, versioned)
//	'b' tenant segment-id[16] seq[8] -> block summary (blocksum.go), seq big-endian
//
// Block summary, version 1 (little-endian):
//
//	+-----------------------------------------------------------+
//	|  0  version (1)                                     u8    |
//	|  1  kind: 1 request log, 2 payload                  u8    |
//	|  2  frame offset, record count               2 x uvarint  |
//	|  .. min time, max time (unix ns)                2 x i64   |
//	|  .. min id, max id                             2 x [16]   |
//	|  .. min status, max status (0 in payload blocks) 2 x u16  |
//	|  .. min latency, max latency (ms)               2 x f64   |
//	|  .. bloom: k u8, uvarint n, n x u64 words                 |
//	+-----------------------------------------------------------+
//
// Bloom entries are xxhash64 of a domain byte then the value: 0 and the id
// (16 bytes); an index field byte (below) and a string value; idxStatus and
// the status as u16 big-endian. Probe i of k tests bit (h + i*(h>>32|1)) mod
// 64n. Format 1 held per-record kinds 'r', 't', 'i', 'p', which an Open
// deletes (indexmigrate.go).
const (
	encodingV1 = 1
	// sealedLogV2 is the sealed request log with originals (redaction.go);
	// metadata and payload encodings stay at version 1.
	sealedLogV2 = 2

	kindLog     = 1
	kindPayload = 2

	flagHasPayload = 1 << 0

	metaFixedLen = 26

	keyConfig      = 'c'
	keyManifestSeq = 'm'
	keySegment     = 's'
	keyBlock       = 'b'

	// Per-record kinds of index format 1, removed when such an index is
	// opened (indexmigrate.go).
	keyRecord  = 'r'
	keyTime    = 't'
	keyIndex   = 'i'
	keyPayload = 'p'

	stateVersion = 1
)

// Indexed fields: the byte that names each in an 'i' key (schema.go maps
// them to fields). Append only.
const (
	idxSessionID byte = 1
	idxTraceID   byte = 2
	idxStatus    byte = 3
	idxMethod    byte = 4
	idxRouteID   byte = 5
	idxServiceID byte = 6
	idxHost      byte = 7
)
