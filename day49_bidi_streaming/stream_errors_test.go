package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
)

// handlerResult records how the Chat handler ended: its returned error and
// its stream context's error at that moment.
type handlerResult struct {
	mu                 sync.Mutex
	handlerErr, ctxErr error
	hadDeadline        bool
	done               chan struct{}
}

func (r *handlerResult) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	_, hadDeadline := ss.Context().Deadline()
	err := handler(srv, ss)
	r.mu.Lock()
	r.handlerErr, r.ctxErr, r.hadDeadline = err, ss.Context().Err(), hadDeadline
	r.mu.Unlock()
	close(r.done)
	return err
}

func (r *handlerResult) wait(t *testing.T) (handlerErr, ctxErr error) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(katatest.WaitTimeout):
		t.Fatal("the Chat handler did not return")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handlerErr, r.ctxErr
}

func TestStreamErrors(t *testing.T) {
	t.Run("Client_cancel_is_Canceled_on_the_server_and_cleaned_up", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.Cancel()
		handlerErr, ctxErr := result.wait(t)
		if !errors.Is(ctxErr, context.Canceled) {
			t.Fatalf("server stream context after the client cancelled: %v, want context.Canceled", ctxErr)
		}
		katatest.WantCode(t, handlerErr, codes.Canceled, "Chat handler after the client cancelled")
		wantHubEmpty(t, env)
	})

	t.Run("Deadline_ends_the_stream_on_both_sides", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		alice := env.openWith(t, env.client, "alice", func(ctx context.Context) context.Context {
			ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		})
		alice.join("lobby")
		katatest.WantCode(t, alice.Status(), codes.DeadlineExceeded, "Recv after the stream's deadline")
		_, ctxErr := result.wait(t)
		result.mu.Lock()
		hadDeadline := result.hadDeadline
		result.mu.Unlock()
		// The server's copy of the deadline or the client's cancel,
		// whichever arrives first, ends the server's context.
		if !hadDeadline || ctxErr == nil {
			t.Fatalf("server stream context: deadline propagated %v, ended with %v; want the client's deadline on the server and the context ended", hadDeadline, ctxErr)
		}
		wantHubEmpty(t, env)
	})

	t.Run("CloseSend_finishes_cleanly_and_delivers_the_replies", func(t *testing.T) {
		env := startChat(t, Config{})
		alice := env.open(t, "alice")
		alice.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "lobby"})
		alice.say("lobby", "last words")
		alice.CloseSend()
		got := alice.rest()
		katatest.WantCode(t, alice.Status(), codes.OK, "the stream's status after CloseSend")
		assert.Equal(t, []string{"JOIN_ROOM alice", "CHAT alice: last words"}, got, "what alice received after CloseSend: a half-close still gets every reply")
		wantHubEmpty(t, env)
	})

	t.Run("Half_close_delivers_every_queued_reply", func(t *testing.T) {
		// The writer is held in its first Send while the reader handles
		// 20 messages and the half-close, so 19 replies are still queued
		// when the reader ends. Released, the writer picks between the
		// queue and the reader's end at random; it reaches the end with
		// replies left all but once in 2^19 runs, so a writer that stops
		// draining early is caught on every practical run.
		gate := newSendGate()
		env := startChat(t, Config{QueueSize: 64, Burst: 1000, FloodLimit: 1000}, katatest.WithStreamInterceptor(gate.intercept))
		alice := env.open(t, "alice")
		alice.join("lobby")
		gate.hold()
		var want []string
		for i := range 20 {
			alice.say("lobby", fmt.Sprint("message ", i))
			want = append(want, fmt.Sprint("CHAT alice: message ", i))
		}
		alice.CloseSend()
		gate.waitHalfClosed(t)
		gate.open()
		got := alice.rest()
		assert.Equal(t, want, got, "what alice received after her half-close: every reply queued before it, in order")
		katatest.WantCode(t, alice.Status(), codes.OK, "the stream's status after CloseSend")
		wantHubEmpty(t, env)
	})

	t.Run("Cancel_aborts_instead", func(t *testing.T) {
		result := &handlerResult{done: make(chan struct{})}
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(result.intercept))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.Cancel()
		katatest.WantCode(t, alice.Status(), codes.Canceled, "Recv after cancel")
		handlerErr, _ := result.wait(t)
		katatest.WantCode(t, handlerErr, codes.Canceled, "Chat handler after cancel")
	})

	t.Run("Oversized_message_is_ResourceExhausted", func(t *testing.T) {
		env := startChat(t, Config{MaxContentBytes: 1 << 20}, katatest.WithServerOptions(grpc.MaxRecvMsgSize(4096)))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.say("lobby", strings.Repeat("x", 8192))
		err := alice.Status()
		katatest.WantCode(t, err, codes.ResourceExhausted, "a 8 KiB message to a server with MaxRecvMsgSize 4096")
		wantHubEmpty(t, env)
	})

	t.Run("A_reply_that_cannot_be_sent_ends_the_stream", func(t *testing.T) {
		env := startChat(t, Config{}, katatest.WithServerOptions(grpc.MaxSendMsgSize(1024)))
		alice := env.open(t, "alice")
		alice.join("lobby")
		alice.say("lobby", strings.Repeat("x", 1500)) // its echo is over the server's send limit
		err := alice.Status()
		katatest.WantCode(t, err, codes.ResourceExhausted, "a reply over the server's MaxSendMsgSize")
		wantHubEmpty(t, env)
	})

	t.Run("Shutdown_ends_live_streams_with_Unavailable", func(t *testing.T) {
		env := startChat(t, Config{})
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.join("lobby")
		bob.join("lobby")
		forced := make(chan bool, 1)
		go func() { forced <- serving.GracefulStop(env.grpcServer, env.srv.Shutdown, katatest.WaitTimeout) }()
		for _, s := range []*session{alice, bob} {
			katatest.WantCode(t, s.Status(), codes.Unavailable, "%s's stream when the server shuts down", s.user)
		}
		if <-forced {
			t.Fatal("the graceful stop had to be forced, want the chat streams ended so it completes by itself")
		}
		wantHubEmpty(t, env)
	})

	t.Run("Shutdown_timeout_cuts_off_streams_it_cannot_end", func(t *testing.T) {
		env := startChat(t, Config{})
		alice := env.open(t, "alice")
		alice.join("lobby")
		forced := make(chan bool, 1)
		go func() { forced <- serving.GracefulStop(env.grpcServer, nil, 200*time.Millisecond) }()
		katatest.WantCode(t, alice.Status(), codes.Unavailable, "a chat stream when the server stops after its shutdown timeout")
		if !<-forced {
			t.Fatal("GracefulStop without ending the streams returned without forcing, want Stop after the timeout")
		}
	})
}
