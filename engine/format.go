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
//
// Sealed payload (inside the encrypted body of a payload block):
//
//	version u8 (1) | request content type | request body
//	| response content type | response body          (uvarint length + bytes)
//
// Index keys (Pebble), every key starts with a one-byte kind and the escaped
// tenant (0x00 -> 0x00 0xFF, terminated by 0x00 0x01, so no tenant is a
// prefix of another):
//
//	'c' tenant                                  -> tenant config (JSON, versioned;
//	                                               before manifests: read only to
//	                                               adopt such a store)
//	'm' tenant                                  -> newest manifest sequence seen, u64
//	's' tenant segment-id[16]                   -> segment state (JSON, versioned)
//	'r' tenant record-id[16]                    -> record value (below)
//	't' tenant time[8] record-id[16]            -> empty: time index
//	'i' tenant field[1] value time[8] id[16]    -> empty: secondary index
//	'p' tenant record-id[16]                    -> payload locator (below)
//
// time[8] is unix nanoseconds, big-endian with the sign bit flipped. A string
// value is escaped and terminated like the tenant; a numeric value (status) is
// u16 big-endian.
//
// Record value: locator (segment id [16], frame offset u64, block sequence
// u64, record index u32) followed by the record metadata bytes above.
// Payload locator: the same 36-byte locator.
const (
	encodingV1 = 1

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
