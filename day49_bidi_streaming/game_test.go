package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

const playMethod = "/streaming.v1.GameService/Play"

func snapshotUpdate(tick int64) *pb.GameUpdate {
	return &pb.GameUpdate{Update: &pb.GameUpdate_Snapshot{Snapshot: &pb.GameSnapshot{Tick: tick}}}
}

func errorUpdate(sequence int64) *pb.GameUpdate {
	return &pb.GameUpdate{Update: &pb.GameUpdate_Error{Error: &pb.GameError{Code: int32(codes.InvalidArgument), Sequence: sequence}}}
}

// describeUpdates renders updates as "snapshot 3" and "error 7" (the
// refused move's sequence).
func describeUpdates(us []*pb.GameUpdate) []string {
	out := []string{}
	for _, u := range us {
		if s := u.GetSnapshot(); s != nil {
			out = append(out, fmt.Sprint("snapshot ", s.GetTick()))
		} else {
			out = append(out, fmt.Sprint("error ", u.GetError().GetSequence()))
		}
	}
	return out
}

// postNow calls m.post and fails the test if it does not return: posting
// must never wait for the writer.
func postNow(t *testing.T, m *snapshotMailbox, u *pb.GameUpdate) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.post(u)
	}()
	select {
	case <-done:
	case <-time.After(katatest.TestTimeout):
		t.Fatalf("post(%s) to a mailbox nobody takes from blocked, want it to return at once (task 5)", describeUpdates([]*pb.GameUpdate{u}))
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

// joined returns a player in the game without a stream, as Play's join
// would make it.
func joined(t *testing.T, s *GameServer, id string) *player {
	t.Helper()
	p := newPlayer(id, s.cfg)
	if err := s.join(p, strings.ToUpper(id[:1])+id[1:]); err != nil {
		t.Fatalf("join(%s) = %v, want nil", id, err)
	}
	return p
}

// queue puts a move in p's queue, as handle would.
func queue(s *GameServer, p *player, sequence int64, x, y int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.queued = append(p.queued, queuedMove{sequence: sequence, target: position{x, y}})
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
	case <-time.After(katatest.TestTimeout):
		if rescue != nil {
			rescue(done)
		}
		t.Fatalf("Tick() did not return within %v, want a tick never to wait for a player (task 6)", katatest.TestTimeout)
	}
}

// tookSnapshot takes p's mailbox and returns the errors before the
// snapshot, and the snapshot, failing the test without one.
func tookSnapshot(t *testing.T, p *player) ([]*pb.GameError, *pb.GameSnapshot) {
	t.Helper()
	got := p.mailbox.take()
	var errs []*pb.GameError
	for i, u := range got {
		if s := u.GetSnapshot(); s != nil {
			if i != len(got)-1 {
				t.Fatalf("%s's mailbox holds %q, want the errors, then one snapshot", p.id, describeUpdates(got))
			}
			return errs, s
		}
		errs = append(errs, u.GetError())
	}
	t.Fatalf("after Tick() %s's mailbox holds %q, want a snapshot (task 6, with task 5's mailbox)", p.id, describeUpdates(got))
	return nil, nil
}

func TestGameTick(t *testing.T) {
	t.Run("Applies_queued_moves_in_order", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		alice := joined(t, s, "alice")
		queue(s, alice, 1, 503, 500)
		queue(s, alice, 2, 506, 504)
		tickNow(t, s)
		errs, snap := tookSnapshot(t, alice)
		if want := []string{"alice Alice (506, 504) #2"}; len(errs) != 0 || snap.GetTick() != 1 || !slices.Equal(describePlayers(snap), want) {
			t.Fatalf("Tick() after moves 1 and 2 from (500, 500): errors %v, snapshot of tick %d with %q; want no error, tick 1, %q", errs, snap.GetTick(), describePlayers(snap), want)
		}
		tickNow(t, s)
		if _, snap := tookSnapshot(t, alice); snap.GetTick() != 2 || !slices.Equal(describePlayers(snap), []string{"alice Alice (506, 504) #2"}) {
			t.Fatalf("a second Tick() without moves gave tick %d with %q, want tick 2 and nothing moved", snap.GetTick(), describePlayers(snap))
		}
	})

	t.Run("Refuses_out_of_bounds_and_teleports", func(t *testing.T) {
		s := newTestGame(GameConfig{WorldSize: 100, MaxSpeed: 10})
		alice := joined(t, s, "alice")
		queue(s, alice, 1, 50, 100) // out of bounds
		queue(s, alice, 2, 50, -1)  // out of bounds
		queue(s, alice, 3, 61, 50)  // 11 from (50, 50): a teleport
		queue(s, alice, 4, 56, 58)  // exactly 10 away: allowed
		queue(s, alice, 5, 45, 50)  // 5 from the last move, but 10 from where the tick began: allowed
		queue(s, alice, 6, 39, 50)  // 11 from where the tick began
		tickNow(t, s)
		errs, snap := tookSnapshot(t, alice)
		var refused []string
		for _, e := range errs {
			refused = append(refused, fmt.Sprintf("%d %v", e.GetSequence(), codes.Code(e.GetCode())))
		}
		if want := []string{"1 InvalidArgument", "2 InvalidArgument", "3 InvalidArgument", "6 InvalidArgument"}; !slices.Equal(refused, want) {
			t.Fatalf("Tick() refused moves %q, want %q (out of bounds, teleports past MaxSpeed=10 from where the tick began)", refused, want)
		}
		if !strings.Contains(errs[0].GetMessage(), "99") || !strings.Contains(errs[2].GetMessage(), "10") {
			t.Fatalf("refusals say %q and %q, want them to name the world's edge (99) and the maximum speed (10)", errs[0].GetMessage(), errs[2].GetMessage())
		}
		if got, want := describePlayers(snap), []string{"alice Alice (45, 50) #6"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot after the tick = %q, want %q: refused moves leave the player where it was, and count as processed", got, want)
		}
	})

	t.Run("Every_player_gets_the_same_snapshot", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		carol, alice, bob := joined(t, s, "carol"), joined(t, s, "alice"), joined(t, s, "bob")
		queue(s, bob, 7, 500, 495)
		tickNow(t, s)
		want := []string{"alice Alice (500, 500) #0", "bob Bob (500, 495) #7", "carol Carol (500, 500) #0"}
		for _, p := range []*player{alice, bob, carol} {
			if _, snap := tookSnapshot(t, p); !slices.Equal(describePlayers(snap), want) {
				t.Fatalf("%s's snapshot = %q, want %q (every player, ordered by id)", p.id, describePlayers(snap), want)
			}
		}
	})

	t.Run("Never_waits_for_a_player_that_does_not_read", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		silent := joined(t, s, "silent")
		for range 1000 {
			tickNow(t, s)
		}
		if n := silent.mailbox.pending(); n != 1 {
			t.Fatalf("after 1000 ticks nobody took, the mailbox holds %d updates, want 1: the latest snapshot (task 6, with task 5's mailbox)", n)
		}
		if _, snap := tookSnapshot(t, silent); snap.GetTick() != 1000 {
			t.Fatalf("the mailbox holds the snapshot of tick %d, want the latest, 1000", snap.GetTick())
		}
	})

	t.Run("Run_ticks_on_its_ticker_until_cancelled", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		alice := joined(t, s, "alice")
		ticks := make(chan time.Time) // unbuffered: a send returns once Run has the tick
		ctx, cancel := context.WithCancel(katatest.Context(t))
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.runTicks(ctx, ticks)
		}()
		for i := range 3 {
			select {
			case ticks <- chatNow:
			case <-time.After(katatest.TestTimeout):
				t.Fatalf("runTicks did not take tick %d within %v: the previous tick is stuck (task 6)", i+1, katatest.TestTimeout)
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(katatest.TestTimeout):
			t.Fatal("runTicks did not return after its context ended")
		}
		if _, snap := tookSnapshot(t, alice); snap.GetTick() != 3 {
			t.Fatalf("after 3 ticker ticks the latest snapshot is of tick %d, want 3", snap.GetTick())
		}
	})
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
func (l *inputLog) waitHandled(t *testing.T, label string, n int) (handled bool, handlerErr error) {
	t.Helper()
	deadline := time.After(katatest.TestTimeout)
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
			t.Fatalf("Play(%s) handled %d of %d inputs within %v", label, max(recvs-1, 0), n, katatest.TestTimeout)
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

func startGame(t *testing.T, cfg GameConfig) *gameEnv {
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
		katatest.WithStreamInterceptor(env.inputs.intercept),
		katatest.WithServerOptions(grpc.ChainStreamInterceptor(AuthInterceptor(tokens, frozenClock))))
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

// gamePlayer is one open Play stream as a test drives it. A receiver
// goroutine puts what arrives on updates, unless the player never reads.
type gamePlayer struct {
	t       *testing.T
	env     *gameEnv
	label   string
	stream  pb.GameService_PlayClient
	cancel  context.CancelFunc
	sent    int
	updates chan *pb.GameUpdate
	ended   chan struct{}
	err     error // the stream's end, once ended is closed
}

// open opens user's stream on the shared connection, known as label.
func (env *gameEnv) open(t *testing.T, user string) *gamePlayer {
	t.Helper()
	return env.openAs(t, user, user, env.client, true)
}

func (env *gameEnv) openAs(t *testing.T, label, user string, client pb.GameServiceClient, reads bool) *gamePlayer {
	t.Helper()
	ctx, cancel := context.WithCancel(katatest.Context(t))
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(WithToken(ctx, user+"-token"), streamLabel, label)
	stream, err := client.Play(ctx)
	katatest.WantCode(t, err, codes.OK, "Play(%s)", user)
	p := &gamePlayer{t: t, env: env, label: label, stream: stream, cancel: cancel, ended: make(chan struct{})}
	if reads {
		p.updates = make(chan *pb.GameUpdate, 1024)
		go func() {
			defer close(p.ended)
			for {
				u, err := stream.Recv()
				if err != nil {
					p.err = err
					return
				}
				select {
				case p.updates <- u:
				case <-ctx.Done():
				}
			}
		}()
	}
	return p
}

// send sends in without waiting for the server to handle it.
func (p *gamePlayer) send(in *pb.PlayerInput) {
	p.t.Helper()
	if err := p.stream.Send(in); err != nil {
		_, handlerErr := p.env.inputs.waitHandled(p.t, p.label, p.sent+1)
		p.t.Fatalf("%s: Send(%v) = %v; Play ended with %v", p.label, in, err, handlerErr)
	}
	p.sent++
}

// synced waits until the server has handled every input p sent.
func (p *gamePlayer) synced() {
	p.t.Helper()
	if ok, err := p.env.inputs.waitHandled(p.t, p.label, p.sent); !ok {
		p.t.Fatalf("Play(%s) = %v after handling fewer than the %d inputs sent, want it to go on", p.label, err, p.sent)
	}
}

func (p *gamePlayer) join(name string) {
	p.t.Helper()
	p.send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: name}}})
	p.synced()
}

func (p *gamePlayer) move(sequence int64, x, y int32) {
	p.t.Helper()
	p.send(&pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: sequence, Target: &pb.Position{X: x, Y: y}}}})
}

// next returns the next update, failing the test if the stream ends.
func (p *gamePlayer) next() *pb.GameUpdate {
	p.t.Helper()
	select {
	case u := <-p.updates:
		return u
	case <-p.ended:
		select {
		case u := <-p.updates:
			return u
		default:
		}
		p.t.Fatalf("%s: the stream ended with %v, want an update", p.label, p.err)
	case <-time.After(katatest.TestTimeout):
		p.t.Fatalf("%s: no update within %v", p.label, katatest.TestTimeout)
	}
	return nil
}

// snapshot receives until the snapshot of tick (or a later one) and
// returns it with the errors received before it.
func (p *gamePlayer) snapshot(tick int64) ([]*pb.GameError, *pb.GameSnapshot) {
	p.t.Helper()
	var errs []*pb.GameError
	for {
		u := p.next()
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
	p.t.Helper()
	errs, s := p.snapshot(tick)
	for _, e := range errs {
		p.t.Fatalf("%s: got error %v %q before the snapshot of tick %d, want none", p.label, codes.Code(e.GetCode()), e.GetMessage(), tick)
	}
	return describePlayers(s)
}

// expectError receives until an in-band error and checks its code.
func (p *gamePlayer) expectError(code codes.Code, what string) *pb.GameError {
	p.t.Helper()
	for {
		if e := p.next().GetError(); e != nil {
			if codes.Code(e.GetCode()) != code {
				p.t.Fatalf("%s: %s answered in-band with %v %q, want %v", p.label, what, codes.Code(e.GetCode()), e.GetMessage(), code)
			}
			return e
		}
	}
}

// quiet fails the test if an update arrives within katatest.NeverWindow.
func (p *gamePlayer) quiet(why string) {
	p.t.Helper()
	select {
	case u := <-p.updates:
		p.t.Fatalf("%s received %q %s, want nothing until the next tick", p.label, describeUpdates([]*pb.GameUpdate{u}), why)
	case <-time.After(katatest.NeverWindow):
	}
}

// status returns how the server ended the stream (nil for OK).
func (p *gamePlayer) status() error {
	p.t.Helper()
	select {
	case <-p.ended:
	case <-time.After(katatest.TestTimeout):
		p.t.Fatalf("%s: the stream did not end within %v", p.label, katatest.TestTimeout)
	}
	if errors.Is(p.err, io.EOF) {
		return nil
	}
	return p.err
}

// finish half-closes and returns how the server ended the stream.
func (p *gamePlayer) finish() error {
	p.t.Helper()
	if err := p.stream.CloseSend(); err != nil {
		p.t.Fatalf("%s: CloseSend() = %v", p.label, err)
	}
	return p.status()
}

func wantGameEmpty(t *testing.T, env *gameEnv) {
	t.Helper()
	env.WaitIdle(t)
	if players, streams := env.srv.counts(); players+streams != 0 {
		t.Fatalf("after every stream ended the game holds %d players and %d streams, want none", players, streams)
	}
}

func TestGame(t *testing.T) {
	t.Run("Moves_are_applied_on_the_tick", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("Alice")
		bob.join("Bob")
		tick := env.tick(t)
		want := []string{"alice Alice (500, 500) #0", "bob Bob (500, 500) #0"}
		for _, p := range []*gamePlayer{alice, bob} {
			if got := p.players(tick); !slices.Equal(got, want) {
				t.Fatalf("%s's first snapshot = %q, want %q (both at the centre)", p.label, got, want)
			}
		}
		for i := range 5 {
			alice.move(int64(i+1), 501+int32(i), 500)
		}
		alice.synced()
		bob.quiet("after alice's moves")
		alice.quiet("after her own moves")
		tick = env.tick(t)
		want = []string{"alice Alice (505, 500) #5", "bob Bob (500, 500) #0"}
		for _, p := range []*gamePlayer{alice, bob} {
			if got := p.players(tick); !slices.Equal(got, want) {
				t.Fatalf("%s's snapshot after the tick = %q, want %q: alice's 5 moves applied in order", p.label, got, want)
			}
		}
	})

	t.Run("Snapshot_has_every_player_and_last_sequence", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice, bob, carol := env.open(t, "alice"), env.open(t, "bob"), env.open(t, "carol")
		carol.join("Carol")
		alice.join("Alice")
		bob.join("Bob")
		alice.move(1, 503, 500)
		alice.move(2, 503, 504)
		bob.move(41, 490, 500)
		alice.synced()
		bob.synced()
		tick := env.tick(t)
		want := []string{"alice Alice (503, 504) #2", "bob Bob (490, 500) #41", "carol Carol (500, 500) #0"}
		for _, p := range []*gamePlayer{alice, bob, carol} {
			if got := p.players(tick); !slices.Equal(got, want) {
				t.Fatalf("%s's snapshot of tick %d = %q, want %q (every player by id, with position and last sequence)", p.label, tick, got, want)
			}
		}
	})

	t.Run("Player_id_comes_from_the_token", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		mallory, alice := env.open(t, "mallory"), env.open(t, "alice")
		mallory.join("alice")
		alice.join("Alice")
		mallory.move(1, 495, 500)
		mallory.synced()
		tick := env.tick(t)
		want := []string{"alice Alice (500, 500) #0", "mallory alice (495, 500) #1"}
		if got := alice.players(tick); !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q: mallory is mallory whatever name she picks, and her move moves her", got, want)
		}
		again := env.openAs(t, "alice#2", "alice", env.client, true)
		again.send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "Alice again"}}})
		again.expectError(codes.FailedPrecondition, "a second stream of alice joining")
	})

	t.Run("No_token", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		stream, err := env.client.Play(katatest.Context(t))
		katatest.WantCode(t, err, codes.OK, "Play()")
		_, err = stream.Recv()
		katatest.WantCode(t, err, codes.Unauthenticated, "Play() without a token")
		// A valid token gets through to your handler.
		alice := env.open(t, "alice")
		alice.join("Alice")
		if got := alice.players(env.tick(t)); len(got) != 1 {
			t.Fatalf("alice's snapshot = %q, want alice alone", got)
		}
	})

	t.Run("Move_before_join", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice := env.open(t, "alice")
		alice.move(1, 501, 500)
		if e := alice.expectError(codes.FailedPrecondition, "a move before join"); e.GetSequence() != 1 {
			t.Fatalf("the refusal names move %d, want 1", e.GetSequence())
		}
		alice.join("Alice")
		alice.move(2, 501, 500)
		alice.synced()
		if got, want := alice.players(env.tick(t)), []string{"alice Alice (501, 500) #2"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot after joining and moving = %q, want %q: the stream goes on", got, want)
		}
	})

	t.Run("Out_of_bounds", func(t *testing.T) {
		env := startGame(t, GameConfig{WorldSize: 100, MaxSpeed: 1000})
		alice := env.open(t, "alice")
		alice.join("Alice")
		alice.move(1, 100, 50)
		alice.move(2, 50, -1)
		alice.synced()
		errs, snap := alice.snapshot(env.tick(t))
		if len(errs) != 2 || codes.Code(errs[0].GetCode()) != codes.InvalidArgument || codes.Code(errs[1].GetCode()) != codes.InvalidArgument {
			t.Fatalf("moves to (100, 50) and (50, -1) in a 100 x 100 world were answered with %v, want two in-band InvalidArgument errors", errs)
		}
		if !strings.Contains(errs[0].GetMessage(), "99") {
			t.Fatalf("the refusal says %q, want it to name the world's edge, 99", errs[0].GetMessage())
		}
		if got, want := describePlayers(snap), []string{"alice Alice (50, 50) #2"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q: refused moves leave alice where she was and count as processed", got, want)
		}
		alice.move(3, 99, 0)
		alice.synced()
		if got, want := alice.players(env.tick(t)), []string{"alice Alice (99, 0) #3"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot after a move to the corner = %q, want %q", got, want)
		}
	})

	t.Run("Teleport", func(t *testing.T) {
		env := startGame(t, GameConfig{MaxSpeed: 10})
		alice := env.open(t, "alice")
		alice.join("Alice")
		alice.move(1, 520, 500)
		alice.move(2, 506, 508) // exactly the maximum speed
		alice.synced()
		errs, snap := alice.snapshot(env.tick(t))
		if len(errs) != 1 || codes.Code(errs[0].GetCode()) != codes.InvalidArgument || errs[0].GetSequence() != 1 {
			t.Fatalf("a move 20 units away with MaxSpeed=10 was answered with %v, want one in-band InvalidArgument for move 1", errs)
		}
		katatest.WantMessage(t, status.Error(codes.InvalidArgument, errs[0].GetMessage()), "the teleport's refusal")("10")
		if got, want := describePlayers(snap), []string{"alice Alice (506, 508) #2"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q: the teleport refused, the move of exactly MaxSpeed applied", got, want)
		}
	})

	t.Run("Sequence_must_increase", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice := env.open(t, "alice")
		alice.join("Alice")
		alice.move(5, 501, 500)
		alice.move(5, 502, 500)
		alice.expectError(codes.InvalidArgument, "a repeated sequence")
		alice.move(3, 502, 500)
		alice.expectError(codes.InvalidArgument, "a smaller sequence")
		alice.synced()
		if got, want := alice.players(env.tick(t)), []string{"alice Alice (501, 500) #5"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q", got, want)
		}
	})

	t.Run("Rate_limit_answers_in_band", func(t *testing.T) {
		env := startGame(t, GameConfig{Burst: 3, FloodLimit: 100})
		alice := env.open(t, "alice")
		alice.join("Alice") // one of the burst
		alice.move(1, 501, 500)
		alice.move(2, 502, 500)
		alice.move(3, 503, 500) // over the limit
		alice.synced()
		errs, snap := alice.snapshot(env.tick(t))
		if len(errs) != 1 || codes.Code(errs[0].GetCode()) != codes.ResourceExhausted || errs[0].GetSequence() != 3 {
			t.Fatalf("a move over the rate limit (Burst=3) was answered with %v, want one in-band ResourceExhausted for move 3", errs)
		}
		if got, want := describePlayers(snap), []string{"alice Alice (502, 500) #2"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q: the refused move never reaches the game", got, want)
		}
	})

	t.Run("Flood_ends_the_stream", func(t *testing.T) {
		env := startGame(t, GameConfig{Burst: 2, FloodLimit: 5})
		mallory := env.open(t, "mallory")
		mallory.join("Mallory")
		for i := range 10 {
			if err := mallory.stream.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: int64(i + 1), Target: &pb.Position{X: 500, Y: 500}}}}); err != nil {
				break // the server has ended the stream
			}
		}
		if handled, _ := env.inputs.waitHandled(t, "mallory", 11); handled {
			t.Fatal("Play(mallory) handled all 11 inputs and went on, want the stream ended after FloodLimit=5 refusals in a row")
		}
		katatest.WantCode(t, mallory.status(), codes.ResourceExhausted, "Play(mallory) flooding past FloodLimit=5")
		wantGameEmpty(t, env)
	})

	t.Run("Queued_moves_are_bounded", func(t *testing.T) {
		env := startGame(t, GameConfig{MaxQueuedMoves: 2})
		alice := env.open(t, "alice")
		alice.join("Alice")
		alice.move(1, 501, 500)
		alice.move(2, 502, 500)
		alice.move(3, 503, 500)
		alice.synced()
		errs, snap := alice.snapshot(env.tick(t))
		if len(errs) != 1 || codes.Code(errs[0].GetCode()) != codes.ResourceExhausted || !strings.Contains(errs[0].GetMessage(), "2") {
			t.Fatalf("a third move queued with MaxQueuedMoves=2 was answered with %v, want one in-band ResourceExhausted naming the limit", errs)
		}
		if got, want := describePlayers(snap), []string{"alice Alice (502, 500) #2"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot = %q, want %q", got, want)
		}
	})

	t.Run("Player_that_never_reads_does_not_slow_the_tick", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		// Forty bots make each snapshot about 2 KiB. They have no stream:
		// a goroutine of the test reads their mailboxes, as a writer would.
		ctx := katatest.Context(t)
		for i := range 40 {
			p := newPlayer(fmt.Sprintf("bot-%02d", i), env.srv.cfg)
			if err := env.srv.join(p, strings.Repeat("b", maxNameRunes)); err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					select {
					case <-p.mailbox.ready:
						p.mailbox.take()
					case <-ctx.Done():
						return
					}
				}
			}()
		}
		// silent's own connection has a fixed 64 KiB window, so the server
		// soon cannot send it anything more: its writer is stuck in Send.
		conn, err := grpc.NewClient(katatest.Target, append(env.DialOptions(), grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		silent := env.openAs(t, "silent", "silent", pb.NewGameServiceClient(conn), false)
		silent.join("Silent")
		env.srv.mu.Lock()
		p := env.srv.players["silent"]
		env.srv.mu.Unlock()
		if p == nil {
			t.Fatal("silent is not in the game after joining")
		}
		// A tick stuck on silent is a failure; taking silent's updates
		// then lets it finish, so the server can stop.
		env.rescue = func(done <-chan struct{}) {
			for {
				select {
				case <-p.mailbox.ready:
					p.mailbox.take()
				case <-done:
					return
				}
			}
		}
		alice := env.open(t, "alice")
		alice.join("Alice")
		for range 300 {
			tick := env.tick(t)
			if _, snap := alice.snapshot(tick); snap.GetTick() != tick || len(snap.GetPlayers()) != 42 {
				t.Fatalf("alice's snapshot after tick %d is of tick %d with %d players, want the fresh one with all 42", tick, snap.GetTick(), len(snap.GetPlayers()))
			}
		}
		if n := p.mailbox.pending(); n > 1 {
			t.Fatalf("after 300 ticks silent's mailbox holds %d updates, want at most 1: the latest snapshot, never a backlog", n)
		}
		silent.cancel()
		env.WaitInFlight(t, playMethod, 1)
	})

	t.Run("Leaving_player_is_gone_from_next_snapshot", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice, bob, carol := env.open(t, "alice"), env.open(t, "bob"), env.open(t, "carol")
		alice.join("Alice")
		bob.join("Bob")
		carol.join("Carol")
		if got := alice.players(env.tick(t)); len(got) != 3 {
			t.Fatalf("snapshot = %q, want 3 players", got)
		}
		bob.cancel()
		env.WaitInFlight(t, playMethod, 2)
		if got, want := alice.players(env.tick(t)), []string{"alice Alice (500, 500) #0", "carol Carol (500, 500) #0"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot after bob cancelled = %q, want %q", got, want)
		}
		katatest.WantCode(t, carol.finish(), codes.OK, "carol's stream after CloseSend")
		env.WaitInFlight(t, playMethod, 1)
		if got, want := alice.players(env.tick(t)), []string{"alice Alice (500, 500) #0"}; !slices.Equal(got, want) {
			t.Fatalf("snapshot after carol closed her side = %q, want %q", got, want)
		}
	})

	t.Run("Shutdown_ends_live_streams_with_Unavailable", func(t *testing.T) {
		env := startGame(t, GameConfig{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("Alice")
		bob.join("Bob")
		forced := make(chan bool, 1)
		go func() { forced <- serving.GracefulStop(env.grpcServer, env.srv.Shutdown, katatest.TestTimeout) }()
		for _, p := range []*gamePlayer{alice, bob} {
			katatest.WantCode(t, p.status(), codes.Unavailable, "%s's stream when the server shuts down", p.label)
		}
		if <-forced {
			t.Fatal("the graceful stop had to be forced, want the game streams ended so it completes by itself")
		}
		wantGameEmpty(t, env)
	})

	t.Run("Everything_is_freed_when_streams_end", func(t *testing.T) {
		env := startGame(t, GameConfig{Burst: 2, FloodLimit: 3})
		for i := range 20 {
			p := env.openAs(t, fmt.Sprint("carol-", i), "carol", env.client, true)
			p.join("Carol")
			switch i % 3 {
			case 0:
				p.cancel()
				env.WaitInFlight(t, playMethod, 0)
			case 1:
				katatest.WantCode(t, p.finish(), codes.OK, "Play(carol) after CloseSend")
			case 2:
				for j := range 5 {
					if err := p.stream.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: int64(j + 1), Target: &pb.Position{X: 500, Y: 500}}}}); err != nil {
						break
					}
				}
				katatest.WantCode(t, p.status(), codes.ResourceExhausted, "Play(carol) flooding")
			}
			env.tick(t)
		}
		wantGameEmpty(t, env)
	})
}
