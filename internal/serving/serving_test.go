package serving

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves health (and, through unknown, any other method) on a
// bufconn server built with opts, and returns the server, a health client
// and the connection, made with NewClient as the lessons' clients make
// theirs.
func start(t *testing.T, unknown grpc.StreamHandler, opts ...grpc.ServerOption) (*grpc.Server, healthpb.HealthClient, *grpc.ClientConn) {
	t.Helper()
	if unknown != nil {
		opts = append(opts, grpc.UnknownServiceHandler(unknown))
	}
	var srv *grpc.Server
	s := katatest.Start(t, func(g *grpc.Server) {
		srv = g
		healthpb.RegisterHealthServer(g, health.NewServer())
	}, katatest.WithServerOptions(opts...))
	conn, err := NewClient(katatest.Target, s.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, healthpb.NewHealthClient(conn), conn
}

func TestServerOptions(t *testing.T) {
	t.Run("Oversized_message_is_ResourceExhausted", func(t *testing.T) {
		_, client, _ := start(t, nil, ServerOptions(Limits{MaxRecvBytes: 1024})...)
		_, err := client.Check(katatest.Context(t), &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 2048)})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "1024") {
			t.Fatalf("Check(2 KiB request) with MaxRecvBytes 1024 = %v, want ResourceExhausted naming the limit", err)
		}
	})

	t.Run("Oversized_metadata_is_refused", func(t *testing.T) {
		_, client, _ := start(t, nil, ServerOptions(Limits{MaxHeaderBytes: 4096})...)
		ctx := katatest.Context(t)
		// The first call also carries the server's settings to the client.
		_, err := client.Check(metadata.AppendToOutgoingContext(ctx, "x-note", strings.Repeat("n", 2048)), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("Check(2 KiB of metadata) with MaxHeaderBytes 4096 = %v, want OK", err)
		}
		_, err = client.Check(metadata.AppendToOutgoingContext(ctx, "x-note", strings.Repeat("n", 8192)), &healthpb.HealthCheckRequest{})
		if status.Code(err) == codes.OK {
			t.Fatal("Check(8 KiB of metadata) with MaxHeaderBytes 4096 = OK, want it refused")
		}
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("Check() after the refused call = %v, want the connection still serving", err)
		}
	})

	t.Run("Streams_beyond_the_limit_wait", func(t *testing.T) {
		_, client, _ := start(t, nil, ServerOptions(Limits{MaxConcurrentStreams: 1})...)
		ctx := katatest.Context(t)
		firstCtx, endFirst := context.WithCancel(ctx)
		defer endFirst()
		first, err := client.Watch(firstCtx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.Recv(); err != nil {
			t.Fatalf("first Watch: Recv() = %v", err)
		}
		second := make(chan error, 1)
		go func() {
			stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			second <- err
		}()
		select {
		case err := <-second:
			t.Fatalf("a second stream with MaxConcurrentStreams 1 got an answer (%v) while the first was open, want it to wait", err)
		case <-time.After(100 * time.Millisecond):
		}
		endFirst()
		select {
		case err := <-second:
			if err != nil {
				t.Fatalf("the second stream after the first ended: Recv() = %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the second stream never started after the first ended")
		}
	})

	t.Run("Unread_bytes_are_bounded_by_the_stream_window", func(t *testing.T) {
		// A handler that never reads: the client can send one stream
		// window, and what its own transport queues (64 KiB), no more.
		const window, queued = 256 << 10, 64 << 10
		release, started := make(chan struct{}), make(chan struct{}, 1)
		_, _, conn := start(t, blockUntil(release, started), ServerOptions(Limits{StreamWindowBytes: window})...)
		stream := openLongStream(t, conn, started)
		req := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 16<<10)}
		msg := 5 + proto.Size(req) // with gRPC's prefix, as flow control counts it
		sent := make(chan int, 1024)
		go func() {
			defer close(sent)
			for n := msg; stream.SendMsg(req) == nil; n += msg {
				sent <- n
			}
		}()
		t.Cleanup(func() {
			close(release) // the stream ends, and with it the sender
			for range sent {
			}
		})
		// First the whole window must go through, however slow the
		// machine; then nothing more than what the transport queues.
		total := 0
		deadline := time.After(katatest.WaitTimeout)
		for total < window {
			select {
			case n, ok := <-sent:
				if !ok {
					t.Fatalf("Send failed after %d bytes, want it to block", total)
				}
				total = n
			case <-deadline:
				t.Fatalf("a client could send only %d KiB to a handler that never reads, want the stream window of %d KiB", total>>10, window>>10)
			}
		}
		for quiet := false; !quiet; {
			select {
			case n, ok := <-sent:
				if !ok {
					t.Fatalf("Send failed after %d bytes, want it to block", total)
				}
				total = n
			case <-time.After(katatest.NeverWindow):
				quiet = true
			}
			if total > window+queued+msg {
				t.Fatalf("a client sent %d KiB to a handler that never reads, want the stream window of %d KiB plus at most the %d KiB its transport queues", total>>10, window>>10, queued>>10)
			}
		}
	})

	t.Run("Client_keepalive_is_within_what_the_server_allows", func(t *testing.T) {
		if ClientKeepalive.Time < KeepaliveEnforcement.MinTime {
			t.Fatalf("clients ping every %v, the server allows at most one ping per %v: they would be disconnected", ClientKeepalive.Time, KeepaliveEnforcement.MinTime)
		}
		if ClientKeepalive.PermitWithoutStream && !KeepaliveEnforcement.PermitWithoutStream {
			t.Fatal("clients ping without streams, which the server forbids")
		}
	})
}

// blockUntil is a handler for any method that holds its stream until
// release is closed.
func blockUntil(release <-chan struct{}, started chan<- struct{}) grpc.StreamHandler {
	return func(_ any, stream grpc.ServerStream) error {
		started <- struct{}{}
		select {
		case <-release:
			return nil
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// openLongStream opens a stream to a method the unknown handler serves and
// waits until the handler runs.
func openLongStream(t *testing.T, conn *grpc.ClientConn, started <-chan struct{}) grpc.ClientStream {
	t.Helper()
	stream, err := conn.NewStream(katatest.Context(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Long/Stream")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(katatest.TestTimeout):
		t.Fatal("the long stream's handler never started")
	}
	return stream
}

func TestGracefulStop(t *testing.T) {
	t.Run("Ending_the_streams_lets_it_finish_gracefully", func(t *testing.T) {
		release, started := make(chan struct{}), make(chan struct{}, 1)
		srv, _, conn := start(t, blockUntil(release, started))
		stream := openLongStream(t, conn, started)
		if forced := GracefulStop(srv, func() { close(release) }, katatest.TestTimeout); forced {
			t.Fatal("GracefulStop after ending the streams had to force them, want a graceful stop")
		}
		if err := stream.RecvMsg(new(struct{})); !errors.Is(err, io.EOF) {
			t.Fatalf("the ended stream: RecvMsg() = %v, want EOF", err)
		}
	})

	t.Run("Streams_that_do_not_end_are_cut_off_as_Unavailable", func(t *testing.T) {
		release, started := make(chan struct{}), make(chan struct{}, 1)
		defer close(release)
		srv, _, conn := start(t, blockUntil(release, started))
		stream := openLongStream(t, conn, started)
		if forced := GracefulStop(srv, nil, 50*time.Millisecond); !forced {
			t.Fatal("GracefulStop with a stream that never ends reported a graceful stop, want forced")
		}
		if err := stream.RecvMsg(new(struct{})); status.Code(err) != codes.Unavailable {
			t.Fatalf("the cut-off stream: RecvMsg() = %v, want Unavailable", err)
		}
	})
}

func TestLogCalls(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	unary, stream := LogCalls(logger)
	failing := func(any, grpc.ServerStream) error { return status.Error(codes.Internal, "disk failed") }
	_, client, conn := start(t, failing, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	ctx := metadata.AppendToOutgoingContext(katatest.Context(t), "authorization", "Bearer super-secret-token")

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "payload-marker"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check(unknown service) = %v, want NotFound", err)
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Faulty/Stream")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(struct{})); status.Code(err) != codes.Internal {
		t.Fatalf("faulty stream: RecvMsg() = %v, want Internal", err)
	}

	got := logs.String()
	for _, want := range []string{
		"level=INFO msg=\"call finished\" method=/grpc.health.v1.Health/Check code=NotFound",
		"level=ERROR msg=\"call finished\" method=/test.Faulty/Stream code=Internal",
		"error=\"disk failed\"",
		"peer=",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q; they are:\n%s", want, got)
		}
	}
	for _, secret := range []string{"super-secret-token", "payload-marker"} {
		if strings.Contains(got, secret) {
			t.Errorf("logs contain %q, which is a token or a payload; they are:\n%s", secret, got)
		}
	}
}
