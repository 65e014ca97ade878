package main

import (
	"fmt"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// ChatClient is one user's connection to a chat server. Run, in main.go,
// is yours to write.
type ChatClient struct {
	conn  *grpc.ClientConn
	chat  pb.ChatServiceClient
	token string
}

// NewChatClient creates a client for target that authenticates with
// token. Without transport credentials among opts it uses plaintext, fine
// on loopback and nowhere else.
func NewChatClient(target, token string, opts ...grpc.DialOption) (*ChatClient, error) {
	conn, err := serving.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("new chat client for %q: %w", target, err)
	}
	return &ChatClient{conn: conn, chat: pb.NewChatServiceClient(conn), token: token}, nil
}

// Close closes the connection.
func (c *ChatClient) Close() error { return c.conn.Close() }
