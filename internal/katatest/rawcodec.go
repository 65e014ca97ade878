package katatest

import (
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec
	"google.golang.org/grpc/mem"
)

// RawCodec sends a RawMessage's bytes as they are and receives a message's
// bytes into one, so that a test can send what a proto encoder refuses to
// make (a string that is not UTF-8) and see what the server answered.
// Use it with grpc.ForceCodecV2.
type RawCodec struct{}

// RawMessage is a message's wire bytes.
type RawMessage struct{ B []byte }

// Marshal returns m's bytes.
func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*RawMessage).B)}, nil
}

// Unmarshal keeps the received bytes in v.
func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*RawMessage).B = data.Materialize()
	return nil
}

// Name is "proto": the server decodes what RawCodec sends as protobuf.
func (RawCodec) Name() string { return "proto" }

// MarshalCounter is grpc-go's proto codec, counting how many times it
// marshals the messages a test picks. A server built with
// grpc.ForceServerCodecV2(counter) lets a test see how often a message
// was encoded: once per publish, or once per stream that sent it.
type MarshalCounter struct {
	encoding.CodecV2
	picks func(any) bool

	mu    sync.Mutex
	count int
}

// NewMarshalCounter counts the marshalled messages for which picks is true.
func NewMarshalCounter(picks func(any) bool) *MarshalCounter {
	return &MarshalCounter{CodecV2: encoding.GetCodecV2("proto"), picks: picks}
}

// Marshal encodes v, counting it if it is picked.
func (c *MarshalCounter) Marshal(v any) (mem.BufferSlice, error) {
	if c.picks(v) {
		c.mu.Lock()
		c.count++
		c.mu.Unlock()
	}
	return c.CodecV2.Marshal(v)
}

// Count returns how many picked messages have been marshalled.
func (c *MarshalCounter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}
