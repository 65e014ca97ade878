package main

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

func snapshotUpdate(tick int64) *sharedUpdate {
	return serving.Share(&pb.GameUpdate{Update: &pb.GameUpdate_Snapshot{Snapshot: &pb.GameSnapshot{Tick: tick}}})
}

func errorUpdate(sequence int64) *sharedUpdate {
	return serving.Share(&pb.GameUpdate{Update: &pb.GameUpdate_Error{Error: &pb.GameError{Code: int32(codes.InvalidArgument), Sequence: sequence}}})
}

// postNow calls m.post and fails the test if it does not return: posting
// must never wait for the writer.
func postNow(t *testing.T, m *snapshotMailbox, u *sharedUpdate) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.post(u)
	}()
	select {
	case <-done:
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("post(%s) to a mailbox nobody takes from blocked, want it to return at once (task 5)", describeUpdates([]*sharedUpdate{u}))
	}
}

func TestSnapshotMailbox(t *testing.T) {
	t.Run("Newer_snapshot_replaces_an_unsent_one", func(t *testing.T) {
		m := newSnapshotMailbox(4)
		postNow(t, m, snapshotUpdate(1))
		postNow(t, m, snapshotUpdate(2))
		if got, want := describeUpdates(m.take()), []string{"snapshot 2"}; !slices.Equal(got, want) {
			t.Fatalf("take() after post(snapshot 1), post(snapshot 2) = %q, want %q: the latest only (task 5)", got, want)
		}
	})

	t.Run("Errors_come_first_in_order", func(t *testing.T) {
		m := newSnapshotMailbox(4)
		postNow(t, m, errorUpdate(1))
		postNow(t, m, snapshotUpdate(1))
		postNow(t, m, errorUpdate(2))
		if got, want := describeUpdates(m.take()), []string{"error 1", "error 2", "snapshot 1"}; !slices.Equal(got, want) {
			t.Fatalf("take() = %q, want %q: every error, in order, then the snapshot (task 5)", got, want)
		}
	})

	t.Run("What_take_returns_stays_as_it_was", func(t *testing.T) {
		// The writer sends what take returned after unlocking, while
		// posts go on: the slice is the writer's, and a later post must
		// not write into it.
		m := newSnapshotMailbox(4)
		postNow(t, m, errorUpdate(1))
		postNow(t, m, errorUpdate(2))
		taken := m.take()
		if got, want := describeUpdates(taken), []string{"error 1", "error 2"}; !slices.Equal(got, want) {
			t.Fatalf("take() after post(error 1), post(error 2) = %q, want %q (task 5)", got, want)
		}
		postNow(t, m, errorUpdate(3))
		postNow(t, m, snapshotUpdate(1))
		if got, want := describeUpdates(taken), []string{"error 1", "error 2"}; !slices.Equal(got, want) {
			t.Fatalf("what take() returned became %q after two more posts, want %q: hand the slice over and start a new one (m.errors = nil), never reuse its array (task 5)", got, want)
		}
		if got, want := describeUpdates(m.take()), []string{"error 3", "snapshot 1"}; !slices.Equal(got, want) {
			t.Fatalf("the second take() = %q, want %q (task 5)", got, want)
		}
	})

	t.Run("Errors_are_bounded", func(t *testing.T) {
		m := newSnapshotMailbox(3)
		for i := range 100 {
			postNow(t, m, errorUpdate(int64(i+1)))
		}
		if got, want := describeUpdates(m.take()), []string{"error 1", "error 2", "error 3"}; !slices.Equal(got, want) {
			t.Fatalf("take() after 100 errors with maxErrors=3 = %q, want %q (task 5)", got, want)
		}
	})

	t.Run("Post_never_blocks_and_signals_once", func(t *testing.T) {
		m := newSnapshotMailbox(4)
		for i := range 1000 {
			postNow(t, m, snapshotUpdate(int64(i+1)))
		}
		if n := len(m.ready); n != 1 {
			t.Fatalf("after 1000 posts nobody took, ready holds %d signals, want 1 (task 5)", n)
		}
		<-m.ready
		if got, want := describeUpdates(m.take()), []string{"snapshot 1000"}; !slices.Equal(got, want) {
			t.Fatalf("take() after 1000 snapshots = %q, want %q (task 5)", got, want)
		}
	})

	t.Run("Concurrent_post_and_take_keep_the_latest", func(t *testing.T) {
		// A writer takes while the tick posts, as in the game; run with
		// -race. The writer never sees a snapshot older than one it saw,
		// nor one twice, and after the last post it can take the last
		// snapshot unless it already has.
		const posts = 2000
		m := newSnapshotMailbox(4)
		posted := make(chan struct{})
		go func() {
			defer close(posted)
			for i := range posts {
				m.post(snapshotUpdate(int64(i + 1)))
			}
		}()
		var last int64
		check := func(got []*sharedUpdate) {
			t.Helper()
			for _, u := range got {
				tick := u.Message().GetSnapshot().GetTick()
				require.Greater(t, tick, last, "take() while posting returned %q after snapshot %d: snapshots must only move forward", describeUpdates(got), last)
				last = tick
			}
			require.LessOrEqual(t, len(got), 1, "take() returned %q, want at most the latest snapshot", describeUpdates(got))
		}
		for done := false; !done; {
			select {
			case <-posted:
				done = true
			case <-m.ready:
			case <-time.After(katatest.WaitTimeout):
				t.Fatalf("no ready signal within %v while snapshots were being posted (task 5)", katatest.WaitTimeout)
			}
			check(m.take())
		}
		check(m.take())
		require.EqualValues(t, posts, last, "the last snapshot the writer took, want the last one posted")
	})

	t.Run("Take_empties_it", func(t *testing.T) {
		m := newSnapshotMailbox(4)
		postNow(t, m, errorUpdate(1))
		postNow(t, m, snapshotUpdate(1))
		if got := m.take(); len(got) != 2 {
			t.Fatalf("first take() = %q, want an error and a snapshot (task 5)", describeUpdates(got))
		}
		if got := m.take(); len(got) != 0 {
			t.Fatalf("second take() = %q, want nothing: the first one took everything (task 5)", describeUpdates(got))
		}
		<-m.ready
		postNow(t, m, snapshotUpdate(2))
		if len(m.ready) != 1 {
			t.Fatal("post after a take did not signal ready (task 5)")
		}
	})

	t.Run("Signals_only_after_storing", func(t *testing.T) {
		// A writer woken by a signal that came before the store takes an
		// empty mailbox and goes back to sleep: the update waits there
		// until the next post, a tick later or never. The test holds the
		// mailbox's lock, so a post that stores first cannot signal yet.
		m := newSnapshotMailbox(4)
		m.mu.Lock()
		posted := make(chan struct{})
		go func() {
			defer close(posted)
			m.post(snapshotUpdate(1))
		}()
		select {
		case <-m.ready:
			m.mu.Unlock()
			<-posted
			t.Fatal("post signalled ready before it stored the update (while the mailbox's lock was held): a writer woken then takes nothing, and the update is stranded")
		case <-time.After(katatest.NeverWindow):
		}
		m.mu.Unlock()
		select {
		case <-m.ready:
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("post stored the update but never signalled ready")
		}
		<-posted
		if got := describeUpdates(m.take()); !slices.Equal(got, []string{"snapshot 1"}) {
			t.Fatalf("take() after the signal = %q, want [snapshot 1]", got)
		}
	})
}
