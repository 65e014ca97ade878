// Package katatest starts a lesson's gRPC server on an in-memory bufconn
// listener, one fresh server per test, and offers the few helpers every
// lesson's tests share: a bounded context, status-code assertions in
// `Call(args) = err, want code X` form, and a way to wait until every
// server handler has returned, so cleanup is checked without sleeping.
package katatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"
)

const (
	// TestTimeout bounds every test's context, so a stuck stream fails the
	// test in seconds instead of hanging until go test's own timeout.
	TestTimeout = 10 * time.Second
	// WaitTimeout bounds every wait for something that must happen (a
	// message, a handler's end, a stream's status). It is shorter than
	// TestTimeout, so a wait that is never satisfied fails with its own
	// message, naming what did not happen, before the test's context
	// ends and muddles the verdict.
	WaitTimeout = 5 * time.Second
	// NeverWindow is how long a test watches for something that must not
	// happen (a message that must not arrive, a handler that must not start).
	NeverWindow = 100 * time.Millisecond

	// Target is the address clients dial; the dialer ignores it.
	Target = "passthrough:///bufnet"

	bufSize = 1 << 20
)

// Server is a running in-memory gRPC server and a client connection to it.
type Server struct {
	// Conn is a client connection to the server.
	Conn *grpc.ClientConn

	lis      *bufconn.Listener
	inFlight *handlerTracker
}

type config struct {
	serverOpts   []grpc.ServerOption
	interceptors []grpc.StreamServerInterceptor
}

// Option changes how Start builds the server.
type Option func(*config)

// WithServerOptions passes extra options to grpc.NewServer.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.serverOpts = append(c.serverOpts, opts...) }
}

// WithStreamInterceptor adds a stream interceptor that runs inside the
// harness's own bookkeeping; tests use it to inject faults.
func WithStreamInterceptor(i grpc.StreamServerInterceptor) Option {
	return func(c *config) { c.interceptors = append(c.interceptors, i) }
}

// Start starts a server whose services are registered by register, and
// registers cleanup in the order conn.Close, srv.Stop, lis.Close.
func Start(t testing.TB, register func(*grpc.Server), opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	tracker := newHandlerTracker()
	streamChain := append([]grpc.StreamServerInterceptor{tracker.stream}, cfg.interceptors...)
	serverOpts := append([]grpc.ServerOption{
		grpc.ChainStreamInterceptor(streamChain...),
		grpc.ChainUnaryInterceptor(tracker.unary),
	}, cfg.serverOpts...)

	lis := bufconn.Listen(bufSize)
	srv := grpc.NewServer(serverOpts...)
	register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		// Serve returns when Stop closes the listener; its error then is
		// expected and carries no information.
		_ = srv.Serve(lis)
	}()

	s := &Server{lis: lis, inFlight: tracker}
	conn, err := grpc.NewClient(Target, s.DialOptions()...)
	if err != nil {
		srv.Stop()
		t.Fatalf("grpc.NewClient(%q) = %v, want a connection", Target, err)
	}
	s.Conn = conn

	// t.Cleanup runs last-registered first.
	t.Cleanup(func() {
		lis.Close()
		<-served
	})
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { conn.Close() })
	return s
}

// DialOptions returns the options a client needs to reach this server, for
// code under test that builds its own connection with grpc.NewClient(Target).
func (s *Server) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
}

// InFlight returns how many handlers of fullMethod (for example
// "/streaming.v1.FileUploadService/UploadFile") are running now.
func (s *Server) InFlight(fullMethod string) int { return s.inFlight.count(fullMethod) }

// PeakInFlight returns the most handlers of fullMethod that ever ran at once.
func (s *Server) PeakInFlight(fullMethod string) int { return s.inFlight.peakOf(fullMethod) }

// Started returns how many handlers of fullMethod have started so far.
func (s *Server) Started(fullMethod string) int { return s.inFlight.startedOf(fullMethod) }

// WaitIdle waits until no handler is running, failing the test if that
// takes longer than WaitTimeout. A client sees a stream's status before the
// server's deferred cleanup has finished; WaitIdle closes that gap.
func (s *Server) WaitIdle(t testing.TB) {
	t.Helper()
	s.WaitInFlight(t, "", 0)
}

// WaitInFlight waits until exactly n handlers of fullMethod are running
// ("" counts every method), failing the test after WaitTimeout.
func (s *Server) WaitInFlight(t testing.TB, fullMethod string, n int) {
	t.Helper()
	s.WaitInFlightUnless(t, fullMethod, n, nil)
}

// WaitInFlightUnless is WaitInFlight that gives up, returning false, when
// stop is closed first: the code under test finished before it got there.
func (s *Server) WaitInFlightUnless(t testing.TB, fullMethod string, n int, stop <-chan struct{}) bool {
	t.Helper()
	return s.waitUnless(t, stop, func() bool { return s.inFlight.count(fullMethod) == n }, func() string {
		return fmt.Sprintf("%d running handlers of %q, have %d", n, fullMethod, s.inFlight.count(fullMethod))
	})
}

// WaitStartedUnless waits until at least n handlers of fullMethod have
// started, counting those that already ended, so the wait ends the same
// way however fast they come and go. It returns false when stop is
// closed first, and fails the test after WaitTimeout.
func (s *Server) WaitStartedUnless(t testing.TB, fullMethod string, n int, stop <-chan struct{}) bool {
	t.Helper()
	return s.waitUnless(t, stop, func() bool { return s.inFlight.startedOf(fullMethod) >= n }, func() string {
		return fmt.Sprintf("%d handlers of %q to start, %d did", n, fullMethod, s.inFlight.startedOf(fullMethod))
	})
}

// waitUnless waits, without polling, until done holds after a handler
// starts or ends; false when stop is closed first. After WaitTimeout it
// fails the test with "waited <timeout> for <what()>".
func (s *Server) waitUnless(t testing.TB, stop <-chan struct{}, done func() bool, what func() string) bool {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		changed := s.inFlight.changed()
		if done() {
			return true
		}
		select {
		case <-changed:
		case <-stop:
			return false
		case <-deadline.C:
			t.Fatalf("waited %v for %s", WaitTimeout, what())
		}
	}
}

// Ended returns what each handler of fullMethod that has ended returned,
// in the order they ended: after WaitIdle, how the server saw the streams
// end (a client that cancels makes the handler return Canceled).
func (s *Server) Ended(fullMethod string) []error { return s.inFlight.endedOf(fullMethod) }

// HandlersChanged returns a channel closed at the next start or end of a
// handler, for waits that must also notice a handler ending early.
func (s *Server) HandlersChanged() <-chan struct{} { return s.inFlight.changed() }

// handlerTracker counts running handlers per method. Every change closes
// the current notify channel, so waiters need no polling.
type handlerTracker struct {
	mu      sync.Mutex
	running map[string]int
	peak    map[string]int
	started map[string]int
	ended   map[string][]error
	notify  chan struct{}
}

func newHandlerTracker() *handlerTracker {
	return &handlerTracker{
		running: make(map[string]int),
		peak:    make(map[string]int),
		started: make(map[string]int),
		ended:   make(map[string][]error),
		notify:  make(chan struct{}),
	}
}

// add counts a handler of method starting (delta 1) or ending (delta -1,
// with what it returned).
func (h *handlerTracker) add(method string, delta int, result error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if delta < 0 {
		h.ended[method] = append(h.ended[method], result)
	}
	h.running[method] += delta
	h.running[""] += delta
	if delta > 0 {
		h.started[method]++
		h.peak[method] = max(h.peak[method], h.running[method])
	}
	close(h.notify)
	h.notify = make(chan struct{})
}

func (h *handlerTracker) changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.notify
}

func (h *handlerTracker) count(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running[method]
}

func (h *handlerTracker) peakOf(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak[method]
}

func (h *handlerTracker) startedOf(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started[method]
}

func (h *handlerTracker) endedOf(method string) []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ended[method])
}

func (h *handlerTracker) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	h.add(info.FullMethod, 1, nil)
	defer func() { h.add(info.FullMethod, -1, err) }()
	return handler(srv, ss)
}

func (h *handlerTracker) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	h.add(info.FullMethod, 1, nil)
	defer func() { h.add(info.FullMethod, -1, err) }()
	return handler(ctx, req)
}

// Context returns a context that ends after TestTimeout or when the test ends.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), TestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// WantCode fails the test unless err carries the gRPC status code want. The
// failure reads `<call> = <err>, want code <want>`, where call is built from
// format and args, for example `UploadFile(name="../x.txt")`.
func WantCode(t testing.TB, err error, want codes.Code, format string, args ...any) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s = %v, want code %v", fmt.Sprintf(format, args...), describe(err), want)
	}
}

// WantMessage fails the test unless err's status message contains every
// fragment, so rejections are checked for naming the limit that applied.
func WantMessage(t testing.TB, err error, format string, args ...any) func(fragments ...string) {
	t.Helper()
	return func(fragments ...string) {
		t.Helper()
		msg := status.Convert(err).Message()
		for _, f := range fragments {
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(f)) {
				t.Fatalf("%s = %v, want a message mentioning %q", fmt.Sprintf(format, args...), describe(err), f)
			}
		}
	}
}

func describe(err error) string {
	if err == nil {
		return "<nil> (code OK)"
	}
	if errors.Is(err, context.DeadlineExceeded) && status.Code(err) == codes.Unknown {
		return "context deadline exceeded (the test's context ended first)"
	}
	return err.Error()
}

// ServeTCP serves the services register adds on 127.0.0.1 over real TCP,
// for benchmarks that must include the kernel's loopback path, and
// returns the address. Cleanup stops the server and waits for every
// handler to return.
func ServeTCP(tb testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) (addr string) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(append(opts, grpc.WaitForHandlers(true))...)
	register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis) // returns once Stop closes the listener
	}()
	tb.Cleanup(func() {
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

// EqualProto fails the test unless got has the same meaning as want, as
// protocol buffer messages (or slices and maps of them) compared with
// protocmp, and prints the difference in -want +got form.
func EqualProto(t testing.TB, want, got any, format string, args ...any) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		require.FailNow(t, fmt.Sprintf("%s mismatch (-want +got):\n%s", fmt.Sprintf(format, args...), diff))
	}
}

// Clock is a clock that moves only when the test advances it, for code
// that takes a `func() time.Time`: pass its Now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
