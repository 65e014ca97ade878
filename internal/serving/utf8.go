package serving

import (
	"context"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A proto3 string must be valid UTF-8. grpc-go's codec refuses one that is
// not while decoding, before any interceptor or handler sees the message,
// and grpc-go then ends the call with Internal: the client is told the
// server broke, the server logs an error of its own, and a long stream is
// lost for one bad message.
//
// utf8Codec decodes such a message anyway, with the invalid bytes of each
// bad string replaced by U+FFFD, and records which field was bad in the
// message itself, as an unknown field (badStringField); the interceptors of
// InvalidUTF8Options then turn the received message into an
// InvalidArgument error naming the field. The record lives and dies with
// the message: a call that ends before an interceptor looks (a reset, an
// oversized next message, an interceptor that refuses it first) leaves
// nothing behind anywhere else. The message never reaches a
// handler, and the stream itself is intact: a handler that gets this
// error from Recv may answer it and go on receiving.
type utf8Codec struct {
	encoding.CodecV2 // grpc-go's proto codec, for everything else
}

// badStringField is the unknown field in which the codec records the path
// of a decoded message's first string field that was not UTF-8: the
// highest field number, which no message of ours declares. A client that
// sends it itself is told that the field it names is not UTF-8, which
// harms nobody but that client.
const badStringField = protowire.MaxValidNumber

func (c utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	msg, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	// Whatever the error says, only a message whose one fault is a bad
	// string decodes once its bad strings are replaced.
	fixed, field := replaceInvalidStrings(data.Materialize(), msg.ProtoReflect().Descriptor(), "")
	if field == "" {
		return err // not a string this codec can point at: keep grpc-go's answer
	}
	fixed = protowire.AppendBytes(protowire.AppendTag(fixed, badStringField, protowire.BytesType), []byte(field))
	return proto.Unmarshal(fixed, msg)
}

// replaceInvalidStrings returns the wire message b with the invalid UTF-8
// of every string field (nested messages and maps included) replaced by
// U+FFFD, and the path of the first such field ("" when none, or when b
// is not a well-formed message).
func replaceInvalidStrings(b []byte, md protoreflect.MessageDescriptor, prefix string) (out []byte, first string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, ""
		}
		tag := b[:n]
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, ""
		}
		value := b[:m]
		b = b[m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(append(out, tag...), value...)
			continue
		}
		content, _ := protowire.ConsumeBytes(value)
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(content):
			if first == "" {
				first = prefix + string(fd.Name())
			}
			content = []byte(strings.ToValidUTF8(string(content), "\uFFFD"))
		case fd.Kind() == protoreflect.MessageKind:
			inner, bad := replaceInvalidStrings(content, fd.Message(), prefix+string(fd.Name())+".")
			if inner == nil && len(content) > 0 {
				return nil, ""
			}
			if first == "" {
				first = bad
			}
			content = inner
		default:
			out = append(append(out, tag...), value...)
			continue
		}
		out = protowire.AppendBytes(append(out, tag...), content)
	}
	return out, first
}

// takeBadString reports the bad field the codec recorded in m. A good
// message, the common case, has no unknown fields: one length check.
func takeBadString(m any) (string, bool) {
	pm, ok := m.(proto.Message)
	if !ok {
		return "", false
	}
	for b := pm.ProtoReflect().GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == badStringField && typ == protowire.BytesType {
			field, n := protowire.ConsumeBytes(b)
			return string(field), n >= 0
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return "", false
}

func invalidUTF8(field string) error {
	return status.Errorf(codes.InvalidArgument, "field %s is not valid UTF-8", field)
}

// IsInvalidUTF8 reports whether err is the error a stream's Recv returns
// for a message with a string that is not UTF-8. The stream is intact
// after it: a handler may answer in-band and receive the next message.
func IsInvalidUTF8(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.InvalidArgument && strings.HasSuffix(st.Message(), " is not valid UTF-8") && strings.HasPrefix(st.Message(), "field ")
}

// InvalidUTF8Options returns the server options that answer a message with
// a string that is not UTF-8 with InvalidArgument naming the field: the
// codec, and interceptors that turn what it found into that error.
func InvalidUTF8Options() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if field, bad := takeBadString(req); bad {
			return nil, invalidUTF8(field)
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, utf8CheckedStream{ss})
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(utf8Codec{encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
	}
}

// utf8CheckedStream turns a received message with a bad string into an
// error from RecvMsg.
type utf8CheckedStream struct{ grpc.ServerStream }

func (s utf8CheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if field, bad := takeBadString(m); bad {
		return invalidUTF8(field)
	}
	return nil
}
