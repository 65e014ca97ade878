package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

func TestChatClient(t *testing.T) {
	newClient := func(t *testing.T, env *chatEnv, token string) *ChatClient {
		t.Helper()
		c, err := NewChatClient(katatest.Target, token, env.DialOptions()...)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("After_CloseSend_waits_for_the_server_to_end_the_stream", func(t *testing.T) {
		// The server's sends are held: its echoes and its final status
		// cannot leave it, so a Run that waits for the server's end is
		// still running after its half-close, and one that returns at
		// CloseSend has returned.
		gate := newSendGate()
		env := startChat(t, Config{}, katatest.WithStreamInterceptor(gate.intercept))
		c := newClient(t, env, "alice-token")
		lines := make(chan string, 1)
		lines <- "only line"
		close(lines)
		gate.hold()
		var received atomic.Int32
		done := make(chan error, 1)
		go func() {
			done <- c.Run(katatest.Context(t), "lobby", lines, func(*pb.ChatMessage) { received.Add(1) })
		}()
		early := func(err error) {
			t.Fatalf("ChatClient.Run() = %v after its half-close, while the server had not yet sent anything: after CloseSend keep receiving until the server ends the stream, then return its status", err)
		}
		select {
		case err := <-done:
			early(err)
		case <-gate.halfClosed:
			select {
			case err := <-done:
				early(err)
			case <-time.After(katatest.NeverWindow):
			}
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("ChatClient.Run(1 line, then end of input) neither half-closed nor returned within %v", katatest.WaitTimeout)
		}
		gate.open()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.OK, "ChatClient.Run(1 line, then end of input) once the server's sends were let go")
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("ChatClient.Run() did not return within %v of the server ending the stream", katatest.WaitTimeout)
		}
		if n := received.Load(); n != 2 {
			t.Fatalf("Run passed %d messages to onMessage, want 2: the confirmation of alice's JOIN_ROOM and the echo of her line, sent by the server after her half-close", n)
		}
	})

	t.Run("Sends_lines_then_half_closes_and_returns_OK", func(t *testing.T) {
		env := startChat(t, Config{})
		bob := env.open(t, "bob")
		bob.join("lobby")
		c := newClient(t, env, "alice-token")
		lines := make(chan string, 2)
		lines <- "first"
		lines <- "second"
		close(lines)
		var mu sync.Mutex
		var seen []string
		err := c.Run(katatest.Context(t), "lobby", lines, func(m *pb.ChatMessage) {
			if m == nil {
				t.Error("ChatClient.Run called onMessage(nil): only messages received go to onMessage, never the stream's end")
			}
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, describe([]*pb.ChatMessage{m})...)
		})
		katatest.WantCode(t, err, codes.OK, "ChatClient.Run(2 lines, then end of input)")
		bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "first")
		bob.expect(pb.MessageType_MESSAGE_TYPE_CHAT, "second")
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(seen, "CHAT alice: second") {
			t.Fatalf("Run delivered %q to onMessage, want the server's echo of alice's messages", seen)
		}
	})

	t.Run("A_failed_Send_returns_after_the_last_onMessage", func(t *testing.T) {
		// onMessage holds the first message (the confirmation of the
		// join) while a line that cannot be sent arrives: Send fails with
		// an error that is not io.EOF. Run must end the stream and wait
		// for its receiving goroutine, which is still in onMessage.
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		lines := make(chan string, 1)
		entered, release := make(chan struct{}), make(chan struct{})
		var inside atomic.Bool
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			done <- c.Run(katatest.Context(t), "lobby", lines, func(*pb.ChatMessage) {
				inside.Store(true)
				defer inside.Store(false)
				once.Do(func() { close(entered) })
				select {
				case <-release:
				case <-time.After(katatest.WaitTimeout):
				}
			})
		}()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v before any message reached onMessage, want the confirmation of its join first", err)
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("no message reached onMessage within %v, want the confirmation of the join", katatest.WaitTimeout)
		}
		lines <- "caf\xe9" // not UTF-8: the client cannot marshal it, so Send fails
		select {
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v while onMessage was still running: after a failed Send, end the stream and wait for the receiving goroutine, its last onMessage call included", err)
		case <-time.After(katatest.NeverWindow):
		}
		close(release)
		select {
		case err := <-done:
			require.Error(t, err, "ChatClient.Run() after a Send that failed")
			require.False(t, inside.Load(), "ChatClient.Run() returned while onMessage was running")
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("ChatClient.Run() did not return within %v of a failed Send", katatest.WaitTimeout)
		}
	})

	t.Run("Returns_the_server_status", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "forged-token")
		lines := make(chan string)
		defer close(lines)
		err := c.Run(katatest.Context(t), "lobby", lines, func(m *pb.ChatMessage) {
			if m == nil {
				t.Error("ChatClient.Run called onMessage(nil) when the stream failed: only messages received go to onMessage")
			}
		})
		katatest.WantCode(t, err, codes.Unauthenticated, "ChatClient.Run(forged token)")
	})

	t.Run("Returns_the_server_status_when_Send_sees_EOF", func(t *testing.T) {
		// The interceptor holds the first Send until the server has
		// refused the stream, so Send returns io.EOF and the status has to
		// come from the receiving side.
		env := startChat(t, Config{})
		firstSend := make(chan error, 1)
		var once sync.Once
		afterRefusal := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &heldClientStream{ClientStream: cs, before: func() { cs.Header() }, after: func(err error) { once.Do(func() { firstSend <- err }) }}, nil
		}
		c, err := NewChatClient(katatest.Target, "forged-token", append(env.DialOptions(), grpc.WithStreamInterceptor(afterRefusal))...)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		lines := make(chan string) // open: only the server's status can end Run
		defer close(lines)
		err = runChatClient(t, c, katatest.Context(t), lines, func(*pb.ChatMessage) {})
		select { // Run has returned: its first Send, if any, is over
		case sendErr := <-firstSend:
			require.ErrorIs(t, sendErr, io.EOF, "the test's setup: the first Send after the server refused the stream")
		default:
			t.Fatalf("ChatClient.Run(forged token) = %v without sending the JOIN_ROOM", err)
		}
		katatest.WantCode(t, err, codes.Unauthenticated, "ChatClient.Run(forged token) when Send returned io.EOF")
	})

	t.Run("Returns_when_the_server_ends_the_stream_while_input_is_open", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		lines := make(chan string) // never closed before Run returns
		defer close(lines)
		joined := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			done <- c.Run(katatest.Context(t), "lobby", lines, func(m *pb.ChatMessage) {
				if m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM {
					once.Do(func() { close(joined) })
				}
			})
		}()
		select {
		case <-joined:
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v before joining", err)
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("ChatClient.Run() did not join within %v", katatest.WaitTimeout)
		}
		env.srv.Shutdown() // ends every live chat with Unavailable
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Unavailable, "ChatClient.Run() when the server ended the stream")
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("ChatClient.Run() did not return after the server ended the stream, want it to return the status without waiting for more input")
		}
	})

	t.Run("Returns_a_Send_error_that_is_not_EOF", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		lines := make(chan string, 1)
		defer close(lines)
		lines <- "caf\xe9" // not UTF-8: Send cannot marshal it
		err := runChatClient(t, c, katatest.Context(t), lines, func(*pb.ChatMessage) {})
		katatest.WantCode(t, err, codes.Internal, "ChatClient.Run() when Send failed to marshal a line")
		env.WaitIdle(t)
	})

	t.Run("Returns_at_once_with_an_ended_context", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		ctx, cancel := context.WithCancel(katatest.Context(t))
		cancel()
		lines := make(chan string)
		defer close(lines)
		err := runChatClient(t, c, ctx, lines, func(*pb.ChatMessage) {})
		katatest.WantCode(t, err, codes.Canceled, "ChatClient.Run() with a context cancelled before the call")
	})

	t.Run("Stops_promptly_on_cancel", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		ctx, cancel := context.WithCancel(katatest.Context(t))
		joined := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			done <- c.Run(ctx, "lobby", make(chan string), func(m *pb.ChatMessage) {
				if m == nil {
					t.Error("ChatClient.Run called onMessage(nil) when the stream ended: only messages received go to onMessage")
				}
				if m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM {
					once.Do(func() { close(joined) })
				}
			})
		}()
		select {
		case <-joined:
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v before joining", err)
		}
		cancel()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Canceled, "ChatClient.Run() after cancel")
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("ChatClient.Run() did not return after cancel")
		}
		env.WaitIdle(t)
	})

	t.Run("Returns_only_after_its_callback_returns", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "alice-token")
		ctx, cancel := context.WithCancel(katatest.Context(t))
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		var inside atomic.Int32
		done := make(chan error, 1)
		var insideAtReturn int32
		go func() {
			err := c.Run(ctx, "lobby", make(chan string), func(m *pb.ChatMessage) {
				inside.Add(1)
				defer inside.Add(-1)
				once.Do(func() {
					close(entered)
					<-release
				})
			})
			insideAtReturn = inside.Load()
			done <- err
		}()
		select {
		case <-entered:
		case err := <-done:
			t.Fatalf("ChatClient.Run() = %v before its first message", err)
		}
		cancel()
		var err error
		returned := false
		select {
		case err = <-done:
			returned = true
		case <-time.After(katatest.NeverWindow):
		}
		close(release)
		if !returned {
			select {
			case err = <-done:
			case <-time.After(katatest.WaitTimeout):
				t.Fatal("ChatClient.Run() did not return after cancel")
			}
		}
		katatest.WantCode(t, err, codes.Canceled, "ChatClient.Run() after cancel")
		require.Zero(t, insideAtReturn, "onMessage calls still running when ChatClient.Run returned after cancel, want none: Run waits for its receiver")
	})

	t.Run("The_servers_banner_prints_a_chat_command_that_parses", func(t *testing.T) {
		cmd := strings.Fields(chatCommand("127.0.0.1:50051", "alice"))
		require.Equal(t, []string{"go", "run", "./day49_bidi_streaming", "chat"}, cmd[:4], "the banner's chat command %q", cmd)
		// Flags parse up to -h, which then stops the command before it
		// dials: any flag runChat does not define fails first.
		err := runChat(append(cmd[4:], "-h"))
		require.ErrorIs(t, err, flag.ErrHelp, "runChat(%q -h), want every flag the banner prints defined", cmd[4:])
	})

	t.Run("Returns_OK_when_the_server_ends_with_OK_while_input_is_open", func(t *testing.T) {
		// A server that ends every stream with OK after its first message,
		// while the client still has lines to send: each Send then sees
		// io.EOF, and the status (OK) comes from the receiver once.
		s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterChatServiceServer(g, endsAfterOne{}) })
		c, err := NewChatClient(katatest.Target, "alice-token", s.DialOptions()...)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		for round := range 5 {
			lines := make(chan string, 1000)
			for i := range cap(lines) {
				lines <- fmt.Sprint("line ", i)
			}
			err := runChatClient(t, c, katatest.Context(t), lines, func(*pb.ChatMessage) {})
			katatest.WantCode(t, err, codes.OK, "ChatClient.Run(1000 lines queued, input open; round %d) against a server that ends with OK after one message", round+1)
		}
	})
}

// endsAfterOne is a chat server that receives one message, then ends the
// stream with OK.
type endsAfterOne struct {
	pb.UnimplementedChatServiceServer
}

func (endsAfterOne) Chat(stream pb.ChatService_ChatServer) error {
	_, err := stream.Recv()
	return err
}

// runChatClient runs c.Run and returns its result, failing the test if
// it does not return within katatest.WaitTimeout.
func runChatClient(t *testing.T, c *ChatClient, ctx context.Context, lines <-chan string, onMessage func(*pb.ChatMessage)) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, "lobby", lines, onMessage) }()
	select {
	case err := <-done:
		return err
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("ChatClient.Run() did not return within %v", katatest.WaitTimeout)
		return nil
	}
}

// heldClientStream calls before ahead of its first SendMsg and reports
// that Send's result to after.
type heldClientStream struct {
	grpc.ClientStream
	before func()
	after  func(error)
	sent   bool
}

func (s *heldClientStream) SendMsg(m any) error {
	if s.sent {
		return s.ClientStream.SendMsg(m)
	}
	s.sent = true
	s.before()
	err := s.ClientStream.SendMsg(m)
	s.after(err)
	return err
}
