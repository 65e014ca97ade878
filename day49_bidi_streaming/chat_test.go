package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errorCodes describes the ERROR messages among msgs by their codes.
func errorCodes(msgs []*pb.ChatMessage) []string {
	out := []string{}
	for _, m := range msgs {
		if m.GetType() == pb.MessageType_MESSAGE_TYPE_ERROR {
			out = append(out, "ERROR "+codes.Code(m.GetErrorCode()).String())
		}
	}
	return out
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

	t.Run("A_message_is_marshalled_once_for_all_its_members", func(t *testing.T) {
		// Four members, one message: the writers send the sharedMessage
		// they dequeue with SendOn, so gRPC marshals it once. A writer
		// that sends m.Message() marshals it once per member.
		counter := katatest.NewMarshalCounter(func(v any) bool {
			m, ok := v.(*pb.ChatMessage)
			return ok && m.GetContent() == "hello, everyone"
		})
		env := startChat(t, Config{}, katatest.WithServerOptions(grpc.ForceServerCodecV2(counter)))
		members := []*session{env.open(t, "alice"), env.open(t, "bob"), env.open(t, "carol"), env.open(t, "mallory")}
		for _, s := range members {
			s.join("lobby")
		}
		members[0].say("lobby", "hello, everyone")
		for _, s := range members {
			s.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "hello, everyone")
		}
		require.Equal(t, 1, counter.Count(), "times the server marshalled one CHAT message for %d members: send what c.out holds with m.SendOn(stream), which encodes it once for every member, not stream.Send(m.Message())", len(members))
	})

	t.Run("Rejects_a_missing_token", func(t *testing.T) {
		env := startChat(t, Config{})
		anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.ChatService_ChatClient, error) { return env.client.Chat(ctx) })
		katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Chat() without a token")
		// A valid token gets through to your handler.
		alice := env.open(t, "alice")
		alice.join("lobby")
	})

	t.Run("Rejects_a_bad_token", func(t *testing.T) {
		env := startChat(t, Config{})
		forger := katatest.OpenPeer(t, "forger", func(ctx context.Context) (pb.ChatService_ChatClient, error) {
			return env.client.Chat(WithToken(ctx, "forged"))
		})
		katatest.WantCode(t, forger.Status(), codes.Unauthenticated, "Chat() with an unknown token")
		alice := env.open(t, "alice")
		alice.join("lobby")
	})

	t.Run("Ignores_a_spoofed_user_id", func(t *testing.T) {
		env := startChat(t, Config{})
		mallory, bob := env.open(t, "mallory"), env.open(t, "bob")
		mallory.join("lobby")
		bob.join("lobby")
		mallory.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", UserId: "alice", Content: "I am alice"})
		if m := bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "I am alice"); m.GetUserId() != "mallory" {
			t.Fatalf("bob received the message as from %q, want %q (the token's user, not the message's)", m.GetUserId(), "mallory")
		}
	})

	t.Run("Typing_reaches_only_the_others", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		alice.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_TYPING, RoomId: "lobby"})
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
		{"Rejects_content_one_byte_over_the_limit", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: strings.Repeat("é", 50) + "x"}, codes.InvalidArgument},
		{"Limits_content_in_bytes_not_runes", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: strings.Repeat("é", 51)}, codes.InvalidArgument},
		{"Rejects_an_empty_room", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: ""}, codes.InvalidArgument},
		{"Rejects_a_33_character_room", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: strings.Repeat("r", 33)}, codes.InvalidArgument},
		{"Rejects_an_upper_case_room", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "Lobby"}, codes.InvalidArgument},
		{"Rejects_a_room_starting_with_a_dash", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "-lobby"}, codes.InvalidArgument},
		{"Rejects_typing_in_a_room_not_joined", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_TYPING, RoomId: "other"}, codes.PermissionDenied},
		{"Rejects_an_unknown_type", &pb.ChatMessage{Type: pb.MessageType(99), RoomId: "lobby", Content: "?"}, codes.InvalidArgument},
		{"Rejects_a_server_only_type", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_USER_JOINED, RoomId: "lobby", UserId: "root"}, codes.InvalidArgument},
		{"Rejects_leaving_a_room_not_joined", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_LEAVE_ROOM, RoomId: "other"}, codes.FailedPrecondition},
	}
	for _, tc := range badRequests {
		t.Run(tc.test, func(t *testing.T) {
			env := startChat(t, Config{MaxContentBytes: 100})
			alice := env.open(t, "alice")
			alice.join("lobby")
			alice.Send(tc.req)
			alice.expectError(tc.code, tc.test)
			alice.say("lobby", "still here")
			alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "still here")
		})
	}

	t.Run("Accepts_content_and_rooms_at_their_limits", func(t *testing.T) {
		env := startChat(t, Config{MaxContentBytes: 100})
		alice := env.open(t, "alice")
		room := "r" + strings.Repeat("o", 30) + "m" // 32 characters
		alice.join(room)
		full := strings.Repeat("é", 50) // 100 bytes
		alice.say(room, full)
		alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, full)
	})

	t.Run("Rejects_content_that_is_not_valid_UTF8", func(t *testing.T) {
		// Over the wire grpc-go's codec refuses a string field that is not
		// UTF-8 before any handler runs, so handle's own check, which a
		// server with another codec relies on, is called directly.
		s := newTestHub(Config{})
		alice := member(t, s, "alice")
		require.NoError(t, s.handle(alice, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "lobby"}), "handle(JOIN_ROOM lobby)")
		drain(alice)
		err := s.handle(alice, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: "caf\xe9"})
		require.NoError(t, err, "handle(CHAT %q) must answer in-band and let the stream go on", "caf\xe9")
		got := drain(alice)
		if len(got) != 1 || got[0].GetType() != pb.MessageType_MESSAGE_TYPE_ERROR || codes.Code(got[0].GetErrorCode()) != codes.InvalidArgument {
			t.Fatalf("handle(CHAT %q) queued %q, want one in-band InvalidArgument ERROR and nothing published", "caf\xe9", describe(got))
		}
	})

	t.Run("Answers_content_that_is_not_UTF8_in_band_and_goes_on", func(t *testing.T) {
		env := startChat(t, Config{})
		conn, err := grpc.NewClient(katatest.Target, append(env.DialOptions(), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(unvalidatedCodec{})))...)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		alice := env.openOn(t, pb.NewChatServiceClient(conn), "alice")
		alice.join("lobby")
		alice.say("lobby", "caf\xe9") // sent as it is: this client's codec does not check
		alice.expectError(codes.InvalidArgument, "CHAT whose content is not UTF-8, over the wire")
		alice.say("lobby", "café")
		alice.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "café")
	})

	t.Run("Content_that_is_not_UTF8_counts_against_the_rate_limit", func(t *testing.T) {
		env := startChat(t, Config{Burst: 1, FloodLimit: 100})
		conn, err := grpc.NewClient(katatest.Target, append(env.DialOptions(), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(unvalidatedCodec{})))...)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		mallory := env.openOn(t, pb.NewChatServiceClient(conn), "mallory")
		mallory.join("lobby") // the burst of 1
		mallory.say("lobby", "caf\xe9")
		if m, ended := mallory.NextOrEnd(); !ended {
			t.Fatalf("Chat(mallory) answered %v in-band to content that is not UTF-8 over the rate limit, want the stream ended with no in-band answer: its status says why", m)
		}
		katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Chat(mallory): content that is not UTF-8, over the rate limit")
		wantHubEmpty(t, env)
	})

	t.Run("Handler_refuses_a_stream_without_an_identity", func(t *testing.T) {
		srv := newTestHub(Config{})
		server := startWithoutAuth(t, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, srv) })
		anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.ChatService_ChatClient, error) {
			return pb.NewChatServiceClient(server.Conn).Chat(ctx)
		})
		katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Chat() served without AuthInterceptor, so with no identity in its context")
	})

	t.Run("Rate_limit_holds_across_a_users_streams", func(t *testing.T) {
		env := startChat(t, Config{Burst: 3, FloodLimit: 100})
		first, second := env.open(t, "alice"), env.open(t, "alice")
		first.join("lobby")  // 1 of the burst of 3
		second.join("lobby") // 2
		first.say("lobby", "from the first stream")
		first.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "from the first stream") // 3
		second.say("lobby", "from the second stream: over alice's limit")
		second.expectError(codes.ResourceExhausted, "alice's 4th message, on her second stream, with Burst=3 per user")
	})

	t.Run("Rate_limit_survives_a_reconnect", func(t *testing.T) {
		env := startChat(t, Config{Burst: 3, FloodLimit: 100})
		first := env.open(t, "alice")
		first.join("lobby") // 1 of the burst of 3
		first.say("lobby", "two")
		first.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "two") // 2
		katatest.WantCode(t, first.finish(), codes.OK, "alice's first stream after CloseSend")
		env.WaitIdle(t) // alice has no stream left: a limiter per stream would be gone now
		second := env.open(t, "alice")
		second.join("lobby") // 3
		second.say("lobby", "over alice's limit, on a new stream")
		second.expectError(codes.ResourceExhausted, "alice's 4th message, after she reconnected, with Burst=3 per user")
		env.clock.Advance(time.Second) // one message's worth of the default rate
		second.say("lobby", "allowed again")
		second.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "allowed again")
	})

	t.Run("Flood_count_restarts_when_a_message_is_allowed", func(t *testing.T) {
		env := startChat(t, Config{MessagesPerSecond: 1, Burst: 1, FloodLimit: 3})
		mallory := env.open(t, "mallory")
		mallory.join("lobby") // the burst of 1
		for i := range 2 {    // two refused in a row: one short of FloodLimit
			mallory.say("lobby", fmt.Sprint("refused ", i))
			mallory.expectError(codes.ResourceExhausted, "a message over the rate limit")
		}
		env.clock.Advance(time.Second) // one message's worth of rate
		mallory.say("lobby", "allowed")
		mallory.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "allowed")
		for i := range 2 { // two more refused: in a row only since "allowed"
			mallory.say("lobby", fmt.Sprint("refused again ", i))
			mallory.expectError(codes.ResourceExhausted, "a message over the rate limit after an allowed one")
		}
		mallory.say("lobby", "the third refused in a row")
		katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Chat(mallory) after FloodLimit=3 refusals in a row")
	})

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

	t.Run("Invalid_messages_use_the_rate_limit_and_count_toward_a_flood", func(t *testing.T) {
		// The rate limit comes before every other check: a client sending
		// nothing but invalid messages is slowed and cut off like any other.
		env := startChat(t, Config{MessagesPerSecond: 1, Burst: 2, FloodLimit: 3})
		mallory := env.open(t, "mallory")
		invalid := []*pb.ChatMessage{
			{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "Not A Room"},
			{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby"},
			{Type: pb.MessageType_MESSAGE_TYPE_USER_JOINED, RoomId: "lobby"},
			{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "Not A Room"},
			{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby"},
		}
		for i, m := range invalid[:4] {
			mallory.Send(m)
			if i < 2 {
				mallory.expectError(codes.InvalidArgument, fmt.Sprintf("invalid message %d, within the burst of 2", i+1))
			} else {
				mallory.expectError(codes.ResourceExhausted, fmt.Sprintf("invalid message %d, over the rate limit (the rate limit comes before every other check)", i+1))
			}
		}
		mallory.Send(invalid[4])
		if m, ended := mallory.NextOrEnd(); !ended {
			t.Fatalf("Chat(mallory) answered %v to a 3rd invalid message in a row over the rate limit, want the stream ended: FloodLimit=3 counts the rate limit's refusals, whatever the message, and the 1st and 2nd were not counted because the rate limit let them through", m)
		}
		katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Chat(mallory) after FloodLimit=3 invalid messages in a row over the rate limit")
	})

	t.Run("Flood_ends_the_stream", func(t *testing.T) {
		env := startChat(t, Config{Burst: 2, FloodLimit: 5})
		mallory := env.open(t, "mallory")
		mallory.join("lobby")
		for i := range 10 {
			if err := mallory.TrySend(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: fmt.Sprint(i)}); err != nil {
				break // the server has ended the stream
			}
		}
		katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Chat(mallory) flooding past FloodLimit=5")
	})

	t.Run("Client_that_never_reads_is_evicted_without_slowing_others", func(t *testing.T) {
		env := startChat(t, Config{QueueSize: 16, Burst: 1000, FloodLimit: 1000})
		// alice and bob read everything as it comes; silent reads only
		// its join. 400 messages of 1 KiB are far more than silent's
		// flow-control window and queue.
		silent := env.openOwn(t, "silent")
		alice, bob := env.openOwn(t, "alice", katatest.ReadAhead(1024)), env.openOwn(t, "bob", katatest.ReadAhead(1024))
		silent.join("lobby")
		alice.join("lobby")
		bob.join("lobby")
		chats := map[*session]int{}
		// waitFor receives until s has had want chat messages. Pacing on
		// the readers keeps them within their queue, so only silent falls
		// behind.
		waitFor := func(s *session, want int) {
			t.Helper()
			for chats[s] < want {
				s.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "")
				chats[s]++
			}
		}
		text := strings.Repeat("x", 1000)
		for round := range 50 {
			for i := range 8 {
				alice.say("lobby", fmt.Sprint(round*8+i, text))
			}
			waitFor(alice, (round+1)*8)
			waitFor(bob, (round+1)*8)
		}
		// The server must end silent's stream while silent still reads
		// nothing: two Chat handlers (alice's and bob's) remain.
		env.WaitInFlight(t, chatMethod, 2)
		err := silent.Status()
		katatest.WantCode(t, err, codes.ResourceExhausted, "Chat(silent) after never reading")
		katatest.WantMessage(t, err, "Chat(silent)")("slow consumer")
	})

	t.Run("Disconnect_tells_the_others_and_frees_everything", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		bob.Cancel()
		if m := alice.expect(pb.MessageType_MESSAGE_TYPE_USER_LEFT, ""); m.GetUserId() != "bob" {
			t.Fatalf("alice saw %v, want USER_LEFT bob", m)
		}
		katatest.WantCode(t, alice.finish(), codes.OK, "alice's stream after CloseSend")
		env.WaitIdle(t)
		if rooms, memberships, conns := env.srv.hub.counts(); rooms+memberships+conns != 0 {
			t.Fatalf("after both left the hub holds %d rooms, %d memberships, %d connections; want none", rooms, memberships, conns)
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
				s.Cancel()
			} else if err := s.finish(); err != nil {
				t.Fatalf("cycle %d: stream ended with %v, want OK", i, err)
			}
		}
		env.WaitIdle(t)
		if rooms, memberships, conns := env.srv.hub.counts(); rooms+memberships+conns != 0 {
			t.Fatalf("after 200 cycles the hub holds %d rooms, %d memberships, %d connections; want none", rooms, memberships, conns)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 4<<20 {
			t.Fatalf("heap in use grew by %d KiB over 200 cycles, want it back near its baseline", grown>>10)
		}
	})

	t.Run("The_refusal_that_ends_the_stream_is_not_answered_in_band", func(t *testing.T) {
		s := newTestHub(Config{MessagesPerSecond: 1, Burst: 1, FloodLimit: 3})
		c := member(t, s, "mallory")
		require.NoError(t, s.handle(c, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "lobby"}), "handle(join), the burst of 1")
		drain(c)
		for i := range 2 {
			require.NoError(t, s.handle(c, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: fmt.Sprint("refused ", i)}), "handle(a message over the rate limit, one short of FloodLimit=3)")
		}
		err := s.handle(c, &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: "lobby", Content: "the third"})
		katatest.WantCode(t, err, codes.ResourceExhausted, "handle(the third refusal in a row, FloodLimit=3)")
		assert.Equal(t, []string{"ERROR ResourceExhausted", "ERROR ResourceExhausted"}, errorCodes(drain(c)), "in-band answers, want one for each refused message but the one that ends the stream (its status says why)")
	})
}
