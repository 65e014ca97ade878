package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	// The model-based tests draw the same sequences on every run (a
	// -rapid.seed on the command line still wins), so that a mistake fails
	// the same way each time. They shrink a failure to its shortest
	// sequence within seconds and print it; a file of it in testdata/
	// would only make a later run replay an old failure.
	flag.Set("rapid.seed", "48049")
	flag.Set("rapid.shrinktime", "5s")
	flag.Set("rapid.nofailfile", "true")
	goleak.VerifyTestMain(m)
}

const chatMethod = "/streaming.v1.ChatService/Chat"

var chatNow = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// frozenClock never moves, so a rate limiter's bucket never refills
// during a test: its limits are reached exactly.
func frozenClock() time.Time { return chatNow }

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

// chatEnv is one test's chat server, reachable over bufconn with tokens
// "<user>-token" for alice, bob, carol, mallory and a silent reader.
type chatEnv struct {
	*katatest.Server
	grpcServer *grpc.Server
	srv        *ChatServer
	tokens     *TokenStore
	clock      *katatest.Clock // the server's clock; it stands still until advanced
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
	clock := katatest.NewClock(chatNow)
	cfg.Now = clock.Now
	srv := NewChatServer(cfg)
	env := &chatEnv{srv: srv, tokens: tokens, clock: clock}
	// The server refuses a string that is not UTF-8 as a lesson server
	// does (serving.InvalidUTF8Options), so the tests can send one.
	opts = append([]katatest.Option{katatest.WithServerOptions(append(serving.InvalidUTF8Options(), grpc.ChainStreamInterceptor(AuthInterceptor(tokens, frozenClock)))...)}, opts...)
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		env.grpcServer = g
		pb.RegisterChatServiceServer(g, srv)
	}, opts...)
	env.client = pb.NewChatServiceClient(env.Conn)
	return env
}

// session is one open Chat stream as a test drives it. It receives only
// when the test asks, so a session the test does not read from is a
// client that never reads.
type session struct {
	*katatest.Peer[pb.ChatMessage, pb.ChatMessage]
	user string
}

func (env *chatEnv) open(t *testing.T, user string) *session {
	t.Helper()
	return env.openOn(t, env.client, user)
}

// openOwn opens a session on a connection of its own, as a separate
// client program would: what one client does not read cannot hold up
// another's connection.
func (env *chatEnv) openOwn(t *testing.T, user string, opts ...katatest.PeerOption) *session {
	t.Helper()
	conn, err := grpc.NewClient(katatest.Target, env.DialOptions()...)
	require.NoError(t, err, "grpc.NewClient()")
	t.Cleanup(func() { conn.Close() })
	return env.openOn(t, pb.NewChatServiceClient(conn), user, opts...)
}

func (env *chatEnv) openOn(t *testing.T, client pb.ChatServiceClient, user string, opts ...katatest.PeerOption) *session {
	t.Helper()
	return env.openWith(t, client, user, func(ctx context.Context) context.Context { return ctx }, opts...)
}

// openWith opens user's session under the context that derive makes
// from the stream's own (a deadline, say).
func (env *chatEnv) openWith(t *testing.T, client pb.ChatServiceClient, user string, derive func(context.Context) context.Context, opts ...katatest.PeerOption) *session {
	t.Helper()
	peer := katatest.OpenPeer(t, user, func(ctx context.Context) (pb.ChatService_ChatClient, error) {
		return client.Chat(WithToken(derive(ctx), user+"-token"))
	}, opts...)
	return &session{Peer: peer, user: user}
}

func (s *session) join(room string) {
	s.T().Helper()
	s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room})
	s.expect(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, "")
}

func (s *session) say(room, text string) {
	s.T().Helper()
	s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: text})
}

// next receives one message, failing the test if the stream ends.
func (s *session) next() *pb.ChatMessage {
	s.T().Helper()
	return s.Next()
}

// expect skips presence and history until a message of type t (with
// content containing text) arrives.
func (s *session) expect(t pb.MessageType, text string) *pb.ChatMessage {
	s.T().Helper()
	want := "a " + strings.TrimPrefix(t.String(), "MESSAGE_TYPE_") + " message"
	if text != "" {
		want += fmt.Sprintf(" containing %q", text)
	}
	return s.expectFor(t, text, want)
}

// expectFor is expect with want, what a failure says was awaited.
func (s *session) expectFor(t pb.MessageType, text, want string) *pb.ChatMessage {
	s.T().Helper()
	for {
		m := s.NextFor(want)
		if m.GetType() == t && strings.Contains(m.GetContent(), text) {
			return m
		}
		if m.GetType() == pb.MessageType_MESSAGE_TYPE_ERROR && t != pb.MessageType_MESSAGE_TYPE_ERROR {
			s.T().Fatalf("%s: got error %v %q, want %v", s.user, codes.Code(m.GetErrorCode()), m.GetContent(), t)
		}
	}
}

// expectError receives until an in-band ERROR and checks its code.
func (s *session) expectError(code codes.Code, what string) {
	s.T().Helper()
	m := s.expectFor(pb.MessageType_MESSAGE_TYPE_ERROR, "", fmt.Sprintf("an in-band %v error for %s", code, what))
	if codes.Code(m.GetErrorCode()) != code {
		s.T().Fatalf("%s: %s answered in-band with %v %q, want %v", s.user, what, codes.Code(m.GetErrorCode()), m.GetContent(), code)
	}
}

// rest receives, described, everything until the server ends the stream.
func (s *session) rest() []string {
	s.T().Helper()
	var got []string
	for {
		m, ended := s.NextOrEnd()
		if ended {
			return got
		}
		got = append(got, describe([]*pb.ChatMessage{m})...)
	}
}

// finish half-closes and returns how the server ended the stream.
func (s *session) finish() error {
	s.T().Helper()
	return s.Finish()
}

func wantHubEmpty(t *testing.T, env *chatEnv) {
	t.Helper()
	env.WaitIdle(t)
	if rooms, memberships, rest := env.srv.hub.counts(); rooms+memberships+rest != 0 {
		t.Fatalf("after the stream ended the hub holds %d rooms, %d memberships, %d connections; want none", rooms, memberships, rest)
	}
}

const playMethod = "/streaming.v1.GameService/Play"

// describeUpdates renders updates as "snapshot 3" and "error 7" (the
// refused move's sequence).
func describeUpdates(shared []*sharedUpdate) []string {
	out := []string{}
	for _, s := range shared {
		u := s.Message()
		if s := u.GetSnapshot(); s != nil {
			out = append(out, fmt.Sprint("snapshot ", s.GetTick()))
		} else {
			out = append(out, fmt.Sprint("error ", u.GetError().GetSequence()))
		}
	}
	return out
}

// describePlayers renders a snapshot's players as "alice Alice (500, 500) #2".
func describePlayers(s *pb.GameSnapshot) []string {
	out := []string{}
	for _, p := range s.GetPlayers() {
		out = append(out, fmt.Sprintf("%s %s %v #%d", p.GetPlayerId(), p.GetName(), positionFromProto(p.GetPosition()), p.GetLastSequence()))
	}
	return out
}

// newTestGame returns a game server whose rate limiter never refills.
func newTestGame(cfg GameConfig) *GameServer {
	cfg.Now = frozenClock
	return NewGameServer(cfg)
}

// tickNow calls s.Tick and fails the test if it does not return: a tick
// must never wait for a player.
func tickNow(t *testing.T, s *GameServer) { tickOrRescue(t, s, nil) }

// tickOrRescue is tickNow that, when the tick is stuck, calls rescue to
// let it finish before failing, so the test's cleanup is not stuck too.
func tickOrRescue(t *testing.T, s *GameServer, rescue func(done <-chan struct{})) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Tick()
	}()
	select {
	case <-done:
	case <-time.After(katatest.WaitTimeout):
		if rescue != nil {
			rescue(done)
		}
		t.Fatalf("Tick() did not return within %v, want a tick never to wait for a player (task 6)", katatest.WaitTimeout)
	}
}

// inputLog counts, per test stream, how often the Play handler has asked
// for the next input, and records how the handler ended. The reader asks
// for input n+1 only once it has handled input n, so a test can wait
// until the server has handled what it sent without sleeping.
type inputLog struct {
	mu      sync.Mutex
	recvs   map[string]int
	ended   map[string]error
	changed chan struct{}
}

// streamLabel is the metadata key a test stream is known by.
const streamLabel = "kata-stream"

func newInputLog() *inputLog {
	return &inputLog{recvs: map[string]int{}, ended: map[string]error{}, changed: make(chan struct{})}
}

func (l *inputLog) update(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *inputLog) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	label := strings.Join(md.Get(streamLabel), "")
	err := handler(srv, &countingStream{ServerStream: ss, onRecv: func() { l.update(func() { l.recvs[label]++ }) }})
	l.update(func() { l.ended[label] = err })
	return err
}

// countingStream calls onRecv each time the handler asks for a message.
type countingStream struct {
	grpc.ServerStream
	onRecv func()
}

func (s *countingStream) RecvMsg(m any) error {
	s.onRecv()
	return s.ServerStream.RecvMsg(m)
}

// waitHandled waits until the handler of stream label has handled n
// inputs, and returns false, with the handler's result, if it ends first.
func (l *inputLog) waitHandled(t testing.TB, label string, n int) (handled bool, handlerErr error) {
	t.Helper()
	deadline := time.After(katatest.WaitTimeout)
	for {
		l.mu.Lock()
		recvs, changed := l.recvs[label], l.changed
		err, ended := l.ended[label]
		l.mu.Unlock()
		switch {
		case recvs > n:
			return true, nil
		case ended:
			return false, err
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("Play(%s) handled %d of %d inputs within %v", label, max(recvs-1, 0), n, katatest.WaitTimeout)
		}
	}
}

// gameEnv is one test's game server over bufconn, with the tokens of
// chatEnv.
type gameEnv struct {
	*katatest.Server
	grpcServer *grpc.Server
	srv        *GameServer
	client     pb.GameServiceClient
	inputs     *inputLog
	ticks      int64
	// rescue, when set, unblocks a stuck tick (see tickOrRescue).
	rescue func(done <-chan struct{})
}

func startGame(t *testing.T, cfg GameConfig, opts ...katatest.Option) *gameEnv {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last
	tokens := NewTokenStore()
	for _, u := range []string{"alice", "bob", "carol", "mallory", "silent"} {
		tokens.Add(u+"-token", Identity{User: u, Expires: chatNow.Add(time.Hour)})
	}
	env := &gameEnv{srv: newTestGame(cfg), inputs: newInputLog()}
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		env.grpcServer = g
		pb.RegisterGameServiceServer(g, env.srv)
	},
		append([]katatest.Option{
			katatest.WithStreamInterceptor(env.inputs.intercept),
			katatest.WithServerOptions(grpc.ChainStreamInterceptor(AuthInterceptor(tokens, frozenClock))),
		}, opts...)...)
	env.client = pb.NewGameServiceClient(env.Conn)
	return env
}

// tick makes one tick and returns its number.
func (env *gameEnv) tick(t *testing.T) int64 {
	t.Helper()
	tickOrRescue(t, env.srv, env.rescue)
	env.ticks++
	return env.ticks
}

// gamePlayer is one open Play stream as a test drives it. A player that
// reads receives continuously, as a game client's receive loop does; one
// that does not never calls Recv.
type gamePlayer struct {
	*katatest.Peer[pb.PlayerInput, pb.GameUpdate]
	env   *gameEnv
	label string
	sent  int
}

// open opens user's stream on the shared connection, known as label.
func (env *gameEnv) open(t *testing.T, user string) *gamePlayer {
	t.Helper()
	return env.openAs(t, user, user, env.client, true)
}

func (env *gameEnv) openAs(t *testing.T, label, user string, client pb.GameServiceClient, reads bool) *gamePlayer {
	t.Helper()
	var opts []katatest.PeerOption
	if reads {
		opts = append(opts, katatest.ReadAhead(1024))
	}
	peer := katatest.OpenPeer(t, label, func(ctx context.Context) (pb.GameService_PlayClient, error) {
		return client.Play(metadata.AppendToOutgoingContext(WithToken(ctx, user+"-token"), streamLabel, label))
	}, opts...)
	return &gamePlayer{Peer: peer, env: env, label: label}
}

// send sends in without waiting for the server to handle it.
func (p *gamePlayer) send(in *pb.PlayerInput) {
	p.T().Helper()
	if err := p.TrySend(in); err != nil {
		_, handlerErr := p.env.inputs.waitHandled(p.T(), p.label, p.sent+1)
		p.T().Fatalf("%s: Send(%v) = %v; Play ended with %v", p.label, in, err, handlerErr)
	}
	p.sent++
}

// synced waits until the server has handled every input p sent.
func (p *gamePlayer) synced() {
	p.T().Helper()
	if ok, err := p.env.inputs.waitHandled(p.T(), p.label, p.sent); !ok {
		p.T().Fatalf("Play(%s) = %v after handling fewer than the %d inputs sent, want it to go on", p.label, err, p.sent)
	}
}

func (p *gamePlayer) join(name string) {
	p.T().Helper()
	p.send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: name}}})
	p.synced()
}

func moveInput(sequence int64, x, y int32) *pb.PlayerInput {
	return &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: sequence, Target: &pb.Position{X: x, Y: y}}}}
}

func (p *gamePlayer) move(sequence int64, x, y int32) {
	p.T().Helper()
	p.send(moveInput(sequence, x, y))
}

// snapshot receives until the snapshot of tick (or a later one) and
// returns it with the errors received before it.
func (p *gamePlayer) snapshot(tick int64) ([]*pb.GameError, *pb.GameSnapshot) {
	p.T().Helper()
	var errs []*pb.GameError
	for {
		u := p.Next()
		if s := u.GetSnapshot(); s != nil && s.GetTick() == 0 {
			// Waiting on would wait out the timeout in every test.
			p.T().Fatalf("%s: received a snapshot of tick 0, want every snapshot to carry its tick (1 for the first): Tick counts the tick (s.tick++) before it builds the snapshot", p.label)
		}
		if s := u.GetSnapshot(); s != nil && s.GetTick() >= tick {
			return errs, s
		}
		if e := u.GetError(); e != nil {
			errs = append(errs, e)
		}
	}
}

// players receives until the snapshot of tick and describes its players,
// failing the test on an in-band error.
func (p *gamePlayer) players(tick int64) []string {
	p.T().Helper()
	errs, s := p.snapshot(tick)
	for _, e := range errs {
		p.T().Fatalf("%s: got error %v %q before the snapshot of tick %d, want none", p.label, codes.Code(e.GetCode()), e.GetMessage(), tick)
	}
	return describePlayers(s)
}

// expectError receives until an in-band error and checks its code.
func (p *gamePlayer) expectError(code codes.Code, what string) *pb.GameError {
	p.T().Helper()
	for {
		if e := p.NextFor(fmt.Sprintf("an in-band %v error for %s", code, what)).GetError(); e != nil {
			if codes.Code(e.GetCode()) != code {
				p.T().Fatalf("%s: %s answered in-band with %v %q, want %v", p.label, what, codes.Code(e.GetCode()), e.GetMessage(), code)
			}
			return e
		}
	}
}

// quiet fails the test if an update arrives within katatest.NeverWindow.
func (p *gamePlayer) quiet(why string) {
	p.T().Helper()
	p.Quiet(why + " before the next tick")
}

func wantGameEmpty(t *testing.T, env *gameEnv) {
	t.Helper()
	env.WaitIdle(t)
	if players, streams := env.srv.counts(); players+streams != 0 {
		t.Fatalf("after every stream ended the game holds %d players and %d streams, want none", players, streams)
	}
}
