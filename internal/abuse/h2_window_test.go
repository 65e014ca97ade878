package abuse

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
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
	var bound int64
	for _, call := range zeroWindowStreams {
		bound += int64(opened[call.method]) * int64(writeQuota+call.largest)
	}
	grew := peakHeapGrowth(t, conn, b)
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

// testZeroWindowClientStreams opens, on connections whose flow-control
// window is zero and never opens, as many of Day 48's client-streaming
// calls as each connection may have (an upload, a collection of points
// and of logs, a batch whose every outcome quotes an id and a key at
// their limits), sends each its messages and ends its side: every
// handler answers once, and no answer can leave. The server may hold,
// for each stream, its one answer: at most 1 MiB (a full batch's, by its
// item cap and maxOutcomeBytes). A good client is served meanwhile, and
// nothing is left once the attacker goes.
func testZeroWindowClientStreams(t *testing.T) {
	conn, b := attack(t, "48")
	ctx := attackContext(t)
	limits := transportLimits["48"]
	ctl := func(n int, tail string) string { return strings.Repeat("\x01", n-len(tail)) + tail }
	run := time.Now().UnixNano() % 1000000
	calls := []struct {
		method, token string
		messages      func(stream int) []proto.Message
	}{
		{"/streaming.v1.FileUploadService/UploadFile", "alice-demo-token", func(s int) []proto.Message {
			sum := sha256.Sum256([]byte("x"))
			return []proto.Message{&pb.FileChunk{FileName: fmt.Sprintf("zero-window-%d-%d.txt", run, s), Data: []byte("x"), TotalSize: 1, IsLastChunk: true, Checksum: hex.EncodeToString(sum[:])}}
		}},
		{"/streaming.v1.DataCollectionService/CollectDataPoints", "", func(int) []proto.Message {
			var points []proto.Message
			for range 30 { // invalid: the answer lists the errors it may
				points = append(points, &pb.DataPoint{Source: "Not A Source"})
			}
			return points
		}},
		{"/streaming.v1.DataCollectionService/CollectLogs", "", func(int) []proto.Message {
			return []proto.Message{&pb.LogEntry{Application: "zero-window", Level: pb.LogLevel_LOG_LEVEL_INFO, Message: "stuck"}}
		}},
		{"/streaming.v1.BatchService/ProcessBatch", "alice-demo-token", func(s int) []proto.Message {
			var items []proto.Message
			for i := range 50 {
				items = append(items, &pb.BatchItem{ItemId: ctl(128, fmt.Sprint(s, "-", i)), Operation: pb.BatchOperation_BATCH_OPERATION_WRITE,
					Key: "root/" + ctl(251, ""), Payload: []byte("x")})
			}
			return items
		}},
	}
	const conns = 4
	var attackers []*h2Client
	opened := map[string]int{}
	for range conns {
		a := attacker(ctx, t, "48", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		attackers = append(attackers, a)
		for s := range limits.streams {
			call := calls[s%len(calls)]
			id, err := a.open(call.method, call.token)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range call.messages(len(attackers)*100 + s) {
				if err := a.message(ctx, id, m); err != nil {
					t.Fatalf("sending on %s's stream %d: %v", call.method, id, err)
				}
			}
			if err := a.write(func() error { return a.fr.WriteData(id, true, nil) }); err != nil {
				t.Fatal(err)
			}
			opened[call.method]++
		}
	}
	bound := int64(conns*limits.streams) << 20
	grew := peakHeapGrowth(t, conn, b)
	if grew > bound+heapSlack {
		t.Fatalf("the server's live heap grew by %.1f MiB while %v streams on %d connections could not take their answers, want at most %d x %d streams x 1 MiB plus %d MiB",
			float64(grew)/(1<<20), opened, conns, conns, limits.streams, heapSlack>>20)
	}
	closeAll(attackers)
	report(t, b, fmt.Sprintf("each stream holds at most its one answer, at most 1 MiB (a full batch's: the item cap times maxOutcomeBytes, computed, not reached by these 50-item batches): %d MiB for %d streams on %d connections; others served", bound>>20, conns*limits.streams, conns),
		fmt.Sprintf("%d uploads, %d point and %d log collections, %d batches with a zero window; live heap +%.1f MiB at most during; a health check served meanwhile",
			opened[calls[0].method], opened[calls[1].method], opened[calls[2].method], opened[calls[3].method], float64(grew)/(1<<20)),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}

// peakHeapGrowth samples the live heap of b's server for a second, while
// checking that a good client is served, and returns the most it grew
// over its size before the attack: answers are made and queued within
// moments of the requests.
func peakHeapGrowth(t *testing.T, conn *grpc.ClientConn, b *before) int64 {
	t.Helper()
	var grew int64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		healthy(t, conn)
		st := serverState(t, b.day)
		grew = max(grew, int64(st.HeapLiveBytes)-int64(b.state.HeapLiveBytes))
	}
	return grew
}
