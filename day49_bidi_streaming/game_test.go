package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGame(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Moves_are_applied_on_the_tick", testGameMovesAreAppliedOnTheTick},
		{"Snapshot_has_every_player_and_last_sequence", testGameSnapshotHasEveryPlayerAndLastSequence},
		{"Snapshot_is_marshalled_once_a_tick", testGameSnapshotIsMarshalledOnceATick},
		{"Player_id_comes_from_the_token", testGamePlayerIdComesFromTheToken},
		{"No_token", testGameNoToken},
		{"Move_before_join", testGameMoveBeforeJoin},
		{"Out_of_bounds", testGameOutOfBounds},
		{"Teleport", testGameTeleport},
		{"Sequence_must_increase", testGameSequenceMustIncrease},
		{"Rate_limit_answers_in_band", testGameRateLimitAnswersInBand},
		{"Flood_ends_the_stream", testGameFloodEndsTheStream},
		{"Flood_ends_the_stream_at_exactly_FloodLimit", testGameFloodEndsTheStreamAtExactlyFloodLimit},
		{"Flood_count_restarts_when_an_input_is_allowed", testGameFloodCountRestartsWhenAnInputIsAllowed},
		{"Empty_input_is_refused_in_band", testGameEmptyInputIsRefusedInBand},
		{"Rate_limit_holds_across_streams_and_reconnects", testGameRateLimitHoldsAcrossStreamsAndReconnects},
		{"Move_without_a_target", testGameMoveWithoutATarget},
		{"Handler_refuses_a_stream_without_an_identity", testGameHandlerRefusesAStreamWithoutAnIdentity},
		{"Client_cancel_ends_the_handler_with_Canceled", testGameClientCancelEndsTheHandlerWithCanceled},
		{"Queued_moves_are_bounded", testGameQueuedMovesAreBounded},
		{"Player_that_never_reads_does_not_slow_the_tick", testGamePlayerThatNeverReadsDoesNotSlowTheTick},
		{"Leaving_player_is_gone_from_next_snapshot", testGameLeavingPlayerIsGoneFromNextSnapshot},
		{"Shutdown_ends_live_streams_with_Unavailable", testGameShutdownEndsLiveStreamsWithUnavailable},
		{"Everything_is_freed_when_streams_end", testGameEverythingIsFreedWhenStreamsEnd},
		{"Matches_its_model", testGameMatchesItsModel},
		{"Moves_handled_while_the_game_ticks", testGameMovesHandledWhileTheGameTicks},
	} {
		t.Run(tc.name, tc.run)
	}
}

func testGameMovesAreAppliedOnTheTick(t *testing.T) {
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
}

func testGameSnapshotHasEveryPlayerAndLastSequence(t *testing.T) {
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
}

func testGameSnapshotIsMarshalledOnceATick(t *testing.T) {
	// Three players, one tick: the writers send the sharedUpdate they
	// take with SendOn, so gRPC marshals the snapshot once. A writer that
	// sends u.Message() marshals it once per player.
	counter := katatest.NewMarshalCounter(func(v any) bool {
		u, ok := v.(*pb.GameUpdate)
		return ok && u.GetSnapshot().GetTick() == 1
	})
	env := startGame(t, GameConfig{}, katatest.WithServerOptions(grpc.ForceServerCodecV2(counter)))
	players := []*gamePlayer{env.open(t, "alice"), env.open(t, "bob"), env.open(t, "carol")}
	for _, p := range players {
		p.join(p.label)
	}
	tick := env.tick(t)
	for _, p := range players {
		p.players(tick)
	}
	require.Equal(t, 1, counter.Count(), "times the server marshalled the snapshot of one tick for %d players: send what the mailbox holds with u.SendOn(stream), which encodes it once for every player, not stream.Send(u.Message())", len(players))
}

func testGamePlayerIdComesFromTheToken(t *testing.T) {
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
}

func testGameNoToken(t *testing.T) {
	env := startGame(t, GameConfig{})
	anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.GameService_PlayClient, error) { return env.client.Play(ctx) })
	katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Play() without a token")
	// A valid token gets through to your handler.
	alice := env.open(t, "alice")
	alice.join("Alice")
	if got := alice.players(env.tick(t)); len(got) != 1 {
		t.Fatalf("alice's snapshot = %q, want alice alone", got)
	}
}

func testGameMoveBeforeJoin(t *testing.T) {
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
}

func testGameOutOfBounds(t *testing.T) {
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
}

func testGameTeleport(t *testing.T) {
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
}

func testGameSequenceMustIncrease(t *testing.T) {
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
}

func testGameRateLimitAnswersInBand(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 3, FloodLimit: 100})
	alice := env.open(t, "alice")
	alice.join("Alice") // one of the burst
	alice.move(1, 501, 500)
	alice.move(2, 502, 500)
	alice.move(3, 503, 500) // over the limit
	alice.synced()
	errs, snap := alice.snapshot(env.tick(t))
	if len(errs) != 1 || codes.Code(errs[0].GetCode()) != codes.ResourceExhausted || errs[0].GetSequence() != 3 {
		t.Fatalf("a move over the rate limit (Burst=3: the join, moves 1 and 2) was answered with %v, want one in-band ResourceExhausted for move 3: every input, the join included, goes through the rate limit", errs)
	}
	if got, want := describePlayers(snap), []string{"alice Alice (502, 500) #2"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot = %q, want %q: the refused move never reaches the game", got, want)
	}
}

func testGameFloodEndsTheStream(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 2, FloodLimit: 5})
	mallory := env.open(t, "mallory")
	mallory.join("Mallory")
	for i := range 10 {
		if err := mallory.TrySend(moveInput(int64(i+1), 500, 500)); err != nil {
			break // the server has ended the stream
		}
	}
	if handled, _ := env.inputs.waitHandled(t, "mallory", 11); handled {
		t.Fatal("Play(mallory) handled all 11 inputs and went on, want the stream ended after FloodLimit=5 refusals in a row")
	}
	katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Play(mallory) flooding past FloodLimit=5")
	wantGameEmpty(t, env)
}

func testGameQueuedMovesAreBounded(t *testing.T) {
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
}

func testGamePlayerThatNeverReadsDoesNotSlowTheTick(t *testing.T) {
	env := startGame(t, GameConfig{})
	// Forty bots make each snapshot about 2 KiB. They have no stream:
	// a goroutine of the test reads their mailboxes, as a writer would.
	ctx := katatest.Context(t)
	for i := range 40 {
		p := newPlayer(fmt.Sprintf("bot-%02d", i), env.srv.cfg)
		require.NoError(t, env.srv.join(p, strings.Repeat("b", maxNameRunes)))
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
	require.NoError(t, err)
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
	silent.Cancel()
	env.WaitInFlight(t, playMethod, 1)
}

func testGameLeavingPlayerIsGoneFromNextSnapshot(t *testing.T) {
	env := startGame(t, GameConfig{})
	alice, bob, carol := env.open(t, "alice"), env.open(t, "bob"), env.open(t, "carol")
	alice.join("Alice")
	bob.join("Bob")
	carol.join("Carol")
	if got := alice.players(env.tick(t)); len(got) != 3 {
		t.Fatalf("snapshot = %q, want 3 players", got)
	}
	bob.Cancel()
	env.WaitInFlight(t, playMethod, 2)
	if got, want := alice.players(env.tick(t)), []string{"alice Alice (500, 500) #0", "carol Carol (500, 500) #0"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot after bob cancelled = %q, want %q", got, want)
	}
	katatest.WantCode(t, carol.Finish(), codes.OK, "carol's stream after CloseSend")
	env.WaitInFlight(t, playMethod, 1)
	if got, want := alice.players(env.tick(t)), []string{"alice Alice (500, 500) #0"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot after carol closed her side = %q, want %q", got, want)
	}
}

func testGameShutdownEndsLiveStreamsWithUnavailable(t *testing.T) {
	env := startGame(t, GameConfig{})
	alice, bob := env.open(t, "alice"), env.open(t, "bob")
	alice.join("Alice")
	bob.join("Bob")
	forced := make(chan bool, 1)
	go func() { forced <- serving.GracefulStop(env.grpcServer, env.srv.Shutdown, katatest.WaitTimeout) }()
	for _, p := range []*gamePlayer{alice, bob} {
		katatest.WantCode(t, p.Status(), codes.Unavailable, "%s's stream when the server shuts down", p.label)
	}
	if <-forced {
		t.Fatal("the graceful stop had to be forced, want the game streams ended so it completes by itself")
	}
	wantGameEmpty(t, env)
}

func testGameEverythingIsFreedWhenStreamsEnd(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 2, FloodLimit: 3})
	for i := range 20 {
		p := env.openAs(t, fmt.Sprint("carol-", i), "carol", env.client, true)
		p.join("Carol")
		switch i % 3 {
		case 0:
			p.Cancel()
			env.WaitInFlight(t, playMethod, 0)
		case 1:
			katatest.WantCode(t, p.Finish(), codes.OK, "Play(carol) after CloseSend")
		case 2:
			for j := range 5 {
				if err := p.TrySend(moveInput(int64(j+1), 500, 500)); err != nil {
					break
				}
			}
			katatest.WantCode(t, p.Status(), codes.ResourceExhausted, "Play(carol) flooding")
		}
		env.tick(t)
	}
	wantGameEmpty(t, env)
}

func testGameFloodEndsTheStreamAtExactlyFloodLimit(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 1, FloodLimit: 3})
	mallory := env.open(t, "mallory")
	mallory.join("Mallory") // the burst of 1
	mallory.move(1, 500, 500)
	mallory.move(2, 500, 500)
	mallory.synced() // two refused in a row: one short of FloodLimit, the stream goes on
	for _, sequence := range []int64{1, 2} {
		if e := mallory.expectError(codes.ResourceExhausted, "a move over the rate limit"); e.GetSequence() != sequence {
			t.Fatalf("in-band error for move %d, want one for move %d", e.GetSequence(), sequence)
		}
	}
	mallory.move(3, 500, 500) // the third refused in a row
	if handled, _ := env.inputs.waitHandled(t, "mallory", 4); handled {
		t.Fatal("Play(mallory) went on after the third refusal in a row, want the stream ended at exactly FloodLimit=3")
	}
	katatest.WantCode(t, mallory.Status(), codes.ResourceExhausted, "Play(mallory) at FloodLimit=3 refusals in a row")
}

func testGameFloodCountRestartsWhenAnInputIsAllowed(t *testing.T) {
	now := frozenClock()
	s := NewGameServer(GameConfig{MovesPerSecond: 1, Burst: 1, FloodLimit: 3, Now: func() time.Time { return now }})
	p := newPlayer("mallory", s.cfg)
	s.register(p)
	sequence := int64(0)
	move := func() error {
		sequence++
		err := s.handle(p, &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: sequence, Target: &pb.Position{X: 500, Y: 500}}}})
		select { // take the signal, as the stream's writer would
		case <-p.mailbox.ready:
		default:
		}
		return err
	}
	require.NoError(t, s.handle(p, &pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "Mallory"}}}), "handle(join), the burst of 1")
	for range 2 { // two refused in a row: one short of FloodLimit
		require.NoError(t, move(), "handle(move %d) over the rate limit, one short of FloodLimit=3: refused in-band", sequence)
	}
	now = now.Add(time.Second) // one input's worth of rate
	require.NoError(t, move(), "handle(move %d) after a second: allowed", sequence)
	for range 2 { // two more refused: in a row only since the allowed one
		require.NoError(t, move(), "handle(move %d), refused after an allowed input: the count of refusals in a row restarts", sequence)
	}
	katatest.WantCode(t, move(), codes.ResourceExhausted, "handle(move %d), the third refusal in a row since the allowed input, FloodLimit=3", sequence)
	var refusals int
	for _, u := range p.mailbox.take() {
		if u.Message().GetError() != nil {
			refusals++
		}
	}
	assert.Equal(t, 4, refusals, "in-band refusals in mallory's mailbox, want one for each refused input but the one that ends the stream (its status says why)")
}

func testGameEmptyInputIsRefusedInBand(t *testing.T) {
	s := newTestGame(GameConfig{})
	p := newPlayer("alice", s.cfg)
	s.register(p)
	require.NoError(t, s.handle(p, &pb.PlayerInput{}), "handle(an input with neither join nor move): the stream goes on")
	got := p.mailbox.take()
	if len(got) != 1 || codes.Code(got[0].Message().GetError().GetCode()) != codes.InvalidArgument {
		t.Fatalf("mailbox after handle(an empty input) = %q, want one in-band InvalidArgument error", describeUpdates(got))
	}
}

func testGameMoveWithoutATarget(t *testing.T) {
	env := startGame(t, GameConfig{})
	alice := env.open(t, "alice")
	alice.join("Alice")
	alice.send(&pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: 1}}})
	if e := alice.expectError(codes.InvalidArgument, "a move without a target"); e.GetSequence() != 1 {
		t.Fatalf("in-band error for move %d, want it for move 1", e.GetSequence())
	}
	alice.move(2, 501, 500)
	alice.synced()
	if got, want := alice.players(env.tick(t)), []string{"alice Alice (501, 500) #2"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot = %q, want %q: the move without a target changed nothing and the next one applies", got, want)
	}
}

func testGameHandlerRefusesAStreamWithoutAnIdentity(t *testing.T) {
	srv := newTestGame(GameConfig{})
	server := startWithoutAuth(t, func(g *grpc.Server) { pb.RegisterGameServiceServer(g, srv) })
	anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.GameService_PlayClient, error) {
		return pb.NewGameServiceClient(server.Conn).Play(ctx)
	})
	katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Play() served without AuthInterceptor, so with no identity in its context")
}

func testGameClientCancelEndsTheHandlerWithCanceled(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 2, FloodLimit: 3})
	alice := env.open(t, "alice")
	alice.join("Alice")
	alice.Cancel()
	if handled, handlerErr := env.inputs.waitHandled(t, "alice", 2); handled {
		t.Fatal("Play(alice) asked for another input after the client cancelled, want it to end")
	} else {
		katatest.WantCode(t, handlerErr, codes.Canceled, "the Play handler after the client cancelled")
	}
	wantGameEmpty(t, env)
}

func testGameRateLimitHoldsAcrossStreamsAndReconnects(t *testing.T) {
	env := startGame(t, GameConfig{Burst: 3, FloodLimit: 100})
	first := env.openAs(t, "alice-1", "alice", env.client, true)
	first.join("Alice")     // 1 of alice's burst of 3
	first.move(1, 501, 500) // 2
	first.synced()
	katatest.WantCode(t, first.Finish(), codes.OK, "Play(alice-1) after CloseSend")
	env.WaitIdle(t) // alice has no stream left: a limiter per stream would be gone now
	second := env.openAs(t, "alice-2", "alice", env.client, true)
	third := env.openAs(t, "alice-3", "alice", env.client, true)
	second.join("Alice") // 3
	third.join("Alice")  // over alice's limit, on a third stream
	if e := third.expectError(codes.ResourceExhausted, "alice's 4th input, on her third stream, with Burst=3 per user"); e.GetSequence() != 0 {
		t.Fatalf("in-band error for sequence %d, want the join's (0)", e.GetSequence())
	}
}
