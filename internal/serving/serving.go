// Package serving holds what both lessons' servers and clients share about
// running for real: explicit message-size and concurrent-stream limits,
// keepalive settings on which server and client agree, and the shutdown
// sequence.
package serving

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Limits are a server's transport limits. The zero value of a field means
// its default.
type Limits struct {
	// MaxRecvBytes bounds one received message. It is also the most one
	// stream can make the server hold while a message arrives: grpc-go
	// opens a stream's flow-control window to a declared message's whole
	// length, so a client that declares a message and stalls one byte
	// short pins that much, whatever StreamWindowBytes says. Each lesson
	// sizes it from its largest legitimate message. Default 4 MiB,
	// grpc-go's own.
	MaxRecvBytes int
	// MaxSendBytes bounds one sent message. Default 4 MiB.
	MaxSendBytes int
	// MaxConcurrentStreams bounds the streams one client connection may
	// have open at once; more wait until one ends. Default 100.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds the metadata (HTTP/2 header list) of one
	// call. Default 16 KiB: a bearer token and a few tracing headers fit
	// many times over, while grpc-go's own default of 16 MiB would let
	// any client, before any token is checked, make the server hold
	// megabytes per call.
	MaxHeaderBytes uint32
	// StreamWindowBytes is each stream's flow-control window: how many
	// bytes a client may send that the handler has not yet received,
	// which the server holds in memory meanwhile. Default 1 MiB, four
	// upload chunks. A fixed window also switches off grpc-go's window
	// estimation, which otherwise grows a busy stream's window toward
	// 16 MiB, so that an upload's memory grew with its length.
	StreamWindowBytes int32
	// ConnWindowBytes bounds the same for all of one connection's
	// streams together. Default 4 MiB.
	ConnWindowBytes int32
}

func (l Limits) withDefaults() Limits {
	if l.MaxRecvBytes == 0 {
		l.MaxRecvBytes = 4 << 20
	}
	if l.MaxSendBytes == 0 {
		l.MaxSendBytes = 4 << 20
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = 100
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 16 << 10
	}
	if l.StreamWindowBytes == 0 {
		l.StreamWindowBytes = 1 << 20
	}
	if l.ConnWindowBytes == 0 {
		l.ConnWindowBytes = 4 << 20
	}
	return l
}

// Keepalive settings. A long-lived stream whose client vanished without
// closing its connection (a laptop lid, a dropped route) would otherwise
// hold its handler, its goroutines and its room memberships for ever: the
// server pings a connection that has been silent for ServerKeepalive.Time
// and closes it when no answer comes within ServerKeepalive.Timeout. The
// client pings no more often than the server's KeepaliveEnforcement allows;
// a client that pings more often is told to go away (ENHANCE_YOUR_CALM).
var (
	ServerKeepalive = keepalive.ServerParameters{
		Time:    time.Minute,
		Timeout: 20 * time.Second,
		// A connection without a call for this long is closed (GOAWAY),
		// so connections opened and left empty do not pile up.
		MaxConnectionIdle: 5 * time.Minute,
		// Every connection is closed after MaxConnectionAge (grpc-go adds
		// up to 10% of jitter), its calls given MaxConnectionAgeGrace to
		// finish. It is the last resort against what no handler can see:
		// a message stalled one byte short of its declared length, and
		// answers a client never takes (a zero flow-control window),
		// which a client that answers pings would otherwise hold for
		// ever. It costs a long-lived stream (a chat, an editing
		// session) a reconnect every quarter of an hour; the lessons'
		// terminal clients reconnect and rejoin by themselves.
		MaxConnectionAge:      15 * time.Minute,
		MaxConnectionAgeGrace: 30 * time.Second,
	}
	KeepaliveEnforcement = keepalive.EnforcementPolicy{
		MinTime:             15 * time.Second,
		PermitWithoutStream: true,
	}
	ClientKeepalive = keepalive.ClientParameters{
		Time:                30 * time.Second,
		Timeout:             10 * time.Second,
		PermitWithoutStream: false,
	}
)

// ServerOptions returns the options a lesson's server is built with: the
// limits, keepalive, and a string that is not UTF-8 answered with
// InvalidArgument naming its field (see utf8.go).
func ServerOptions(l Limits) []grpc.ServerOption {
	l = l.withDefaults()
	return append(InvalidUTF8Options(),
		grpc.MaxRecvMsgSize(l.MaxRecvBytes),
		grpc.MaxSendMsgSize(l.MaxSendBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(l.MaxHeaderBytes),
		grpc.InitialWindowSize(l.StreamWindowBytes),
		grpc.InitialConnWindowSize(l.ConnWindowBytes),
		grpc.KeepaliveParams(ServerKeepalive),
		grpc.KeepaliveEnforcementPolicy(KeepaliveEnforcement),
	)
}

// NewClient connects to a lesson's server the way every lesson's client
// does: with the keepalive the servers accept and, unless opts bring
// transport credentials of their own, in plaintext, which is fine on
// loopback and nowhere else. opts come last, so they win.
func NewClient(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(ClientKeepalive),
	}
	return grpc.NewClient(target, append(base, opts...)...)
}

// GracefulStop stops srv. endStreams, when not nil, first ends the
// long-lived streams (chat sessions, editing sessions), which would
// otherwise hold a graceful stop for ever; then GracefulStop lets running
// calls finish for up to timeout, after which Stop cuts them off and their
// clients see Unavailable. It reports whether it had to cut calls off.
func GracefulStop(srv *grpc.Server, endStreams func(), timeout time.Duration) (forced bool) {
	if endStreams != nil {
		endStreams()
	}
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		srv.Stop()
		<-done
		return true
	}
}

// LogCalls returns interceptors that log every finished call: its method,
// the peer's address, the status code and how long it took. They never
// log metadata, where bearer tokens travel, nor messages, which carry
// users' data; a status message is logged only for server faults
// (Internal, Unknown), where it describes the server's own problem, and
// those are logged at Error, everything else at Info.
func LogCalls(logger *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	logCall := func(ctx context.Context, method string, start time.Time, err error) {
		code := status.Code(err)
		attrs := []slog.Attr{
			slog.String("method", method),
			slog.String("code", code.String()),
			slog.Duration("duration", time.Since(start)),
		}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			attrs = append(attrs, slog.String("peer", p.Addr.String()))
		}
		level := slog.LevelInfo
		switch code {
		case codes.Internal, codes.Unknown:
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
		}
		logger.LogAttrs(ctx, level, "call finished", attrs...)
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, info.FullMethod, start, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), info.FullMethod, start, err)
		return err
	}
	return unary, stream
}
