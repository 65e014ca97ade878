package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/quota"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// GameConfig holds the game's rules and limits. The zero value of a field
// means its default; tests shrink the limits to reach them quickly.
type GameConfig struct {
	// WorldSize is the side of the square world: a position's x and y run
	// from 0 to WorldSize-1. Default 1000.
	WorldSize int32
	// MaxSpeed is how far a player may get in one tick, in world units of
	// straight-line distance from where it began the tick. Default 10.
	MaxSpeed int32
	// MovesPerSecond and Burst rate-limit each player's inputs, joins
	// included. Defaults 30 and 10: enough for a move every tick.
	MovesPerSecond float64
	Burst          int
	// FloodLimit ends a stream after this many rate-limited inputs in a
	// row. Default 50.
	FloodLimit int
	// MaxQueuedMoves bounds the moves a player has waiting for the next
	// tick; more are refused. Default 8.
	MaxQueuedMoves int
	// MaxPendingErrors bounds the in-band errors waiting in a player's
	// mailbox; more are dropped, so a player that does not read costs
	// nothing. Default 16.
	MaxPendingErrors int
	// TickInterval is how often Run ticks. Default 50ms (20 ticks a
	// second).
	TickInterval time.Duration
	// Now is the rate limiter's clock. Default time.Now.
	Now func() time.Time
}

func (c GameConfig) withDefaults() GameConfig {
	if c.WorldSize == 0 {
		c.WorldSize = 1000
	}
	if c.MaxSpeed == 0 {
		c.MaxSpeed = 10
	}
	if c.MovesPerSecond == 0 {
		c.MovesPerSecond = 30
	}
	if c.Burst == 0 {
		c.Burst = 10
	}
	if c.FloodLimit == 0 {
		c.FloodLimit = 50
	}
	if c.MaxQueuedMoves == 0 {
		c.MaxQueuedMoves = 8
	}
	if c.MaxPendingErrors == 0 {
		c.MaxPendingErrors = 16
	}
	if c.TickInterval == 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// maxNameRunes bounds a player's display name.
const maxNameRunes = 32

// GameServer implements pb.GameServiceServer. Play, handle, Tick and the
// mailbox's post and take are the tasks you write; this file holds the
// state they share.
type GameServer struct {
	pb.UnimplementedGameServiceServer

	cfg GameConfig
	// limits holds the move rate per user, shared by the user's streams
	// and kept after they end until refilled.
	limits *quota.Limiters

	// mu guards the game: every joined player's state and queued moves.
	// A tick holds it throughout, so each tick sees one consistent world;
	// it never waits for a player while holding it (see snapshotMailbox).
	mu      sync.Mutex
	tick    int64              // the last tick made
	players map[string]*player // joined players by id
	streams map[*player]bool   // every open Play stream's player, for Shutdown
}

// NewGameServer returns a server with cfg's rules and limits. Nothing
// moves until Run or Tick is called.
func NewGameServer(cfg GameConfig) *GameServer {
	cfg = cfg.withDefaults()
	return &GameServer{
		cfg:     cfg,
		limits:  quota.New(cfg.MovesPerSecond, cfg.Burst, cfg.Now),
		players: make(map[string]*player),
		streams: make(map[*player]bool),
	}
}

// position is a point of the world.
type position struct{ x, y int32 }

func (p position) String() string { return fmt.Sprintf("(%d, %d)", p.x, p.y) }

func (p position) toProto() *pb.Position { return &pb.Position{X: p.x, Y: p.y} }

func positionFromProto(p *pb.Position) position { return position{x: p.GetX(), y: p.GetY()} }

// queuedMove is a move waiting for the next tick.
type queuedMove struct {
	sequence int64
	target   position
}

// player is one Play stream's player, joined or not yet.
type player struct {
	id      string // the token's user
	mailbox *snapshotMailbox

	// limiter and refusedInARow belong to the stream's reader alone. The
	// limiter is the user's, shared with the user's other streams, so a
	// second stream or a reconnect buys no more moves; register sets it.
	limiter       quota.Bucket
	refusedInARow int

	// Guarded by GameServer.mu.
	joined       bool
	name         string
	pos          position
	lastSequence int64        // the last move processed, applied or refused
	queued       []queuedMove // oldest first, at most cfg.MaxQueuedMoves

	eviction // ends the stream from outside: a shutdown
}

func newPlayer(id string, cfg GameConfig) *player {
	return &player{
		id:       id,
		mailbox:  newSnapshotMailbox(cfg.MaxPendingErrors),
		eviction: newEviction(),
	}
}

// refuse answers an input in-band with err's status. sequence is the
// refused move's, or 0.
func (p *player) refuse(sequence int64, err error) {
	st := status.Convert(err)
	p.mailbox.post(serving.Share(&pb.GameUpdate{Update: &pb.GameUpdate_Error{Error: &pb.GameError{
		Code:     int32(st.Code()),
		Message:  st.Message(),
		Sequence: sequence,
	}}}))
}

// sharedUpdate is a game update on its way to one or more players. A
// tick's snapshot is one sharedUpdate in every mailbox: the first writer
// to send it marshals it (SendOn), the others send the same bytes, so
// 1,000 players cost one marshal of the 1,000 positions a tick, not
// 1,000. Never change the update once it is shared (see serving.Shared).
type sharedUpdate = serving.Shared[*pb.GameUpdate]

// snapshotMailbox is one player's outbox. It holds at most one snapshot,
// the latest: a newer one replaces an unsent older one, so a player that
// reads slowly never builds up a backlog and the tick never waits for it.
// In-band errors are kept in order, up to a bound, because each is about
// a different input. One writer per stream takes what is there whenever
// ready signals.
type snapshotMailbox struct {
	mu        sync.Mutex
	snapshot  *sharedUpdate   // the latest unsent snapshot, or nil
	errors    []*sharedUpdate // unsent in-band errors, oldest first
	maxErrors int

	// ready has one slot: a signal in it means "something to take". A
	// signal already waiting is enough for any number of posts.
	ready chan struct{}
}

func newSnapshotMailbox(maxErrors int) *snapshotMailbox {
	return &snapshotMailbox{maxErrors: maxErrors, ready: make(chan struct{}, 1)}
}

// pending returns how many updates wait in the mailbox; tests use it.
func (m *snapshotMailbox) pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.errors)
	if m.snapshot != nil {
		n++
	}
	return n
}

// register adds a Play stream's player, so Shutdown can end its stream.
func (s *GameServer) register(p *player) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.limiter = s.limits.Bucket(p.id)
	s.streams[p] = true
}

// unregister is called once when p's stream ends, however it ends: p
// leaves the game (it is gone from the next snapshot) and is forgotten.
func (s *GameServer) unregister(p *player) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.evict(status.Error(codes.Canceled, "left the game"))
	delete(s.streams, p)
	if s.players[p.id] == p {
		delete(s.players, p.id)
	}
	p.joined = false
}

// join puts p in the game as name, at the centre of the world. A player
// that already joined, or whose user already plays on another stream, is
// FailedPrecondition; a bad name is InvalidArgument.
func (s *GameServer) join(p *player, name string) error {
	if n := utf8.RuneCountInString(name); n == 0 || n > maxNameRunes || !utf8.ValidString(name) || strings.TrimSpace(name) == "" {
		return status.Errorf(codes.InvalidArgument, "name %q is invalid: want 1 to %d characters of valid UTF-8", name, maxNameRunes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch other, ok := s.players[p.id]; {
	case p.joined:
		return status.Errorf(codes.FailedPrecondition, "%s already joined as %q", p.id, p.name)
	case ok && other != p:
		return status.Errorf(codes.FailedPrecondition, "%s is already playing on another stream", p.id)
	}
	if p.evicted() {
		return nil // the stream is ending; an input still in flight changes nothing
	}
	p.joined, p.name = true, name
	p.pos = position{x: s.cfg.WorldSize / 2, y: s.cfg.WorldSize / 2}
	s.players[p.id] = p
	return nil
}

// snapshotLocked returns the game's state as a snapshot, players ordered
// by id, shared by every player's mailbox. s.mu must be held.
func (s *GameServer) snapshotLocked() *sharedUpdate {
	players := make([]*pb.PlayerState, 0, len(s.players))
	for _, p := range s.players {
		players = append(players, &pb.PlayerState{
			PlayerId:     p.id,
			Name:         p.name,
			Position:     p.pos.toProto(),
			LastSequence: p.lastSequence,
		})
	}
	slices.SortFunc(players, func(a, b *pb.PlayerState) int { return strings.Compare(a.PlayerId, b.PlayerId) })
	return serving.Share(&pb.GameUpdate{Update: &pb.GameUpdate_Snapshot{Snapshot: &pb.GameSnapshot{Tick: s.tick, Players: players}}})
}

// Run ticks the game every cfg.TickInterval until ctx ends. Tests call
// Tick themselves instead, so their ticks happen exactly when they say.
func (s *GameServer) Run(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.TickInterval)
	defer ticker.Stop()
	s.runTicks(ctx, ticker.C)
}

// runTicks calls Tick for each value from ticks until ctx ends.
func (s *GameServer) runTicks(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ticks:
			s.Tick()
		case <-ctx.Done():
			return
		}
	}
}

// Shutdown ends every Play stream with Unavailable, so that a graceful
// stop of the server does not wait for games that would never end by
// themselves. Each stream's handler then cleans up as usual.
func (s *GameServer) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.streams {
		p.evict(status.Error(codes.Unavailable, "the server is shutting down"))
	}
}

// counts returns how many players are in the game and how many Play
// streams are open; tests use them to prove cleanup.
func (s *GameServer) counts() (players, streams int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.players), len(s.streams)
}
