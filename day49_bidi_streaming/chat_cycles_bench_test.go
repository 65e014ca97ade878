package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// BenchmarkChatConnectDisconnect opens 10,000 chat streams one after
// another over TCP loopback, each joining one of a few rooms and saying
// something; half end with a half-close, half with a cancel. It reports
// what is left once the server has let go of them all: goroutines above
// the baseline taken before the first stream (target 0), the hub's rooms,
// memberships and connections (target 0), and heap in use after over before
// (target near 1).
func BenchmarkChatConnectDisconnect(b *testing.B) {
	const cycles = 10000
	tokens := NewTokenStore()
	tokens.Add("cycler-token", Identity{User: "cycler", Expires: time.Now().Add(time.Hour)})
	chat := NewChatServer(Config{MessagesPerSecond: 1e9, Burst: 1e9})
	addr := startFanOutServer(b, chat, grpc.ChainStreamInterceptor(AuthInterceptor(tokens, time.Now)))
	conn := dialFanOut(b, addr, 1)[0]
	client := pb.NewChatServiceClient(conn)
	ctx := WithToken(context.Background(), "cycler-token")

	cycle := func(i int) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.Chat(ctx)
		if err != nil {
			return err
		}
		room := fmt.Sprint("room-", i%7)
		for _, m := range []*pb.ChatMessage{
			{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room},
			{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "hello"},
		} {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		for { // until the confirmation of the chat message
			m, err := stream.Recv()
			if err != nil {
				return err
			}
			if m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT {
				break
			}
		}
		if i%2 == 0 {
			return nil // the deferred cancel ends it
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		for { // presence from earlier cycles may still arrive
			if _, err := stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("after CloseSend: Recv() = %v, want io.EOF", err)
			}
		}
	}
	if err := cycle(1); err != nil { // warms the connection up
		b.Fatal(err)
	}
	settle := func() (goroutines int, heap uint64) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			rooms, memberships, rest := chat.hub.counts()
			if rooms+memberships+rest == 0 || time.Now().After(deadline) {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return runtime.NumGoroutine(), ms.HeapInuse
			}
			time.Sleep(10 * time.Millisecond) // polling the server's state, not synchronising a test
		}
	}
	baseGoroutines, baseHeap := settle()

	for b.Loop() {
		for i := range cycles {
			if err := cycle(i); err != nil {
				b.Fatalf("cycle %d: %v", i, err)
			}
		}
	}
	b.StopTimer()
	goroutines, heap := settle()
	for deadline := time.Now().Add(10 * time.Second); goroutines > baseGoroutines && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		goroutines, heap = settle()
	}
	rooms, memberships, rest := chat.hub.counts()
	b.ReportMetric(float64(cycles*b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(float64(goroutines-baseGoroutines), "goroutines-left")
	b.ReportMetric(float64(rooms+memberships+rest), "hub-entries-left")
	b.ReportMetric(float64(baseHeap)/(1<<20), "heap-MiB-before")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB-after")
	b.ReportMetric(float64(heap)/float64(baseHeap), "heap-after/before")
}
