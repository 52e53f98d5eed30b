package engine

import (
	"errors"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/vfs"
)

// TestKMSFaultsDuringIngest runs an ingest while the test KMS goes through a
// fault schedule (slow, throttling, down, key disabled, re-enabled, pending
// deletion, cancelled, backing-key rotation). Appends may fail, always with a
// typed key error; no acknowledged record is lost.
func TestKMSFaultsDuringIngest(t *testing.T) {
	env := newKMS(t)
	cache := keys.CacheOptions{MaxAge: 80 * time.Millisecond} // the writer re-validates the key every 80 ms
	db := openTest(t, vfs.Default, t.TempDir(), func(o *Options) { o.KMS, o.DEKCache = kmsProviders(env.kopts), &cache })
	defer db.Close()
	uri := env.newKey(t)
	_, err := db.Admin().LinkKey(bg, "acme", uri)
	require.NoError(t, err)

	stop := make(chan struct{})
	var mu sync.Mutex
	var acks []acked
	failures := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(1))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			recs := genRecords(rng, 5, t0.Add(time.Duration(i)*time.Second))
			ids, err := db.tn("acme").Append(bg, recs)
			mu.Lock()
			if err != nil {
				var ke *keys.Error
				if !errors.As(err, &ke) {
					t.Errorf("untyped append error: %v", err)
				} else {
					failures[ke.Kind.Error()]++
				}
			} else {
				for j := range recs {
					acks = append(acks, acked{recs[j], ids[j]})
				}
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	step := func(d time.Duration, f func()) {
		f()
		time.Sleep(d)
	}
	id := keyID(uri)
	step(200*time.Millisecond, func() {})
	step(600*time.Millisecond, func() { env.srv.SetLatency(500 * time.Millisecond) })
	step(300*time.Millisecond, func() { env.srv.SetLatency(0); env.srv.Throttle(20) })
	step(300*time.Millisecond, func() { env.srv.Throttle(0); require.NoError(t, env.srv.SetDown(true)) })
	step(300*time.Millisecond, func() { require.NoError(t, env.srv.SetDown(false)) })
	step(300*time.Millisecond, func() {
		_, err := env.admin.DisableKey(bg, &kms.DisableKeyInput{KeyId: id})
		require.NoError(t, err)
	})
	step(300*time.Millisecond, func() {
		_, err := env.admin.EnableKey(bg, &kms.EnableKeyInput{KeyId: id})
		require.NoError(t, err)
	})
	step(300*time.Millisecond, func() {
		_, err := env.admin.ScheduleKeyDeletion(bg, &kms.ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: aws.Int32(7)})
		require.NoError(t, err)
	})
	step(200*time.Millisecond, func() {
		_, err := env.admin.CancelKeyDeletion(bg, &kms.CancelKeyDeletionInput{KeyId: id})
		require.NoError(t, err)
		_, err = env.admin.EnableKey(bg, &kms.EnableKeyInput{KeyId: id})
		require.NoError(t, err)
	})
	step(300*time.Millisecond, func() {
		_, err := env.admin.RotateKeyOnDemand(bg, &kms.RotateKeyOnDemandInput{KeyId: id})
		require.NoError(t, err)
	})
	close(stop)
	wg.Wait()
	t.Logf("acknowledged %d records; failed appends by cause: %v", len(acks), failures)
	require.NotEmpty(t, acks)
	require.NotZero(t, failures[keys.ErrKeyDisabled.Error()]+failures[keys.ErrKeyInvalidState.Error()], "revocation bit")
	db.cache.Purge()
	for _, a := range acks {
		got, err := db.tn("acme").Get(bg, a.id, PartAll)
		require.NoError(t, err)
		requireSameRecord(t, a.rec, a.id, got)
	}
}
