package main

import (
	"time"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
)

// Authentication comes from internal/bearer, shared with Day 48.
type (
	// Identity is the caller a bearer token stands for.
	Identity = bearer.Identity
	// TokenStore maps bearer tokens to identities.
	TokenStore = bearer.TokenStore
)

// NewTokenStore returns an empty token store.
func NewTokenStore() *TokenStore { return bearer.NewTokenStore() }

// AuthInterceptor authenticates every ChatService, EditorService and
// GameService stream by its "authorization: Bearer <token>" metadata and
// puts the caller's Identity in the stream's context.
func AuthInterceptor(tokens *TokenStore, now func() time.Time) grpc.StreamServerInterceptor {
	return bearer.StreamInterceptor(tokens, now,
		"/streaming.v1.ChatService/", "/streaming.v1.EditorService/", "/streaming.v1.GameService/")
}

var (
	// identityFrom returns the caller AuthInterceptor put in a stream's context.
	identityFrom = bearer.IdentityFrom
	// WithToken returns a context whose calls send the token.
	WithToken = bearer.WithToken
)
