package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
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

// BenchmarkSnapshotFanOut measures what encoding a tick's snapshot once
// buys: the snapshot of a game of 1,000 players sent to
// snapshotFanOutStreams Play streams over TCP on 127.0.0.1, in rounds of
// snapshotFanOutPerRound snapshots. Rounds alternate, snapshotFanOutPairs
// times in every op: each stream marshalling every snapshot itself
// (stream.Send), then every snapshot encoded once for all streams
// (sharedUpdate.SendOn, as the reference's writers send). The clients
// take the bytes without decoding them (katatest.RawCodec), so that the
// server's side of the cost shows. encode-once-speedup is the median of
// the pairs' ratios, with its range; snapshot-bytes is one snapshot's
// encoded size.
func BenchmarkSnapshotFanOut(b *testing.B) {
	const players = 1000
	game := NewGameServer(GameConfig{})
	for i := range players {
		if err := game.join(newPlayer(fmt.Sprintf("player-%04d", i), game.cfg), fmt.Sprint("Player ", i)); err != nil {
			b.Fatal(err)
		}
	}
	raw := &rawSnapshots{rawRounds: newRawRounds[*pb.GameUpdate]()}
	addr := katatest.ServeTCP(b, func(g *grpc.Server) { pb.RegisterGameServiceServer(g, raw) })

	received := make(chan struct{}, snapshotFanOutStreams*snapshotFanOutPerRound)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() { cancel(); wg.Wait() }) // before the connections close
	for i := range snapshotFanOutStreams {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		stream, err := conn.NewStream(ctx, &pb.GameService_ServiceDesc.Streams[0], pb.GameService_Play_FullMethodName, grpc.ForceCodecV2(katatest.RawCodec{}))
		if err != nil {
			b.Fatalf("stream %d: %v", i, err)
		}
		wg.Go(func() {
			for {
				var m katatest.RawMessage
				if stream.RecvMsg(&m) != nil {
					return
				}
				received <- struct{}{}
			}
		})
	}
	deadline := time.Now().Add(fanOutWait)
	for raw.started.Load() < snapshotFanOutStreams {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Play streams started within %v", raw.started.Load(), snapshotFanOutStreams, fanOutWait)
		}
		time.Sleep(time.Millisecond)
	}

	round := func(shared bool) time.Duration {
		start := time.Now()
		snapshots := make([]*sharedUpdate, snapshotFanOutPerRound)
		game.mu.Lock()
		for i := range snapshots {
			game.tick++
			snapshots[i] = game.snapshotLocked()
		}
		game.mu.Unlock()
		raw.start(snapshots, shared)
		timeout := time.NewTimer(fanOutWait)
		defer timeout.Stop()
		for n := range snapshotFanOutStreams * snapshotFanOutPerRound {
			select {
			case <-received:
			case <-timeout.C:
				b.Fatalf("%d of %d snapshots arrived within %v", n, snapshotFanOutStreams*snapshotFanOutPerRound, fanOutWait)
			}
		}
		return time.Since(start)
	}
	var speedups []float64
	for b.Loop() {
		for range snapshotFanOutPairs {
			each := round(false)
			once := round(true)
			speedups = append(speedups, each.Seconds()/once.Seconds())
		}
	}
	katatest.ReportPairs(b, "encode-once-speedup", speedups)
	game.mu.Lock()
	b.ReportMetric(float64(proto.Size(game.snapshotLocked().Message())), "snapshot-bytes")
	game.mu.Unlock()
}

const (
	snapshotFanOutStreams  = 100
	snapshotFanOutPerRound = 20
	snapshotFanOutPairs    = 5
)

// rawSnapshots serves every Play stream the snapshots of each round
// (rawRounds), with no game, mailbox or writer goroutine: only the
// sending differs between rounds.
type rawSnapshots struct {
	pb.UnimplementedGameServiceServer
	rawRounds[*pb.GameUpdate]
	started atomic.Int64
}

func (r *rawSnapshots) Play(stream pb.GameService_PlayServer) error {
	next := r.upcoming()
	r.started.Add(1)
	return r.serve(stream, next)
}
