// Package bearer authenticates gRPC streams by an "authorization: Bearer
// <token>" header, for the lessons' services that need to know who calls.
package bearer

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Identity is the caller a bearer token stands for.
type Identity struct {
	// User owns the keys "<User>/...".
	User string
	// Admin may run destructive operations such as PURGE.
	Admin bool
	// Expires is when the token stops being accepted. The zero time has
	// long passed, so a token without an expiry is never accepted.
	Expires time.Time
}

// TokenStore maps bearer tokens to the identities they stand for. It is
// safe for concurrent use.
//
// It keys its map by each token's SHA-256 digest, never by the token: a
// map lookup compares keys byte by byte and stops at the first difference,
// so with the tokens themselves as keys, the time a wrong guess takes
// would tell an attacker how many of its first bytes were right. A digest
// that matches a guess's first bytes says nothing about the token's.
type TokenStore struct {
	mu     sync.RWMutex
	tokens map[[sha256.Size]byte]Identity
}

// NewTokenStore returns an empty store.
func NewTokenStore() *TokenStore {
	return &TokenStore{tokens: make(map[[sha256.Size]byte]Identity)}
}

// Add makes token stand for id, replacing what it stood for before.
func (s *TokenStore) Add(token string, id Identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[sha256.Sum256([]byte(token))] = id
}

func (s *TokenStore) lookup(token string) (Identity, bool) {
	key := sha256.Sum256([]byte(token))
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.tokens[key]
	return id, ok
}

// StreamInterceptor authenticates every stream whose full method name
// starts with one of methodPrefixes (for example
// "/streaming.v1.BatchService/") by its "authorization: Bearer <token>"
// metadata. A missing, malformed, unknown or expired token (judged by now)
// ends the stream with Unauthenticated before the handler runs; otherwise
// the handler's stream context carries the caller's Identity (see
// IdentityFrom). Other streams pass through untouched.
func StreamInterceptor(tokens *TokenStore, now func() time.Time, methodPrefixes ...string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		guarded := slices.ContainsFunc(methodPrefixes, func(p string) bool { return strings.HasPrefix(info.FullMethod, p) })
		if !guarded {
			return handler(srv, ss)
		}
		id, err := authenticate(ss.Context(), tokens, now)
		if err != nil {
			return err
		}
		ctx := context.WithValue(ss.Context(), identityKey{}, id)
		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// UnaryInterceptor is StreamInterceptor for unary calls: a guarded call
// without a valid token gets Unauthenticated before its handler runs, and
// its handler's context carries the caller's Identity.
func UnaryInterceptor(tokens *TokenStore, now func() time.Time, methodPrefixes ...string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !slices.ContainsFunc(methodPrefixes, func(p string) bool { return strings.HasPrefix(info.FullMethod, p) }) {
			return handler(ctx, req)
		}
		id, err := authenticate(ctx, tokens, now)
		if err != nil {
			return nil, err
		}
		return handler(context.WithValue(ctx, identityKey{}, id), req)
	}
}

// authenticate finds the caller of the stream whose context is ctx. Its
// errors never contain the token: they end up in logs and on the client.
func authenticate(ctx context.Context, tokens *TokenStore, now func() time.Time) (Identity, error) {
	values := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(values) == 0 {
		return Identity{}, status.Error(codes.Unauthenticated, `missing "authorization" metadata: want "Bearer <token>"`)
	}
	if len(values) > 1 {
		return Identity{}, status.Errorf(codes.Unauthenticated, `malformed "authorization" metadata: %d values, want exactly one "Bearer <token>"`, len(values))
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return Identity{}, status.Error(codes.Unauthenticated, `malformed "authorization" metadata: want "Bearer <token>"`)
	}
	id, ok := tokens.lookup(token)
	if !ok {
		return Identity{}, status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	if err := checkExpiry(id, now()); err != nil {
		return Identity{}, err
	}
	return id, nil
}

type identityKey struct{}

// IdentityFrom returns the Identity that StreamInterceptor put in ctx;
// false when there is none (the stream did not pass through it).
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// User returns the name of the user StreamInterceptor authenticated, for
// quotas kept per user (serving.StreamLimits); false when there is none.
func User(ctx context.Context) (string, bool) {
	id, ok := IdentityFrom(ctx)
	return id.User, ok
}

// CheckFresh re-checks, against now, that the token the stream was
// authenticated with has not expired since. A handler calls it for every
// message it receives, so a long stream cannot outlive its token.
func CheckFresh(ctx context.Context, now func() time.Time) error {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller: the stream did not pass through the bearer interceptor")
	}
	return checkExpiry(id, now())
}

func checkExpiry(id Identity, now time.Time) error {
	if !now.Before(id.Expires) {
		return status.Errorf(codes.Unauthenticated, "token of user %q expired at %s (now %s)", id.User, id.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// identityStream is a ServerStream whose context carries the caller.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller's Identity in it.
func (s *identityStream) Context() context.Context { return s.ctx }

// WithToken returns a copy of ctx that sends token as the
// "authorization: Bearer <token>" metadata of the calls made with it.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
