package serving

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Shared is one message on its way to many streams: a chat message to
// every member of a room, a game snapshot to every player. Sending a
// plain message marshals it on every stream's Send, so a message for
// 1,000 members is marshalled 1,000 times; a Shared message is
// marshalled once, by the first stream that sends it (a
// grpc.PreparedMsg), and every stream after it sends the same bytes.
//
// The message must not change once it is shared: streams that send it
// later would send the bytes of the message as it was.
//
// The bytes are made with the codec and compressor of the first stream.
// Every stream of one server has the same codec, and these servers
// register no compressor, so the bytes fit every stream. A server that
// lets clients choose a compressor would need one encoding per
// compressor.
type Shared[M proto.Message] struct {
	msg M

	once     sync.Once
	prepared grpc.PreparedMsg
	err      error
}

// Share wraps m for sending on many streams.
func Share[M proto.Message](m M) *Shared[M] {
	return &Shared[M]{msg: m}
}

// Message returns the shared message; read it, never change it.
func (s *Shared[M]) Message() M { return s.msg }

// SendOn sends the message on stream, encoding it first if no stream has
// yet. It is safe to call from many streams' writers at once; those that
// arrive while the first one encodes wait for its bytes.
func (s *Shared[M]) SendOn(stream grpc.ServerStream) error {
	s.once.Do(func() { s.err = s.prepared.Encode(stream, s.msg) })
	if s.err != nil {
		return s.err
	}
	return stream.SendMsg(&s.prepared)
}
