package main

import (
	"time"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
)

// The lesson's authentication comes from internal/bearer, shared with
// Day 49; these names are what the Day 48 code uses.
type (
	// Identity is the caller a bearer token stands for.
	Identity = bearer.Identity
	// TokenStore maps bearer tokens to identities.
	TokenStore = bearer.TokenStore
)

// NewTokenStore returns an empty token store.
func NewTokenStore() *TokenStore { return bearer.NewTokenStore() }

// guardedServices are the services whose calls need a bearer token: the
// batches, and the uploads, whose quotas are per user. Data collection
// stays open, for the load check and grpcurl.
var guardedServices = []string{"/streaming.v1.BatchService/", "/streaming.v1.FileUploadService/"}

// AuthInterceptor authenticates every stream of a guarded service by its
// "authorization: Bearer <token>" metadata and puts the caller's Identity
// in the stream's context; other services pass through.
func AuthInterceptor(tokens *TokenStore, now func() time.Time) grpc.StreamServerInterceptor {
	return bearer.StreamInterceptor(tokens, now, guardedServices...)
}

// AuthUnaryInterceptor is AuthInterceptor for the guarded services' unary
// calls (GetUploadStatus).
func AuthUnaryInterceptor(tokens *TokenStore, now func() time.Time) grpc.UnaryServerInterceptor {
	return bearer.UnaryInterceptor(tokens, now, guardedServices...)
}

var (
	// identityFrom returns the caller AuthInterceptor put in a stream's context.
	identityFrom = bearer.IdentityFrom
	// checkTokenFresh re-checks, for each received message, that the
	// stream's token has not expired since the stream began.
	checkTokenFresh = bearer.CheckFresh
	// WithToken returns a context whose calls send the token.
	WithToken = bearer.WithToken
)
