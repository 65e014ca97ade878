package serving

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
)

// pacedService is a service with client-streaming methods (Up, Work) and
// a bidirectional one (Both, which answers each message), whose handlers
// receive until the stream ends and report how it ended on ended.
type pacedService struct {
	ended chan error
}

const (
	upMethod   = "/test.Paced/Up"
	bothMethod = "/test.Paced/Both"
	// workMethod is Up whose handler works for a minute after each message.
	workMethod = "/test.Paced/Work"
)

func (p *pacedService) register(s *grpc.Server) {
	// receive returns a handler that receives until the stream ends,
	// working for work after each message; echo answers each message.
	receive := func(work time.Duration, echo bool) grpc.StreamHandler {
		return func(_ any, stream grpc.ServerStream) error {
			err := func() error {
				for {
					var m healthpb.HealthCheckRequest
					if err := stream.RecvMsg(&m); errors.Is(err, io.EOF) {
						return stream.SendMsg(&healthpb.HealthCheckResponse{})
					} else if err != nil {
						return err
					}
					time.Sleep(work)
					if echo {
						if err := stream.SendMsg(&healthpb.HealthCheckResponse{}); err != nil {
							return err
						}
					}
				}
			}()
			p.ended <- err
			return err
		}
	}
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Paced",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Up", Handler: receive(0, false), ClientStreams: true},
			{StreamName: "Both", Handler: receive(0, true), ClientStreams: true, ServerStreams: true},
			{StreamName: "Work", Handler: receive(time.Minute, false), ClientStreams: true},
		},
	}, struct{}{})
}

// userFromMetadata names a stream's user by its "user" metadata, standing
// in for an authentication interceptor.
func userFromMetadata(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("user"); len(v) == 1 {
		return v[0], true
	}
	return "", false
}

// startPaced starts pacedService behind limits' interceptor and returns it
// and a connection to it.
func startPaced(t *testing.T, limits StreamLimits) (*pacedService, *grpc.ClientConn) {
	p := &pacedService{ended: make(chan error, 64)}
	s := katatest.Start(t, p.register, katatest.WithStreamInterceptor(limits.Interceptor(userFromMetadata)))
	return p, s.Conn
}

func openStream(t *testing.T, ctx context.Context, conn *grpc.ClientConn, method string) grpc.ClientStream {
	t.Helper()
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: method == bothMethod}
	stream, err := conn.NewStream(ctx, desc, method)
	require.NoError(t, err, "NewStream(%s)", method)
	return stream
}

// message returns a request whose encoded size is exactly n bytes (n ≥ 3).
func message(n int) *healthpb.HealthCheckRequest {
	for text := n - 2; text >= 0; text-- {
		if m := (&healthpb.HealthCheckRequest{Service: strings.Repeat("x", text)}); proto.Size(m) == n {
			return m
		}
	}
	panic("no request encodes to that size")
}

// endedBy waits, in the bubble, until every goroutine is blocked, and
// returns the handler's result if it has ended, or nil and false.
func endedBy(p *pacedService) (error, bool) {
	synctest.Wait()
	select {
	case err := <-p.ended:
		return err, true
	default:
		return nil, false
	}
}

// finishOK half-closes a client stream and requires its result and the
// handler's to be OK; what names the call in a failure.
func finishOK(t *testing.T, p *pacedService, stream grpc.ClientStream, what string) {
	t.Helper()
	require.NoError(t, stream.CloseSend())
	var res healthpb.HealthCheckResponse
	require.NoError(t, stream.RecvMsg(&res), what)
	err, ended := endedBy(p)
	require.True(t, ended)
	require.NoError(t, err, "the handler's result")
}

// bounded returns a context that ends after an hour of the bubble's fake
// time, so that a call that never returns fails the test at once instead
// of waiting while grpc-go's own timers move the clock on.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	t.Cleanup(cancel)
	return ctx
}

func TestStreamLimits(t *testing.T) {
	limits := StreamLimits{PerUser: 2, Idle: 10 * time.Second, MinRate: 100}

	t.Run("A_client_stream_may_be_idle_for_just_under_Idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, upMethod)
			require.NoError(t, stream.SendMsg(message(2000)))
			time.Sleep(limits.Idle - time.Nanosecond)
			_, ended := endedBy(p)
			require.False(t, ended, "the call ended %v after its only message; the idle limit is %v", limits.Idle-time.Nanosecond, limits.Idle)
			// A message just in time starts the idle limit again.
			require.NoError(t, stream.SendMsg(message(3)))
			time.Sleep(limits.Idle - time.Nanosecond)
			_, ended = endedBy(p)
			require.False(t, ended, "the call ended within Idle of its last message")
			finishOK(t, p, stream, "the call's result after CloseSend")
		})
	})

	t.Run("A_client_stream_idle_for_Idle_is_DeadlineExceeded", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, upMethod)
			require.NoError(t, stream.SendMsg(message(2000)))
			time.Sleep(limits.Idle)
			err, ended := endedBy(p)
			require.True(t, ended, "the call is still open %v after its last message; the idle limit is %v", limits.Idle, limits.Idle)
			katatest.WantCode(t, err, codes.DeadlineExceeded, "the handler's Recv after %v idle", limits.Idle)
			assert.ErrorContains(t, err, "idle for at most 10s")
			var res healthpb.HealthCheckResponse
			err = stream.RecvMsg(&res)
			katatest.WantCode(t, err, codes.DeadlineExceeded, "the client's result")
			assert.ErrorContains(t, err, "idle for at most 10s", "the client is told the limit")
		})
	})

	t.Run("A_client_stream_that_never_sends_is_DeadlineExceeded_after_Idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, upMethod)
			time.Sleep(limits.Idle - time.Nanosecond)
			_, ended := endedBy(p)
			require.False(t, ended, "the call ended before Idle passed")
			time.Sleep(time.Nanosecond)
			err, ended := endedBy(p)
			require.True(t, ended, "a call that never sent is still open after Idle")
			katatest.WantCode(t, err, codes.DeadlineExceeded, "the handler's Recv")
			var res healthpb.HealthCheckResponse
			katatest.WantCode(t, stream.RecvMsg(&res), codes.DeadlineExceeded, "the client's result")
		})
	})

	t.Run("A_client_stream_at_MinRate_goes_on_and_below_it_is_DeadlineExceeded", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, upMethod)
			// 100 bytes every second from just before the free first Idle
			// ends: each message 1 ns before the rate requires it.
			time.Sleep(limits.Idle - time.Nanosecond)
			for i := range 20 {
				require.NoError(t, stream.SendMsg(message(100)))
				if i < 19 {
					time.Sleep(time.Second)
				}
			}
			// 2000 bytes earn 20 s past the free Idle: the next message is
			// due 30 s after the start, which is 1 s and 1 ns away.
			time.Sleep(time.Second)
			_, ended := endedBy(p)
			require.False(t, ended, "a call sending exactly %d bytes/s was ended", limits.MinRate)
			time.Sleep(time.Nanosecond)
			err, ended := endedBy(p)
			require.True(t, ended, "a call below %d bytes/s is still open", limits.MinRate)
			katatest.WantCode(t, err, codes.DeadlineExceeded, "the handler's Recv below MinRate")
			assert.ErrorContains(t, err, "received 2000 bytes in 30s of waiting: a client stream must send at least 100 bytes/s once its first 10s have passed")
		})
	})

	t.Run("A_drip_of_small_messages_is_ended_by_the_rate_not_the_idle_limit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, upMethod)
			// A 3-byte message every 5 s never trips the idle limit.
			start := time.Now()
			var err error
			for {
				if e, ended := endedBy(p); ended {
					err = e
					break
				}
				require.Less(t, time.Since(start), time.Minute, "a drip of 3 bytes every 5 s is still open after a minute")
				_ = stream.SendMsg(message(3))
				time.Sleep(5 * time.Second)
			}
			katatest.WantCode(t, err, codes.DeadlineExceeded, "the handler's Recv")
			assert.ErrorContains(t, err, "must send at least 100 bytes/s")
		})
	})

	t.Run("Time_the_handler_spends_working_is_not_charged_to_the_client", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, workMethod)
			// Five small messages at once; the handler takes a minute over
			// each, so the last is read five minutes after it was sent.
			for range 5 {
				require.NoError(t, stream.SendMsg(message(3)))
			}
			finishOK(t, p, stream, "a call whose messages all arrived at once, read by a slow handler")
		})
	})

	t.Run("Bidirectional_streams_may_be_idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, conn := startPaced(t, limits)
			stream := openStream(t, bounded(t), conn, bothMethod)
			time.Sleep(10 * limits.Idle)
			_, ended := endedBy(p)
			require.False(t, ended, "a bidirectional stream was ended for being idle")
			require.NoError(t, stream.CloseSend())
			err, ended := endedBy(p)
			require.True(t, ended)
			require.NoError(t, err)
		})
	})

	t.Run("Streams_are_bounded_per_user_across_connections", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := &pacedService{ended: make(chan error, 64)}
			s := katatest.Start(t, p.register, katatest.WithStreamInterceptor(limits.Interceptor(userFromMetadata)))
			conns := make([]*grpc.ClientConn, 3)
			for i := range conns {
				conn, err := grpc.NewClient(katatest.Target, s.DialOptions()...)
				require.NoError(t, err)
				t.Cleanup(func() { conn.Close() })
				conns[i] = conn
			}
			ctx, cancel := context.WithCancel(bounded(t))
			defer cancel()
			alice := metadata.AppendToOutgoingContext(ctx, "user", "alice")
			var open []grpc.ClientStream
			var res healthpb.HealthCheckResponse
			for _, conn := range conns[:limits.PerUser] {
				stream := openStream(t, alice, conn, bothMethod)
				require.NoError(t, stream.SendMsg(message(3)))
				require.NoError(t, stream.RecvMsg(&res), "the answer that shows alice's stream is let in")
				open = append(open, stream)
			}
			// One past the limit, on a third connection: refused.
			third := openStream(t, alice, conns[2], bothMethod)
			err := third.RecvMsg(&res)
			katatest.WantCode(t, err, codes.ResourceExhausted, "alice's stream %d", limits.PerUser+1)
			assert.ErrorContains(t, err, `user "alice" already has 2 streams open, the limit per user`)
			// Another user, and a call without a user, are served.
			bob := openStream(t, metadata.AppendToOutgoingContext(ctx, "user", "bob"), conns[2], bothMethod)
			require.NoError(t, bob.CloseSend())
			require.NoError(t, bob.RecvMsg(&res), "bob's stream while alice is at her limit")
			anon := openStream(t, ctx, conns[2], bothMethod)
			require.NoError(t, anon.CloseSend())
			require.NoError(t, anon.RecvMsg(&res), "a stream without a user while alice is at her limit")
			// A stream that ends gives its place back.
			require.NoError(t, open[0].CloseSend())
			require.NoError(t, open[0].RecvMsg(&res))
			again := openStream(t, alice, conns[2], bothMethod)
			require.NoError(t, again.CloseSend())
			require.NoError(t, again.RecvMsg(&res), "alice's stream after one of hers ended")
		})
	})
}
