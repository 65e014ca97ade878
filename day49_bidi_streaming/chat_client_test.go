package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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

	t.Run("Returns_the_server_status", func(t *testing.T) {
		env := startChat(t, Config{})
		c := newClient(t, env, "forged-token")
		lines := make(chan string)
		defer close(lines)
		err := c.Run(katatest.Context(t), "lobby", lines, func(*pb.ChatMessage) {})
		katatest.WantCode(t, err, codes.Unauthenticated, "ChatClient.Run(forged token)")
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
}
