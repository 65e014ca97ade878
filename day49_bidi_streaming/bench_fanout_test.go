package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func stalledUser(i int) string { return fmt.Sprintf("%s-%d", fanOutStalled, i) }

// stalledMember is a member that joined and never reads.
type stalledMember struct {
	user   string
	stream pb.ChatService_ChatClient
	cancel context.CancelFunc
}

// openStalled joins stalled member i on a connection of its own and
// waits until the publisher has seen it join.
func openStalled(b *testing.B, t *fanOutTally, addr string, i int) *stalledMember {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	m := &stalledMember{user: stalledUser(i), cancel: cancel}
	var err error
	m.stream, err = pb.NewChatServiceClient(dialFanOut(b, addr, 1)[0]).Chat(WithToken(ctx, m.user+"-token"))
	if err != nil {
		b.Fatalf("Chat(%s) = %v", m.user, err)
	}
	if err := m.stream.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: fanOutRoom}); err != nil {
		b.Fatalf("%s: Send(JOIN_ROOM) = %v", m.user, err)
	}
	t.awaitPresence(b, func() bool { return t.stalledJoined.Load() > int64(i) }, m.user+"'s USER_JOINED")
	return m
}

// evicted reads what was buffered for the member and then the status it
// was evicted with, failing the benchmark unless that is
// ResourceExhausted. It returns how many chat messages it read.
func (m *stalledMember) evicted(b *testing.B, fill int) (buffered int) {
	b.Helper()
	stop := time.AfterFunc(fanOutWait, m.cancel)
	defer stop.Stop()
	var err error
	for err == nil {
		var msg *pb.ChatMessage
		if msg, err = m.stream.Recv(); msg.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT {
			buffered++
		}
	}
	if status.Code(err) != codes.ResourceExhausted {
		b.Fatalf("%s's stream ended with %v after %d chat messages, want ResourceExhausted (slow consumer) after at most %d", m.user, err, buffered, 2*fill)
	}
	return buffered
}

// fanOutWireSize is the size in bytes, with gRPC's 5-byte prefix, of a
// chat message as the members receive it.
func fanOutWireSize(contentBytes int) int {
	return 5 + proto.Size(&pb.ChatMessage{
		MessageId: fanOutRoom + "-100000",
		UserId:    fanOutPublisher,
		RoomId:    fanOutRoom,
		Type:      pb.MessageType_MESSAGE_TYPE_CHAT,
		Content:   fanOutContent(1, 100000, time.Now(), contentBytes),
		Timestamp: timestamppb.Now(),
	})
}

func fanOutUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("member-%d", i)
	}
	return users
}

// startFanOutServer serves impl on 127.0.0.1 over real TCP, as the demo
// does; cleanup stops it and waits for every handler to return.
func startFanOutServer(b *testing.B, impl pb.ChatServiceServer, opts ...grpc.ServerOption) (addr string) {
	b.Helper()
	return katatest.ServeTCP(b, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, impl) }, opts...)
}

func dialFanOut(b *testing.B, addr string, n int) []*grpc.ClientConn {
	b.Helper()
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		conns[i] = conn
	}
	return conns
}

// joinFanOutMembers joins the members one at a time. Every join sends a
// USER_JOINED to everyone already in the room, so after each batch of
// fanOutWindow joins it waits until those notices have all been read:
// joining 1,000 members back to back would put a notice into every
// member's queue faster than the members read them, and evict them.
func joinFanOutMembers(b *testing.B, t *fanOutTally, conns []*grpc.ClientConn, users []string) {
	b.Helper()
	var want int64
	inRoom := int64(1) // the publisher
	for i, u := range users {
		t.awaitJoined(b, t.open(b, conns[i%len(conns)], i, u))
		want += inRoom
		inRoom++
		if (i+1)%fanOutWindow == 0 || i == len(users)-1 {
			t.awaitPresence(b, func() bool { return t.presence.Load() >= want }, "the members' join notices")
		}
	}
}

// publishFanOut sends message i of phase p: its content carries the phase,
// the index and the send time.
func publishFanOut(b *testing.B, pub *fanOutMember, p *fanOutPhase, i int) {
	m := &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: fanOutRoom, Content: fanOutContent(p.id, i, time.Now(), p.contentBytes)}
	if err := pub.stream.Send(m); err != nil {
		b.Fatalf("publisher: Send(message %d) = %v", i, err)
	}
}

// saturateFanOut publishes count messages as fast as the room takes
// them: never more than fanOutWindow ahead of the slowest member. It
// returns once every member has received all of them.
func saturateFanOut(b *testing.B, t *fanOutTally, pub *fanOutMember, p *fanOutPhase, count int) {
	for i := range count {
		t.awaitDelivered(b, p, i-fanOutWindow+1)
		publishFanOut(b, pub, p, i)
	}
	t.awaitDelivered(b, p, count)
}

// pacedFanOut publishes count messages at rate messages a second, on a
// fixed schedule (a late send does not delay the next ones).
func pacedFanOut(b *testing.B, t *fanOutTally, pub *fanOutMember, p *fanOutPhase, rate float64, count int) {
	// The garbage of the saturated run before is collected first, so that
	// both paced runs start alike.
	runtime.GC()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := range count {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		t.check(b)
		publishFanOut(b, pub, p, i)
	}
}

func fanOutContent(phase int64, i int, sent time.Time, size int) string {
	buf := make([]byte, 0, size)
	buf = strconv.AppendInt(buf, phase, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, sent.UnixNano(), 10)
	buf = append(buf, ' ')
	for len(buf) < size {
		buf = append(buf, 'x')
	}
	return string(buf)
}

func parseFanOutContent(s string) (phase int64, i int, sentNanos int64, ok bool) {
	f1, rest, ok1 := strings.Cut(s, " ")
	f2, rest, ok2 := strings.Cut(rest, " ")
	f3, _, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	phase, err1 := strconv.ParseInt(f1, 10, 64)
	i, err2 := strconv.Atoi(f2)
	sentNanos, err3 := strconv.ParseInt(f3, 10, 64)
	return phase, i, sentNanos, err1 == nil && err2 == nil && err3 == nil
}

// fanOutMember is one Chat stream and the goroutine receiving from it.
type fanOutMember struct {
	id     int // its latency slot in a phase; -1 for the publisher
	user   string
	stream pb.ChatService_ChatClient
	cancel context.CancelFunc
	joined chan struct{} // closed on the JOIN_ROOM confirmation
	done   chan struct{} // closed when the receiving goroutine returns
}

// fanOutTally is what the receiving goroutines of one server's members
// share: the current phase, presence counts, and the first failure.
type fanOutTally struct {
	receivers int // how many members must receive each message
	members   []*fanOutMember
	phase     atomic.Pointer[fanOutPhase]
	phases    int64 // the last phase id; only the benchmark goroutine uses it

	presence      atomic.Int64 // USER_JOINED and USER_LEFT notices received
	stalledJoined atomic.Int64 // stalled members the publisher saw join
	stalledLeft   atomic.Int64 // ... and leave

	closing  atomic.Bool
	failOnce sync.Once
	failed   chan struct{}
	failErr  error // written once before failed is closed
}

func newFanOutTally(receivers int) *fanOutTally {
	return &fanOutTally{receivers: receivers, failed: make(chan struct{})}
}

func (t *fanOutTally) fail(err error) {
	t.failOnce.Do(func() {
		t.failErr = err
		close(t.failed)
	})
}

// check fails the benchmark if a member's stream has failed.
func (t *fanOutTally) check(b *testing.B) {
	select {
	case <-t.failed:
		b.Fatal(t.failErr)
	default:
	}
}

// close ends every member's stream and waits for its receiving goroutine.
func (t *fanOutTally) close() {
	t.closing.Store(true)
	for _, m := range t.members {
		m.cancel()
	}
	for _, m := range t.members {
		<-m.done
	}
}

// open starts a Chat stream for user on conn, sends JOIN_ROOM and starts
// receiving.
func (t *fanOutTally) open(b *testing.B, conn *grpc.ClientConn, id int, user string) *fanOutMember {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := pb.NewChatServiceClient(conn).Chat(WithToken(ctx, user+"-token"))
	if err != nil {
		cancel()
		b.Fatalf("Chat(%s) = %v", user, err)
	}
	m := &fanOutMember{id: id, user: user, stream: stream, cancel: cancel, joined: make(chan struct{}), done: make(chan struct{})}
	t.members = append(t.members, m)
	go t.receive(m)
	if err := stream.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: fanOutRoom}); err != nil {
		b.Fatalf("%s: Send(JOIN_ROOM) = %v", user, err)
	}
	return m
}

func (t *fanOutTally) receive(m *fanOutMember) {
	defer close(m.done)
	joined := false
	for {
		msg, err := m.stream.Recv()
		if err != nil {
			if !t.closing.Load() {
				t.fail(fmt.Errorf("%s: the stream ended: %w", m.user, err))
			}
			return
		}
		switch msg.GetType() {
		case pb.MessageType_MESSAGE_TYPE_CHAT:
			t.delivered(m.id, msg.GetContent(), time.Now())
		case pb.MessageType_MESSAGE_TYPE_JOIN_ROOM:
			if !joined {
				joined = true
				close(m.joined)
			}
		case pb.MessageType_MESSAGE_TYPE_USER_JOINED, pb.MessageType_MESSAGE_TYPE_USER_LEFT:
			t.presence.Add(1)
			if m.id < 0 && strings.HasPrefix(msg.GetUserId(), fanOutStalled) {
				if msg.GetType() == pb.MessageType_MESSAGE_TYPE_USER_JOINED {
					t.stalledJoined.Add(1)
				} else {
					t.stalledLeft.Add(1)
				}
			}
		case pb.MessageType_MESSAGE_TYPE_ERROR:
			t.fail(fmt.Errorf("%s: in-band error %v: %s", m.user, codes.Code(msg.GetErrorCode()), msg.GetContent()))
		}
	}
}

func (t *fanOutTally) delivered(id int, content string, now time.Time) {
	p := t.phase.Load()
	phase, i, sent, ok := parseFanOutContent(content)
	if p == nil || !ok || phase != p.id || i < 0 || i >= len(p.pending) {
		return
	}
	if p.latency != nil && id >= 0 {
		p.latency[id] = append(p.latency[id], now.Sub(time.Unix(0, sent)).Microseconds())
	}
	if p.pending[i].Add(-1) == 0 {
		p.completed <- struct{}{}
	}
}

func (t *fanOutTally) awaitJoined(b *testing.B, m *fanOutMember) {
	b.Helper()
	select {
	case <-m.joined:
	case <-t.failed:
		b.Fatal(t.failErr)
	case <-time.After(fanOutWait):
		b.Fatalf("%s: no JOIN_ROOM confirmation within %v", m.user, fanOutWait)
	}
}

// awaitPresence polls cond until it holds.
func (t *fanOutTally) awaitPresence(b *testing.B, cond func() bool, what string) {
	b.Helper()
	deadline := time.Now().Add(fanOutWait)
	for !cond() {
		t.check(b)
		if time.Now().After(deadline) {
			b.Fatalf("%s did not arrive within %v", what, fanOutWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// fanOutPhase tracks one run's messages: how many members have yet to
// receive each one, and (when recorded) every member's latencies.
type fanOutPhase struct {
	id        int64
	pending   []atomic.Int32
	completed chan struct{} // one value per message every member received
	delivered int           // values taken from completed; benchmark goroutine only
	latency   [][]int64     // microseconds, per member; nil when not recorded

	contentBytes int // the size of its messages' content
}

// begin starts a phase of at most messages messages.
func (t *fanOutTally) begin(messages int, record bool) *fanOutPhase {
	t.phases++
	p := &fanOutPhase{id: t.phases, pending: make([]atomic.Int32, messages), completed: make(chan struct{}, messages), contentBytes: fanOutContentBytes}
	for i := range p.pending {
		p.pending[i].Store(int32(t.receivers))
	}
	if record {
		p.latency = make([][]int64, t.receivers)
	}
	t.phase.Store(p)
	return p
}

// awaitDelivered waits until n of p's messages reached every member.
func (t *fanOutTally) awaitDelivered(b *testing.B, p *fanOutPhase, n int) {
	if p.delivered >= n {
		return
	}
	timeout := time.NewTimer(fanOutWait)
	defer timeout.Stop()
	for p.delivered < n {
		select {
		case <-p.completed:
			p.delivered++
		case <-t.failed:
			b.Fatal(t.failErr)
		case <-timeout.C:
			b.Fatalf("%d of %d messages reached all %d members within %v", p.delivered, n, t.receivers, fanOutWait)
		}
	}
}

// percentiles returns the median and 99th percentile of the recorded
// latencies, in microseconds. Call it once every message was delivered.
func (p *fanOutPhase) percentiles() (p50, p99 int64) {
	var all []int64
	for _, l := range p.latency {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return 0, 0
	}
	slices.Sort(all)
	at := func(q float64) int64 { return all[min(len(all)-1, int(q*float64(len(all))))] }
	return at(0.50), at(0.99)
}
