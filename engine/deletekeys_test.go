package engine

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// Regression tests for finding 14 of the security review (issue 10):
// crypto-shredding a tenant destroys every local key its data was wrapped
// under, never a key another tenant still uses, and tenants cannot be linked
// to each other's local keys in the first place.

func keyFile(dir, name string) string { return filepath.Join(dir, "keys", name+".key") }

func requireNoFile(t *testing.T, path string) {
	t.Helper()
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "%s survived", path)
}

func keptURIs(rep DeleteReport) []string {
	var out []string
	for _, k := range rep.KeysKept {
		out = append(out, k.URI)
	}
	return out
}

func TestDeleteTenantDestroysEveryLocalKeyItsDataWasWrappedUnder(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	rng := rand.New(rand.NewSource(141))
	_, err := db.tn("acme").Append(bg, genRecords(rng, 10, t0))
	require.NoError(t, err)
	_, err = db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2027"), nil)
	require.NoError(t, err)
	_, err = db.tn("acme").Append(bg, genRecords(rng, 10, t0.Add(1e9)))
	require.NoError(t, err)
	// A second rotation: no segment and no configuration names acme-2027
	// any more, but DEKs were wrapped under it (a backup of a segment
	// header from last year still opens with it).
	_, err = db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2028"), nil)
	require.NoError(t, err)
	for _, n := range []string{"acme", "acme-2027", "acme-2028"} {
		require.FileExists(t, keyFile(dir, n))
	}

	rep, err := db.Admin().DeleteTenant(bg, "acme")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{keys.LocalURI("acme"), keys.LocalURI("acme-2027"), keys.LocalURI("acme-2028")}, rep.KeysDestroyed)
	require.Empty(t, rep.KeysKept)
	for _, n := range []string{"acme", "acme-2027", "acme-2028"} {
		requireNoFile(t, keyFile(dir, n))
	}
}

// TestDeleteTenantKeepsALocalKeyAnotherTenantUses: tenant acme is linked to
// local://acme-2027; later a tenant named acme-2027 appears and its data is
// wrapped under its default key, the same local://acme-2027. Deleting either
// tenant must not shred the other: the key is kept and reported, and goes
// with the last tenant using it.
// TestDeleteTenantKeepsALocalKeyAnotherTenantUses: tenants never come to
// share a local key (a new tenant whose default key name another tenant
// linked is refused), so deleting one tenant never shreds another's data;
// the last tenant using a key takes it along.
func TestDeleteTenantKeepsALocalKeyAnotherTenantUses(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	rng := rand.New(rand.NewSource(142))
	shared := keys.LocalURI("acme-2027")
	_, err := db.Admin().LinkKey(bg, "acme", shared)
	require.NoError(t, err)
	recs := genRecords(rng, 10, t0)
	ids, err := db.tn("acme").Append(bg, recs)
	require.NoError(t, err)
	_, err = db.tn("acme-2027").Append(bg, genRecords(rng, 10, t0))
	require.ErrorIs(t, err, ErrKeyInUse, "a new tenant never gets another tenant's key as its default")

	rep, err := db.Admin().DeleteTenant(bg, "acme-2027")
	require.NoError(t, err)
	require.NotContains(t, rep.KeysDestroyed, shared)
	require.FileExists(t, keyFile(dir, "acme-2027"))
	db.cache.Purge()
	for i, id := range ids {
		got, err := db.tn("acme").Get(bg, id, PartAll)
		require.NoError(t, err, "the other tenant's data must survive")
		requireSameRecord(t, recs[i], id, got)
	}

	rep, err = db.Admin().DeleteTenant(bg, "acme")
	require.NoError(t, err)
	require.Contains(t, rep.KeysDestroyed, shared, "the last tenant using it takes it along")
	requireNoFile(t, keyFile(dir, "acme-2027"))
}

func TestLinkKeyRefusesAnotherTenantsLocalKey(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	rng := rand.New(rand.NewSource(143))
	// bob has data under its default key; carol has linked a key but
	// written nothing yet.
	_, err := db.tn("bob").Append(bg, genRecords(rng, 3, t0))
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "carol", keys.LocalURI("carol-k1"))
	require.NoError(t, err)

	for _, uri := range []string{keys.LocalURI("bob"), keys.LocalURI("carol-k1"), keys.LocalURI("carol")} {
		_, err = db.Admin().LinkKey(bg, "acme", uri)
		require.ErrorIs(t, err, ErrKeyInUse, uri)
		require.ErrorIs(t, err, ErrKeyValidation, uri)
		linked, err := db.Admin().KeyURI(bg, "acme")
		require.NoError(t, err)
		require.Empty(t, linked, "a refused link changes nothing")
		_, err = db.Admin().Rewrap(bg, "acme", uri, nil)
		require.ErrorIs(t, err, ErrKeyInUse, "rewrap links its target first")
	}
	// A tenant's own keys, and unclaimed names, are fine; so is
	// re-linking a key it already uses.
	for _, uri := range []string{keys.LocalURI("acme"), keys.LocalURI("acme-2027"), keys.LocalURI("acme-2027")} {
		_, err = db.Admin().LinkKey(bg, "acme", uri)
		require.NoError(t, err, uri)
	}
	_, err = db.Admin().LinkKey(bg, "bob", keys.LocalURI("bob"))
	require.NoError(t, err)
	// acme-2027 is now acme's: bob cannot take it.
	_, err = db.Admin().LinkKey(bg, "bob", keys.LocalURI("acme-2027"))
	require.ErrorIs(t, err, ErrKeyInUse)
	require.ErrorContains(t, err, "acme")
}
