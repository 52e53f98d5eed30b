package awskms

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/require"

	"github.com/logstore/logstore/keys"
	"github.com/logstore/logstore/keys/kmstest"
)

// Regions of the multi-Region tests: the key's primary region and two replicas.
const (
	primaryRegion = "eu-west-1"
	replicaRegion = "eu-central-1"
	thirdRegion   = "us-west-2"
)

type mrEnv struct {
	c       *kmstest.Cluster
	servers map[string]*kmstest.Server
	arn     string // the primary key's ARN
	uri     string // its URI, without ?replicas=
	clk     *testClock
}

type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

// startMR starts a cluster of three regions with a multi-Region key in the
// first, replicated (through the real SDK: ReplicateKey) to the others.
func startMR(t *testing.T, replicate ...string) *mrEnv {
	c, err := kmstest.StartCluster(primaryRegion, replicaRegion, thirdRegion)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	e := &mrEnv{c: c, servers: map[string]*kmstest.Server{}, clk: &testClock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}}
	for _, r := range c.Regions() {
		e.servers[r] = c.Server(r)
	}
	out, err := adminClient(e.servers[primaryRegion]).CreateKey(bg, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	require.NoError(t, err)
	e.arn = aws.ToString(out.KeyMetadata.Arn)
	e.uri = "aws-kms://" + e.arn
	require.True(t, strings.Contains(e.arn, ":key/mrk-"))
	for _, r := range replicate {
		_, err := adminClient(e.servers[primaryRegion]).ReplicateKey(bg, &kms.ReplicateKeyInput{KeyId: aws.String(e.arn), ReplicaRegion: aws.String(r)})
		require.NoError(t, err)
	}
	return e
}

func (e *mrEnv) provider(discover bool) *Provider {
	return New(Options{LoadConfig: endpoints(e.servers), MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond, CallTimeout: 5 * time.Second,
		DiscoverReplicas: discover, ReplicaMaxAge: time.Hour, Now: e.clk.Now})
}

func (e *mrEnv) replicaARN(region string) string {
	return strings.Replace(e.arn, ":"+primaryRegion+":", ":"+region+":", 1)
}

func (e *mrEnv) calls(op string) map[string]int {
	out := map[string]int{}
	for r, s := range e.servers {
		if n := s.Calls(op); n > 0 {
			out[r] = n
		}
	}
	return out
}

// TestRegionFallbackGenerateAndDecrypt (finding 16): with the primary region
// down, GenerateDataKey and Decrypt are served by a replica; the data key
// made in the replica unwraps in the primary once it is back (related keys
// share material), and the other way round.
func TestRegionFallbackGenerateAndDecrypt(t *testing.T) {
	for _, down := range []struct {
		name string
		set  func(s *kmstest.Server, on bool)
	}{
		{"connection refused", func(s *kmstest.Server, on bool) { require.NoError(t, s.SetDown(on)) }},
		{"HTTP 500", func(s *kmstest.Server, on bool) { s.SetOutage(on) }},
	} {
		t.Run(down.name, func(t *testing.T) {
			e := startMR(t, replicaRegion)
			p := e.provider(false)
			uri := e.uri + "?replicas=" + replicaRegion
			ec := keys.SegmentContext("acme", "s1")
			before, err := p.GenerateDataKey(bg, uri, ec)
			require.NoError(t, err)
			require.Equal(t, map[string]int{primaryRegion: 1}, e.calls("GenerateDataKey"))

			down.set(e.servers[primaryRegion], true)
			during, err := p.GenerateDataKey(bg, uri, ec)
			require.NoError(t, err, "a new data key while the primary region is down")
			require.Equal(t, uri, during.KeyURI, "recorded under the key's own URI")
			require.Equal(t, 1, e.servers[replicaRegion].Calls("GenerateDataKey"))
			for _, dk := range []keys.DataKey{before, during} {
				got, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
				require.NoError(t, err, "unwrapped by the replica")
				require.Equal(t, dk.Plaintext, got)
			}
			require.Equal(t, 2, e.servers[replicaRegion].Calls("Decrypt"))

			down.set(e.servers[primaryRegion], false)
			got, err := p.Unwrap(bg, uri, during.Wrapped, ec)
			require.NoError(t, err, "the replica's data key unwraps in the primary region")
			require.Equal(t, during.Plaintext, got)
			require.Equal(t, 2, e.servers[replicaRegion].Calls("Decrypt"), "no fallback while the primary serves")
			// Wrap (Encrypt) falls back too.
			down.set(e.servers[primaryRegion], true)
			w, err := p.Wrap(bg, uri, before.Plaintext, ec)
			require.NoError(t, err)
			down.set(e.servers[primaryRegion], false)
			got, err = p.Unwrap(bg, uri, w, ec)
			require.NoError(t, err)
			require.Equal(t, before.Plaintext, got)
		})
	}
}

// TestRegionFallbackFailsClosed: only a region failure falls back. Access
// denied, a disabled or deleted key, a bad ciphertext and throttling in the
// key's region are final; a replica's own denial or disabled key is final too.
func TestRegionFallbackFailsClosed(t *testing.T) {
	e := startMR(t, replicaRegion, thirdRegion)
	p := e.provider(true)
	primary, replica := e.servers[primaryRegion], e.servers[replicaRegion]
	uri := e.uri
	ec := keys.SegmentContext("acme", "s1")
	dk, err := p.GenerateDataKey(bg, uri, ec) // also discovers the replicas
	require.NoError(t, err)
	noFallback := func(t *testing.T) {
		t.Helper()
		require.Empty(t, e.calls("GenerateDataKey")[replicaRegion]+e.calls("Decrypt")[replicaRegion]+
			e.calls("GenerateDataKey")[thirdRegion]+e.calls("Decrypt")[thirdRegion], "no replica was asked")
	}

	t.Run("access denied", func(t *testing.T) {
		primary.Deny("GenerateDataKey", true)
		primary.Deny("Decrypt", true)
		defer primary.Deny("GenerateDataKey", false)
		defer primary.Deny("Decrypt", false)
		_, err := p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrAccessDenied)
		require.ErrorIs(t, err, keys.ErrKeyUnusable)
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrAccessDenied)
		noFallback(t)
	})
	t.Run("disabled", func(t *testing.T) {
		require.NoError(t, adminCall(primary, "DisableKey", e.arn))
		defer func() { require.NoError(t, adminCall(primary, "EnableKey", e.arn)) }()
		_, err := p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled)
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled)
		require.False(t, keys.IsRetryable(err))
		noFallback(t)
	})
	t.Run("invalid ciphertext", func(t *testing.T) {
		_, err := p.Unwrap(bg, uri, dk.Wrapped, keys.SegmentContext("globex", "s1"))
		require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
		bad := append([]byte(nil), dk.Wrapped...)
		bad[len(bad)-1] ^= 1
		_, err = p.Unwrap(bg, uri, bad, ec)
		require.ErrorIs(t, err, keys.ErrInvalidCiphertext)
		noFallback(t)
	})
	t.Run("throttled", func(t *testing.T) {
		primary.Throttle(100)
		defer primary.Throttle(0)
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrThrottled)
		noFallback(t)
	})
	t.Run("primary down, replica disabled", func(t *testing.T) {
		require.NoError(t, primary.SetDown(true))
		defer func() { require.NoError(t, primary.SetDown(false)) }()
		require.NoError(t, adminCall(replica, "DisableKey", e.replicaARN(replicaRegion)))
		defer func() { require.NoError(t, adminCall(replica, "EnableKey", e.replicaARN(replicaRegion))) }()
		_, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrKeyDisabled, "the first replica's own key state is final")
		require.Contains(t, err.Error(), "from the replica in "+replicaRegion)
		require.Zero(t, e.servers[thirdRegion].Calls("Decrypt"))
	})
	t.Run("primary down, replica denied", func(t *testing.T) {
		require.NoError(t, primary.SetDown(true))
		defer func() { require.NoError(t, primary.SetDown(false)) }()
		replica.Deny("GenerateDataKey", true)
		defer replica.Deny("GenerateDataKey", false)
		_, err := p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrAccessDenied)
		require.Contains(t, err.Error(), e.replicaARN(replicaRegion), "names the replica key whose policy denies")
	})
	t.Run("primary down, replica deleted: the next one serves", func(t *testing.T) {
		require.NoError(t, primary.SetDown(true))
		defer func() { require.NoError(t, primary.SetDown(false)) }()
		replica.DeleteNow(e.replicaARN(replicaRegion))
		got, err := p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.NoError(t, err)
		require.Equal(t, dk.Plaintext, got)
		require.Equal(t, 1, e.servers[thirdRegion].Calls("Decrypt"))
	})
	t.Run("every region down", func(t *testing.T) {
		for _, s := range e.servers {
			require.NoError(t, s.SetDown(true))
		}
		defer func() {
			for _, s := range e.servers {
				require.NoError(t, s.SetDown(false))
			}
		}()
		_, err := p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrUnavailable)
		require.True(t, keys.IsRetryable(err))
		require.False(t, keys.IsRevocation(keys.ErrUnavailable))
		require.Contains(t, err.Error(), "unreachable in "+primaryRegion)
	})
}

// TestRegionFallbackOnlyForMultiRegionKeys: a single-Region key (or an
// alias, which may name different keys in different regions) never falls
// back, even with ?replicas=.
func TestRegionFallbackOnlyForMultiRegionKeys(t *testing.T) {
	e := startMR(t, replicaRegion)
	p := e.provider(true)
	primary := e.servers[primaryRegion]
	single := primary.CreateKey()
	require.NoError(t, adminAlias(primary, "alias/mr", e.arn))
	ec := keys.SegmentContext("acme", "s1")
	for _, uri := range []string{"aws-kms://" + single + "?replicas=" + replicaRegion,
		"aws-kms://arn:aws:kms:" + primaryRegion + ":" + kmstest.Account + ":alias/mr?replicas=" + replicaRegion} {
		dk, err := p.GenerateDataKey(bg, uri, ec)
		require.NoError(t, err)
		require.NoError(t, primary.SetDown(true))
		_, err = p.Unwrap(bg, uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrUnavailable, uri)
		_, err = p.GenerateDataKey(bg, uri, ec)
		require.ErrorIs(t, err, keys.ErrUnavailable, uri)
		require.NoError(t, primary.SetDown(false))
	}
	require.Empty(t, e.calls("Decrypt")[replicaRegion]+e.calls("GenerateDataKey")[replicaRegion])
}

// TestDiscoverReplicas: with DiscoverReplicas, the replica list comes from
// DescribeKey's MultiRegionConfiguration (asked once per ReplicaMaxAge),
// and is refreshed from a replica when it is stale and the primary is down.
func TestDiscoverReplicas(t *testing.T) {
	e := startMR(t, replicaRegion)
	primary, replica, third := e.servers[primaryRegion], e.servers[replicaRegion], e.servers[thirdRegion]
	ec := keys.SegmentContext("acme", "s1")

	// kmstest reports the configuration as AWS does.
	out, err := adminClient(replica).DescribeKey(bg, &kms.DescribeKeyInput{KeyId: aws.String(e.replicaARN(replicaRegion))})
	require.NoError(t, err)
	mrc := out.KeyMetadata.MultiRegionConfiguration
	require.NotNil(t, mrc)
	require.Equal(t, types.MultiRegionKeyTypeReplica, mrc.MultiRegionKeyType)
	require.Equal(t, e.arn, aws.ToString(mrc.PrimaryKey.Arn))
	require.Equal(t, primaryRegion, aws.ToString(mrc.PrimaryKey.Region))
	require.Len(t, mrc.ReplicaKeys, 1)
	require.Equal(t, e.replicaARN(replicaRegion), aws.ToString(mrc.ReplicaKeys[0].Arn))
	replica.ResetCalls()

	t.Run("off: only the URI's replicas", func(t *testing.T) {
		p := e.provider(false)
		dk, err := p.GenerateDataKey(bg, e.uri, ec)
		require.NoError(t, err)
		require.NoError(t, primary.SetDown(true))
		defer func() { require.NoError(t, primary.SetDown(false)) }()
		_, err = p.Unwrap(bg, e.uri, dk.Wrapped, ec)
		require.ErrorIs(t, err, keys.ErrUnavailable)
	})

	p := e.provider(true)
	primary.ResetCalls()
	dk, err := p.GenerateDataKey(bg, e.uri, ec)
	require.NoError(t, err)
	_, err = p.Unwrap(bg, e.uri, dk.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, 1, primary.Calls("DescribeKey"), "one discovery per max age, after a call that succeeded")

	require.NoError(t, primary.SetDown(true))
	dk2, err := p.GenerateDataKey(bg, e.uri, ec)
	require.NoError(t, err, "the discovered replica makes the data key")
	got, err := p.Unwrap(bg, e.uri, dk.Wrapped, ec)
	require.NoError(t, err, "and unwraps")
	require.Equal(t, dk.Plaintext, got)
	require.Equal(t, 1, replica.Calls("GenerateDataKey"))
	require.Equal(t, 1, replica.Calls("Decrypt"))

	// A replica added later is used once the list is asked for again: the
	// list is stale after ReplicaMaxAge and, the primary being down, it is
	// asked of the replica it named.
	_, err = third.Replicate(strings.TrimPrefix(e.arn, "arn:aws:kms:"+primaryRegion+":"+kmstest.Account+":key/"), thirdRegion)
	require.Error(t, err, "Replicate runs in the primary's region")
	_, err = primary.Replicate(e.arn, thirdRegion)
	require.NoError(t, err)
	require.NoError(t, replica.SetDown(true))
	_, err = p.Unwrap(bg, e.uri, dk2.Wrapped, ec)
	require.ErrorIs(t, err, keys.ErrUnavailable, "the list is younger than the max age: "+thirdRegion+" is not known yet")
	require.NoError(t, replica.SetDown(false))
	e.clk.now = e.clk.now.Add(time.Hour + time.Second)
	_, err = p.Unwrap(bg, e.uri, dk2.Wrapped, ec)
	require.NoError(t, err)
	require.Equal(t, 1, replica.Calls("DescribeKey"), "refreshed from the replica")
	require.NoError(t, replica.SetDown(true))
	got, err = p.Unwrap(bg, e.uri, dk2.Wrapped, ec)
	require.NoError(t, err, thirdRegion+" serves now")
	require.Equal(t, dk2.Plaintext, got)
	require.Equal(t, 1, third.Calls("Decrypt"))
	require.NoError(t, replica.SetDown(false))
	require.NoError(t, primary.SetDown(false))

	// Describe (link) records the list too, and reports the key's own URI.
	p2 := e.provider(true)
	st, err := p2.Describe(bg, e.uri)
	require.NoError(t, err)
	require.Equal(t, e.uri, st.URI)
	require.NoError(t, primary.SetDown(true))
	defer func() { require.NoError(t, primary.SetDown(false)) }()
	_, err = p2.Unwrap(bg, e.uri, dk.Wrapped, ec)
	require.NoError(t, err)
}

// TestRegionFallbackLatency measures what a fallback adds: a primary that
// refuses connections, answers 500, or hangs (the attempt gets its share of
// CallTimeout, the rest is left to the replica).
func TestRegionFallbackLatency(t *testing.T) {
	e := startMR(t, replicaRegion)
	primary := e.servers[primaryRegion]
	p := New(Options{LoadConfig: endpoints(e.servers), CallTimeout: 2 * time.Second}) // default retries and backoff
	uri := e.uri + "?replicas=" + replicaRegion
	ec := keys.SegmentContext("acme", "s1")
	dk, err := p.GenerateDataKey(bg, uri, ec)
	require.NoError(t, err)
	median := func(f func() error) time.Duration {
		var ds []time.Duration
		for i := 0; i < 9; i++ {
			start := time.Now()
			require.NoError(t, f())
			ds = append(ds, time.Since(start))
		}
		for i := range ds { // insertion sort, 9 items
			for j := i; j > 0 && ds[j] < ds[j-1]; j-- {
				ds[j], ds[j-1] = ds[j-1], ds[j]
			}
		}
		return ds[len(ds)/2]
	}
	unwrap := func() error { _, err := p.Unwrap(bg, uri, dk.Wrapped, ec); return err }
	generate := func() error { _, err := p.GenerateDataKey(bg, uri, ec); return err }
	base := median(unwrap)
	require.NoError(t, primary.SetDown(true))
	refused, refusedGen := median(unwrap), median(generate)
	require.NoError(t, primary.SetDown(false))
	primary.SetOutage(true)
	internal := median(unwrap)
	primary.SetOutage(false)
	primary.SetLatency(time.Hour)
	start := time.Now()
	require.NoError(t, unwrap())
	hung := time.Since(start)
	primary.SetLatency(0)
	t.Logf("Decrypt median over loopback: primary up %v; primary refusing connections %v (GenerateDataKey %v); primary answering 500 %v; primary hanging %v (CallTimeout 2s, half of it given to the primary)",
		base, refused, refusedGen, internal, hung)
	require.Less(t, refused, 500*time.Millisecond, "no backoff before the fallback")
	require.Less(t, internal, 500*time.Millisecond)
	require.Greater(t, hung, 900*time.Millisecond)
	require.Less(t, hung, 1900*time.Millisecond)
}

// TestRelatedKeysTakesOnlyTheSameKey: a discovered replica must be the same
// key (partition, account, key id) in another region; anything else is
// ignored, so no data key is ever made under an unrelated key.
func TestRelatedKeysTakesOnlyTheSameKey(t *testing.T) {
	ref, err := ParseURI("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/mrk-1")
	require.NoError(t, err)
	mk := func(region, arn string) types.MultiRegionKey {
		return types.MultiRegionKey{Region: aws.String(region), Arn: aws.String(arn)}
	}
	got := relatedKeys(&types.KeyMetadata{MultiRegionConfiguration: &types.MultiRegionConfiguration{
		PrimaryKey: &types.MultiRegionKey{Region: aws.String("eu-west-1"), Arn: aws.String("arn:aws:kms:eu-west-1:111122223333:key/mrk-1")},
		ReplicaKeys: []types.MultiRegionKey{
			mk("eu-central-1", "arn:aws:kms:eu-central-1:111122223333:key/mrk-1"),
			mk("us-west-2", "arn:aws:kms:us-west-2:444455556666:key/mrk-1"),     // another account
			mk("us-east-1", "arn:aws:kms:us-east-1:111122223333:key/mrk-2"),     // another key
			mk("ap-south-1", "arn:aws:kms:eu-central-1:111122223333:key/mrk-1"), // region mismatch
		},
	}}, ref)
	require.Equal(t, map[string]string{
		"eu-west-1":    "arn:aws:kms:eu-west-1:111122223333:key/mrk-1",
		"eu-central-1": "arn:aws:kms:eu-central-1:111122223333:key/mrk-1",
	}, got)
	require.Nil(t, relatedKeys(&types.KeyMetadata{}, ref))
}
