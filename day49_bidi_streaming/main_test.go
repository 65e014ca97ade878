package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const chatMethod = "/streaming.v1.ChatService/Chat"

var chatNow = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// frozenClock never moves, so a rate limiter's bucket never refills
// during a test: its limits are reached exactly.
func frozenClock() time.Time { return chatNow }

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

// drain returns everything queued for c without waiting.
func drain(c *connection) []*pb.ChatMessage {
	var got []*pb.ChatMessage
	for {
		select {
		case m := <-c.out:
			got = append(got, m)
		default:
			return got
		}
	}
}

func describe(msgs []*pb.ChatMessage) []string {
	var out []string
	for _, m := range msgs {
		s := strings.TrimPrefix(m.GetType().String(), "MESSAGE_TYPE_") + " " + m.GetUserId()
		if m.GetContent() != "" {
			s += ": " + m.GetContent()
		}
		out = append(out, s)
	}
	return out
}

func mustJoin(t *testing.T, s *ChatServer, c *connection, room string) {
	t.Helper()
	if err := s.hub.join(c, room); err != nil {
		t.Fatalf("join(%s, %q) = %v, want nil", c.user, room, err)
	}
}

// deliverNow calls c.deliver and fails the test if it does not return:
// delivering must never wait for the queue to drain.
func deliverNow(t *testing.T, c *connection, m *pb.ChatMessage, droppable bool) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.deliver(m, droppable)
	}()
	select {
	case <-done:
	case <-time.After(katatest.TestTimeout):
		t.Fatalf("deliver(%q, droppable=%v) to a queue holding %d of %d blocked, want it to return at once", m.GetContent(), droppable, len(c.out), cap(c.out))
	}
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
		if got := drain(c); len(got) != 0 {
			t.Fatalf("deliver queued %v for an evicted connection, want nothing", describe(got))
		}
	})
}

func TestHub(t *testing.T) {
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
		if got := describe(drain(alice)); !slices.Equal(got, []string{"USER_JOINED bob"}) {
			t.Fatalf("alice received %q when bob joined, want [USER_JOINED bob]", got)
		}
	})

	t.Run("Publish_reaches_every_member_in_one_order", func(t *testing.T) {
		s := newTestHub(Config{QueueSize: 1000})
		var members []*connection
		for _, u := range []string{"alice", "bob", "carol"} {
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
				for i := range 100 {
					if err := s.hub.publish(c, "lobby", fmt.Sprint(c.user, i)); err != nil {
						t.Errorf("publish = %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
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

	t.Run("Messages_get_server_ids_users_and_times", func(t *testing.T) {
		s := newTestHub(Config{})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "lobby")
		drain(alice)
		if err := s.hub.publish(alice, "lobby", "hello"); err != nil {
			t.Fatal(err)
		}
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
		if got := drain(bob); len(got) != 0 {
			t.Fatalf("bob received %q from a non-member, want nothing", describe(got))
		}
	})

	t.Run("History_is_bounded", func(t *testing.T) {
		s := newTestHub(Config{MaxHistory: 5, QueueSize: 100})
		alice := member(t, s, "alice")
		mustJoin(t, s, alice, "lobby")
		for i := range 50 {
			if err := s.hub.publish(alice, "lobby", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		s.hub.mu.Lock()
		n := len(s.hub.rooms["lobby"].history)
		s.hub.mu.Unlock()
		if n != 5 {
			t.Fatalf("room history holds %d messages after 50, want MaxHistory=5", n)
		}
	})

	t.Run("Typing_is_not_stored_nor_echoed", func(t *testing.T) {
		s := newTestHub(Config{})
		alice, bob := member(t, s, "alice"), member(t, s, "bob")
		mustJoin(t, s, alice, "lobby")
		mustJoin(t, s, bob, "lobby")
		drain(alice)
		drain(bob)
		if err := s.hub.typing(alice, "lobby"); err != nil {
			t.Fatalf("typing = %v", err)
		}
		if got := describe(drain(bob)); !slices.Equal(got, []string{"TYPING alice"}) {
			t.Fatalf("bob received %q, want [TYPING alice]", got)
		}
		if got := drain(alice); len(got) != 0 {
			t.Fatalf("alice received %q for her own typing, want nothing", describe(got))
		}
		s.hub.mu.Lock()
		n := len(s.hub.rooms["lobby"].history)
		s.hub.mu.Unlock()
		if n != 0 {
			t.Fatalf("room history holds %d messages after typing only, want 0", n)
		}
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
			if err := s.hub.publish(alice, "lobby", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
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
		if err := s.hub.leave(alice, "games"); err != nil {
			t.Fatalf("leave = %v", err)
		}
		if got := describe(drain(bob)); !slices.Equal(got, []string{"USER_LEFT alice"}) {
			t.Fatalf("bob received %q when alice left, want [USER_LEFT alice]", got)
		}
		katatest.WantCode(t, s.hub.leave(alice, "games"), codes.FailedPrecondition, "leave(alice, %q) twice", "games")
		s.hub.disconnect(alice)
		if got := describe(drain(bob)); !slices.Equal(got, []string{"USER_LEFT alice"}) {
			t.Fatalf("bob received %q when alice disconnected, want [USER_LEFT alice]", got)
		}
		s.hub.disconnect(bob)
		if rooms, memberships, limiters := s.hub.counts(); rooms+memberships+limiters != 0 {
			t.Fatalf("after everyone disconnected the hub holds %d rooms, %d memberships, %d limiters; want none", rooms, memberships, limiters)
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
}

// chatEnv is one test's chat server, reachable over bufconn with tokens
// "<user>-token" for alice, bob, carol, mallory and a silent reader.
type chatEnv struct {
	*katatest.Server
	grpcServer *grpc.Server
	srv        *ChatServer
	tokens     *TokenStore
	client     pb.ChatServiceClient
}

func startChat(t *testing.T, cfg Config, opts ...katatest.Option) *chatEnv {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last
	tokens := NewTokenStore()
	for _, u := range []string{"alice", "bob", "carol", "mallory", "silent"} {
		tokens.Add(u+"-token", Identity{User: u, Expires: chatNow.Add(time.Hour)})
	}
	cfg.Now = frozenClock
	srv := NewChatServer(cfg)
	env := &chatEnv{srv: srv, tokens: tokens}
	opts = append([]katatest.Option{katatest.WithServerOptions(grpc.ChainStreamInterceptor(AuthInterceptor(tokens, frozenClock)))}, opts...)
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		env.grpcServer = g
		pb.RegisterChatServiceServer(g, srv)
	}, opts...)
	env.client = pb.NewChatServiceClient(env.Conn)
	return env
}

// session is one open Chat stream as a test drives it.
type session struct {
	t      *testing.T
	user   string
	stream pb.ChatService_ChatClient
	cancel context.CancelFunc
}

func (env *chatEnv) open(t *testing.T, user string) *session {
	t.Helper()
	return env.openOn(t, env.client, user)
}

// openOwn opens a session on a connection of its own, as a separate
// client program would: what one client does not read cannot hold up
// another's connection.
func (env *chatEnv) openOwn(t *testing.T, user string) *session {
	t.Helper()
	conn, err := grpc.NewClient(katatest.Target, env.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return env.openOn(t, pb.NewChatServiceClient(conn), user)
}

func (env *chatEnv) openOn(t *testing.T, client pb.ChatServiceClient, user string) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(katatest.Context(t))
	t.Cleanup(cancel)
	stream, err := client.Chat(WithToken(ctx, user+"-token"))
	katatest.WantCode(t, err, codes.OK, "Chat(%s)", user)
	return &session{t: t, user: user, stream: stream, cancel: cancel}
}

func (s *session) send(m *pb.ChatMessage) {
	s.t.Helper()
	if err := s.stream.Send(m); err != nil {
		_, recvErr := s.stream.Recv()
		s.t.Fatalf("%s: Send(%v) = %v (stream status %v)", s.user, m.GetType(), err, recvErr)
	}
}

func (s *session) join(room string) {
	s.t.Helper()
	s.send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room})
	s.expect(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, "")
}

func (s *session) say(room, text string) {
	s.t.Helper()
	s.send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: text})
}

// next receives one message, failing the test if the stream ends.
func (s *session) next() *pb.ChatMessage {
	s.t.Helper()
	m, err := s.stream.Recv()
	if err != nil {
		s.t.Fatalf("%s: Recv() = %v, want a message", s.user, err)
	}
	return m
}

// expect skips presence and history until a message of type t (with
// content containing text) arrives.
func (s *session) expect(t pb.MessageType, text string) *pb.ChatMessage {
	s.t.Helper()
	for {
		m := s.next()
		if m.GetType() == t && strings.Contains(m.GetContent(), text) {
			return m
		}
		if m.GetType() == pb.MessageType_MESSAGE_TYPE_ERROR && t != pb.MessageType_MESSAGE_TYPE_ERROR {
			s.t.Fatalf("%s: got error %v %q, want %v", s.user, codes.Code(m.GetErrorCode()), m.GetContent(), t)
		}
	}
}

// expectError receives until an in-band ERROR and checks its code.
func (s *session) expectError(code codes.Code, what string) {
	s.t.Helper()
	m := s.expect(pb.MessageType_MESSAGE_TYPE_ERROR, "")
	if codes.Code(m.GetErrorCode()) != code {
		s.t.Fatalf("%s: %s answered in-band with %v %q, want %v", s.user, what, codes.Code(m.GetErrorCode()), m.GetContent(), code)
	}
}

// status half-closes and returns how the server ended the stream.
func (s *session) finish() error {
	s.t.Helper()
	if err := s.stream.CloseSend(); err != nil {
		s.t.Fatalf("CloseSend() = %v", err)
	}
	for {
		if _, err := s.stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestChat(t *testing.T) {
	t.Run("Two_users_chat_in_a_room", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		if m := alice.expect(pb.MessageType_MESSAGE_TYPE_USER_JOINED, ""); m.GetUserId() != "bob" {
			t.Fatalf("alice saw %v, want USER_JOINED bob", m)
		}
		alice.say("lobby", "hi bob")
		for _, s := range []*session{alice, bob} {
			m := s.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "hi bob")
			if m.GetUserId() != "alice" || m.GetMessageId() == "" || m.GetTimestamp() == nil {
				t.Fatalf("%s received %v, want alice's message with a server id and time", s.user, m)
			}
		}
		katatest.WantCode(t, alice.finish(), codes.OK, "alice's stream after CloseSend")
		if m := bob.expect(pb.MessageType_MESSAGE_TYPE_USER_LEFT, ""); m.GetUserId() != "alice" {
			t.Fatalf("bob saw %v, want USER_LEFT alice", m)
		}
		katatest.WantCode(t, bob.finish(), codes.OK, "bob's stream after CloseSend")
	})

	t.Run("Rejects_a_missing_token", func(t *testing.T) {
		env := startChat(t, Config{})
		stream, err := env.client.Chat(katatest.Context(t))
		katatest.WantCode(t, err, codes.OK, "Chat()")
		_, err = stream.Recv()
		katatest.WantCode(t, err, codes.Unauthenticated, "Chat() without a token")
		// A valid token gets through to your handler.
		alice := env.open(t, "alice")
		alice.join("lobby")
	})

	t.Run("Rejects_a_bad_token", func(t *testing.T) {
		env := startChat(t, Config{})
		stream, err := env.client.Chat(WithToken(katatest.Context(t), "forged"))
		katatest.WantCode(t, err, codes.OK, "Chat()")
		_, err = stream.Recv()
		katatest.WantCode(t, err, codes.Unauthenticated, "Chat() with an unknown token")
		alice := env.open(t, "alice")
		alice.join("lobby")
	})

	t.Run("Ignores_a_spoofed_user_id", func(t *testing.T) {
		env := startChat(t, Config{})
		mallory, bob := env.open(t, "mallory"), env.open(t, "bob")
		mallory.join("lobby")
		bob.join("lobby")
		mallory.send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", UserId: "alice", Content: "I am alice"})
		if m := bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "I am alice"); m.GetUserId() != "mallory" {
			t.Fatalf("bob received the message as from %q, want %q (the token's user, not the message's)", m.GetUserId(), "mallory")
		}
	})

	t.Run("Typing_reaches_only_the_others", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		alice.send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_TYPING, RoomId: "lobby"})
		if m := bob.expect(pb.MessageType_MESSAGE_TYPE_TYPING, ""); m.GetUserId() != "alice" {
			t.Fatalf("bob received %v, want TYPING from alice", m)
		}
		alice.say("lobby", "done typing")
		for {
			m := alice.next()
			if m.GetType() == pb.MessageType_MESSAGE_TYPE_USER_JOINED {
				continue
			}
			if m.GetType() != pb.MessageType_MESSAGE_TYPE_CHAT || m.GetContent() != "done typing" {
				t.Fatalf("alice received %v after typing, want her own typing never echoed or stored", m)
			}
			break
		}
	})

	t.Run("Rejects_chat_before_join_and_goes_on", func(t *testing.T) {
		env := startChat(t, Config{})
		alice := env.open(t, "alice")
		alice.say("lobby", "anyone?")
		alice.expectError(codes.PermissionDenied, "CHAT before JOIN_ROOM")
		alice.join("lobby")
		alice.say("lobby", "now I am in")
		alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "now I am in")
	})

	badRequests := []struct {
		test string
		req  *pb.ChatMessage
		code codes.Code
	}{
		{"Rejects_an_invalid_room", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "../admin"}, codes.InvalidArgument},
		{"Rejects_empty_content", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby"}, codes.InvalidArgument},
		{"Rejects_huge_content", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: strings.Repeat("x", 101)}, codes.InvalidArgument},
		{"Rejects_an_unknown_type", &pb.ChatMessage{Type: pb.MessageType(99), RoomId: "lobby", Content: "?"}, codes.InvalidArgument},
		{"Rejects_a_server_only_type", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_USER_JOINED, RoomId: "lobby", UserId: "root"}, codes.InvalidArgument},
		{"Rejects_leaving_a_room_not_joined", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_LEAVE_ROOM, RoomId: "other"}, codes.FailedPrecondition},
	}
	for _, tc := range badRequests {
		t.Run(tc.test, func(t *testing.T) {
			env := startChat(t, Config{MaxContentBytes: 100})
			alice := env.open(t, "alice")
			alice.join("lobby")
			alice.send(tc.req)
			alice.expectError(tc.code, tc.test)
			alice.say("lobby", "still here")
			alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "still here")
		})
	}

	t.Run("Rate_limit_answers_in_band", func(t *testing.T) {
		env := startChat(t, Config{Burst: 3, FloodLimit: 100})
		alice := env.open(t, "alice")
		alice.join("lobby") // one of the burst
		alice.say("lobby", "two")
		alice.say("lobby", "three")
		alice.say("lobby", "four: over the limit")
		alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "two")
		alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "three")
		alice.expectError(codes.ResourceExhausted, "a message over the rate limit")
	})

	t.Run("Flood_ends_the_stream", func(t *testing.T) {
		env := startChat(t, Config{Burst: 2, FloodLimit: 5})
		mallory := env.open(t, "mallory")
		mallory.join("lobby")
		for i := range 10 {
			if err := mallory.stream.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: fmt.Sprint(i)}); err != nil {
				break // the server has ended the stream
			}
		}
		var err error
		for err == nil {
			_, err = mallory.stream.Recv()
		}
		katatest.WantCode(t, err, codes.ResourceExhausted, "Chat(mallory) flooding past FloodLimit=5")
	})

	t.Run("Client_that_never_reads_is_evicted_without_slowing_others", func(t *testing.T) {
		env := startChat(t, Config{QueueSize: 16, Burst: 1000, FloodLimit: 1000})
		silent, alice, bob := env.openOwn(t, "silent"), env.openOwn(t, "alice"), env.openOwn(t, "bob")
		silent.join("lobby")
		alice.join("lobby")
		bob.join("lobby")
		// alice and bob read everything; silent reads nothing. 400 messages
		// of 1 KiB are far more than silent's flow-control window and queue.
		countChats := func(s *session) (<-chan int, *error) {
			got := make(chan int, 400)
			var streamErr error
			go func() {
				defer close(got)
				n := 0
				for {
					m, err := s.stream.Recv()
					if err != nil {
						streamErr = err
						return
					}
					if m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT {
						n++
						got <- n
					}
				}
			}()
			return got, &streamErr
		}
		aliceGot, aliceErr := countChats(alice)
		bobGot, bobErr := countChats(bob)
		// waitFor waits until s has received want chat messages. Pacing on
		// the readers keeps them within their queue, so only silent falls
		// behind.
		waitFor := func(s *session, got <-chan int, streamErr *error, want int) {
			for n := 0; n < want; {
				select {
				case m, ok := <-got:
					if !ok {
						t.Fatalf("%s's stream ended with %v after %d of %d messages while a member did not read", s.user, *streamErr, n, want)
					}
					n = m
				case <-time.After(katatest.TestTimeout):
					t.Fatalf("%s received %d of %d messages in %v while a member did not read", s.user, n, want, katatest.TestTimeout)
				}
			}
		}
		text := strings.Repeat("x", 1000)
		for round := range 50 {
			for i := range 8 {
				alice.say("lobby", fmt.Sprint(round*8+i, text))
			}
			waitFor(alice, aliceGot, aliceErr, (round+1)*8)
			waitFor(bob, bobGot, bobErr, (round+1)*8)
		}
		// The server must end silent's stream while silent still reads
		// nothing: two Chat handlers (alice's and bob's) remain.
		env.WaitInFlight(t, chatMethod, 2)
		var err error
		for err == nil {
			_, err = silent.stream.Recv()
		}
		katatest.WantCode(t, err, codes.ResourceExhausted, "Chat(silent) after never reading")
		katatest.WantMessage(t, err, "Chat(silent)")("slow consumer")
		alice.cancel()
		bob.cancel()
		for range aliceGot {
		}
		for range bobGot {
		}
	})

	t.Run("Disconnect_tells_the_others_and_frees_everything", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		bob.cancel()
		if m := alice.expect(pb.MessageType_MESSAGE_TYPE_USER_LEFT, ""); m.GetUserId() != "bob" {
			t.Fatalf("alice saw %v, want USER_LEFT bob", m)
		}
		katatest.WantCode(t, alice.finish(), codes.OK, "alice's stream after CloseSend")
		env.WaitIdle(t)
		if rooms, memberships, limiters := env.srv.hub.counts(); rooms+memberships+limiters != 0 {
			t.Fatalf("after both left the hub holds %d rooms, %d memberships, %d limiters; want none", rooms, memberships, limiters)
		}
	})

	t.Run("Many_connect_disconnect_cycles_leave_nothing_behind", func(t *testing.T) {
		env := startChat(t, Config{Burst: 1000})
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range 200 {
			s := env.open(t, "carol")
			s.join(fmt.Sprint("room-", i%7))
			if i%2 == 0 {
				s.cancel()
			} else if err := s.finish(); err != nil {
				t.Fatalf("cycle %d: stream ended with %v, want OK", i, err)
			}
		}
		env.WaitIdle(t)
		if rooms, memberships, limiters := env.srv.hub.counts(); rooms+memberships+limiters != 0 {
			t.Fatalf("after 200 cycles the hub holds %d rooms, %d memberships, %d limiters; want none", rooms, memberships, limiters)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 4<<20 {
			t.Fatalf("heap in use grew by %d KiB over 200 cycles, want it back near its baseline", grown>>10)
		}
	})
}

func TestChatClient(t *testing.T) {
	newClient := func(t *testing.T, env *chatEnv, token string) *ChatClient {
		t.Helper()
		c, err := NewChatClient(katatest.Target, token, env.DialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("Sends_lines_then_half_closes_and_returns_OK", func(t *testing.T) {
		env := startChat(t, Config{})
		bob := env.open(t, "bob")
		bob.join("lobby")
		c := newClient(t, env, "alice-token")
		lines := make(chan string, 2)
		lines <- "first"
		lines <- "second"
		close(lines)
		var mu sync.Mutex
		var seen []string
		err := c.Run(katatest.Context(t), "lobby", lines, func(m *pb.ChatMessage) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, describe([]*pb.ChatMessage{m})...)
		})
		katatest.WantCode(t, err, codes.OK, "ChatClient.Run(2 lines, then end of input)")
		bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "first")
		bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "second")
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(seen, "CHAT alice: second") {
			t.Fatalf("Run delivered %q to onMessage, want the server's echo of alice's messages", seen)
		}
	})

	t.Run("Returns_the_server_status", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "forged-token")
		lines := make(chan string)
		defer close(lines)
		err := c.Run(katatest.Context(t), "lobby", lines, func(*pb.ChatMessage) {})
		katatest.WantCode(t, err, codes.Unauthenticated, "ChatClient.Run(forged token)")
	})

	t.Run("Stops_promptly_on_cancel", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		ctx, cancel := context.WithCancel(katatest.Context(t))
		joined := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			done <- c.Run(ctx, "lobby", make(chan string), func(m *pb.ChatMessage) {
				if m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM {
					once.Do(func() { close(joined) })
				}
			})
		}()
		select {
		case <-joined:
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v before joining", err)
		}
		cancel()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Canceled, "ChatClient.Run() after cancel")
		case <-time.After(katatest.TestTimeout):
			t.Fatal("ChatClient.Run() did not return after cancel")
		}
		env.WaitIdle(t)
	})
}

// handlerResult records how the Chat handler ended: its returned error and
// its stream context's error at that moment.
type handlerResult struct {
	mu                 sync.Mutex
	handlerErr, ctxErr error
	hadDeadline        bool
	done               chan struct{}
}

func (r *handlerResult) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	_, hadDeadline := ss.Context().Deadline()
	err := handler(srv, ss)
	r.mu.Lock()
	r.handlerErr, r.ctxErr, r.hadDeadline = err, ss.Context().Err(), hadDeadline
	r.mu.Unlock()
	close(r.done)
	return err
}

func (r *handlerResult) wait(t *testing.T) (handlerErr, ctxErr error) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(katatest.TestTimeout):
		t.Fatal("the Chat handler did not return")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handlerErr, r.ctxErr
}

// recvStatus receives until the stream ends and returns its status (nil
// for OK).
func recvStatus(s *session) error {
	for {
		if _, err := s.stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func wantHubEmpty(t *testing.T, env *chatEnv) {
	t.Helper()
	env.WaitIdle(t)
	if rooms, memberships, rest := env.srv.hub.counts(); rooms+memberships+rest != 0 {
		t.Fatalf("after the stream ended the hub holds %d rooms, %d memberships, %d limiters and connections; want none", rooms, memberships, rest)
	}
}

func TestStreamErrors(t *testing.T) {
	t.Run("Client_cancel_is_Canceled_on_the_server_and_cleaned_up", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.cancel()
		handlerErr, ctxErr := result.wait(t)
		if !errors.Is(ctxErr, context.Canceled) {
			t.Fatalf("server stream context after the client cancelled: %v, want context.Canceled", ctxErr)
		}
		katatest.WantCode(t, handlerErr, codes.Canceled, "Chat handler after the client cancelled")
		wantHubEmpty(t, env)
	})

	t.Run("Deadline_ends_the_stream_on_both_sides", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		ctx, cancel := context.WithTimeout(katatest.Context(t), 300*time.Millisecond)
		defer cancel()
		stream, err := env.client.Chat(WithToken(ctx, "alice-token"))
		katatest.WantCode(t, err, codes.OK, "Chat(alice, 300ms deadline)")
		alice := &session{t: t, user: "alice", stream: stream, cancel: cancel}
		alice.join("lobby")
		katatest.WantCode(t, recvStatus(alice), codes.DeadlineExceeded, "Recv after the stream's deadline")
		_, ctxErr := result.wait(t)
		result.mu.Lock()
		hadDeadline := result.hadDeadline
		result.mu.Unlock()
		// The server's copy of the deadline or the client's cancel,
		// whichever arrives first, ends the server's context.
		if !hadDeadline || ctxErr == nil {
			t.Fatalf("server stream context: deadline propagated %v, ended with %v; want the client's deadline on the server and the context ended", hadDeadline, ctxErr)
		}
		wantHubEmpty(t, env)
	})

	t.Run("CloseSend_finishes_cleanly_and_delivers_the_replies", func(t *testing.T) {
		env := startChat(t, Config{})
		alice := env.open(t, "alice")
		alice.send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "lobby"})
		alice.say("lobby", "last words")
		if err := alice.stream.CloseSend(); err != nil {
			t.Fatalf("CloseSend() = %v", err)
		}
		var got []string
		for {
			m, err := alice.stream.Recv()
			if err != nil {
				katatest.WantCode(t, ignoreEOF(err), codes.OK, "the stream's status after CloseSend")
				break
			}
			got = append(got, describe([]*pb.ChatMessage{m})...)
		}
		if want := []string{"JOIN_ROOM alice", "CHAT alice: last words"}; !slices.Equal(got, want) {
			t.Fatalf("after CloseSend alice received %q, want %q: a half-close still gets every reply", got, want)
		}
		wantHubEmpty(t, env)
	})

	t.Run("Cancel_aborts_instead", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.cancel()
		katatest.WantCode(t, recvStatus(alice), codes.Canceled, "Recv after cancel")
		handlerErr, _ := result.wait(t)
		katatest.WantCode(t, handlerErr, codes.Canceled, "Chat handler after cancel")
	})

	t.Run("Oversized_message_is_ResourceExhausted", func(t *testing.T) {
		env := startChat(t, Config{MaxContentBytes: 1 << 20}, katatest.WithServerOptions(grpc.MaxRecvMsgSize(4096)))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.say("lobby", strings.Repeat("x", 8192))
		err := recvStatus(alice)
		katatest.WantCode(t, err, codes.ResourceExhausted, "a 8 KiB message to a server with MaxRecvMsgSize 4096")
		wantHubEmpty(t, env)
	})

	t.Run("A_reply_that_cannot_be_sent_ends_the_stream", func(t *testing.T) {
		env := startChat(t, Config{}, katatest.WithServerOptions(grpc.MaxSendMsgSize(1024)))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.say("lobby", strings.Repeat("x", 1500)) // its echo is over the server's send limit
		err := recvStatus(alice)
		katatest.WantCode(t, err, codes.ResourceExhausted, "a reply over the server's MaxSendMsgSize")
		wantHubEmpty(t, env)
	})

	t.Run("Shutdown_ends_live_streams_with_Unavailable", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		forced := make(chan bool, 1)
		go func() { forced <- serving.GracefulStop(env.grpcServer, env.srv.Shutdown, katatest.TestTimeout) }()
		for _, s := range []*session{alice, bob} {
			katatest.WantCode(t, recvStatus(s), codes.Unavailable, "%s's stream when the server shuts down", s.user)
		}
		if <-forced {
			t.Fatal("the graceful stop had to be forced, want the chat streams ended so it completes by itself")
		}
		wantHubEmpty(t, env)
	})

	t.Run("Shutdown_timeout_cuts_off_streams_it_cannot_end", func(t *testing.T) {
		env := startChat(t, Config{})
		alice := env.open(t, "alice")
		alice.join("lobby")
		forced := make(chan bool, 1)
		go func() { forced <- serving.GracefulStop(env.grpcServer, nil, 200*time.Millisecond) }()
		katatest.WantCode(t, recvStatus(alice), codes.Unavailable, "a chat stream when the server stops after its shutdown timeout")
		if !<-forced {
			t.Fatal("GracefulStop without ending the streams returned without forcing, want Stop after the timeout")
		}
	})
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
