package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// checkKeyNotShared refuses to link tenant to a local key that another
// tenant uses (LinkKey, and so Rewrap, call it before touching the key).
func (db *DB) checkKeyNotShared(tenant, uri string) error {
	if !isLocal(uri) {
		return nil
	}
	users, err := db.localKeyUsers(tenant)
	if err != nil {
		return err
	}
	if ts := users[uri]; len(ts) > 0 {
		return fmt.Errorf("%w: %w: %s is used by tenant %s (a shared local key cannot be crypto-shredded with one tenant): link a key of tenant %s's own, e.g. %s",
			ErrKeyValidation, ErrKeyInUse, uri, strings.Join(ts, ", "), tenant, keys.LocalURI(tenant))
	}
	return nil
}

// localKeyUsers maps each local key URI to the tenants other than except
// that use it: linked in their configuration, recorded as the key of one of
// their segments, or, for local://T, tenant T's default key.
func (db *DB) localKeyUsers(except string) (map[string][]string, error) {
	tenants, err := db.knownTenants()
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	add := func(uri, t string) {
		if uri == "" || !isLocal(uri) {
			return
		}
		for _, u := range users[uri] {
			if u == t {
				return
			}
		}
		users[uri] = append(users[uri], t)
	}
	for _, t := range tenants {
		if t == except {
			continue
		}
		add(keys.LocalURI(t), t)
		configured, err := db.configuredKeyURIs(t)
		if err != nil {
			return nil, err
		}
		for _, uri := range configured {
			add(uri, t)
		}
		states, err := db.segmentStates(t)
		if err != nil {
			return nil, err
		}
		for _, st := range states {
			add(st.KeyURI, t)
		}
	}
	return users, nil
}

// configuredKeyURIs lists the keys tenant's configuration records: the
// linked key, the keys its manifest key is wrapped under and those of the
// segments its manifest lists, and the key of a configuration from before
// manifests.
func (db *DB) configuredKeyURIs(tenant string) ([]string, error) {
	var out []string
	if tm := db.manifests.get(tenant); tm != nil && tm.body != nil {
		out = append(out, tm.body.Key.URI)
		for _, w := range tm.body.Wraps {
			out = append(out, w.URI)
		}
		for _, e := range tm.body.Segments {
			out = append(out, e.KeyURI)
		}
	}
	legacy, err := db.loadLegacyConfig(tenant)
	if err != nil {
		return nil, err
	}
	return append(out, legacy.KeyURI), nil
}

// knownTenants lists every tenant with a segment directory, a configuration
// or a segment state.
func (db *DB) knownTenants() ([]string, error) {
	set := map[string]bool{}
	dirs, err := db.listTenants()
	if err != nil && !errors.Is(err, vfs.ErrNotExist) {
		return nil, err
	}
	for _, t := range dirs {
		set[t] = true
	}
	for _, kind := range []byte{keyConfig, keySegment} {
		err := db.index.scan([]byte{kind}, []byte{kind + 1}, func(k, _ []byte) error {
			if t, _, err := readEscaped(k[1:]); err == nil {
				set[t] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}
