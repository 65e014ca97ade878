package serving

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func TestInvalidUTF8(t *testing.T) {
	// A HealthCheckRequest whose service (field 1) is the byte 0xff.
	badRequest := &katatest.RawMessage{B: []byte{0x0a, 0x01, 0xff}}

	t.Run("Unary_request_is_InvalidArgument_naming_the_field", func(t *testing.T) {
		_, _, conn := start(t, nil, ServerOptions(Limits{})...)
		err := conn.Invoke(katatest.Context(t), "/grpc.health.v1.Health/Check", badRequest, &katatest.RawMessage{}, grpc.ForceCodecV2(katatest.RawCodec{}))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "service") {
			t.Fatalf("Check(service = 0xff) = %v, want InvalidArgument naming the field service", err)
		}
	})

	t.Run("Stream_gets_an_error_from_Recv_and_goes_on", func(t *testing.T) {
		// The handler answers each message with its content, and a bad
		// one with the error's message, then goes on receiving.
		echo := func(srv any, ss grpc.ServerStream) error {
			for {
				var m pb.ChatMessage
				err := ss.RecvMsg(&m)
				switch {
				case IsInvalidUTF8(err):
					m = pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_ERROR, ErrorCode: int32(codes.InvalidArgument), Content: status.Convert(err).Message()}
				case err != nil:
					return nil
				}
				if err := ss.SendMsg(&m); err != nil {
					return err
				}
			}
		}
		_, _, conn := start(t, echo, ServerOptions(Limits{})...)
		stream, err := conn.NewStream(katatest.Context(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/streaming.v1.ChatService/Chat", grpc.ForceCodecV2(katatest.RawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		// ChatMessage content is field 5: first invalid, then "ok".
		for _, b := range [][]byte{{0x2a, 0x02, 'h', 0xff}, {0x2a, 0x02, 'o', 'k'}} {
			if err := stream.SendMsg(&katatest.RawMessage{B: b}); err != nil {
				t.Fatal(err)
			}
		}
		stream.CloseSend()
		var got []string
		for {
			var reply katatest.RawMessage
			if err := stream.RecvMsg(&reply); err != nil {
				break
			}
			var m pb.ChatMessage
			if err := proto.Unmarshal(reply.B, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m.GetType().String()+" "+m.GetContent())
		}
		want := []string{"MESSAGE_TYPE_ERROR field content is not valid UTF-8", "MESSAGE_TYPE_UNSPECIFIED ok"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("replies = %q, want %q: the bad message answered with its field, and the stream going on", got, want)
		}
	})

	t.Run("Valid_messages_are_untouched", func(t *testing.T) {
		_, client, _ := start(t, nil, ServerOptions(Limits{})...)
		if _, err := client.Check(katatest.Context(t), &healthpb.HealthCheckRequest{Service: "café"}); status.Code(err) != codes.NotFound {
			t.Fatalf("Check(service=café) = %v, want NotFound: the service is unknown, and the valid name reached the handler", err)
		}
	})

	t.Run("IsInvalidUTF8_knows_only_its_own_error", func(t *testing.T) {
		if !IsInvalidUTF8(invalidUTF8("content")) {
			t.Fatal("IsInvalidUTF8(its own error) = false")
		}
		for _, err := range []error{nil, errors.New("field x is not valid UTF-8"), status.Error(codes.InvalidArgument, "content is empty")} {
			if IsInvalidUTF8(err) {
				t.Fatalf("IsInvalidUTF8(%v) = true", err)
			}
		}
	})

	t.Run("A_message_nobody_checks_is_not_kept", func(t *testing.T) {
		// A call can end between decoding and the interceptor that would
		// look at the message: a reset, an oversized next message, an
		// interceptor that refuses the call first. Whatever the codec
		// recorded must then go with the message.
		codec := utf8Codec{encoding.GetCodecV2("proto")}
		msg := &healthpb.HealthCheckRequest{}
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(badRequest.B)}, msg); err != nil {
			t.Fatalf("Unmarshal(service = 0xff) = %v, want the message decoded with its bad string recorded", err)
		}
		if field, bad := takeBadString(msg); !bad || field != "service" {
			t.Fatalf("takeBadString(the decoded message) = %q, %v; want \"service\", true", field, bad)
		}
		kept := weak.Make(msg)
		msg = nil
		runtime.GC()
		if kept.Value() != nil {
			t.Fatal("a decoded message with a bad string is still reachable after the call dropped it and a full GC, want nothing keeping it")
		}
	})

	t.Run("A_client_cannot_hide_the_record_in_a_good_message", func(t *testing.T) {
		// The record is an unknown field; a good message that carries it
		// is refused naming what it says, and nothing else is.
		_, _, conn := start(t, nil, ServerOptions(Limits{})...)
		forged := protowire.AppendBytes(protowire.AppendTag(nil, badStringField, protowire.BytesType), []byte("forged"))
		err := conn.Invoke(katatest.Context(t), "/grpc.health.v1.Health/Check", &katatest.RawMessage{B: forged}, &katatest.RawMessage{}, grpc.ForceCodecV2(katatest.RawCodec{}))
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Check(carrying the record field) = %v, want InvalidArgument", err)
		}
		other := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte("x"))
		err = conn.Invoke(katatest.Context(t), "/grpc.health.v1.Health/Check", &katatest.RawMessage{B: other}, &katatest.RawMessage{}, grpc.ForceCodecV2(katatest.RawCodec{}))
		if status.Code(err) != codes.OK {
			t.Fatalf("Check(with an unknown field 99) = %v, want OK: unknown fields are allowed", err)
		}
	})
}
