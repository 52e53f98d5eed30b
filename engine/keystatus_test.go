package engine

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

func TestKeyStatus(t *testing.T) {
	db := openTest(t, vfs.Default, t.TempDir(), nil)
	defer db.Close()
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 20, t0))
	require.NoError(t, err)
	uri := keys.LocalURI("acme")

	// An enabled key is described and proven usable.
	sts, err := db.Admin().KeyStatus(bg, "acme")
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, uri, sts[0].URI)
	require.True(t, sts[0].Described)
	require.True(t, sts[0].State.Enabled)
	require.NoError(t, sts[0].Err)

	// A disabled key is reported, typed, although its DEK is still cached.
	require.NoError(t, db.local.SetEnabled(uri, false))
	sts, err = db.Admin().KeyStatus(bg, "acme")
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.True(t, sts[0].Described)
	require.False(t, sts[0].State.Enabled)
	require.ErrorIs(t, sts[0].Err, keys.ErrKeyUnusable)
	require.ErrorIs(t, sts[0].Err, keys.ErrKeyDisabled)
	var ke *keys.Error
	require.True(t, errors.As(sts[0].Err, &ke))
	require.Equal(t, uri, ke.KeyURI)

	// Re-enabled, it is usable again.
	require.NoError(t, db.local.SetEnabled(uri, true))
	sts, err = db.Admin().KeyStatus(bg, "acme")
	require.NoError(t, err)
	require.NoError(t, sts[0].Err)

	// A tenant without key and data.
	_, err = db.Admin().KeyStatus(bg, "nobody")
	require.ErrorIs(t, err, ErrNoKey)
	require.EqualError(t, err, ErrNoKey.Error()+": tenant nobody has no key and no data: run `logstore keys link --tenant nobody --key URI`")

	// An invalid tenant name.
	_, err = db.Admin().KeyStatus(bg, "../x")
	require.ErrorIs(t, err, ErrInvalidTenant)
}

// TestKeyStatusLinkedKeyUnreadable: when the tenant's configuration cannot
// be read because of its key, the status says so instead of leaving the
// linked key out.
func TestKeyStatusLinkedKeyUnreadable(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, vfs.Default, dir, nil)
	_, err := db.tn("acme").Append(bg, genRecords(rand.New(rand.NewSource(1)), 5, t0))
	require.NoError(t, err)
	_, err = db.Admin().LinkKey(bg, "acme", keys.LocalURI("acme-2026"))
	require.NoError(t, err)
	_, err = db.Admin().Rewrap(bg, "acme", keys.LocalURI("acme-2026"), nil)
	require.NoError(t, err)
	require.NoError(t, db.local.SetEnabled(keys.LocalURI("acme-2026"), false))
	require.NoError(t, db.Close())

	db = openTest(t, vfs.Default, dir, nil)
	defer db.Close()
	sts, err := db.Admin().KeyStatus(bg, "acme")
	require.NoError(t, err)
	var bad []string
	for _, s := range sts {
		if s.Err != nil {
			bad = append(bad, s.URI)
			require.ErrorIs(t, s.Err, keys.ErrKeyUnusable, s.URI)
		}
	}
	require.Contains(t, bad, keys.LocalURI("acme-2026"))
	require.Contains(t, bad, LinkedKeyUnknown, "the unreadable link is reported, not dropped")
}
