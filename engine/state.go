package engine

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateTenant checks a tenant name: 1-64 of letters, digits, '.', '_',
// '-', not starting with a punctuation mark (it names a directory).
func ValidateTenant(t string) error {
	if !tenantRE.MatchString(t) {
		return fmt.Errorf("%w: %q (use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)", ErrInvalidTenant, t)
	}
	return nil
}

// tenantConfig is what `keys link` and retention settings store. It lives in
// the tenant manifest; stores from before manifests kept it in the index
// ('c'), which is read only to adopt them.
type tenantConfig struct {
	V         int           `json:"v"`
	KeyURI    string        `json:"key_uri,omitempty"`   // canonical: the key's own URI (an alias resolved at link time)
	KeyAlias  string        `json:"key_alias,omitempty"` // the URI given to link when it differs (e.g. an alias): display only
	LinkedAt  time.Time     `json:"linked_at,omitempty"`
	Retention time.Duration `json:"retention_ns,omitempty"`
}

// SegmentInfo describes one segment (the 's' value).
type SegmentInfo struct {
	V        int       `json:"v"`
	Tenant   string    `json:"tenant"`
	ID       string    `json:"id"` // hex
	Sealed   bool      `json:"sealed"`
	Damaged  string    `json:"damaged,omitempty"` // why recovery refused to truncate
	KeyURI   string    `json:"key_uri,omitempty"`
	KeyGen   uint64    `json:"key_generation,omitempty"`
	Created  time.Time `json:"created"`
	Blocks   int       `json:"blocks_indexed"`
	Records  int       `json:"records"`
	Payloads int       `json:"payloads"`
	MinTime  time.Time `json:"min_time,omitempty"`
	MaxTime  time.Time `json:"max_time,omitempty"`
	RawBytes int64     `json:"raw_bytes"`
	Size     int64     `json:"size"`
}

func (s *SegmentInfo) segID() ([16]byte, error) { return parseSegHex(s.ID) }

// parseSegHex parses a segment id written by segHex.
func parseSegHex(h string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%w: segment id %q", ErrCorrupt, h)
	}
	copy(id[:], b)
	return id, nil
}

func (s *SegmentInfo) observe(t time.Time) {
	if s.MinTime.IsZero() || t.Before(s.MinTime) {
		s.MinTime = t
	}
	if t.After(s.MaxTime) {
		s.MaxTime = t
	}
}

func decodeJSONValue(b []byte, v any, what string) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	var probe struct {
		V int `json:"v"`
	}
	_ = json.Unmarshal(b, &probe)
	if probe.V != stateVersion {
		return fmt.Errorf("%w: %s version %d", ErrUnknownVersion, what, probe.V)
	}
	return nil
}

func segHex(id [16]byte) string { return hex.EncodeToString(id[:]) }

// segmentStates loads every 's' value of a tenant.
func (db *DB) segmentStates(tenant string) (map[[16]byte]*SegmentInfo, error) {
	out := map[[16]byte]*SegmentInfo{}
	err := db.index.scanPrefix(tenantPrefix(keySegment, tenant), func(_, v []byte) error {
		st := &SegmentInfo{}
		if err := decodeJSONValue(v, st, "segment state"); err != nil {
			return err
		}
		id, err := st.segID()
		if err != nil {
			return err
		}
		out[id] = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func putState(b *indexBatch, st *SegmentInfo) error {
	k, v, err := stateKV(st)
	if err != nil {
		return err
	}
	return b.set(k, v)
}

func stateKV(st *SegmentInfo) ([]byte, []byte, error) {
	id, err := st.segID()
	if err != nil {
		return nil, nil, err
	}
	st.V = stateVersion
	v, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	return segmentKey(st.Tenant, id), v, nil
}

// loadLegacyConfig reads the configuration a store from before manifests
// kept in the index.
func (db *DB) loadLegacyConfig(tenant string) (tenantConfig, error) {
	var c tenantConfig
	v, found, err := db.index.get(tenantPrefix(keyConfig, tenant))
	if err != nil {
		return c, err
	}
	if !found {
		return tenantConfig{V: stateVersion}, nil
	}
	err = decodeJSONValue(v, &c, "tenant config")
	return c, err
}

// config returns tenant's configuration from its verified manifest (zero
// when it has none yet), or why it cannot be trusted.
func (db *DB) config(tenant string) (tenantConfig, error) {
	c := tenantConfig{V: stateVersion}
	tm := db.manifests.get(tenant)
	switch {
	case tm == nil:
		return c, nil
	case tm.body == nil && tm.unverified != nil:
		return c, tm.unverified
	case tm.body == nil && tm.damaged != nil:
		return c, tm.damaged
	case tm.body == nil:
		return c, nil
	}
	k := tm.body.Key
	c.KeyURI, c.KeyAlias, c.LinkedAt, c.Retention = k.URI, k.Alias, k.LinkedAt, tm.body.Retention
	return c, nil
}
