package abuse

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// message sends one whole gRPC request message on stream id and keeps
// the client's side of the stream open.
func (c *h2Client) message(ctx context.Context, id uint32, req proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	msg := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(b)))
	return c.send(ctx, id, append(msg, b...))
}

// writeQuota is what grpc-go lets one server stream queue for the
// transport before Send blocks: 64 KiB, which one message may overshoot
// by its own size.
const writeQuota = 64 << 10

// zeroWindowStreams are Day 49's streaming calls, each with the request
// that makes its server answer, and the largest message it answers with.
var zeroWindowStreams = []struct {
	method  string
	request proto.Message
	largest int // bytes
}{
	// The snapshot of a document, which may hold 1 MiB of text.
	{"/streaming.v1.EditorService/Edit", &pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}, 1<<20 + 16<<10},
	// A room's recent history and the notices of a join.
	{"/streaming.v1.ChatService/Chat", &pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: "lobby"}, 16 << 10},
	// A snapshot every tick.
	{"/streaming.v1.GameService/Play", &pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "Zero"}}}, 16 << 10},
}

// testZeroWindowStreams opens, on connections whose flow-control window
// is zero and never opens, as many chat, editor and game streams as each
// connection may have, and on each sends the request that makes the
// server answer: a document's snapshot (the document is at its 1 MiB
// limit by now), a room's history, a game snapshot every tick. None of it
// can leave. The server may hold, for each stream, grpc-go's write quota
// and the one message that overshoots it; a good client is served
// meanwhile, and nothing is left once the attacker goes.
func testZeroWindowStreams(t *testing.T) {
	conn, b := attack(t, "49")
	ctx := attackContext(t)
	limits := transportLimits["49"]
	users := []string{"mallory-demo-token", "dave-demo-token"} // 32 streams each, across connections
	const conns = 4
	var attackers []*h2Client
	opened := map[string]int{}
	for i := range conns {
		a := attacker(ctx, t, "49", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		attackers = append(attackers, a)
		for s := range limits.streams {
			call := zeroWindowStreams[s%len(zeroWindowStreams)]
			id, err := a.open(call.method, users[i%len(users)])
			if err != nil {
				t.Fatal(err)
			}
			if err := a.message(ctx, id, call.request); err != nil {
				t.Fatalf("sending %s's first request on stream %d: %v", call.method, id, err)
			}
			opened[call.method]++
		}
	}
	// The answers are made and queued within moments; sample the live
	// heap for a second and keep the largest figure.
	var bound int64
	for _, call := range zeroWindowStreams {
		bound += int64(opened[call.method]) * int64(writeQuota+call.largest)
	}
	var grew int64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		healthy(t, conn)
		st := serverState(t, "49")
		grew = max(grew, int64(st.HeapLiveBytes)-int64(b.state.HeapLiveBytes))
	}
	if grew > bound+heapSlack {
		t.Fatalf("the server's live heap grew by %.1f MiB while %v streams on %d connections could not take their answers, want at most %.1f MiB (each stream's write quota of 64 KiB and its largest message) plus %d MiB",
			float64(grew)/(1<<20), opened, conns, float64(bound)/(1<<20), heapSlack>>20)
	}
	closeAll(attackers)
	report(t, b, fmt.Sprintf("each stream holds at most grpc-go's write quota (64 KiB) and one message: %.1f MiB for %d streams on %d connections; others served", float64(bound)/(1<<20), conns*limits.streams, conns),
		fmt.Sprintf("%d editor, %d chat and %d game streams with a zero window; live heap +%.1f MiB at most during; a health check served meanwhile",
			opened[zeroWindowStreams[0].method], opened[zeroWindowStreams[1].method], opened[zeroWindowStreams[2].method], float64(grew)/(1<<20)),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}
