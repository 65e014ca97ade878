package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

// joined returns a player in the game without a stream, as Play would
// make it: registered, then joined.
func joined(t *testing.T, s *GameServer, id string) *player {
	t.Helper()
	p := newPlayer(id, s.cfg)
	s.register(p)
	require.NoError(t, s.join(p, strings.ToUpper(id[:1])+id[1:]), "join(%s)", id)
	return p
}

// queue puts a move in p's queue, as handle would.
func queue(s *GameServer, p *player, sequence int64, x, y int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.queued = append(p.queued, queuedMove{sequence: sequence, target: position{x, y}})
}

// tookSnapshot takes p's mailbox and returns the errors before the
// snapshot, and the snapshot, failing the test without one.
func tookSnapshot(t *testing.T, p *player) ([]*pb.GameError, *pb.GameSnapshot) {
	t.Helper()
	return tookSnapshotOf(t, p, p.mailbox.take())
}

// tookSnapshotOf is tookSnapshot on updates already taken from p's mailbox.
func tookSnapshotOf(t *testing.T, p *player, got []*sharedUpdate) ([]*pb.GameError, *pb.GameSnapshot) {
	t.Helper()
	var errs []*pb.GameError
	for i, u := range got {
		if s := u.Message().GetSnapshot(); s != nil {
			if i != len(got)-1 {
				t.Fatalf("%s's mailbox holds %q, want the errors, then one snapshot", p.id, describeUpdates(got))
			}
			return errs, s
		}
		errs = append(errs, u.Message().GetError())
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

	t.Run("Limits_speed_in_every_direction", func(t *testing.T) {
		// From (50, 50) with MaxSpeed 10: (dx, dy) at exactly 10 units is
		// allowed, just past it refused, along the axes and the diagonals.
		moves := []struct {
			dx, dy int32
			ok     bool
		}{
			{10, 0, true}, {11, 0, false}, {-10, 0, true}, {-11, 0, false},
			{0, 10, true}, {0, 11, false}, {0, -10, true}, {0, -11, false},
			{6, 8, true}, {-8, 6, true}, {-6, -8, true}, {8, -6, true},
			{7, 8, false}, {-8, 7, false}, {-7, -8, false}, {8, -7, false},
			{8, 8, false}, {-8, -8, false}, {7, 7, true}, {-7, 7, true},
		}
		for _, m := range moves {
			s := newTestGame(GameConfig{WorldSize: 100, MaxSpeed: 10})
			alice := joined(t, s, "alice")
			queue(s, alice, 1, 50+m.dx, 50+m.dy)
			tickNow(t, s)
			errs, snap := tookSnapshot(t, alice)
			want := fmt.Sprintf("alice Alice (%d, %d) #1", 50+m.dx, 50+m.dy)
			if !m.ok {
				want = "alice Alice (50, 50) #1"
			}
			if got := describePlayers(snap); len(got) != 1 || got[0] != want || (len(errs) == 0) == !m.ok {
				t.Fatalf("a move by (%d, %d), %.2f units with MaxSpeed 10: snapshot %q with %d errors, want %q (allowed %v)", m.dx, m.dy, math.Hypot(float64(m.dx), float64(m.dy)), got, len(errs), want, m.ok)
			}
		}
	})

	t.Run("Bounds_include_0_and_WorldSize_minus_1", func(t *testing.T) {
		targets := []struct {
			x, y int32
			ok   bool
		}{
			{0, 0, true}, {99, 99, true}, {0, 99, true}, {99, 0, true},
			{-1, 50, false}, {50, -1, false}, {100, 50, false}, {50, 100, false},
		}
		for _, to := range targets {
			s := newTestGame(GameConfig{WorldSize: 100, MaxSpeed: 1000})
			alice := joined(t, s, "alice")
			queue(s, alice, 1, to.x, to.y)
			tickNow(t, s)
			errs, _ := tookSnapshot(t, alice)
			if refused := len(errs) > 0; refused == to.ok {
				t.Fatalf("a move to (%d, %d) in a world of 100: refused %v, want allowed %v (positions run from 0 to 99)", to.x, to.y, refused, to.ok)
			}
		}
	})

	t.Run("Every_player_gets_the_same_snapshot", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		carol, alice, bob := joined(t, s, "carol"), joined(t, s, "alice"), joined(t, s, "bob")
		queue(s, bob, 7, 500, 495)
		tickNow(t, s)
		want := []string{"alice Alice (500, 500) #0", "bob Bob (500, 495) #7", "carol Carol (500, 500) #0"}
		var first *pb.GameSnapshot
		for _, p := range []*player{alice, bob, carol} {
			_, snap := tookSnapshot(t, p)
			if !slices.Equal(describePlayers(snap), want) {
				t.Fatalf("%s's snapshot = %q, want %q (every player, ordered by id)", p.id, describePlayers(snap), want)
			}
			if first == nil {
				first = snap
			}
			require.Same(t, first, snap, "%s's mailbox holds another snapshot than alice's for one tick: build it once (s.snapshotLocked) and post that one sharedUpdate to every player, so it is marshalled once", p.id)
		}
	})

	t.Run("A_move_is_applied_on_one_tick_only", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		alice := joined(t, s, "alice")
		queue(s, alice, 1, -1, 500) // refused: outside the world
		tickNow(t, s)
		if errs, _ := tookSnapshot(t, alice); len(errs) != 1 {
			t.Fatalf("after the tick that applied move 1 (out of bounds) alice got %d errors, want 1", len(errs))
		}
		tickNow(t, s)
		if errs, _ := tookSnapshot(t, alice); len(errs) != 0 {
			t.Fatalf("after a second tick with no new moves alice got %d more errors (%v), want none: empty each player's queue (p.queued) once its moves are applied (task 6)", len(errs), errs)
		}
	})

	t.Run("A_stream_that_has_not_joined_gets_no_snapshot", func(t *testing.T) {
		s := newTestGame(GameConfig{})
		alice := joined(t, s, "alice")
		lurker := newPlayer("lurker", s.cfg)
		s.register(lurker) // an open Play stream that has sent no join yet
		tickNow(t, s)
		tookSnapshot(t, alice)
		if got := lurker.mailbox.take(); len(got) != 0 {
			t.Fatalf("after Tick() lurker, whose stream is open but has not joined, has %q in its mailbox, want nothing: post to the joined players (s.players), not to every open stream (s.streams) (task 6)", describeUpdates(got))
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
			case <-time.After(katatest.WaitTimeout):
				t.Fatalf("runTicks did not take tick %d within %v: the previous tick is stuck (task 6)", i+1, katatest.WaitTimeout)
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("runTicks did not return after its context ended")
		}
		if _, snap := tookSnapshot(t, alice); snap.GetTick() != 3 {
			t.Fatalf("after 3 ticker ticks the latest snapshot is of tick %d, want 3", snap.GetTick())
		}
	})

	t.Run("Distances_are_exact_and_do_not_overflow", func(t *testing.T) {
		moves := []struct {
			world, speed, dx, dy int32
			ok                   bool
		}{
			// 35² + 120² = 125² exactly; math.Hypot says 125.00000000000001.
			{1000, 125, 35, 120, true},
			{1000, 125, 120, 35, true},
			{1000, 125, 36, 120, false},
			// 46341² overflows an int32: the square must not wrap around.
			{200000, 10, 46341, 0, false},
			{200000, 10, 46341, 46341, false},
			{200000, 65536, 65536, 0, true},
			{200000, 65536, 65536, 1, false},
		}
		for _, m := range moves {
			s := newTestGame(GameConfig{WorldSize: m.world, MaxSpeed: m.speed})
			alice := joined(t, s, "alice")
			start := alice.pos
			queue(s, alice, 1, start.x+m.dx, start.y+m.dy)
			tickNow(t, s)
			errs, snap := tookSnapshot(t, alice)
			want := fmt.Sprintf("alice Alice (%d, %d) #1", start.x+m.dx, start.y+m.dy)
			if !m.ok {
				want = fmt.Sprintf("alice Alice (%d, %d) #1", start.x, start.y)
			}
			if got := describePlayers(snap); len(got) != 1 || got[0] != want || (len(errs) == 0) != m.ok {
				t.Fatalf("a move by (%d, %d) with MaxSpeed %d in a world of %d: snapshot %q with %d errors, want %q (allowed %v): compare squared distances in int64", m.dx, m.dy, m.speed, m.world, got, len(errs), want, m.ok)
			}
		}
	})

}

// testGameMovesHandledWhileTheGameTicks is a test of task 7: handle
// queues moves while Tick applies them.
func testGameMovesHandledWhileTheGameTicks(t *testing.T) {
	// handle queues moves while Tick applies them, as the stream's
	// reader and the ticker do; run with -race. Every move is
	// processed exactly once, in order.
	const moves = 400
	s := newTestGame(GameConfig{MovesPerSecond: 1, Burst: moves + 1, MaxQueuedMoves: moves})
	p := newPlayer("alice", s.cfg)
	s.register(p)
	require.NoError(t, s.handle(p, &pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "Alice"}}}), "handle(join)")
	// The ticker ticks without pause. The moves start once it has
	// ticked, and it stops only after two more ticks that followed
	// the last move: ticks and moves overlap on every run, and only
	// the game's lock orders them. A writer takes the mailbox as
	// Play's does, keeping any errors.
	var refused []string
	writerDone, stopWriter := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-p.mailbox.ready:
				for _, u := range p.mailbox.take() {
					if e := u.Message().GetError(); e != nil {
						refused = append(refused, fmt.Sprint(e.GetSequence(), " ", codes.Code(e.GetCode())))
					}
				}
			case <-stopWriter:
				return
			}
		}
	}()
	ticked := make(chan struct{})
	stop := make(chan struct{})
	var ticks atomic.Int64
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			default:
				s.Tick()
				ticks.Add(1)
			}
		}
	}()
	for ticks.Load() == 0 {
		runtime.Gosched()
	}
	for i := range int64(moves) {
		target := &pb.Position{X: 500 + int32(i%2), Y: 500}
		require.NoError(t, s.handle(p, &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: i + 1, Target: target}}}), "handle(move %d)", i+1)
	}
	for after := ticks.Load() + 2; ticks.Load() < after; {
		runtime.Gosched()
	}
	close(stop)
	<-ticked
	close(stopWriter)
	<-writerDone
	require.Empty(t, refused, "moves refused while ticking, want none of %d valid moves refused", moves)
	p.mailbox.take()
	tickNow(t, s)
	errs, snap := tookSnapshot(t, p)
	require.Empty(t, errs, "errors for %d valid moves handled while ticking", moves)
	if got, want := describePlayers(snap), []string{fmt.Sprintf("alice Alice (501, 500) #%d", moves)}; !slices.Equal(got, want) {
		t.Fatalf("snapshot after %d moves handled while ticking = %q, want %q: every move processed", moves, got, want)
	}
}
