package main

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkGameTick measures one tick of a game of 1,000 players, each
// with a move queued: applying the moves, building the snapshot and
// posting it to every mailbox. Nobody takes from the mailboxes, as with
// players that read slowly; latest-wins keeps that free. The figure that
// matters is tick/interval, the share of the default tick interval one
// tick costs: SPEC §8 asks for at most 0.1.
func BenchmarkGameTick(b *testing.B) {
	const players = 1000
	s := NewGameServer(GameConfig{})
	all := make([]*player, players)
	for i := range all {
		all[i] = newPlayer(fmt.Sprintf("player-%04d", i), s.cfg)
		if err := s.join(all[i], fmt.Sprint("Player ", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var sequence int64
	for b.Loop() {
		// Queueing is the readers' work, not the tick's.
		b.StopTimer()
		sequence++
		target := position{x: 500 + int32(sequence%2), y: 500} // back and forth, always legal
		s.mu.Lock()
		for _, p := range all {
			p.queued = append(p.queued, queuedMove{sequence: sequence, target: target})
		}
		s.mu.Unlock()
		b.StartTimer()
		s.Tick()
	}
	perTick := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perTick, "ns/tick")
	b.ReportMetric(perTick/float64(s.cfg.TickInterval/time.Nanosecond), "tick/interval")
	if all[0].lastSequence != sequence {
		b.Fatalf("after the last tick player 0 processed move %d, want %d", all[0].lastSequence, sequence)
	}
}
