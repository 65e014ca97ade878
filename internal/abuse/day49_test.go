package abuse

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDay49(t *testing.T) {
	t.Run("Messages_stalled_one_byte_short_are_bounded", func(t *testing.T) { testStalledPrefixes(t, "49") })
	t.Run("Connections_from_one_address_are_bounded", func(t *testing.T) { testManyConnections(t, "49") })
	t.Run("Calls_reset_as_fast_as_they_open_are_bounded", func(t *testing.T) { testRapidReset(t, "49") })
	t.Run("A_CONTINUATION_flood_stops_at_the_header_limit", func(t *testing.T) { testContinuationFlood(t, "49") })
	t.Run("Chat_reconnect_loop_keeps_its_rate_limit", func(t *testing.T) {
		conn, b := attack(t, "49")
		client := pb.NewChatServiceClient(conn)
		ctx := attackContext(t)
		room := fmt.Sprint("abuse-", time.Now().UnixNano()%1000000)
		// bob watches the room; mallory reconnects 20 times and sends 10
		// messages on each stream. At 5 a second with a burst of 10 per
		// user, bob sees about 10 plus 5 a second of mallory's.
		bob, err := client.Chat(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, bob.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}))
		waitFor(t, bob, func(m *pb.ChatMessage) bool { return m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM })
		start := time.Now()
		for range 20 {
			s, err := client.Chat(bearer.WithToken(ctx, "mallory-demo-token"))
			require.NoError(t, err)
			s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room})
			for i := range 10 {
				s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: fmt.Sprint("flood ", i)})
			}
			s.CloseSend()
			for { // drain until the server ends the stream
				if _, err := s.Recv(); err != nil {
					break
				}
			}
		}
		elapsed := time.Since(start)
		// bob says something and counts mallory's messages until his own.
		require.NoError(t, bob.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "bob is still here"}))
		fromMallory := 0
		waitFor(t, bob, func(m *pb.ChatMessage) bool {
			if m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == "mallory" {
				fromMallory++
			}
			return m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == "bob"
		})
		bob.CloseSend()
		limit := 10 + 5*elapsed.Seconds() + 1
		report(t, b, fmt.Sprintf("at most %.0f of 200 delivered (burst 10, 5/s per user)", limit), fmt.Sprintf("%d delivered in %.1fs; bob served", fromMallory, elapsed.Seconds()), "bob's stream still served; that the hub empties is proven by TestChat/Many_connect_disconnect_cycles_leave_nothing_behind")
		assert.LessOrEqual(t, float64(fromMallory), limit, "mallory's messages delivered over 20 reconnects in %v", elapsed)
		healthy(t, conn)
	})

	t.Run("Streams_of_one_user_are_bounded_across_connections", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx, cancel := context.WithCancel(attackContext(t))
		defer cancel()
		room := fmt.Sprint("held-", time.Now().UnixNano()%1000000)
		// dave holds 32 chat streams, 8 on each of 4 connections, each
		// joined and idle: the limit per user is 32.
		const conns, perConn, limit = 4, 8, 32
		var attackers []*grpc.ClientConn
		// join opens a chat and sends a join; the first answer of any kind
		// (past his burst, a refusal of the join) shows the stream was
		// let in.
		join := func(c *grpc.ClientConn, token string) (pb.ChatService_ChatClient, error) {
			s, err := pb.NewChatServiceClient(c).Chat(bearer.WithToken(ctx, token))
			if err != nil {
				return nil, err
			}
			if err := s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}); err != nil {
				return nil, err
			}
			_, err = s.Recv()
			return s, err
		}
		for range conns {
			c, err := serving.NewClient(os.Getenv("ABUSE_ADDR_49"))
			require.NoError(t, err)
			attackers = append(attackers, c)
			for range perConn {
				_, err := join(c, "dave-demo-token")
				require.NoError(t, err, "dave's stream %d of %d", len(attackers), limit)
			}
		}
		// The 33rd, on yet another connection, is refused.
		extra, err := serving.NewClient(os.Getenv("ABUSE_ADDR_49"))
		require.NoError(t, err)
		attackers = append(attackers, extra)
		_, err = join(extra, "dave-demo-token")
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "dave's stream %d", limit+1)
		assert.Contains(t, status.Convert(err).Message(), "32 streams open", "the error names the limit")
		refusal := err
		// carol joins the same room and is served.
		carol, err := pb.NewChatServiceClient(conn).Chat(bearer.WithToken(ctx, "carol-demo-token"))
		require.NoError(t, err)
		require.NoError(t, carol.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}))
		require.NoError(t, carol.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "hello"}))
		waitFor(t, carol, func(m *pb.ChatMessage) bool { return m.GetUserId() == "carol" && m.GetContent() == "hello" })
		cancel()
		for _, c := range attackers {
			c.Close()
		}
		report(t, b, "stream 33 of one user refused with ResourceExhausted, on any connection; others served",
			fmt.Sprintf("%v: %s; carol served", status.Code(refusal), status.Convert(refusal).Message()),
			"nothing once his streams close")
		healthy(t, conn)
	})

	t.Run("Bad_inputs_get_their_status_codes", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		chat := pb.NewChatServiceClient(conn)
		room := fmt.Sprint("bad-", time.Now().UnixNano()%1000000)
		// Without a token, or with a wrong one, the stream is refused.
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"no token", ctx}, {"bad token", bearer.WithToken(ctx, "guessed-token")}} {
			s, err := chat.Chat(c.ctx)
			require.NoError(t, err)
			_, err = s.Recv()
			assert.Equal(t, codes.Unauthenticated, status.Code(err), "a chat with %s", c.name)
		}
		// alice's stream: each bad request answered in-band, the stream
		// goes on.
		s, err := chat.Chat(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		msg := func(typ pb.MessageType, room, content string) *pb.ChatMessage {
			return &pb.ChatMessage{Type: typ, RoomId: room, Content: content}
		}
		cases := []struct {
			name string
			req  *pb.ChatMessage
			want codes.Code
		}{
			{"chat before joining", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, "hello"), codes.PermissionDenied},
			{"an invalid room", msg(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, "Bad Room!", ""), codes.InvalidArgument},
			{"an unknown type", msg(pb.MessageType(99), room, "x"), codes.InvalidArgument},
			{"empty content", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, ""), codes.InvalidArgument},
			{"huge content", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, strings.Repeat("h", 2001)), codes.InvalidArgument},
		}
		joined := false
		right := 0
		for _, c := range cases {
			if c.req.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && c.req.GetContent() != "hello" && !joined {
				require.NoError(t, s.Send(msg(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, room, "")))
				waitFor(t, s, func(m *pb.ChatMessage) bool { return m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM })
				joined = true
			}
			require.NoError(t, s.Send(c.req))
			var answer *pb.ChatMessage
			waitFor(t, s, func(m *pb.ChatMessage) bool { answer = m; return m.GetType() == pb.MessageType_MESSAGE_TYPE_ERROR })
			if assert.Equal(t, c.want, codes.Code(answer.GetErrorCode()), "the in-band answer to %s: %s", c.name, answer.GetContent()) {
				right++
			}
		}
		// A spoofed sender is replaced by the authenticated one.
		spoof := msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, "from whom?")
		spoof.UserId = "mallory"
		require.NoError(t, s.Send(spoof))
		var echo *pb.ChatMessage
		waitFor(t, s, func(m *pb.ChatMessage) bool { echo = m; return m.GetContent() == "from whom?" })
		assert.Equal(t, "alice", echo.GetUserId(), "the sender of a message that claimed to be mallory's")
		require.NoError(t, s.CloseSend())
		for {
			if _, err := s.Recv(); err != nil {
				break
			}
		}

		// The editor: an unknown document, then a revision from the future.
		e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "no-such-document"}}}))
		ev, err := e.Recv()
		require.NoError(t, err)
		unknown := codes.Code(ev.GetError().GetCode())
		assert.Equal(t, codes.NotFound, unknown, "opening an unknown document")
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err = e.Recv()
		require.NoError(t, err)
		future := ev.GetSnapshot().GetRevision() + 100
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: future, ClientOpId: "future",
			Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "x"}}}}}}))
		var futureErr error
		for futureErr == nil {
			_, futureErr = e.Recv()
		}
		assert.Equal(t, codes.FailedPrecondition, status.Code(futureErr), "a submit based on a future revision")

		// The game: a move before joining, then, joined, a move out of
		// bounds and a teleport; each answered in-band, naming its move.
		g, err := pb.NewGameServiceClient(conn).Play(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		move := func(seq int64, x, y int32) *pb.PlayerInput {
			return &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: seq, Target: &pb.Position{X: x, Y: y}}}}
		}
		gameError := func(seq int64) codes.Code {
			for {
				u, err := g.Recv()
				require.NoError(t, err, "the game stream, waiting for the answer to move %d", seq)
				if e := u.GetError(); e != nil && e.GetSequence() == seq {
					return codes.Code(e.GetCode())
				}
			}
		}
		require.NoError(t, g.Send(move(1, 1, 1)))
		beforeJoin := gameError(1)
		require.NoError(t, g.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "alice"}}}))
		var at *pb.Position
		for at == nil {
			u, err := g.Recv()
			require.NoError(t, err, "the game stream, waiting for alice in a snapshot")
			for _, p := range u.GetSnapshot().GetPlayers() {
				if p.GetName() == "alice" {
					at = p.GetPosition()
				}
			}
		}
		require.NoError(t, g.Send(move(2, -1, -1)))
		outOfBounds := gameError(2)
		require.NoError(t, g.Send(move(3, (at.GetX()+500)%1000, at.GetY())))
		teleport := gameError(3)
		assert.Equal(t, []codes.Code{codes.FailedPrecondition, codes.InvalidArgument, codes.InvalidArgument}, []codes.Code{beforeJoin, outOfBounds, teleport},
			"the answers to a move before joining, out of bounds and a teleport")
		require.NoError(t, g.CloseSend())
		for {
			if _, err := g.Recv(); err != nil {
				break
			}
		}

		report(t, b, "refused without a valid token; each bad chat request answered in-band with its code; the sender is the token's; an unknown document NotFound; a future revision ends the edit; game moves before joining, out of bounds or teleporting answered in-band",
			fmt.Sprintf("%d of %d in-band chat codes right; spoofed message shown as from %q; unknown document %v; future revision %v; game moves %v, %v, %v", right, len(cases), echo.GetUserId(), unknown, status.Code(futureErr), beforeJoin, outOfBounds, teleport),
			"nothing")
		healthy(t, conn)
	})

	t.Run("Chat_content_that_is_not_UTF8_is_answered_in_band", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		room := fmt.Sprint("utf8-", time.Now().UnixNano()%1000000)
		stream, err := conn.NewStream(bearer.WithToken(ctx, "carol-demo-token"), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/streaming.v1.ChatService/Chat", grpc.ForceCodecV2(katatest.RawCodec{}))
		require.NoError(t, err)
		send := func(m *pb.ChatMessage, rawContent string) {
			b, err := proto.Marshal(m)
			require.NoError(t, err)
			if rawContent != "" {
				b = protowire.AppendString(protowire.AppendTag(b, 5, protowire.BytesType), rawContent)
			}
			require.NoError(t, stream.SendMsg(&katatest.RawMessage{B: b}))
		}
		recv := func() *pb.ChatMessage {
			var raw katatest.RawMessage
			require.NoError(t, stream.RecvMsg(&raw), "the chat stream after a message that is not UTF-8")
			var m pb.ChatMessage
			require.NoError(t, proto.Unmarshal(raw.B, &m))
			return &m
		}
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}, "")
		for recv().GetType() != pb.MessageType_MESSAGE_TYPE_JOIN_ROOM {
		}
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room}, "caf\xe9")
		refusal := recv()
		assert.Equal(t, pb.MessageType_MESSAGE_TYPE_ERROR, refusal.GetType(), "the answer to content that is not UTF-8")
		assert.EqualValues(t, codes.InvalidArgument, refusal.GetErrorCode(), "its code")
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "still here"}, "")
		echo := recv()
		assert.Equal(t, "still here", echo.GetContent(), "the next message on the same stream")
		stream.CloseSend()
		report(t, b, "in-band InvalidArgument naming the field; the stream goes on", fmt.Sprintf("in-band %v %q; the next message echoed", codes.Code(refusal.GetErrorCode()), refusal.GetContent()), "nothing: the same stream goes on")
	})

	t.Run("An_editor_that_pipelines_a_burst_and_reads_is_not_evicted", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "carol-demo-token"))
		require.NoError(t, err)
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := e.Recv()
		require.NoError(t, err)
		base := ev.GetSnapshot().GetRevision()
		// 800 inserts sent without waiting, all on the same base, while a
		// reader takes the acks as they come.
		const burst = 800
		acks := make(chan error, 1)
		go func() {
			n := 0
			for n < burst {
				ev, err := e.Recv()
				if err != nil {
					acks <- fmt.Errorf("after %d acks: %w", n, err)
					return
				}
				if ev.GetAck() != nil {
					n++
				}
			}
			acks <- nil
		}()
		for i := range burst {
			require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: base, ClientOpId: fmt.Sprint("burst-", i),
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "b"}}}}}}))
		}
		require.NoError(t, <-acks, "the editor that sent a burst of %d and read its acks", burst)
		require.NoError(t, e.CloseSend())
		for {
			if _, err := e.Recv(); err != nil {
				break
			}
		}
		report(t, b, "every operation acked; the editor is slowed down, never evicted", fmt.Sprintf("%d of %d acked", burst, burst), "nothing")
		healthy(t, conn)
	})

	t.Run("An_editor_flood_is_paced_per_user_across_connections", func(t *testing.T) {
		// dave floods edits on two connections at once; the server paces
		// dave, not each stream, at the editor's default of 200 edits a
		// second after a burst of 200. bob edits the same document
		// meanwhile and is answered.
		conn, b := attack(t, "49")
		second := dial(t, "ABUSE_ADDR_49")
		ctx := attackContext(t)
		const perStream, perSecond, burst = 500, 200, 200
		start := time.Now()
		results := make(chan error, 2)
		for i, c := range []*grpc.ClientConn{conn, second} {
			go func() { results <- floodEdits(ctx, c, "dave-demo-token", fmt.Sprint("flood-", i, "-"), perStream) }()
		}
		other, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, other.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := other.Recv()
		require.NoError(t, err, "bob opening the document during the flood")
		require.NoError(t, other.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: ev.GetSnapshot().GetRevision(), ClientOpId: "bob-1",
			Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "b"}}}}}}))
		for ev.GetAck().GetClientOpId() != "bob-1" {
			ev, err = other.Recv()
			require.NoError(t, err, "bob's edit during the flood")
		}
		require.NoError(t, other.CloseSend())
		for range 2 {
			require.NoError(t, <-results, "dave's flood")
		}
		took := time.Since(start)
		// Each stream's open is received too: 2*(perStream+1) requests.
		want := time.Duration(float64(2*(perStream+1)-burst) / perSecond * float64(time.Second))
		require.GreaterOrEqual(t, took, want, "dave's %d edits on two connections were all received in %v, want at least %v at %d a second after a burst of %d: the pace is per user", 2*perStream, took, want, perSecond, burst)
		for {
			if _, err := other.Recv(); err != nil {
				break
			}
		}
		second.Close() // its streams are done; the report counts the server's goroutines
		report(t, b, "paced per user at 200 edits a second after a burst of 200, across connections; another editor is answered meanwhile",
			fmt.Sprintf("%d edits on two connections took %.1fs (at least %.1fs); bob's edit acked during the flood", 2*perStream, took.Seconds(), want.Seconds()), "nothing")
		healthy(t, conn)
	})

	t.Run("Editor_document_stays_openable", func(t *testing.T) {
		conn, b := attack(t, "49")
		client := pb.NewEditorServiceClient(conn)
		ctx := attackContext(t)
		// Insert 4-byte characters into the demo's document until the
		// server refuses: the limit is in bytes, so a snapshot always fits.
		s, err := client.Edit(bearer.WithToken(ctx, "mallory-demo-token"))
		require.NoError(t, err)
		require.NoError(t, s.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := s.Recv()
		require.NoError(t, err)
		revision := ev.GetSnapshot().GetRevision()
		chunk := strings.Repeat("😀", 9000) // 36,000 bytes, under the insert limit of 10,000 characters
		refused := false
		for i := 0; i < 200 && !refused; i++ {
			id := fmt.Sprint("fill-", i)
			require.NoError(t, s.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: revision, ClientOpId: id,
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: chunk}}}}}}))
			for {
				ev, err := s.Recv()
				require.NoError(t, err)
				if ack := ev.GetAck(); ack.GetClientOpId() == id {
					revision = ack.GetRevision()
					break
				}
				if e := ev.GetError(); e != nil && e.GetClientOpId() == id {
					assert.Equal(t, codes.ResourceExhausted, codes.Code(e.GetCode()), "the insert past the limit: %s", e.GetMessage())
					refused = true
					break
				}
			}
		}
		s.CloseSend()
		require.True(t, refused, "the server took 200 inserts of 36,000 bytes (7 MiB) into one document, want a byte limit")
		// Everyone can still open it.
		o, err := client.Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, o.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		snap, err := o.Recv()
		require.NoError(t, err, "opening the filled document")
		o.CloseSend()
		report(t, b, "refused past 1 MiB encoded; the document still opens", fmt.Sprintf("refused at revision %d; a snapshot of %d bytes opens", revision, len(snap.GetSnapshot().GetContent())), "the document at its limit, which a new editor still opens")
		healthy(t, conn)
	})

	t.Run("Edits_on_a_large_document_are_paced_by_its_size", func(t *testing.T) {
		// The document is now at its limit (the test above): each edit
		// copies it, so the server charges each one the document's length
		// against dave's 16Mi characters a second, after a burst of 2Mi.
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		o, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, o.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		snap, err := o.Recv()
		require.NoError(t, err, "bob opening the document")
		o.CloseSend()
		chars := utf8.RuneCountInString(snap.GetSnapshot().GetContent())
		const edits, perSecond, burst = 100, 16 << 20, 2 << 20
		start := time.Now()
		require.NoError(t, floodEdits(ctx, conn, "dave-demo-token", "large-", edits), "dave's edits on the large document")
		took := time.Since(start)
		// Each edit costs at least the length bob saw; dave's own inserts
		// only add to it.
		want := time.Duration(float64(edits*chars-burst) / perSecond * float64(time.Second))
		require.GreaterOrEqual(t, took, want, "dave's %d edits on a document of %d characters took %v, want at least %v at %d characters a second after a burst of %d", edits, chars, took, want, perSecond, burst)
		for {
			if _, err := o.Recv(); err != nil {
				break
			}
		}
		report(t, b, "each edit charged the document's length: 16Mi characters a second per user, after a burst of 2Mi",
			fmt.Sprintf("%d edits on a document of %d characters took %.1fs (at least %.1fs)", edits, chars, took.Seconds(), want.Seconds()), "nothing")
		healthy(t, conn)
	})

	t.Run("Answers_to_streams_whose_window_never_opens_are_bounded", testZeroWindowStreams)

	t.Run("Oversized_metadata_is_refused", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := metadata.AppendToOutgoingContext(attackContext(t), "x-junk", strings.Repeat("j", 1<<20))
		_, err := pb.NewChatServiceClient(conn).Chat(ctx)
		if err == nil {
			// The stream may open before the refusal arrives.
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		}
		require.Error(t, err, "a call carrying 1 MiB of metadata")
		healthy(t, conn)
		report(t, b, "refused (16 KiB header limit)", fmt.Sprintf("refused: %v", status.Code(err)), "nothing: the same connection serves the next call")
	})
}

// floodEdits opens the demo's document as token's user and sends n
// inserts without waiting, while it reads the acks, until all n are
// acked.
func floodEdits(ctx context.Context, conn *grpc.ClientConn, token, prefix string, n int) error {
	e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, token))
	if err != nil {
		return err
	}
	if err := e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}); err != nil {
		return err
	}
	ev, err := e.Recv()
	if err != nil {
		return err
	}
	base := ev.GetSnapshot().GetRevision()
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: base, ClientOpId: fmt.Sprint(prefix, i),
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "d"}}}}}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- e.CloseSend()
	}()
	for acked := 0; acked < n; {
		ev, err := e.Recv()
		if err != nil {
			return fmt.Errorf("after %d of %d acks: %w", acked, n, err)
		}
		if ev.GetAck() != nil {
			acked++
		}
	}
	if err := <-sent; err != nil {
		return err
	}
	for {
		if _, err := e.Recv(); err != nil {
			return nil
		}
	}
}

// waitFor receives on a chat stream until done says so.
func waitFor(t *testing.T, s pb.ChatService_ChatClient, done func(*pb.ChatMessage) bool) {
	t.Helper()
	for {
		m, err := s.Recv()
		require.NoError(t, err, "chat stream")
		if done(m) {
			return
		}
	}
}
