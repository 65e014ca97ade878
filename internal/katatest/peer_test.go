package katatest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoChat answers every message with a copy; content "fail" ends the
// stream with InvalidArgument, and "count" reports how many messages the
// server has been able to send.
type echoChat struct {
	pb.UnimplementedChatServiceServer
}

func (echoChat) Chat(stream pb.ChatService_ChatServer) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.GetContent() == "fail" {
			return status.Error(codes.InvalidArgument, "asked to fail")
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}

func openEcho(t *testing.T, opts ...katatest.PeerOption) (*katatest.Server, *katatest.Peer[pb.ChatMessage, pb.ChatMessage]) {
	t.Helper()
	s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, echoChat{}) })
	return s, openOn(t, s, opts...)
}

func openOn(tb testing.TB, s *katatest.Server, opts ...katatest.PeerOption) *katatest.Peer[pb.ChatMessage, pb.ChatMessage] {
	client := pb.NewChatServiceClient(s.Conn)
	return katatest.OpenPeer(tb, "alice", func(ctx context.Context) (pb.ChatService_ChatClient, error) { return client.Chat(ctx) }, opts...)
}

func TestPeer(t *testing.T) {
	t.Run("Next_returns_replies_in_order", func(t *testing.T) {
		_, p := openEcho(t)
		p.Send(&pb.ChatMessage{Content: "one"})
		p.Send(&pb.ChatMessage{Content: "two"})
		assert.Equal(t, "one", p.Next().GetContent())
		assert.Equal(t, "two", p.Next().GetContent())
		p.Quiet("after both replies")
		require.NoError(t, p.Finish(), "Finish() after CloseSend")
	})

	t.Run("Status_is_the_servers", func(t *testing.T) {
		_, p := openEcho(t)
		p.Send(&pb.ChatMessage{Content: "fail"})
		katatest.WantCode(t, p.Status(), codes.InvalidArgument, "Status() after the server failed the stream")
		msg, ended := p.NextOrEnd()
		assert.True(t, ended, "NextOrEnd() after the end = %v, want ended", msg)
	})

	t.Run("Cancel_ends_the_stream_as_Canceled", func(t *testing.T) {
		s, p := openEcho(t)
		s.WaitInFlight(t, "/streaming.v1.ChatService/Chat", 1)
		p.Cancel()
		katatest.WantCode(t, p.Status(), codes.Canceled, "Status() after Cancel")
		s.WaitIdle(t)
	})

	t.Run("Read_ahead_receives_without_being_asked", func(t *testing.T) {
		_, p := openEcho(t, katatest.ReadAhead(4))
		for i := range 3 {
			p.Send(&pb.ChatMessage{Content: fmt.Sprint(i)})
		}
		p.CloseSend()
		// With read-ahead the stream's end arrives behind the replies
		// without any Next; Status then discards them.
		require.NoError(t, p.Status())
	})

	t.Run("Quiet_fails_when_a_message_arrives", func(t *testing.T) {
		s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, echoChat{}) })
		failure := runFailing(t, func(tb testing.TB) {
			p := openOn(tb, s)
			p.Send(&pb.ChatMessage{Content: "noise"})
			p.Quiet("in a quiet window")
		})
		assert.Contains(t, failure, "alice received")
		assert.Contains(t, failure, "in a quiet window")
	})

	t.Run("Send_on_an_ended_stream_reports_the_status_not_EOF", func(t *testing.T) {
		s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, echoChat{}) })
		failure := runFailing(t, func(tb testing.TB) {
			p := openOn(tb, s)
			p.Send(&pb.ChatMessage{Content: "fail"})
			_ = p.Status() // the client has seen the end, so Send says io.EOF
			p.Send(&pb.ChatMessage{Content: "late"})
		})
		assert.Contains(t, failure, "InvalidArgument")
		assert.Contains(t, failure, "asked to fail")
	})
}

// fakeTB records the first failure and stops the goroutine it runs on,
// as testing.T's Fatalf does.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	failure string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failure = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// runFailing runs body with a fake test on a goroutine of its own and
// returns the failure it reported; the real test fails if it reported
// none.
func runFailing(t *testing.T, body func(tb testing.TB)) string {
	t.Helper()
	fake := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(fake)
	}()
	<-done
	fake.mu.Lock()
	defer fake.mu.Unlock()
	require.NotEmpty(t, fake.failure, "the helper did not fail")
	return fake.failure
}
