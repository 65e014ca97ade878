package main

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"pgregory.net/rapid"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// gameModel is the game as a plain sequential model: each player's state
// and queue, the tick, and what each mailbox must hold.
type gameModel struct {
	worldSize, maxSpeed, maxQueued, maxErrors int32
	tick                                      int64
	players                                   map[string]*modelPlayer
}

type modelPlayer struct {
	joined       bool
	name         string
	pos          position
	lastSequence int64 // the last move processed
	lastQueued   int64 // the last move queued or processed
	queued       []queuedMove
	errors       []string // in-band errors waiting: "<code> #<sequence>"
	snapshot     string   // the snapshot waiting, or ""
}

func (m *gameModel) refuse(p *modelPlayer, sequence int64, code codes.Code) {
	if int32(len(p.errors)) < m.maxErrors {
		p.errors = append(p.errors, fmt.Sprintf("%v #%d", code, sequence))
	}
}

func (m *gameModel) join(p *modelPlayer, name string) {
	switch {
	case name == "":
		m.refuse(p, 0, codes.InvalidArgument)
	case p.joined:
		m.refuse(p, 0, codes.FailedPrecondition)
	default:
		p.joined, p.name, p.pos = true, name, position{m.worldSize / 2, m.worldSize / 2}
	}
}

func (m *gameModel) move(p *modelPlayer, mv *pb.PlayerMove) {
	switch seq := mv.GetSequence(); {
	case !p.joined:
		m.refuse(p, seq, codes.FailedPrecondition)
	case mv.GetTarget() == nil || seq <= p.lastQueued:
		m.refuse(p, seq, codes.InvalidArgument)
	case int32(len(p.queued)) >= m.maxQueued:
		m.refuse(p, seq, codes.ResourceExhausted)
	default:
		p.queued = append(p.queued, queuedMove{sequence: seq, target: positionFromProto(mv.GetTarget())})
		p.lastQueued = seq
	}
}

func (m *gameModel) doTick(ids []string) {
	m.tick++
	var states []string
	for _, id := range ids { // in id order, as the snapshot lists them
		p := m.players[id]
		if !p.joined {
			continue
		}
		start := p.pos
		for _, mv := range p.queued {
			dx, dy := int64(mv.target.x)-int64(start.x), int64(mv.target.y)-int64(start.y)
			if mv.target.x < 0 || mv.target.y < 0 || mv.target.x >= m.worldSize || mv.target.y >= m.worldSize ||
				dx*dx+dy*dy > int64(m.maxSpeed)*int64(m.maxSpeed) {
				m.refuse(p, mv.sequence, codes.InvalidArgument)
			} else {
				p.pos = mv.target
			}
			p.lastSequence = mv.sequence
		}
		p.queued = nil
		states = append(states, fmt.Sprintf("%s %s %v #%d", id, p.name, p.pos, p.lastSequence))
	}
	for _, id := range ids {
		if m.players[id].joined {
			m.players[id].snapshot = fmt.Sprintf("snapshot %d %q", m.tick, states)
		}
	}
}

// takeModel returns what the model says p's mailbox holds, and empties it.
func (m *gameModel) take(p *modelPlayer) []string {
	out := slices.Clone(p.errors)
	if p.snapshot != "" {
		out = append(out, p.snapshot)
	}
	p.errors, p.snapshot = nil, ""
	return out
}

// describeTaken describes what take returned, as the model does.
func describeTaken(got []*sharedUpdate) []string {
	out := []string{}
	for _, u := range got {
		if s := u.Message().GetSnapshot(); s != nil {
			out = append(out, fmt.Sprintf("snapshot %d %q", s.GetTick(), describePlayers(s)))
			continue
		}
		e := u.Message().GetError()
		out = append(out, fmt.Sprintf("%v #%d", codes.Code(e.GetCode()), e.GetSequence()))
	}
	return out
}

// testGameMatchesItsModel drives handle, Tick and the mailboxes and the
// model with the same random operations (joins, good and bad moves, ticks,
// takes) and compares every mailbox's contents, errors in order and the
// latest snapshot, each time one is taken. Moves reach one past the speed
// limit, past the world's edges and one past the queue bound, with
// sequences that repeat, go back or skip; mailboxes overflow their error
// bound. A failing sequence is shrunk to the shortest that still fails.
func testGameMatchesItsModel(t *testing.T) {
	ids := []string{"ann", "bea"}
	rapid.Check(t, func(rt *rapid.T) {
		cfg := GameConfig{WorldSize: 12, MaxSpeed: 5, MaxQueuedMoves: 2, MaxPendingErrors: 4, Burst: 1_000_000}
		s := newTestGame(cfg)
		model := &gameModel{worldSize: 12, maxSpeed: 5, maxQueued: 2, maxErrors: 4, players: map[string]*modelPlayer{}}
		players := map[string]*player{}
		for _, id := range ids {
			players[id] = newPlayer(id, s.cfg)
			s.register(players[id])
			model.players[id] = &modelPlayer{}
		}
		check := func(what, id string) {
			got, want := describeTaken(players[id].mailbox.take()), model.take(model.players[id])
			if !slices.Equal(got, want) {
				rt.Fatalf("after %s %s's mailbox held %q, want %q", what, id, got, want)
			}
		}
		for step := range rapid.IntRange(1, 60).Draw(rt, "steps") {
			id := rapid.SampledFrom(ids).Draw(rt, "player")
			p, mp := players[id], model.players[id]
			var what string
			var in *pb.PlayerInput
			switch op := rapid.SampledFrom([]string{"join", "move", "move", "move", "move", "tick", "tick", "take"}).Draw(rt, "op"); op {
			case "join":
				name := rapid.SampledFrom([]string{"", id, "Other"}).Draw(rt, "name")
				in = &pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: name}}}
				model.join(mp, name)
				what = fmt.Sprintf("step %d: handle(%s, join %q)", step, id, name)
			case "move":
				mv := &pb.PlayerMove{Sequence: mp.lastQueued + int64(rapid.IntRange(-1, 2).Draw(rt, "sequence step"))}
				if rapid.IntRange(0, 9).Draw(rt, "has target") > 0 {
					// Around the player's position, reaching one past the
					// speed limit and past the world's edges.
					mv.Target = &pb.Position{X: mp.pos.x + int32(rapid.IntRange(-6, 6).Draw(rt, "dx")), Y: mp.pos.y + int32(rapid.IntRange(-6, 6).Draw(rt, "dy"))}
				}
				in = &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: mv}}
				model.move(mp, mv)
				what = fmt.Sprintf("step %d: handle(%s, move #%d to %v)", step, id, mv.GetSequence(), mv.GetTarget())
			case "tick":
				tickNow(t, s)
				model.doTick(ids)
				continue
			case "take":
				check(fmt.Sprintf("step %d", step), id)
				continue
			}
			if err := s.handle(p, in); err != nil {
				rt.Fatalf("%s = %v, want nil (a refusal is answered in-band)", what, err)
			}
		}
		for _, id := range ids {
			check("the last step", id)
		}
	})
}
