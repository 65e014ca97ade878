package katatest

import "google.golang.org/grpc/mem"

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
