package main

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// startWithoutAuth serves register on a server without AuthInterceptor,
// as a handler wired up by mistake would be served: the handler itself
// must then refuse a stream that carries no identity.
func startWithoutAuth(t *testing.T, register func(*grpc.Server)) *katatest.Server {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last
	return katatest.Start(t, register)
}

// sendGate holds the server's Sends while it is held, so that a test can
// let replies queue up behind a writer stuck in a Send, and it records
// when a handler has read the client's half-close (io.EOF). Serve one
// client stream through it at a time.
type sendGate struct {
	held       atomic.Bool
	release    chan struct{}
	halfClosed chan struct{}
	once       sync.Once
}

func newSendGate() *sendGate {
	return &sendGate{release: make(chan struct{}), halfClosed: make(chan struct{})}
}

// hold makes every later Send wait for open.
func (g *sendGate) hold() { g.held.Store(true) }

// open lets the held Sends go, and every later one.
func (g *sendGate) open() { close(g.release) }

// waitHalfClosed waits until the handler has received the client's
// half-close.
func (g *sendGate) waitHalfClosed(t *testing.T) {
	t.Helper()
	select {
	case <-g.halfClosed:
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("the handler did not read the client's half-close (io.EOF from Recv) within %v", katatest.WaitTimeout)
	}
}

func (g *sendGate) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &gatedStream{ServerStream: ss, g: g})
}

type gatedStream struct {
	grpc.ServerStream
	g *sendGate
}

func (s *gatedStream) SendMsg(m any) error {
	if s.g.held.Load() {
		select {
		case <-s.g.release:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
	return s.ServerStream.SendMsg(m)
}

func (s *gatedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		s.g.once.Do(func() { close(s.g.halfClosed) })
	}
	return err
}

// unvalidatedCodec marshals a ChatMessage whose content is not UTF-8, which
// the proto codec refuses to: it appends the content to the rest of the
// message by hand. A client that is broken, or hostile, sends such bytes.
type unvalidatedCodec struct{}

func (unvalidatedCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*pb.ChatMessage)
	if !ok || utf8.ValidString(m.GetContent()) {
		return encoding.GetCodecV2("proto").Marshal(v)
	}
	rest := proto.Clone(m).(*pb.ChatMessage)
	rest.Content = ""
	b, err := proto.Marshal(rest)
	if err != nil {
		return nil, err
	}
	b = protowire.AppendTag(b, 5, protowire.BytesType) // content
	b = protowire.AppendString(b, m.GetContent())
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (unvalidatedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (unvalidatedCodec) Name() string { return "proto" }
