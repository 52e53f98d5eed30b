package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/logstore/logstore/keys"
)

// KeyStatus is the state of one key a tenant's data depends on, as
// Admin.KeyStatus found it.
type KeyStatus struct {
	// URI is the key as the tenant's segments or its configuration name it.
	URI string
	// Described reports whether the key's provider could describe the key;
	// when false, State is zero and Err is the Describe error.
	Described bool
	// State is what the key's provider reports about the key now.
	State keys.KeyState
	// Err is nil when the key is enabled and the tenant's data under it was
	// proven readable (Admin.CheckKey). Otherwise it is the Describe error
	// (Described false), a *keys.Error of kind keys.ErrKeyDisabled or
	// keys.ErrKeyInvalidState for a key that is not enabled (disabled,
	// pending deletion...), or the CheckKey error. All of them are the keys
	// package's typed errors: errors.Is(Err, keys.ErrKeyUnusable) holds for a
	// revoked key.
	Err error
}

// LinkedKeyUnknown stands for the URI of a linked key that could not be
// read (KeyStatus.Err says why).
const LinkedKeyUnknown = "(linked key)"

// KeyStatus describes every key tenant's data depends on: the keys its
// segments are wrapped under (Stats' KeysInUse) and the key linked for its
// new segments, in that order. Each key is described by its provider
// (DescribeKey); an enabled key is then proven usable with CheckKey. Both
// bypass the DEK cache, so a key revoked a moment ago is reported revoked
// even while cached DEKs keep the data plane reading.
//
// A key that cannot be used is not an error of KeyStatus: it is reported in
// its KeyStatus.Err, typed, and the other keys are still described. When the
// linked key cannot be read at all, a last status with URI
// LinkedKeyUnknown carries the reason. The
// error returned is ErrNoKey when tenant has no key and no data, or the
// error that kept the keys from being listed.
func (a *Admin) KeyStatus(ctx context.Context, tenant string) ([]KeyStatus, error) {
	return tenantCall(a, ctx, tenant, false, func() ([]KeyStatus, error) { return a.keyStatuses(ctx, tenant) })
}

func (a *Admin) keyStatuses(ctx context.Context, tenant string) ([]KeyStatus, error) {
	uris, linkErr, err := a.statusKeyURIs(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]KeyStatus, 0, len(uris)+1)
	for _, u := range uris {
		out = append(out, a.keyStatus(ctx, tenant, u))
	}
	if linkErr != nil {
		out = append(out, KeyStatus{URI: LinkedKeyUnknown, Err: linkErr})
	}
	return out, nil
}

// statusKeyURIs lists the keys tenant's segments use, then its linked key if
// no segment uses it yet. linkErr is why the linked key could not be read
// (the key that authenticates the tenant's manifest may be the revoked one):
// it is reported as a status of its own, never dropped.
func (a *Admin) statusKeyURIs(ctx context.Context, tenant string) (uris []string, linkErr error, err error) {
	st, err := a.db.Stats(ctx)
	if err != nil {
		return nil, nil, err
	}
	uris = st.Tenants[tenant].KeysInUse
	linked, linkErr := a.KeyURI(ctx, tenant)
	if linked != "" && !slices.Contains(uris, linked) {
		uris = append(uris, linked)
	}
	if len(uris) == 0 && linkErr == nil {
		return nil, nil, fmt.Errorf("%w: tenant %s has no key and no data: run `logstore keys link --tenant %s --key URI`", ErrNoKey, tenant, tenant)
	}
	return uris, linkErr, nil
}

// keyStatus describes uri and, when it is enabled, proves tenant's data
// under it readable.
func (a *Admin) keyStatus(ctx context.Context, tenant, uri string) KeyStatus {
	ks := KeyStatus{URI: uri}
	state, err := a.DescribeKey(ctx, uri)
	if err != nil {
		ks.Err = err
		return ks
	}
	ks.Described, ks.State = true, state
	if !state.Enabled {
		kind := keys.ErrKeyInvalidState
		if state.State == "Disabled" {
			kind = keys.ErrKeyDisabled
		}
		ks.Err = &keys.Error{Op: "describe", KeyURI: uri, Kind: kind, Detail: "state " + state.State}
		return ks
	}
	ks.Err = a.CheckKey(ctx, tenant, uri)
	return ks
}
