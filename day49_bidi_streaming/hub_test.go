package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

func newTestHub(cfg Config) *ChatServer {
	cfg.Now = frozenClock
	return NewChatServer(cfg)
}

// member is a connection registered with the hub, as Chat would make it.
func member(t *testing.T, s *ChatServer, user string) *connection {
	t.Helper()
	c := newConnection(user, s.cfg.QueueSize)
	s.hub.register(c)
	return c
}

// drain returns the messages of everything queued for c without waiting.
func drain(c *connection) []*pb.ChatMessage {
	var got []*pb.ChatMessage
	for _, m := range drainShared(c) {
		got = append(got, m.Message())
	}
	return got
}

// drainShared returns everything queued for c without waiting, as queued.
func drainShared(c *connection) []*sharedMessage {
	var got []*sharedMessage
	for {
		select {
		case m := <-c.out:
			got = append(got, m)
		default:
			return got
		}
	}
}

func mustJoin(t *testing.T, s *ChatServer, c *connection, room string) {
	t.Helper()
	require.NoError(t, s.hub.join(c, room), "join(%s, %q)", c.user, room)
}

// deliverNow calls c.deliver and fails the test if it does not return:
// delivering must never wait for the queue to drain.
func deliverNow(t *testing.T, c *connection, m *pb.ChatMessage, droppable bool) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.deliver(serving.Share(m), droppable)
	}()
	select {
	case <-done:
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("deliver(%q, droppable=%v) to a queue holding %d of %d blocked, want it to return at once", m.GetContent(), droppable, len(c.out), cap(c.out))
	}
}

// publishConcurrently joins users to "lobby", empties their queues, then
// has each publish n messages there at once, and returns their
// connections.
func publishConcurrently(t *testing.T, cfg Config, users []string, n int) []*connection {
	t.Helper()
	s := newTestHub(cfg)
	var members []*connection
	for _, u := range users {
		c := member(t, s, u)
		mustJoin(t, s, c, "lobby")
		members = append(members, c)
	}
	for _, c := range members {
		drain(c)
	}
	var wg sync.WaitGroup
	for _, c := range members {
		wg.Go(func() {
			for i := range n {
				if err := s.hub.publish(c, "lobby", fmt.Sprint(c.user, i)); err != nil {
					t.Errorf("publish = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return members
}

func TestDeliver(t *testing.T) {
	t.Run("Queues_without_blocking", func(t *testing.T) {
		c := newConnection("alice", 2)
		m := &pb.ChatMessage{Content: "hi"}
		deliverNow(t, c, m, false)
		if got := drain(c); len(got) != 1 || got[0] != m || c.evicted() {
			t.Fatalf("deliver to an empty queue: queued %v, evicted %v; want the message queued", got, c.evicted())
		}
	})

	t.Run("Evicts_a_slow_consumer", func(t *testing.T) {
		c := newConnection("alice", 2)
		for i := range 3 {
			deliverNow(t, c, &pb.ChatMessage{Content: fmt.Sprint(i)}, false)
		}
		if !c.evicted() {
			t.Fatal("deliver to a full queue did not evict the connection")
		}
		katatest.WantCode(t, c.goneErr, codes.ResourceExhausted, "eviction status")
		katatest.WantMessage(t, c.goneErr, "eviction status")("slow consumer", "2")
	})

	t.Run("Drops_droppable_messages_when_full", func(t *testing.T) {
		c := newConnection("alice", 1)
		deliverNow(t, c, &pb.ChatMessage{Content: "kept"}, false)
		deliverNow(t, c, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_TYPING}, true)
		if c.evicted() {
			t.Fatal("a droppable message to a full queue evicted the connection, want it dropped")
		}
		if got := drain(c); len(got) != 1 || got[0].GetContent() != "kept" {
			t.Fatalf("queue holds %v, want only the first message", describe(got))
		}
	})

	t.Run("Ignores_an_evicted_connection", func(t *testing.T) {
		c := newConnection("alice", 4)
		deliverNow(t, c, &pb.ChatMessage{Content: "before"}, false)
		if got := drain(c); len(got) != 1 {
			t.Fatalf("deliver to a live connection queued %v, want the message", describe(got))
		}
		c.evict(status.Error(codes.Canceled, "gone"))
		deliverNow(t, c, &pb.ChatMessage{Content: "late"}, false)
		require.Empty(t, describe(drain(c)), "deliver queued for an evicted connection")
	})

	t.Run("Concurrent_deliverers_never_block", func(t *testing.T) {
		// Many goroutines deliver to one queue at once, as publishers in
		// several rooms and the connection's own refusals do. Checking for
		// room and then sending lets two of them pass the check for the
		// last slot; one then blocks. Each round starts its deliverers
		// together, and many rounds make that interleaving happen.
		const rounds, deliverers = 20000, 8
		for round := range rounds {
			c := newConnection("alice", 1)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range deliverers {
				wg.Go(func() {
					<-start
					c.deliver(serving.Share(&pb.ChatMessage{Content: fmt.Sprint(round, "-", i)}), false)
				})
			}
			close(start)
			done := make(chan struct{})
			go func() {
				wg.Wait()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(katatest.WaitTimeout):
				drainShared(c) // let a blocked deliverer finish
				go func() {
					for range c.out {
					}
				}()
				<-done
				t.Fatalf("round %d: %d concurrent deliver calls to a queue of 1: one blocked, want every call to return at once (task 1: a select with default, never a check then a send)", round, deliverers)
			}
			if got := len(c.out); got != 1 || !c.evicted() {
				t.Fatalf("round %d: after %d deliveries to a queue of 1 it holds %d and evicted=%v, want 1 queued and the connection evicted", round, deliverers, got, c.evicted())
			}
		}
	})
}

func TestHub(t *testing.T) {
	t.Run("Matches_a_model_over_random_operations", testHubMatchesItsModel)
	t.Run("Join_sends_history_then_confirmation_and_tells_the_others", func(t *testing.T) {
		s := newTestHub(Config{HistoryOnJoin: 2})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		for _, text := range []string{"one", "two", "three"} {
			if err := s.hub.publish(alice, "lobby", text); err != nil {
				t.Fatalf("publish(%q) = %v", text, err)
			}
		}
		drain(alice)
		mustJoin(t, s, bob, "lobby")
		want := []string{"CHAT alice: two", "CHAT alice: three", "JOIN_ROOM bob"}
		if got := describe(drain(bob)); !slices.Equal(got, want) {
			t.Fatalf("bob received %q on joining, want %q (the last HistoryOnJoin messages, then the confirmation)", got, want)
		}
		require.Equal(t, []string{"USER_JOINED bob"}, describe(drain(alice)), "what alice received when bob joined")
	})

	t.Run("Publish_reaches_every_member_in_one_order", func(t *testing.T) {
		members := publishConcurrently(t, Config{QueueSize: 1000}, []string{"alice", "bob", "carol"}, 100)
		first := describe(drain(members[0]))
		if len(first) != 300 {
			t.Fatalf("alice received %d messages, want all 300, her own included", len(first))
		}
		for _, c := range members[1:] {
			if got := describe(drain(c)); !slices.Equal(got, first) {
				t.Fatalf("%s received the room's messages in another order than alice (or not all of them)", c.user)
			}
		}
	})

	t.Run("One_shared_message_per_publish_for_history_and_members", func(t *testing.T) {
		// Every member's queue, and the history a later joiner gets, hold
		// the same sharedMessage: its writers then marshal it once
		// between them. A copy per member costs a marshal per member.
		s := newTestHub(Config{})
		alice, bob, carol := member(t, s, "alice"), member(t, s, "bob"), member(t, s, "carol")
		for _, c := range []*connection{alice, bob} {
			mustJoin(t, s, c, "lobby")
			drain(c)
		}
		drain(alice)
		require.NoError(t, s.hub.publish(alice, "lobby", "hello"))
		mustJoin(t, s, carol, "lobby")
		var got []*sharedMessage
		for _, c := range []*connection{alice, bob, carol} {
			queued := drainShared(c)
			require.NotEmpty(t, queued, "%s's queue after the publish", c.user)
			got = append(got, queued[0])
		}
		require.Equal(t, "hello", got[0].Message().GetContent(), "alice's first queued message")
		for i, who := range []string{"bob", "carol (from the history)"} {
			require.Same(t, got[0], got[i+1], "%s got another sharedMessage than alice for one publish: share the message once and deliver that one value (serving.Share in publish, not per member)", who)
		}
	})

	t.Run("Messages_get_server_ids_users_and_times", func(t *testing.T) {
		s := newTestHub(Config{})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "lobby")
		drain(alice)
		require.NoError(t, s.hub.publish(alice, "lobby", "hello"))
		got := drain(alice)
		if len(got) != 1 || got[0].GetMessageId() != "lobby-1" || got[0].GetUserId() != "alice" || !got[0].GetTimestamp().AsTime().Equal(chatNow) {
			t.Fatalf("published message = %v, want id lobby-1, user alice, the server's time", got)
		}
	})

	t.Run("Publish_requires_membership", func(t *testing.T) {
		s := newTestHub(Config{})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, bob, "lobby")
		drain(bob)
		err := s.hub.publish(alice, "lobby", "sneaky")
		katatest.WantCode(t, err, codes.PermissionDenied, "publish(alice, %q) without joining", "lobby")
		require.Empty(t, describe(drain(bob)), "what bob received from a non-member")
	})

	t.Run("History_is_bounded", func(t *testing.T) {
		s := newTestHub(Config{MaxHistory: 5, QueueSize: 100})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "lobby")
		for i := range 50 {
			require.NoError(t, s.hub.publish(alice, "lobby", fmt.Sprint(i)))
		}
		s.hub.mu.Lock()
		n := len(s.hub.rooms["lobby"].history)
		s.hub.mu.Unlock()
		if n != 5 {
			t.Fatalf("room history holds %d messages after 50, want MaxHistory=5", n)
		}
		// The history kept is the newest, oldest first.
		bob := member(t, s, "bob")
		mustJoin(t, s, bob, "lobby")
		want := []string{"CHAT alice: 45", "CHAT alice: 46", "CHAT alice: 47", "CHAT alice: 48", "CHAT alice: 49", "JOIN_ROOM bob"}
		require.Equal(t, want, describe(drain(bob)), "what bob received on joining after 50 messages with MaxHistory=5: the newest five, then the confirmation")
	})

	t.Run("Joining_twice_only_confirms", func(t *testing.T) {
		s := newTestHub(Config{MaxRoomsPerConn: 1})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		mustJoin(t, s, bob, "lobby")
		require.NoError(t, s.hub.publish(bob, "lobby", "hello"))
		drain(alice)
		drain(bob)
		mustJoin(t, s, alice, "lobby") // at MaxRoomsPerConn=1: a second join of the same room is no new room
		require.Equal(t, []string{"JOIN_ROOM alice"}, describe(drain(alice)), "what alice received on joining a room twice: only the confirmation, no history again")
		require.Empty(t, describe(drain(bob)), "what bob received when alice joined again")
		_, memberships, _ := s.hub.counts()
		require.Equal(t, 2, memberships, "memberships after alice joined twice")
	})

	t.Run("Presence_is_never_dropped", func(t *testing.T) {
		s := newTestHub(Config{QueueSize: 1})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, bob, "lobby")
		drain(bob)
		deliverNow(t, bob, &pb.ChatMessage{Content: "fills bob's queue"}, false)
		mustJoin(t, s, alice, "lobby")
		// A USER_JOINED that cannot be queued evicts bob, as a chat
		// message would; dropping it would leave bob with a wrong room.
		require.True(t, bob.evicted(), "bob, whose queue was full when alice joined, was not evicted: presence must not be dropped")
		katatest.WantCode(t, bob.goneErr, codes.ResourceExhausted, "bob's eviction")
	})

	t.Run("Typing_is_not_stored_nor_echoed", func(t *testing.T) {
		s := newTestHub(Config{})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		mustJoin(t, s, bob, "lobby")
		drain(alice)
		drain(bob)
		require.NoError(t, s.hub.typing(alice, "lobby"), "typing")
		require.Equal(t, []string{"TYPING alice"}, describe(drain(bob)), "what bob received")
		require.Empty(t, describe(drain(alice)), "what alice received for her own typing")
		s.hub.mu.Lock()
		n := len(s.hub.rooms["lobby"].history)
		s.hub.mu.Unlock()
		if n != 0 {
			t.Fatalf("room history holds %d messages after typing only, want 0", n)
		}
	})

	t.Run("Typing_to_a_full_queue_is_dropped_not_evicted", func(t *testing.T) {
		// A typing indicator is droppable: a member whose queue is full
		// misses it and stays, as the contract of typing says.
		s := newTestHub(Config{QueueSize: 2})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		mustJoin(t, s, bob, "lobby")
		drain(alice)
		drain(bob)
		require.NoError(t, s.hub.publish(alice, "lobby", "one"), "publish")
		require.NoError(t, s.hub.publish(alice, "lobby", "two"), "publish") // bob's queue of 2 is now full
		drain(alice)
		require.NoError(t, s.hub.typing(alice, "lobby"), "typing to bob, whose queue is full")
		require.False(t, bob.evicted(), "bob was evicted by a typing indicator that found his queue full, want it dropped: deliver it as droppable")
		require.Equal(t, []string{"CHAT alice: one", "CHAT alice: two"}, describe(drain(bob)), "what bob's full queue held after the typing indicator")
	})

	t.Run("Slow_member_is_evicted_and_others_get_everything", func(t *testing.T) {
		s := newTestHub(Config{QueueSize: 4})
		alice, bob, slow := member(t, s, "alice"), member(t, s, "bob"), member(t, s, "slow")
		for _, c := range []*connection{alice, bob, slow} {
			mustJoin(t, s, c, "lobby")
		}
		drain(alice)
		drain(bob)
		var got []string
		for i := range 10 {
			require.NoError(t, s.hub.publish(alice, "lobby", fmt.Sprint(i)))
			got = append(got, describe(drain(bob))...)
			drain(alice)
		}
		if !slow.evicted() {
			t.Fatal("a member that never drained its queue was not evicted")
		}
		katatest.WantCode(t, slow.goneErr, codes.ResourceExhausted, "slow member's eviction")
		if len(got) != 10 || bob.evicted() || alice.evicted() {
			t.Fatalf("bob received %d of 10 messages (evicted: alice %v, bob %v), want all 10 and nobody else evicted", len(got), alice.evicted(), bob.evicted())
		}
	})

	t.Run("Leave_and_disconnect_tell_the_others_and_free_everything", func(t *testing.T) {
		s := newTestHub(Config{})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		mustJoin(t, s, alice, "games")
		mustJoin(t, s, bob, "lobby")
		mustJoin(t, s, bob, "games")
		drain(alice)
		drain(bob)
		require.NoError(t, s.hub.leave(alice, "games"), "leave")
		require.Equal(t, []string{"LEAVE_ROOM alice"}, describe(drain(alice)), "what alice received when she left: the confirmation")
		require.Equal(t, []string{"USER_LEFT alice"}, describe(drain(bob)), "what bob received when alice left")
		katatest.WantCode(t, s.hub.leave(alice, "games"), codes.FailedPrecondition, "leave(alice, %q) twice", "games")
		s.hub.disconnect(alice)
		require.Equal(t, []string{"USER_LEFT alice"}, describe(drain(bob)), "what bob received when alice disconnected")
		s.hub.disconnect(bob)
		if rooms, memberships, conns := s.hub.counts(); rooms+memberships+conns != 0 {
			t.Fatalf("after everyone disconnected the hub holds %d rooms, %d memberships, %d connections; want none", rooms, memberships, conns)
		}
		drain(alice)
		if err := s.hub.join(alice, "lobby"); err != nil || len(drain(alice)) != 0 {
			t.Fatalf("join after disconnect = %v, want it ignored", err)
		}
		if rooms, _, _ := s.hub.counts(); rooms != 0 {
			t.Fatal("a disconnected connection joined a room again")
		}
	})

	t.Run("Bounds_rooms_per_connection", func(t *testing.T) {
		s := newTestHub(Config{MaxRoomsPerConn: 2})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "a")
		mustJoin(t, s, alice, "b")
		err := s.hub.join(alice, "c")
		katatest.WantCode(t, err, codes.ResourceExhausted, "join(a third room, MaxRoomsPerConn=2)")
		katatest.WantMessage(t, err, "join(third room)")("2")
	})

	t.Run("A_join_between_disconnect_and_its_eviction_is_refused", func(t *testing.T) {
		// A request still being handled (Chat's reader) may join c to a
		// room while c disconnects. The test runs that join at the one
		// moment it could do harm: inside evict, before c is marked, if
		// the hub's lock is free then. Evicting under h.mu leaves no such
		// moment; evicting after the unlock re-adds a member nobody will
		// ever remove.
		s := newTestHub(Config{})
		c := member(t, s, "alice")
		require.NoError(t, s.hub.join(c, "lobby"), "join(alice, lobby)")
		var raced error
		hook := func(e *eviction) {
			if e != &c.eviction || !s.hub.mu.TryLock() {
				return // disconnect holds the hub: nothing can come between
			}
			s.hub.mu.Unlock()
			raced = s.hub.join(c, "games")
		}
		beforeEvict.Store(&hook)
		t.Cleanup(func() { beforeEvict.Store(nil) })
		s.hub.disconnect(c)
		if rooms, memberships, _ := s.hub.counts(); rooms != 0 || memberships != 0 {
			t.Fatalf("after disconnect(alice), with a join(alice, games) that returned %v between the hub's unlock and alice's eviction, the hub holds %d rooms and %d memberships, want none: evict c first, before leaving its rooms (before taking h.mu or under it, never after the unlock)", raced, rooms, memberships)
		}
	})

	t.Run("Concurrent_publishers_reach_each_member_in_publish_order", func(t *testing.T) {
		// Every member must receive a room's messages in the order the
		// room numbered them: a message may not overtake an earlier one,
		// which happens when the fan-out runs after the lock is released.
		members := publishConcurrently(t, Config{QueueSize: 20000}, []string{"alice", "bob", "carol", "dave"}, 5000)
		for _, c := range members {
			got := drain(c)
			if len(got) != 20000 {
				t.Fatalf("%s received %d messages, want all 20000", c.user, len(got))
			}
			for i, m := range got {
				if want := fmt.Sprint("lobby-", i+1); m.GetMessageId() != want {
					t.Fatalf("%s's message %d is %s, want %s: each member receives a room's messages in the order they were numbered", c.user, i+1, m.GetMessageId(), want)
				}
			}
		}
	})

	t.Run("The_last_member_to_leave_takes_the_room_with_it", func(t *testing.T) {
		s := newTestHub(Config{})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "lobby")
		require.NoError(t, s.hub.leave(alice, "lobby"), "leave")
		if rooms, memberships, _ := s.hub.counts(); rooms+memberships != 0 {
			t.Fatalf("after the only member left, the hub holds %d rooms and %d memberships, want none", rooms, memberships)
		}
		katatest.WantCode(t, s.hub.leave(alice, "lobby"), codes.FailedPrecondition, "leave(alice, %q) again", "lobby")
	})

	t.Run("Concurrent_joins_leaves_typing_and_publishes", func(t *testing.T) {
		// Every hub method runs under the hub's lock; run with -race.
		// Members join, type, publish and leave in one room at once, then
		// disconnect: nothing may be left.
		s := newTestHub(Config{QueueSize: 4000})
		var members []*connection
		for _, u := range []string{"alice", "bob", "carol", "dave"} {
			members = append(members, member(t, s, u))
		}
		var wg sync.WaitGroup
		for _, c := range members {
			wg.Go(func() {
				for i := range 100 {
					if err := s.hub.join(c, "lobby"); err != nil {
						t.Errorf("join = %v", err)
						return
					}
					_ = s.hub.typing(c, "lobby")
					_ = s.hub.publish(c, "lobby", fmt.Sprint(c.user, i))
					if err := s.hub.leave(c, "lobby"); err != nil {
						t.Errorf("leave = %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, c := range members {
			s.hub.disconnect(c)
		}
		if rooms, memberships, conns := s.hub.counts(); rooms+memberships+conns != 0 {
			t.Fatalf("after every member left and disconnected the hub holds %d rooms, %d memberships, %d connections; want none", rooms, memberships, conns)
		}
	})
}
