package engine

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

func FuzzDecodeIndexKey(f *testing.F) {
	f.Add(blockKey("acme", [16]byte{1}, 7))
	f.Add(segmentKey("a\x00b", [16]byte{1}))
	f.Add(tenantPrefix(keyConfig, "acme"))
	f.Add([]byte{keyBlock, 'x', 0, 1, 1})
	f.Fuzz(func(t *testing.T, k []byte) {
		ik, err := decodeIndexKey(k)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same key.
		var re []byte
		switch ik.Kind {
		case keyBlock:
			re = blockKey(ik.Tenant, ik.Segment, ik.Seq)
		case keySegment:
			re = segmentKey(ik.Tenant, ik.Segment)
		case keyConfig, keyManifestSeq:
			re = tenantPrefix(ik.Kind, ik.Tenant)
		default:
			t.Fatalf("kind %q decoded", ik.Kind)
		}
		if !bytes.Equal(re, k) {
			t.Fatalf("key %q decodes to %+v which encodes to %q", k, ik, re)
		}
	})
}

// FuzzDecodeSummary: hostile index values never panic the summary decoder
// nor make it allocate beyond the value's size; what decodes re-encodes to
// the same bytes.
func FuzzDecodeSummary(f *testing.F) {
	recs := genRecords(rand.New(rand.NewSource(3)), 20, t0)
	metas := make([]*Meta, len(recs))
	for i := range recs {
		m := recs[i].meta()
		m.Time = recs[i].Time
		metas[i] = &m
	}
	f.Add(appendSummary(nil, summarize([16]byte{1}, 3, 3072, kindLog, metas, [][]byte{{1, 2}})))
	f.Add(appendSummary(nil, summarize([16]byte{1}, 2, 3072, kindPayload, metas[:3], nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSummary([16]byte{1}, 3, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if re := appendSummary(nil, s); !bytes.Equal(re, b) {
			t.Fatalf("summary %x re-encodes to %x", b, re)
		}
	})
}

func FuzzDecodeRecordEncodings(f *testing.F) {
	recs := genRecords(rand.New(rand.NewSource(2)), 3, t0)
	for i := range recs {
		m := recs[i].meta()
		f.Add(appendMeta(nil, &m, kindLog))
		f.Add(appendSealedLog(nil, &recs[i]))
		withOriginals := recs[i]
		withOriginals.Originals = []Original{{Where: "request_header:Authorization", Value: "Bearer x"}}
		f.Add(appendSealedLog(nil, &withOriginals)) // version 2
		if recs[i].Payload != nil {
			f.Add(appendSealedPayload(nil, recs[i].Payload))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if kind, err := decodeMeta(b, &m); err == nil && kind == kindLog {
			if re := appendMeta(nil, &m, kindLog); !bytes.Equal(re, b) {
				t.Fatalf("metadata %x re-encodes to %x", b, re)
			}
		}
		var r Record
		_ = decodeSealedLog(b, &r)
		_, _ = decodeSealedPayload(b)
	})
}

func FuzzParseID(f *testing.F) {
	f.Add("01M82AAPXTFWEQBDADECM4QV4V")
	f.Add("7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
	f.Add("8ZZZZZZZZZZZZZZZZZZZZZZZZZ")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		id2, err := ParseID(id.String())
		if err != nil || id2 != id {
			t.Fatalf("%q -> %v -> %q does not round-trip", s, id, id.String())
		}
	})
}

// FuzzDecodeManifest: arbitrary bytes never panic the manifest decoder, every
// failure is one of its typed errors, and nothing but the exact bytes a key
// holder wrote verifies under that key.
func FuzzDecodeManifest(f *testing.F) {
	mk := bytes.Repeat([]byte{7}, 32)
	body := &manifestBody{Tenant: "acme", Seq: 3, Key: keyBinding{URI: "local://acme"},
		Wraps:    []keyWrap{{URI: "local://acme", Wrapped: []byte("wrapped")}},
		Segments: []manifestEntry{{ID: "00112233445566778899aabbccddeeff", State: segSealed, Version: 2, Size: 4096, Blocks: 1, KeyGen: 1, Digest: make([]byte, 32)}}}
	good, err := encodeManifest(body, mk)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(manifestMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeManifest(b, "acme")
		if err != nil {
			if !errors.Is(err, ErrManifestCorrupt) && !errors.Is(err, ErrManifestAuth) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if p.verify(mk) == nil && !bytes.Equal(b, good) {
			t.Fatalf("altered manifest verified")
		}
	})
}
