package quota_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/quota"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestLimiters(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("Each_identity_has_its_own_bucket", func(t *testing.T) {
		clock := katatest.NewClock(start)
		l := quota.New(1, 2, clock.Now)
		assert.True(t, l.Allow("alice"))
		assert.True(t, l.Allow("alice"))
		assert.False(t, l.Allow("alice"), "alice's third event with a burst of 2")
		assert.True(t, l.Allow("bob"), "bob's first event: alice's spending is not his")
	})

	t.Run("Nothing_resets_a_bucket_before_it_refills", func(t *testing.T) {
		clock := katatest.NewClock(start)
		l := quota.New(1, 2, clock.Now)
		l.Allow("alice")
		l.Allow("alice")
		for range 100 { // other identities come and go, sweeping as they do
			l.Allow("someone-else")
		}
		assert.False(t, l.Allow("alice"), "alice's third event: her spent bucket was forgotten before it refilled")
		clock.Advance(time.Second)
		assert.True(t, l.Allow("alice"), "alice's event a second later at 1 a second")
	})

	t.Run("A_bucket_is_forgotten_once_full_again", func(t *testing.T) {
		clock := katatest.NewClock(start)
		l := quota.New(1, 2, clock.Now)
		l.Allow("alice")
		l.Allow("bob")
		assert.Equal(t, 2, l.Len(), "buckets while alice's and bob's are not full")
		clock.Advance(time.Second)
		assert.Equal(t, 0, l.Len(), "buckets a second later at 1 a second: both are full again, so nothing needs to be kept")
	})

	t.Run("Wait_shares_the_bucket_and_answers_a_deadline_at_once", func(t *testing.T) {
		l := quota.New(1.0/3600, 1, nil) // one an hour
		require.NoError(t, l.Wait(context.Background(), "alice"), "alice's first Wait")
		ctx, cancel := context.WithTimeout(context.Background(), katatest.WaitTimeout)
		defer cancel()
		err := l.Wait(ctx, "alice")
		require.Error(t, err, "alice's second Wait, an hour away, with a deadline in %v", katatest.WaitTimeout)
		assert.NoError(t, ctx.Err(), "Wait returned only at the deadline, want at once")
	})

	t.Run("Wait_returns_when_the_context_ends", func(t *testing.T) {
		l := quota.New(1.0/3600, 1, nil)
		require.NoError(t, l.Wait(context.Background(), "alice"))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Wait(ctx, "alice") }()
		cancel()
		select {
		case err := <-done:
			assert.True(t, errors.Is(err, context.Canceled), "Wait after cancel = %v, want context.Canceled", err)
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("Wait did not return after its context was cancelled")
		}
	})

	t.Run("WaitN_spends_n_and_waits_for_them", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := quota.New(100, 1000, nil) // 100 a second, bursts of 1000
			start := time.Now()
			require.NoError(t, l.WaitN(t.Context(), "alice", 1000), "WaitN(1000) on a full bucket of 1000")
			assert.Zero(t, time.Since(start), "WaitN(1000) on a full bucket of 1000 waited")
			require.NoError(t, l.WaitN(t.Context(), "alice", 250), "WaitN(250) on an empty bucket")
			assert.Equal(t, 2500*time.Millisecond, time.Since(start), "WaitN(250) at 100 a second on an empty bucket, want 2.5s")
			require.NoError(t, l.WaitN(t.Context(), "bob", 1000), "bob's WaitN(1000): his own bucket")
			assert.Equal(t, 2500*time.Millisecond, time.Since(start), "bob waited on alice's bucket")
			assert.Error(t, l.WaitN(t.Context(), "carol", 1001), "WaitN(1001) with bursts of 1000, want an error at once")
		})
	})

	t.Run("Wait_waits_its_turn", func(t *testing.T) {
		l := quota.New(500, 1, nil)
		for i := range 3 {
			require.NoError(t, l.Wait(context.Background(), "alice"), "Wait %d at 500 a second", i+1)
		}
	})
}
