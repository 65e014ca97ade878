package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// DefaultChunkSize is the chunk size UploadFile uses unless WithChunkSize
// says otherwise. BENCHMARKS.md records the measurement behind it.
const DefaultChunkSize = 256 << 10

// StreamingClient calls the Day 48 services. Its methods in main.go are
// yours to write; this file builds it.
type StreamingClient struct {
	conn       *grpc.ClientConn
	uploads    pb.FileUploadServiceClient
	collection pb.DataCollectionServiceClient

	chunkSize      int
	limiter        *rate.Limiter // nil when uploads are not rate limited
	maxConcurrency int
	retry          RetryPolicy

	// sleep waits between retries; tests replace it to observe the backoff
	// without waiting.
	sleep func(ctx context.Context, d time.Duration) error
	// jitter returns a number in [0, 1) for each backoff; tests replace it
	// with a fixed sequence to check every delay exactly.
	jitter func() float64
}

// RetryPolicy says how UploadWithRetry retries.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt. Default 5.
	MaxAttempts int
	// InitialBackoff is the base delay before the second attempt. Default 100ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the base delay. Default 5s.
	MaxBackoff time.Duration
	// Multiplier grows the base delay after each attempt. Default 2.
	Multiplier float64
	// AttemptTimeout bounds each attempt; zero means only the caller's
	// context bounds it.
	AttemptTimeout time.Duration
}

// DefaultRetryPolicy is the policy a client has unless WithRetryPolicy
// replaces it.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    5,
	InitialBackoff: 100 * time.Millisecond,
	MaxBackoff:     5 * time.Second,
	Multiplier:     2,
}

type clientOptions struct {
	dialOpts       []grpc.DialOption
	chunkSize      int
	bytesPerSecond int
	maxConcurrency int
	retry          RetryPolicy
	uploadToken    string
}

// ClientOption configures NewStreamingClient.
type ClientOption func(*clientOptions)

// WithDialOptions adds options to the grpc.NewClient call. Without
// transport credentials among them the client uses plaintext, fine on
// loopback and nowhere else.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithChunkSize sets how many bytes each FileChunk carries.
func WithChunkSize(n int) ClientOption {
	return func(o *clientOptions) { o.chunkSize = n }
}

// WithRateLimit caps upload bandwidth, across all uploads of this client,
// to bytesPerSecond.
func WithRateLimit(bytesPerSecond int) ClientOption {
	return func(o *clientOptions) { o.bytesPerSecond = bytesPerSecond }
}

// WithMaxConcurrency bounds how many uploads UploadFilesConcurrently runs
// at once. Default 4.
func WithMaxConcurrency(n int) ClientOption {
	return func(o *clientOptions) { o.maxConcurrency = n }
}

// WithUploadToken makes every call to FileUploadService carry
// "authorization: Bearer <token>": uploads belong to the user the token
// stands for, so the methods need no token of their own.
func WithUploadToken(token string) ClientOption {
	return func(o *clientOptions) { o.uploadToken = token }
}

// uploadAuth returns the dial options that add token to the calls of
// FileUploadService that carry no authorization of their own.
func uploadAuth(token string) []grpc.DialOption {
	withToken := func(ctx context.Context, method string) context.Context {
		md, _ := metadata.FromOutgoingContext(ctx)
		if !strings.HasPrefix(method, "/streaming.v1.FileUploadService/") || len(md.Get("authorization")) > 0 {
			return ctx
		}
		return WithToken(ctx, token)
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(withToken(ctx, method), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(withToken(ctx, method), desc, cc, method, opts...)
		}),
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(p RetryPolicy) ClientOption {
	return func(o *clientOptions) { o.retry = p }
}

// NewStreamingClient creates a client for target, for example
// "127.0.0.1:8080". It does not connect until the first call.
func NewStreamingClient(target string, opts ...ClientOption) (*StreamingClient, error) {
	o := clientOptions{chunkSize: DefaultChunkSize, maxConcurrency: 4, retry: DefaultRetryPolicy}
	for _, opt := range opts {
		opt(&o)
	}
	if o.chunkSize <= 0 {
		return nil, fmt.Errorf("new streaming client: chunk size %d, want > 0", o.chunkSize)
	}
	if o.maxConcurrency <= 0 {
		return nil, fmt.Errorf("new streaming client: max concurrency %d, want > 0", o.maxConcurrency)
	}
	if o.bytesPerSecond < 0 {
		return nil, fmt.Errorf("new streaming client: rate limit %d bytes/s, want >= 0", o.bytesPerSecond)
	}
	if o.retry.MaxAttempts <= 0 || o.retry.InitialBackoff <= 0 || o.retry.MaxBackoff < o.retry.InitialBackoff || o.retry.Multiplier < 1 {
		return nil, fmt.Errorf("new streaming client: retry policy %+v: want MaxAttempts > 0, 0 < InitialBackoff <= MaxBackoff, Multiplier >= 1", o.retry)
	}
	if o.uploadToken != "" {
		o.dialOpts = append(uploadAuth(o.uploadToken), o.dialOpts...)
	}
	conn, err := serving.NewClient(target, o.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("new streaming client for %q: %w", target, err)
	}
	c := &StreamingClient{
		conn:           conn,
		uploads:        pb.NewFileUploadServiceClient(conn),
		collection:     pb.NewDataCollectionServiceClient(conn),
		chunkSize:      o.chunkSize,
		maxConcurrency: o.maxConcurrency,
		retry:          o.retry,
		sleep:          sleepContext,
		jitter:         rand.Float64,
	}
	if o.bytesPerSecond > 0 {
		// The burst must hold one chunk, or WaitN could never grant it.
		c.limiter = rate.NewLimiter(rate.Limit(o.bytesPerSecond), max(o.chunkSize, o.bytesPerSecond))
	}
	return c, nil
}

// Close closes the connection; calls still running end with Canceled.
func (c *StreamingClient) Close() error { return c.conn.Close() }

// Progress reports how far an upload has got. Sent counts bytes handed to
// the stream, which the server may not have received yet.
type Progress struct {
	FileName string
	Sent     int64
	Total    int64
}

type uploadOptions struct {
	progress func(Progress)
}

// UploadOption configures one upload.
type UploadOption func(*uploadOptions)

// WithProgress calls fn after every chunk sent, from the uploading goroutine.
func WithProgress(fn func(Progress)) UploadOption {
	return func(o *uploadOptions) { o.progress = fn }
}

func collectUploadOptions(opts []UploadOption) uploadOptions {
	o := uploadOptions{progress: func(Progress) {}}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ErrAttemptTimeout marks an attempt that ran out of its own
// RetryPolicy.AttemptTimeout while the caller's context was still alive.
var ErrAttemptTimeout = errors.New("upload attempt timed out")

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
