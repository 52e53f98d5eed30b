package engine

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/cockroachdb/pebble/v2"
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

// tenantConfig is the 'c' value: what `keys link` and retention settings
// store. It is the only index state not derivable from segments.
type tenantConfig struct {
	V         int           `json:"v"`
	KeyURI    string        `json:"key_uri,omitempty"`
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

func (s *SegmentInfo) segID() ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s.ID)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%w: segment id %q", ErrCorrupt, s.ID)
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
	p := tenantPrefix(keySegment, tenant)
	it, err := db.idx.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[[16]byte]*SegmentInfo{}
	for it.First(); it.Valid(); it.Next() {
		st := &SegmentInfo{}
		if err := decodeJSONValue(it.Value(), st, "segment state"); err != nil {
			return nil, err
		}
		id, err := st.segID()
		if err != nil {
			return nil, err
		}
		out[id] = st
	}
	return out, it.Error()
}

func putState(b *pebble.Batch, st *SegmentInfo) error {
	k, v, err := stateKV(st)
	if err != nil {
		return err
	}
	return b.Set(k, v, nil)
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

func (db *DB) loadConfig(tenant string) (tenantConfig, error) {
	var c tenantConfig
	v, closer, err := db.idx.Get(tenantPrefix(keyConfig, tenant))
	if errors.Is(err, pebble.ErrNotFound) {
		return tenantConfig{V: stateVersion}, nil
	}
	if err != nil {
		return c, err
	}
	defer closer.Close()
	err = decodeJSONValue(v, &c, "tenant config")
	return c, err
}

func (db *DB) saveConfig(tenant string, c tenantConfig) error {
	c.V = stateVersion
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := db.idx.Set(tenantPrefix(keyConfig, tenant), v, pebble.NoSync); err != nil {
		return err
	}
	return db.durableIndex()
}
