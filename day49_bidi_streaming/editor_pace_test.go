package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeEditStream hands out requests, then io.EOF, to an interceptor and
// a handler run without a network, inside a synctest bubble.
type fakeEditStream struct {
	grpc.ServerStream // nil: only the methods below are called
	ctx               context.Context
	requests          []*pb.EditRequest
}

func (f *fakeEditStream) Context() context.Context { return f.ctx }

func (f *fakeEditStream) RecvMsg(m any) error {
	if len(f.requests) == 0 {
		return io.EOF
	}
	proto.Merge(m.(*pb.EditRequest), f.requests[0])
	f.requests = f.requests[1:]
	return nil
}

// testPaceChargesTheDocumentsLength runs the server's PaceInterceptor,
// after authentication, on a fake stream that opens a document that does
// not exist, then one of 1,000 characters, and submits six operations, on
// a fake clock. With a budget of 10,000 characters a second and bursts of
// 2,000, the open and the first submit pass at once and each later submit
// waits 100 ms: the open and each operation cost the length of the
// document the stream has open, and a failed open first changes nothing.
func testPaceChargesTheDocumentsLength(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		store.Create("notes", strings.Repeat("a", 1000))
		srv := NewEditorServer(EditorConfig{OpsPerSecond: 1e6, OpsBurst: 1000, CharsPerSecond: 10_000, CharsBurst: 2000}, store)
		tokens := NewTokenStore()
		tokens.Add("dave-token", Identity{User: "dave", Expires: time.Now().Add(time.Hour)})
		auth, pace := AuthInterceptor(tokens, time.Now), srv.PaceInterceptor()

		requests := []*pb.EditRequest{
			{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "missing"}}},
			{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}},
		}
		for range 6 {
			requests = append(requests, &pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{ClientOpId: "x"}}})
		}
		stream := &fakeEditStream{ctx: metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer dave-token")), requests: requests}
		info := &grpc.StreamServerInfo{FullMethod: pb.EditorService_Edit_FullMethodName, IsClientStream: true, IsServerStream: true}
		start := time.Now()
		var received []time.Duration
		handler := func(_ any, ss grpc.ServerStream) error {
			for {
				var req pb.EditRequest
				if err := ss.RecvMsg(&req); err != nil {
					return nil
				}
				if id := req.GetOpen().GetDocumentId(); id != "" {
					// Open it as Edit does, on the stream's context.
					err := srv.open(ss.Context(), newEditor("dave", 8), id)
					require.Equal(t, id == "missing", err != nil, "open(%s) = %v", id, err)
				}
				received = append(received, time.Since(start))
			}
		}
		err := auth(srv, stream, info, func(srv any, ss grpc.ServerStream) error { return pace(srv, ss, info, handler) })
		require.NoError(t, err, "PaceInterceptor after AuthInterceptor on a fake stream")
		ms := time.Millisecond
		assert.Equal(t, []time.Duration{0, 0, 0, 100 * ms, 200 * ms, 300 * ms, 400 * ms, 500 * ms}, received,
			"when a failed open, an open and six submits on a document of 1,000 characters were handled, at 10,000 characters a second after a burst of 2,000")
	})
}
