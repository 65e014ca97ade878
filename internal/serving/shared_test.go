package serving

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func TestShared(t *testing.T) {
	const streams = 8
	// fanOut serves every stream one message, all of them at once: each
	// handler waits until all have started, then sends with send.
	fanOut := func(t *testing.T, counter *katatest.MarshalCounter, send func(grpc.ServerStream) error) []error {
		t.Helper()
		started := make(chan struct{}, streams)
		release := make(chan struct{})
		_, _, conn := start(t, func(_ any, stream grpc.ServerStream) error {
			started <- struct{}{}
			select {
			case <-release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
			return send(stream)
		}, grpc.ForceServerCodecV2(counter))

		clients := make([]grpc.ClientStream, streams)
		for i := range clients {
			stream, err := conn.NewStream(katatest.Context(t), &grpc.StreamDesc{ServerStreams: true}, "/test.Fan/Out")
			require.NoError(t, err)
			require.NoError(t, stream.SendMsg(&pb.ChatMessage{}))
			require.NoError(t, stream.CloseSend())
			clients[i] = stream
		}
		for range streams {
			select {
			case <-started:
			case <-t.Context().Done():
				t.Fatal("the handlers did not all start")
			}
		}
		close(release)

		errs := make([]error, streams)
		for i, stream := range clients {
			var got pb.ChatMessage
			if errs[i] = stream.RecvMsg(&got); errs[i] == nil {
				require.True(t, proto.Equal(&got, shout), "stream %d received %v, want %v", i, &got, shout)
				errs[i] = stream.RecvMsg(&got) // the status
				require.ErrorIs(t, errs[i], io.EOF, "stream %d: after the message", i)
				errs[i] = nil
			}
		}
		return errs
	}
	picks := func(v any) bool { return proto.Equal(v.(proto.Message), shout) }

	t.Run("Encodes once for every stream", func(t *testing.T) {
		counter := katatest.NewMarshalCounter(picks)
		shared := Share(proto.CloneOf(shout))
		for i, err := range fanOut(t, counter, shared.SendOn) {
			require.NoError(t, err, "stream %d", i)
		}
		assert.Equal(t, 1, counter.Count(), "encodings of a message shared by %d streams", streams)
		assert.Same(t, shared.Message(), shared.Message())
	})

	t.Run("A plain message is encoded on every Send", func(t *testing.T) {
		// What Shared saves, and proof that the counter sees it.
		counter := katatest.NewMarshalCounter(picks)
		for i, err := range fanOut(t, counter, func(s grpc.ServerStream) error { return s.SendMsg(shout) }) {
			require.NoError(t, err, "stream %d", i)
		}
		assert.Equal(t, streams, counter.Count(), "encodings of a message sent by %d streams", streams)
	})

	t.Run("A message that cannot be encoded fails every stream", func(t *testing.T) {
		counter := katatest.NewMarshalCounter(func(any) bool { return false })
		shared := Share(&pb.ChatMessage{Content: "\xff not UTF-8"})
		for i, err := range fanOut(t, counter, shared.SendOn) {
			assert.Equal(t, codes.Internal, status.Code(err), "stream %d ended with %v, want Internal (the marshal error)", i, err)
		}
	})
}

var shout = &pb.ChatMessage{UserId: "alice", RoomId: "lobby", Type: pb.MessageType_MESSAGE_TYPE_CHAT, Content: "to everyone"}
