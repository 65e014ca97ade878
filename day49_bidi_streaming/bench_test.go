package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

const (
	fanOutRoom = "bench"
	// fanOutConns is how many client connections the members share, as
	// if a few processes each ran many chat sessions: 1,000 connections
	// would measure the kernel's socket handling more than the hub.
	fanOutConns = 10
	// fanOutWindow bounds how far the saturating publisher runs ahead of
	// the slowest receiver. A member's queue holds at most what was
	// published and it has not yet received, so at three quarters of the
	// default QueueSize of 64 no queue can fill (the rest leaves room for
	// presence notices) and saturation measures delivery, not evictions.
	// At half the queue, the publisher waited more often for the slowest
	// of 1,000 members (BENCHMARKS.md has the figures).
	fanOutWindow = 48
	// fanOutDeliveriesPerRound sets the messages one saturated round
	// publishes: 2,000 to 100 members, 200 to 1,000.
	fanOutDeliveriesPerRound = 200_000
	// fanOutSaturatedPairs is how many turns of saturated rounds (the
	// hub's, then the ceilings') one op runs, so that a single op, as the
	// default -benchtime gives, already yields a median of several pairs.
	fanOutSaturatedPairs = 5
	// fanOutContentBytes is the size of every message's content: phase,
	// index and send time, padded to a short chat line.
	fanOutContentBytes = 64
	// fanOutBurstBytes is the content size of the bursts that overflow a
	// silent member's buffers: the longest content a member may send, so
	// that a burst of a few hundred messages fills its flow-control
	// windows.
	fanOutBurstBytes = 2000
	// The paced rounds last about fanOutPacedFor, with between
	// fanOutPacedMin and fanOutPacedMax messages, and come in
	// fanOutLatencyPairs pairs: every member reading, then one more member
	// that never reads.
	fanOutPacedFor     = 2 * time.Second
	fanOutPacedMin     = 50
	fanOutPacedMax     = 2_000
	fanOutLatencyPairs = 5
	// fanOutWait bounds every wait for deliveries, joins and stream ends.
	fanOutWait = 30 * time.Second

	fanOutPublisher = "publisher"
	fanOutStalled   = "stalled"
)

// BenchmarkRoomFanOut measures one room with N members, each on its own
// Chat stream over TCP on 127.0.0.1 (the members share fanOutConns client
// connections), and one publisher, against the reference server with its
// default QueueSize and a rate limit raised out of the way. It reports:
//
//   - deliveries/s: messages published × members, with the publisher
//     sending as fast as the room delivers (at most fanOutWindow messages
//     ahead of the slowest member). Each round publishes
//     fanOutDeliveriesPerRound/N messages; ns/op covers an op's
//     fanOutSaturatedPairs turns of rounds, the ceilings' included.
//   - x-ceiling: that rate as a fraction of the ceiling, the same members
//     on the same kind of connections fed by a server whose handlers only
//     Send the same pre-built messages in a loop, each stream marshalling
//     every message: no hub, queue, writer handoff or publisher. The
//     hub's round and the ceiling's alternate, so each turn is a pair;
//     x-ceiling is the median of the pairs' ratios, x-ceiling-min and
//     -max their range.
//   - encode-once-speedup: the same ceiling with every message encoded
//     once for all streams (serving.Shared, a grpc.PreparedMsg), a third
//     round in every op: its rate over the marshalling ceiling's. That is
//     what encoding once buys by itself, without the hub.
//   - p50-ms and p99-ms: per-delivery latency, from the send time the
//     publisher writes into the content to the member's receipt, with the
//     publisher paced at a tenth of the saturated message rate.
//   - p99-ms-stalled and p99-ratio-stalled: the same paced round with one
//     more member, on a connection of its own, that never reads; the
//     others' p99 and its ratio to the p99 of the round just before,
//     with every member reading. Rounds of the two kinds alternate,
//     fanOutLatencyPairs pairs, each with a new silent member, and each
//     round starts with a burst of twice what that member's flow-control
//     windows and queue can hold, so its queue has overflowed. Each
//     latency figure is the median over the pairs, with -min and -max.
//   - stalled-msgs-buffered: the most chat messages (join history
//     included) a silent member finally reads before its stream ends.
//     The benchmark fails unless every one ends with ResourceExhausted.
//   - stalled-ended-unread: 1 if the server ended every silent stream
//     while it was still unread (the others got USER_LEFT), else 0.
//
// The saturated run scales with b.N; the paced rounds and the bursts have
// fixed bounds (fanOutPacedMax messages, twice the member's buffers), and
// every wait gives up after fanOutWait.
func BenchmarkRoomFanOut(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			benchmarkRoomFanOut(b, n)
		})
	}
}

func benchmarkRoomFanOut(b *testing.B, n int) {
	tokens := NewTokenStore()
	for _, u := range append(fanOutUsers(n), fanOutPublisher) {
		tokens.Add(u+"-token", Identity{User: u, Expires: time.Now().Add(time.Hour)})
	}
	for i := range fanOutLatencyPairs {
		u := stalledUser(i)
		tokens.Add(u+"-token", Identity{User: u, Expires: time.Now().Add(time.Hour)})
	}
	auth := grpc.ChainStreamInterceptor(AuthInterceptor(tokens, time.Now))

	chat := NewChatServer(Config{MessagesPerSecond: 1e9, Burst: 1e9})
	hubAddr := startFanOutServer(b, chat, auth)
	b.Cleanup(chat.Shutdown) // runs before the server stops
	raw := &rawFanOut{rawRounds: newRawRounds[*pb.ChatMessage]()}
	rawAddr := startFanOutServer(b, raw, auth)

	// The hub's room: the publisher first, then the members.
	hubConns := dialFanOut(b, hubAddr, fanOutConns)
	pubConn := dialFanOut(b, hubAddr, 1)[0]
	hub := newFanOutTally(n + 1)
	b.Cleanup(hub.close) // runs before the connections close
	pub := hub.open(b, pubConn, -1, fanOutPublisher)
	hub.awaitJoined(b, pub)
	joinFanOutMembers(b, hub, hubConns, fanOutUsers(n))

	// The ceiling's members.
	rawConns := dialFanOut(b, rawAddr, fanOutConns)
	ceiling := newFanOutTally(n)
	b.Cleanup(ceiling.close)
	for i, u := range fanOutUsers(n) {
		ceiling.awaitJoined(b, ceiling.open(b, rawConns[i%len(rawConns)], i, u))
	}

	// Saturated, in rounds that alternate, fanOutSaturatedPairs times in
	// every op: the hub's, the ceiling's (marshalling for every stream),
	// and the ceiling's again with each message encoded once for all
	// streams. Each turn gives one ratio of each kind.
	perRound := fanOutDeliveriesPerRound / n
	var hubTime time.Duration
	var ratios, encodeOnce []float64
	for b.Loop() {
		for range fanOutSaturatedPairs {
			start := time.Now()
			saturateFanOut(b, hub, pub, hub.begin(perRound, false), perRound)
			hubRound := time.Since(start)
			hubTime += hubRound

			b.StopTimer()
			ceilingRound := raw.round(b, ceiling, perRound, false)
			preparedRound := raw.round(b, ceiling, perRound, true)
			ratios = append(ratios, ceilingRound.Seconds()/hubRound.Seconds())
			encodeOnce = append(encodeOnce, ceilingRound.Seconds()/preparedRound.Seconds())
			b.StartTimer()
		}
	}
	b.StopTimer()
	saturated := float64(len(ratios)*perRound*n) / hubTime.Seconds()
	b.ReportMetric(saturated, "deliveries/s")
	katatest.ReportPairs(b, "x-ceiling", ratios)
	katatest.ReportPairs(b, "encode-once-speedup", encodeOnce)

	// Latency at a tenth of that load, in pairs of paced rounds: every
	// member reading, then one more member, on a connection of its own,
	// that joined and never reads. Each round starts with the same burst,
	// paced by the reading members, of twice what the silent member's
	// flow-control windows (64 KiB on each side) and queue can hold, so
	// that its queue overflows before the round is measured.
	rate := saturated / float64(n) / 10 // messages a second
	count := min(max(int(rate*fanOutPacedFor.Seconds()), fanOutPacedMin), fanOutPacedMax)
	fill := 2 * (2*65535/fanOutWireSize(fanOutBurstBytes) + chat.cfg.QueueSize)
	paced := func() (p50, p99 int64) {
		burst := hub.begin(fill, false)
		burst.contentBytes = fanOutBurstBytes
		saturateFanOut(b, hub, pub, burst, fill)
		p := hub.begin(count, true)
		pacedFanOut(b, hub, pub, p, rate, count)
		hub.awaitDelivered(b, p, count)
		return p.percentiles()
	}
	var p50s, p99s, p99sStalled, stallRatios []float64
	endedUnread, buffered := 1.0, 0
	for i := range fanOutLatencyPairs {
		p50, p99 := paced()
		silent := openStalled(b, hub, hubAddr, i)
		_, p99Stalled := paced()
		// Whether the server ended the silent stream while it went
		// unread: its disconnect tells the others (USER_LEFT).
		if hub.stalledLeft.Load() <= int64(i) {
			endedUnread = 0
		}
		buffered = max(buffered, silent.evicted(b, fill))
		p50s = append(p50s, float64(p50)/1e3)
		p99s = append(p99s, float64(p99)/1e3)
		p99sStalled = append(p99sStalled, float64(p99Stalled)/1e3)
		stallRatios = append(stallRatios, float64(p99Stalled)/float64(max(p99, 1)))
	}
	katatest.ReportPairs(b, "p50-ms", p50s)
	katatest.ReportPairs(b, "p99-ms", p99s)
	katatest.ReportPairs(b, "p99-ms-stalled", p99sStalled)
	katatest.ReportPairs(b, "p99-ratio-stalled", stallRatios)
	b.ReportMetric(float64(buffered), "stalled-msgs-buffered")
	b.ReportMetric(endedUnread, "stalled-ended-unread")
}

// rawRounds feeds bare handlers, round after round, the same messages:
// each handler waits for the next round and sends the round's messages
// in a loop, marshalling each on its stream or, when shared, sending the
// bytes the first stream encoded. No hub, no queue, no second goroutine:
// what gRPC itself costs to deliver the messages.
type rawRounds[M proto.Message] struct {
	mu     sync.Mutex
	next   chan struct{} // closed when the next round starts
	msgs   []*serving.Shared[M]
	shared bool
}

func newRawRounds[M proto.Message]() rawRounds[M] {
	return rawRounds[M]{next: make(chan struct{})}
}

// start begins a round of msgs.
func (r *rawRounds[M]) start(msgs []*serving.Shared[M], shared bool) {
	r.mu.Lock()
	started := r.next
	r.next = make(chan struct{})
	r.msgs, r.shared = msgs, shared
	r.mu.Unlock()
	close(started)
}

// upcoming returns what the next round to start will close.
func (r *rawRounds[M]) upcoming() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// serve sends each round, from the one next closes on, on stream until
// the stream ends.
func (r *rawRounds[M]) serve(stream grpc.ServerStream, next <-chan struct{}) error {
	for {
		select {
		case <-next:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
		r.mu.Lock()
		msgs, shared := r.msgs, r.shared
		next = r.next
		r.mu.Unlock()
		for _, m := range msgs {
			var err error
			if shared {
				err = m.SendOn(stream)
			} else {
				err = stream.SendMsg(m.Message())
			}
			if err != nil {
				return err
			}
		}
	}
}

// rawFanOut is the ceiling: each Chat stream is answered with a JOIN_ROOM
// confirmation and then with every round's messages (rawRounds).
type rawFanOut struct {
	pb.UnimplementedChatServiceServer
	rawRounds[*pb.ChatMessage]
}

// round sends n messages to every member of t and returns how long it
// took until all of them arrived. Each stream marshals every message
// itself, or, when prepared, sends the bytes the first stream encoded.
func (f *rawFanOut) round(b *testing.B, t *fanOutTally, n int, prepared bool) time.Duration {
	start := time.Now()
	p := t.begin(n, false)
	msgs := make([]*sharedMessage, n)
	for i := range msgs {
		msgs[i] = serving.Share(&pb.ChatMessage{
			MessageId: fmt.Sprintf("%s-%d", fanOutRoom, i+1),
			UserId:    fanOutPublisher,
			RoomId:    fanOutRoom,
			Type:      pb.MessageType_MESSAGE_TYPE_CHAT,
			Content:   fanOutContent(p.id, i, start, p.contentBytes),
			Timestamp: timestamppb.New(start),
		})
	}
	f.start(msgs, prepared)
	t.awaitDelivered(b, p, n)
	return time.Since(start)
}

func (f *rawFanOut) Chat(stream pb.ChatService_ChatServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	next := f.upcoming()
	if err := stream.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: req.GetRoomId()}); err != nil {
		return err
	}
	return f.serve(stream, next)
}
