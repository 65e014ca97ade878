// Package abuse attacks the lessons' reference servers over real TCP, the
// way a hostile or broken client would, and checks that each attack gets
// the status the lesson promises, leaves nothing behind that a client can
// see, and that a well-behaved client is served during and after it.
//
// The servers are started by `go run ./internal/kata abuse`, which passes
// their addresses in ABUSE_ADDR_48 and ABUSE_ADDR_49, and their debug
// addresses (goroutines, live heap) in ABUSE_DEBUG_48 and ABUSE_DEBUG_49;
// without them the tests skip. Every attack is bounded in count and time,
// on 127.0.0.1.
package abuse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// attackTimeout bounds every attack, its checks included.
const attackTimeout = 30 * time.Second

// dial connects to the server whose address is in env, skipping the test
// when it is not set.
func dial(t *testing.T, env string) *grpc.ClientConn {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		t.Skipf("%s is not set: run the abuse suite with `go run ./internal/kata abuse`", env)
	}
	conn, err := serving.NewClient(addr)
	require.NoError(t, err, "NewClient(%s)", addr)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func attackContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
	t.Cleanup(cancel)
	return ctx
}

// report checks what the attack left behind in the server (see
// before.leftBehind) and logs one row of RELIABILITY.md's table; call it
// once the attack's own streams and connections are closed.
func report(t *testing.T, b *before, expected, got, leftBehind string) {
	t.Helper()
	leftBehind += "; " + b.leftBehind(t)
	t.Logf("RESULT | %s | %s | %s | %s |", t.Name(), expected, got, leftBehind)
}

// Left behind: once an attack's streams and connections are closed, the
// server's goroutines are back to their count before it, within
// goroutineSlack, and its live heap (after a collection) has grown by at
// most heapSlack.
const (
	goroutineSlack = 2
	heapSlack      = 16 << 20
	settleTimeout  = 10 * time.Second
)

// before is a server's state before an attack.
type before struct {
	day   string
	state serving.State
	// partial counts the unfinished uploads' files in Day 48's upload
	// folder; -1 for a server without one.
	partial int
	// mayKeep is how many more partial files the attack may leave: paused
	// uploads that their owner can still resume.
	mayKeep int
}

// partialFiles counts the files of unfinished uploads in the folder that
// Day 48's server stores into (its ".incoming" folder), or returns -1 for
// a server that stores nothing.
func partialFiles(t *testing.T, day string) int {
	t.Helper()
	dir := os.Getenv("ABUSE_DIR_" + day)
	if day != "48" || dir == "" {
		return -1
	}
	entries, err := os.ReadDir(filepath.Join(dir, ".incoming"))
	require.NoError(t, err, "the upload folder's unfinished uploads")
	return len(entries)
}

// debugClient closes its connection after each request, so that no
// connection of its outlives a test.
var debugClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// serverState reads a server's goroutines and live heap from its debug
// endpoint.
func serverState(t *testing.T, day string) serving.State {
	t.Helper()
	addr := os.Getenv("ABUSE_DEBUG_" + day)
	if addr == "" {
		t.Skipf("ABUSE_DEBUG_%s is not set: run the abuse suite with `go run ./internal/kata abuse`", day)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/state", nil)
	require.NoError(t, err)
	res, err := debugClient.Do(req)
	require.NoError(t, err, "reading the server's state")
	defer res.Body.Close()
	var st serving.State
	require.NoError(t, json.NewDecoder(res.Body).Decode(&st), "the server's state")
	io.Copy(io.Discard, res.Body)
	return st
}

// attack connects to day's server, makes a first call (which also brings
// the server's limits to the client) and records the server's state
// before the attack, with the connection's own goroutines in the count.
func attack(t *testing.T, day string) (*grpc.ClientConn, *before) {
	t.Helper()
	conn := dial(t, "ABUSE_ADDR_"+day)
	healthy(t, conn)
	return conn, measure(t, day)
}

// measure records day's server state before an attack.
func measure(t *testing.T, day string) *before {
	return &before{day: day, state: serverState(t, day), partial: partialFiles(t, day)}
}

// leftBehind waits until the server's goroutines are back to their count
// before the attack and its live heap within heapSlack of its size before
// it, failing after settleTimeout, and describes both for the report.
func (b *before) leftBehind(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// A closed connection's buffers go back to grpc-go's pools and leave
	// them over the next collections: the heap, like the goroutines, gets
	// until the deadline to settle.
	after := serverState(t, b.day)
	settled := func() bool {
		return after.Goroutines <= b.state.Goroutines+goroutineSlack && int64(after.HeapLiveBytes)-int64(b.state.HeapLiveBytes) <= heapSlack
	}
	for !settled() && time.Now().Before(deadline) {
		<-tick.C
		after = serverState(t, b.day)
	}
	require.LessOrEqual(t, after.Goroutines, b.state.Goroutines+goroutineSlack,
		"the server's goroutines %v after the attack; %d before it", settleTimeout, b.state.Goroutines)
	grew := int64(after.HeapLiveBytes) - int64(b.state.HeapLiveBytes)
	require.LessOrEqual(t, grew, int64(heapSlack), "the server's live heap grew by %d bytes over the attack", grew)
	summary := fmt.Sprintf("goroutines %d before, %d after; live heap %+.1f MiB", b.state.Goroutines, after.Goroutines, float64(grew)/(1<<20))
	if b.partial >= 0 {
		partial := partialFiles(t, b.day)
		require.LessOrEqual(t, partial, b.partial+b.mayKeep, "files of unfinished uploads after the attack; %d before it, and it may keep %d", b.partial, b.mayKeep)
		summary += fmt.Sprintf("; partial files %d before, %d after", b.partial, partial)
	}
	return summary
}

// healthy fails the test unless the server answers a health check: the
// well-behaved client that must be served after every attack.
func healthy(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "health check after the attack")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, res.GetStatus(), "health after the attack")
}

func TestDay48(t *testing.T) {
	t.Run("Messages_stalled_one_byte_short_are_bounded", func(t *testing.T) { testStalledPrefixes(t, "48") })
	t.Run("Connections_from_one_address_are_bounded", func(t *testing.T) { testManyConnections(t, "48") })
	t.Run("Calls_reset_as_fast_as_they_open_are_bounded", func(t *testing.T) { testRapidReset(t, "48") })
	t.Run("A_CONTINUATION_flood_stops_at_the_header_limit", func(t *testing.T) { testContinuationFlood(t, "48") })
	t.Run("Answers_to_a_client_whose_window_never_opens_are_bounded", testZeroWindow)
	t.Run("Answers_to_client_streams_whose_window_never_opens_are_bounded", testZeroWindowClientStreams)
	t.Run("Oversized_metadata_is_refused", func(t *testing.T) {
		conn, b := attack(t, "48")
		ctx := metadata.AppendToOutgoingContext(attackContext(t), "x-junk", strings.Repeat("j", 1<<20))
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		require.Error(t, err, "a health check carrying 1 MiB of metadata")
		healthy(t, conn)
		report(t, b, "refused (16 KiB header limit)", fmt.Sprintf("refused: %v", status.Code(err)), "nothing: the same connection serves the next call")
	})

	t.Run("Abandoned_uploads_of_one_user_block_nobody_else", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewFileUploadServiceClient(conn)
		ctx := attackContext(t)
		// alice starts 40 resumable uploads and abandons each after its
		// first chunk; every one stays paused for the resume window.
		run := time.Now().UnixNano() % 1000000
		for i := range 40 {
			upCtx, cancel := context.WithCancel(bearer.WithToken(ctx, "alice-demo-token"))
			stream, err := client.UploadFile(upCtx)
			require.NoError(t, err)
			require.NoError(t, stream.Send(&pb.FileChunk{FileName: "junk.txt", UploadId: fmt.Sprint("junk-", run, "-", i), TotalSize: 1 << 20, Data: []byte("x")}))
			// Wait until the server holds its byte, abandon it, and wait
			// until the server has paused it.
			waitState := func(want pb.UploadState) {
				for {
					require.NoError(t, ctx.Err(), "upload %d never reached %v", i, want)
					st, err := client.GetUploadStatus(bearer.WithToken(ctx, "alice-demo-token"), &pb.GetUploadStatusRequest{UploadId: fmt.Sprint("junk-", run, "-", i)})
					if err == nil && st.GetCommittedOffset() == 1 && st.GetState() == want {
						return
					}
				}
			}
			waitState(pb.UploadState_UPLOAD_STATE_RECEIVING)
			cancel()
			waitState(pb.UploadState_UPLOAD_STATE_PAUSED)
		}
		_, err := pb.NewFileUploadServiceClient(conn).GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: "junk-0"})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "GetUploadStatus without a token")
		// root, another user, uploads as usual.
		stream, err := client.UploadFile(bearer.WithToken(ctx, "root-demo-token"))
		require.NoError(t, err)
		require.NoError(t, stream.Send(&pb.FileChunk{FileName: "fine.txt", TotalSize: 2, Data: []byte("ok"), IsLastChunk: true}))
		res, err := stream.CloseAndRecv()
		require.NoError(t, err, "root's upload after alice abandoned 40")
		// alice's own next upload evicts her oldest paused one.
		stream, err = client.UploadFile(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		require.NoError(t, stream.Send(&pb.FileChunk{FileName: "mine.txt", TotalSize: 2, Data: []byte("ok"), IsLastChunk: true}))
		_, err = stream.CloseAndRecv()
		require.NoError(t, err, "alice's own upload at her limit")
		_, err = client.GetUploadStatus(bearer.WithToken(ctx, "alice-demo-token"), &pb.GetUploadStatusRequest{UploadId: fmt.Sprint("junk-", run, "-0")})
		require.Equal(t, codes.NotFound, status.Code(err), "alice's oldest abandoned upload, evicted by her later ones")
		b.mayKeep = 16 // alice's paused uploads, resumable until the window ends
		report(t, b, "another user's upload succeeds; the attacker's oldest paused uploads are evicted (16 per user)", fmt.Sprintf("root stored %s; alice's first abandoned upload NotFound", res.GetFileName()), "at most 16 paused partial files of the attacker's, until the resume window ends")
		healthy(t, conn)
	})

	t.Run("A_drip_fed_upload_is_cut_off_and_stays_resumable", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewFileUploadServiceClient(conn)
		ctx := bearer.WithToken(attackContext(t), "alice-demo-token")
		// alice sends one byte of a 64-byte file every 100 ms: about
		// 500 encoded bytes a second, under the 1 KiB/s minimum. The
		// server runs with -stream-idle 2s (kata.json), so after about
		// 2 s of waiting the upload is cut off.
		id := fmt.Sprint("drip-", time.Now().UnixNano()%1000000)
		const size = 64
		content := []byte(strings.Repeat("d", size))
		chunk := func(offset int, data []byte, last bool) *pb.FileChunk {
			return &pb.FileChunk{FileName: "drip.txt", UploadId: id, TotalSize: size, Offset: int64(offset), Data: data, IsLastChunk: last}
		}
		stream, err := client.UploadFile(ctx)
		require.NoError(t, err)
		start := time.Now()
		drip := time.NewTicker(100 * time.Millisecond) // the attacker's pace
		defer drip.Stop()
		sent := 0
		for ; sent < size-1; sent++ {
			if stream.Send(chunk(sent, content[sent:sent+1], false)) != nil {
				break // the server ended the call
			}
			<-drip.C
		}
		_, cut := stream.CloseAndRecv()
		cutAfter := time.Since(start)
		require.Equal(t, codes.DeadlineExceeded, status.Code(cut), "a drip-fed upload's result after %d of %d bytes in %v", sent, size, cutAfter)
		assert.Contains(t, status.Convert(cut).Message(), "bytes/s", "the error names the minimum rate")
		// Meanwhile another user's upload is served.
		fine, err := client.UploadFile(bearer.WithToken(attackContext(t), "root-demo-token"))
		require.NoError(t, err)
		require.NoError(t, fine.Send(&pb.FileChunk{FileName: "fine.txt", TotalSize: 2, Data: []byte("ok"), IsLastChunk: true}))
		_, err = fine.CloseAndRecv()
		require.NoError(t, err, "root's upload after the drip was cut off")
		// The bytes alice sent are kept, paused: a faster client resumes.
		var st *pb.GetUploadStatusResponse
		for {
			require.NoError(t, ctx.Err(), "the cut-off upload never showed as paused")
			st, err = client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
			require.NoError(t, err, "the cut-off upload's status")
			if st.GetState() == pb.UploadState_UPLOAD_STATE_PAUSED {
				break
			}
		}
		committed := int(st.GetCommittedOffset())
		require.Positive(t, committed, "bytes kept of the cut-off upload")
		resumed, err := client.UploadFile(ctx)
		require.NoError(t, err)
		require.NoError(t, resumed.Send(chunk(committed, content[committed:], true)))
		res, err := resumed.CloseAndRecv()
		require.NoError(t, err, "resuming the cut-off upload at offset %d", committed)
		assert.EqualValues(t, size, res.GetTotalSize(), "the resumed upload's size")
		report(t, b, "DeadlineExceeded naming the minimum rate (1 KiB/s after the idle limit); the upload paused and resumable; others served",
			fmt.Sprintf("%v after %v and %d bytes; resumed from %d and stored; root served", status.Code(cut), cutAfter.Round(100*time.Millisecond), sent, committed),
			"nothing: the resumed upload completed")
		healthy(t, conn)
	})

	t.Run("Idle_collection_streams_on_many_connections_are_closed", func(t *testing.T) {
		conn, b := attack(t, "48")
		ctx := attackContext(t)
		// 4 connections with 25 collection streams each, which need no
		// token and send nothing. The server runs with -stream-idle 2s.
		const conns, perConn = 4, 25
		start := time.Now()
		results := make(chan error, conns*perConn)
		var attackers []*grpc.ClientConn
		for range conns {
			c, err := serving.NewClient(os.Getenv("ABUSE_ADDR_48"))
			require.NoError(t, err)
			attackers = append(attackers, c)
			for range perConn {
				stream, err := pb.NewDataCollectionServiceClient(c).CollectDataPoints(ctx)
				require.NoError(t, err)
				go func() {
					// Wait for the server's answer without half-closing.
					results <- stream.RecvMsg(new(pb.CollectionResult))
				}()
			}
		}
		// A well-behaved collector is served meanwhile.
		good, err := pb.NewDataCollectionServiceClient(conn).CollectDataPoints(ctx)
		require.NoError(t, err)
		require.NoError(t, good.Send(&pb.DataPoint{Source: "abuse-good", Timestamp: timestamppb.Now(), Metrics: map[string]float64{"up": 1}}))
		summary, err := good.CloseAndRecv()
		require.NoError(t, err, "a well-behaved collector during the attack")
		idle := map[codes.Code]int{}
		for range conns * perConn {
			err := <-results
			idle[status.Code(err)]++
			if status.Code(err) == codes.DeadlineExceeded {
				assert.Contains(t, status.Convert(err).Message(), "idle for at most 2s", "the error names the idle limit")
			}
		}
		took := time.Since(start)
		for _, c := range attackers {
			c.Close()
		}
		require.Equal(t, map[codes.Code]int{codes.DeadlineExceeded: conns * perConn}, idle, "how the idle streams ended")
		report(t, b, "every idle stream ends with DeadlineExceeded after the idle limit (2s here, 30s by default); others served",
			fmt.Sprintf("%d of %d DeadlineExceeded within %v; the good collector's %d points accepted", idle[codes.DeadlineExceeded], conns*perConn, took.Round(100*time.Millisecond), summary.GetSuccessfulCount()),
			"nothing")
		healthy(t, conn)
	})

	t.Run("Bad_inputs_get_their_status_codes", func(t *testing.T) {
		conn, b := attack(t, "48")
		ctx := attackContext(t)
		alice := bearer.WithToken(ctx, "alice-demo-token")
		uploads := pb.NewFileUploadServiceClient(conn)
		chunk := func(name string, total, offset int64, data string, last bool) *pb.FileChunk {
			return &pb.FileChunk{FileName: name, TotalSize: total, Offset: offset, Data: []byte(data), IsLastChunk: last}
		}
		whole := func(name string) []*pb.FileChunk { return []*pb.FileChunk{chunk(name, 2, 0, "ok", true)} }
		upload := func(ctx context.Context, chunks []*pb.FileChunk) error {
			stream, err := uploads.UploadFile(ctx)
			if err != nil {
				return err
			}
			for _, c := range chunks {
				if stream.Send(c) != nil {
					break // the server has answered; CloseAndRecv says how
				}
			}
			_, err = stream.CloseAndRecv()
			return err
		}
		type bad struct {
			name   string
			ctx    context.Context
			chunks []*pb.FileChunk
			want   codes.Code
		}
		cases := []bad{
			{"name ../x.txt", alice, whole("../x.txt"), codes.InvalidArgument},
			{"name /etc/passwd", alice, whole("/etc/passwd"), codes.InvalidArgument},
			{"name a/b.txt", alice, whole("a/b.txt"), codes.InvalidArgument},
			{"name ..", alice, whole(".."), codes.InvalidArgument},
			{"empty name", alice, whole(""), codes.InvalidArgument},
			{"NUL in the name", alice, whole("a\x00b.txt"), codes.InvalidArgument},
			{"control character in the name", alice, whole("a\x07b.txt"), codes.InvalidArgument},
			{"right-to-left override in the name", alice, whole("invoice\u202efdp.txt"), codes.InvalidArgument},
			{"300-byte name", alice, whole(strings.Repeat("n", 296) + ".txt"), codes.InvalidArgument},
			{"name x.exe", alice, whole("x.exe"), codes.InvalidArgument},
			{"declared size over the limit", alice, []*pb.FileChunk{chunk("big.txt", 2<<30, 0, "ok", false)}, codes.ResourceExhausted},
			{"bytes over the declared size", alice, []*pb.FileChunk{chunk("over.txt", 2, 0, "abc", true)}, codes.ResourceExhausted},
			{"offset gap", alice, []*pb.FileChunk{chunk("gap.txt", 4, 0, "ab", false), chunk("", 4, 3, "cd", true)}, codes.InvalidArgument},
			{"offset overlap", alice, []*pb.FileChunk{chunk("lap.txt", 4, 0, "ab", false), chunk("", 4, 1, "cd", true)}, codes.InvalidArgument},
			{"oversized chunk", alice, []*pb.FileChunk{chunk("chunk.txt", 2<<20, 0, strings.Repeat("c", 1<<20+1), false)}, codes.ResourceExhausted},
			{"checksum mismatch", alice, []*pb.FileChunk{{FileName: "sum.txt", TotalSize: 2, Data: []byte("ok"), IsLastChunk: true, Checksum: strings.Repeat("0", 64)}}, codes.DataLoss},
			{"short stream", alice, []*pb.FileChunk{chunk("short.txt", 4, 0, "ab", false)}, codes.DataLoss},
			{"chunk after the last one", alice, []*pb.FileChunk{chunk("after.txt", 2, 0, "ok", true), chunk("", 2, 2, "x", false)}, codes.InvalidArgument},
			{"no token", ctx, whole("anon.txt"), codes.Unauthenticated},
			{"bad token", bearer.WithToken(ctx, "guessed-token"), whole("guess.txt"), codes.Unauthenticated},
		}
		right := 0
		for _, c := range cases {
			err := upload(c.ctx, c.chunks)
			if assert.Equal(t, c.want, status.Code(err), "upload with %s: %v", c.name, err) {
				right++
			}
		}
		// A client that cancels mid-stream, and two uploads of one name at
		// once: both stored, under different ids.
		cancelled, cancel := context.WithCancel(alice)
		stream, err := uploads.UploadFile(cancelled)
		require.NoError(t, err)
		require.NoError(t, stream.Send(chunk("cancel.txt", 4, 0, "ab", false)))
		cancel()
		_, err = stream.CloseAndRecv()
		assert.Equal(t, codes.Canceled, status.Code(err), "an upload its client cancelled")
		ids := make(chan string, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				stream, err := uploads.UploadFile(alice)
				if !assert.NoError(t, err) {
					return
				}
				assert.NoError(t, stream.Send(chunk("same.txt", 2, 0, "ok", true)))
				res, err := stream.CloseAndRecv()
				assert.NoError(t, err, "one of two uploads of same.txt at once")
				ids <- res.GetFileId()
			})
		}
		wg.Wait()
		close(ids)
		first, second := <-ids, <-ids
		assert.NotEqual(t, first, second, "the file ids of two uploads of one name")

		// Batches: another user's key, a destructive operation by a
		// non-admin, a duplicate id; each refused in its outcome.
		batch, err := pb.NewBatchServiceClient(conn).ProcessBatch(alice)
		require.NoError(t, err)
		items := []*pb.BatchItem{
			{ItemId: "mine", Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "alice/abuse-bad", Payload: []byte("x")},
			{ItemId: "theirs", Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "root/abuse-bad", Payload: []byte("x")},
			{ItemId: "purge", Operation: pb.BatchOperation_BATCH_OPERATION_PURGE, Key: "alice/abuse-bad"},
			{ItemId: "mine", Operation: pb.BatchOperation_BATCH_OPERATION_DELETE, Key: "alice/abuse-bad"},
		}
		for _, it := range items {
			require.NoError(t, batch.Send(it))
		}
		res, err := batch.CloseAndRecv()
		require.NoError(t, err, "a batch with refused items")
		var outcomes []codes.Code
		for _, o := range res.GetOutcomes() {
			outcomes = append(outcomes, codes.Code(o.GetCode()))
		}
		assert.Equal(t, []codes.Code{codes.OK, codes.PermissionDenied, codes.PermissionDenied, codes.AlreadyExists}, outcomes, "the batch's outcomes: own key, another's key, PURGE by a non-admin, duplicate id")
		_, err = func() (*pb.BatchResult, error) {
			s, err := pb.NewBatchServiceClient(conn).ProcessBatch(ctx)
			if err != nil {
				return nil, err
			}
			s.Send(items[0])
			return s.CloseAndRecv()
		}()
		assert.Equal(t, codes.Unauthenticated, status.Code(err), "a batch without a token")

		// Points and log entries: each bad one counted as an error, the
		// stream goes on.
		points, err := pb.NewDataCollectionServiceClient(conn).CollectDataPoints(ctx)
		require.NoError(t, err)
		now := timestamppb.Now()
		badPoints := []*pb.DataPoint{
			{Source: "", Timestamp: now, Metrics: map[string]float64{"x": 1}},
			{Source: strings.Repeat("s", 300), Timestamp: now, Metrics: map[string]float64{"x": 1}},
			{Source: "abuse", Timestamp: now, Metrics: map[string]float64{"x": math.NaN()}},
			{Source: "abuse", Timestamp: now, Metrics: map[string]float64{"x": math.Inf(1)}},
			{Source: "abuse", Timestamp: now, Metrics: map[string]float64{"x": math.Inf(-1)}},
			{Source: "abuse", Timestamp: now},
			{Source: "abuse", Timestamp: &timestamppb.Timestamp{}, Metrics: map[string]float64{"x": 1}},
			{Source: "abuse", Timestamp: timestamppb.New(time.Now().Add(24 * time.Hour)), Metrics: map[string]float64{"x": 1}},
		}
		for _, p := range badPoints {
			require.NoError(t, points.Send(p))
		}
		require.NoError(t, points.Send(&pb.DataPoint{Source: "abuse", Timestamp: now, Metrics: map[string]float64{"x": 1}}))
		summary, err := points.CloseAndRecv()
		require.NoError(t, err, "a collection with bad points")
		assert.EqualValues(t, len(badPoints), summary.GetErrorCount(), "bad points counted as errors")
		assert.EqualValues(t, 1, summary.GetSuccessfulCount(), "the good point after them")
		logs, err := pb.NewDataCollectionServiceClient(conn).CollectLogs(ctx)
		require.NoError(t, err)
		require.NoError(t, logs.Send(&pb.LogEntry{Application: "abuse", Level: pb.LogLevel(42), Timestamp: now, Message: "unknown level"}))
		require.NoError(t, logs.Send(&pb.LogEntry{Application: "abuse", Level: pb.LogLevel_LOG_LEVEL_ERROR, Timestamp: now, Message: strings.Repeat("m", 8<<10+1)}))
		logged, err := logs.CloseAndRecv()
		require.NoError(t, err, "a log stream with bad entries")
		assert.EqualValues(t, 2, logged.GetErrorCount(), "bad log entries counted as errors")

		report(t, b, "each bad input of SPEC §7 gets its code (or is counted as an error in a stream that goes on)",
			fmt.Sprintf("%d of %d bad uploads with their code; a cancelled upload Canceled; two uploads of one name both stored; batch outcomes %v; %d of %d bad points and %d of 2 bad log entries counted as errors",
				right, len(cases), outcomes, summary.GetErrorCount(), len(badPoints), logged.GetErrorCount()),
			"nothing")
		healthy(t, conn)
	})

	t.Run("A_full_disk_is_ResourceExhausted_and_leaves_no_file", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewFileUploadServiceClient(conn)
		ctx := bearer.WithToken(attackContext(t), "root-demo-token")
		// The server runs with -disk-room 1048576 (kata.json): an upload's
		// file fails as if the disk were full once it holds 1 MiB.
		stream, err := client.UploadFile(ctx)
		require.NoError(t, err)
		const size = 2 << 20
		chunk := []byte(strings.Repeat("f", 256<<10))
		for offset := 0; offset < size; offset += len(chunk) {
			if stream.Send(&pb.FileChunk{FileName: "full.txt", TotalSize: size, Offset: int64(offset), Data: chunk, IsLastChunk: offset+len(chunk) == size}) != nil {
				break
			}
		}
		_, full := stream.CloseAndRecv()
		require.Equal(t, codes.ResourceExhausted, status.Code(full), "an upload that fills the disk: %v", full)
		// A small file still fits.
		small, err := client.UploadFile(ctx)
		require.NoError(t, err)
		require.NoError(t, small.Send(&pb.FileChunk{FileName: "small.txt", TotalSize: 2, Data: []byte("ok"), IsLastChunk: true}))
		_, err = small.CloseAndRecv()
		require.NoError(t, err, "a small upload after the disk was full")
		report(t, b, "ResourceExhausted, not Internal; the partial file removed; a small upload still stored",
			fmt.Sprintf("%v: %s", status.Code(full), status.Convert(full).Message()), "nothing")
		healthy(t, conn)
	})

	t.Run("Parallel_batch_streams_share_one_pace", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewBatchServiceClient(conn)
		ctx := attackContext(t)
		// 10 streams of alice's send 300 items each. Paced per user at
		// 1000 items a second with a burst of 100, the 3000 items (and a
		// wait for each stream's end) take about 2.9 seconds; paced per
		// stream they would take 0.3.
		const streams, perStream = 10, 300
		batch := func(token, key string, n int) (*pb.BatchResult, error) {
			stream, err := client.ProcessBatch(bearer.WithToken(ctx, token))
			if err != nil {
				return nil, err
			}
			for i := range n {
				if err := stream.Send(&pb.BatchItem{ItemId: fmt.Sprint(i), Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: key, Payload: []byte("x")}); err != nil {
					break
				}
			}
			return stream.CloseAndRecv()
		}
		var wg sync.WaitGroup
		applied := make([]int64, streams)
		errs := make([]error, streams)
		start := time.Now()
		for s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := batch("alice-demo-token", fmt.Sprint("alice/abuse-", s), perStream)
				applied[s], errs[s] = res.GetAppliedCount(), err
			}()
		}
		// A well-behaved user during the attack.
		rootStart := time.Now()
		res, err := batch("root-demo-token", "root/abuse", 10)
		rootTook := time.Since(rootStart)
		require.NoError(t, err, "root's batch while alice floods")
		assert.EqualValues(t, 10, res.GetAppliedCount(), "root's applied items")
		wg.Wait()
		elapsed := time.Since(start)
		var total int64
		for s := range streams {
			require.NoError(t, errs[s], "alice's stream %d", s)
			total += applied[s]
		}
		assert.EqualValues(t, streams*perStream, total, "alice's applied items")
		floor := time.Duration(float64(streams*perStream-100) / 1000 * float64(time.Second))
		report(t, b, fmt.Sprintf("3000 items of one user on 10 streams take at least %.1fs (1000/s per user)", floor.Seconds()),
			fmt.Sprintf("%.1fs; root's batch of 10 served in %v during it", elapsed.Seconds(), rootTook.Round(time.Millisecond)), "each item applied once; the server healthy")
		assert.GreaterOrEqual(t, elapsed, floor, "10 streams of one user finished 3000 items faster than one user's pace allows")
		healthy(t, conn)
	})

	t.Run("Oversized_log_fields_are_refused_and_search_still_works", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewDataCollectionServiceClient(conn)
		ctx := attackContext(t)
		before, err := client.SearchLogs(ctx, &pb.SearchLogsRequest{Term: "oversized"})
		require.NoError(t, err)
		stream, err := client.CollectLogs(ctx)
		require.NoError(t, err)
		for i := range 3 {
			e := &pb.LogEntry{Application: "abuse", Level: pb.LogLevel_LOG_LEVEL_ERROR, Timestamp: timestamppb.Now(), Message: fmt.Sprint("oversized ", i),
				Fields: map[string]string{"blob": strings.Repeat("b", 3<<20)}}
			if err := stream.Send(e); err != nil {
				break // the server has ended the stream; CloseAndRecv says why
			}
		}
		_, refused := stream.CloseAndRecv()
		require.Equal(t, codes.ResourceExhausted, status.Code(refused), "CollectLogs(entries of 3 MiB), past the receive limit of 1 MiB + 16 KiB: %v", refused)
		after, err := client.SearchLogs(ctx, &pb.SearchLogsRequest{Term: "oversized"})
		require.NoError(t, err, "a search after the attack")
		require.Equal(t, before.GetTotalMatches(), after.GetTotalMatches(), "entries found by a search for the oversized ones")
		healthy(t, conn)
		report(t, b, "the stream ends with `ResourceExhausted` at the receive limit (1 MiB + 16 KiB), before any handler reads the entry; nothing indexed; search answers", fmt.Sprintf("%v: %s; %d indexed", status.Code(refused), status.Convert(refused).Message(), after.GetTotalMatches()-before.GetTotalMatches()), "nothing indexed; the server healthy")
	})

	t.Run("A_search_whose_answer_would_exceed_the_message_limit_is_truncated", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewDataCollectionServiceClient(conn)
		ctx := attackContext(t)
		// 200 entries of about 18 KB each (an 8,000-byte message and ten
		// 1,000-byte fields, all within their limits): a search's 100
		// entries at most would come to 1.8 MB.
		app := fmt.Sprint("bulk-", time.Now().UnixNano()%1000000)
		stream, err := client.CollectLogs(ctx)
		require.NoError(t, err)
		fields := map[string]string{}
		for f := range 10 {
			fields[fmt.Sprint("f", f)] = strings.Repeat("v", 1000)
		}
		const entries = 200
		for i := range entries {
			require.NoError(t, stream.Send(&pb.LogEntry{Application: app, Level: pb.LogLevel_LOG_LEVEL_INFO, Timestamp: timestamppb.Now(),
				Message: fmt.Sprintf("%04d %s", i, strings.Repeat("b", 7995)), Fields: fields}))
		}
		res, err := stream.CloseAndRecv()
		require.NoError(t, err)
		require.EqualValues(t, entries, res.GetIndexedCount(), "entries indexed")
		found, err := client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: app, Limit: 1000})
		require.NoError(t, err, "a search matching 3.6 MB of entries")
		size := proto.Size(found)
		assert.True(t, found.GetTruncated(), "the answer says it was truncated")
		assert.LessOrEqual(t, size, 1<<20, "the answer's encoded size")
		assert.EqualValues(t, entries, found.GetTotalMatches(), "total_matches counts every match")
		small, err := client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: app, Limit: 3})
		require.NoError(t, err)
		assert.Len(t, small.GetEntries(), 3, "a search with a small limit")
		report(t, b, "the answer stays under 1 MiB and says it was truncated; total_matches counts all",
			fmt.Sprintf("%d of %d entries in %d bytes, truncated=%v", len(found.GetEntries()), found.GetTotalMatches(), size, found.GetTruncated()),
			"the 200 entries, indexed as any others")
		healthy(t, conn)
	})

	t.Run("A_string_that_is_not_UTF8_is_InvalidArgument", func(t *testing.T) {
		conn, b := attack(t, "48")
		ctx := attackContext(t)
		// A SearchLogsRequest whose application (field 2) is the byte 0xff.
		bad := conn.Invoke(ctx, "/streaming.v1.DataCollectionService/SearchLogs", &katatest.RawMessage{B: []byte{0x12, 0x01, 0xff}}, &katatest.RawMessage{}, grpc.ForceCodecV2(katatest.RawCodec{}))
		require.Equal(t, codes.InvalidArgument, status.Code(bad), "SearchLogs(application = 0xff) = %v", bad)
		assert.Contains(t, status.Convert(bad).Message(), "application", "the error names the field")
		_, err := pb.NewDataCollectionServiceClient(conn).SearchLogs(ctx, &pb.SearchLogsRequest{Application: "café"})
		require.NoError(t, err, "a valid search after the bad one")
		report(t, b, "InvalidArgument naming the field (not Internal)", fmt.Sprintf("%v: %s", status.Code(bad), status.Convert(bad).Message()), "nothing: the next call is served")
	})

	t.Run("Secrets_in_log_text_are_not_stored", func(t *testing.T) {
		conn, b := attack(t, "48")
		client := pb.NewDataCollectionServiceClient(conn)
		ctx := attackContext(t)
		stream, err := client.CollectLogs(ctx)
		require.NoError(t, err)
		secret := fmt.Sprint("s3cr3t-", time.Now().UnixNano())
		require.NoError(t, stream.Send(&pb.LogEntry{Application: "abuse", Level: pb.LogLevel_LOG_LEVEL_ERROR, Timestamp: timestamppb.Now(),
			Message: "login as admin with password=" + secret, Fields: map[string]string{"API-Key": secret, "url": "/cb?access_token=" + secret}}))
		_, err = stream.CloseAndRecv()
		require.NoError(t, err)
		found, err := client.SearchLogs(ctx, &pb.SearchLogsRequest{Term: secret})
		require.NoError(t, err)
		assert.Zero(t, found.GetTotalMatches(), "entries found by searching for the secret")
		report(t, b, "redacted before indexing", fmt.Sprintf("%d entries found by the secret", found.GetTotalMatches()), "no indexed copy: a search for it finds nothing")
	})
}

func TestDay49(t *testing.T) {
	t.Run("Messages_stalled_one_byte_short_are_bounded", func(t *testing.T) { testStalledPrefixes(t, "49") })
	t.Run("Connections_from_one_address_are_bounded", func(t *testing.T) { testManyConnections(t, "49") })
	t.Run("Calls_reset_as_fast_as_they_open_are_bounded", func(t *testing.T) { testRapidReset(t, "49") })
	t.Run("A_CONTINUATION_flood_stops_at_the_header_limit", func(t *testing.T) { testContinuationFlood(t, "49") })
	t.Run("Chat_reconnect_loop_keeps_its_rate_limit", func(t *testing.T) {
		conn, b := attack(t, "49")
		client := pb.NewChatServiceClient(conn)
		ctx := attackContext(t)
		room := fmt.Sprint("abuse-", time.Now().UnixNano()%1000000)
		// bob watches the room; mallory reconnects 20 times and sends 10
		// messages on each stream. At 5 a second with a burst of 10 per
		// user, bob sees about 10 plus 5 a second of mallory's.
		bob, err := client.Chat(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, bob.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}))
		waitFor(t, bob, func(m *pb.ChatMessage) bool { return m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM })
		start := time.Now()
		for range 20 {
			s, err := client.Chat(bearer.WithToken(ctx, "mallory-demo-token"))
			require.NoError(t, err)
			s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room})
			for i := range 10 {
				s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: fmt.Sprint("flood ", i)})
			}
			s.CloseSend()
			for { // drain until the server ends the stream
				if _, err := s.Recv(); err != nil {
					break
				}
			}
		}
		elapsed := time.Since(start)
		// bob says something and counts mallory's messages until his own.
		require.NoError(t, bob.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "bob is still here"}))
		fromMallory := 0
		waitFor(t, bob, func(m *pb.ChatMessage) bool {
			if m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == "mallory" {
				fromMallory++
			}
			return m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == "bob"
		})
		bob.CloseSend()
		limit := 10 + 5*elapsed.Seconds() + 1
		report(t, b, fmt.Sprintf("at most %.0f of 200 delivered (burst 10, 5/s per user)", limit), fmt.Sprintf("%d delivered in %.1fs; bob served", fromMallory, elapsed.Seconds()), "bob's stream still served; that the hub empties is proven by TestChat/Many_connect_disconnect_cycles_leave_nothing_behind")
		assert.LessOrEqual(t, float64(fromMallory), limit, "mallory's messages delivered over 20 reconnects in %v", elapsed)
		healthy(t, conn)
	})

	t.Run("Streams_of_one_user_are_bounded_across_connections", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx, cancel := context.WithCancel(attackContext(t))
		defer cancel()
		room := fmt.Sprint("held-", time.Now().UnixNano()%1000000)
		// dave holds 32 chat streams, 8 on each of 4 connections, each
		// joined and idle: the limit per user is 32.
		const conns, perConn, limit = 4, 8, 32
		var attackers []*grpc.ClientConn
		// join opens a chat and sends a join; the first answer of any kind
		// (past his burst, a refusal of the join) shows the stream was
		// let in.
		join := func(c *grpc.ClientConn, token string) (pb.ChatService_ChatClient, error) {
			s, err := pb.NewChatServiceClient(c).Chat(bearer.WithToken(ctx, token))
			if err != nil {
				return nil, err
			}
			if err := s.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}); err != nil {
				return nil, err
			}
			_, err = s.Recv()
			return s, err
		}
		for range conns {
			c, err := serving.NewClient(os.Getenv("ABUSE_ADDR_49"))
			require.NoError(t, err)
			attackers = append(attackers, c)
			for range perConn {
				_, err := join(c, "dave-demo-token")
				require.NoError(t, err, "dave's stream %d of %d", len(attackers), limit)
			}
		}
		// The 33rd, on yet another connection, is refused.
		extra, err := serving.NewClient(os.Getenv("ABUSE_ADDR_49"))
		require.NoError(t, err)
		attackers = append(attackers, extra)
		_, err = join(extra, "dave-demo-token")
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "dave's stream %d", limit+1)
		assert.Contains(t, status.Convert(err).Message(), "32 streams open", "the error names the limit")
		refusal := err
		// carol joins the same room and is served.
		carol, err := pb.NewChatServiceClient(conn).Chat(bearer.WithToken(ctx, "carol-demo-token"))
		require.NoError(t, err)
		require.NoError(t, carol.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}))
		require.NoError(t, carol.Send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "hello"}))
		waitFor(t, carol, func(m *pb.ChatMessage) bool { return m.GetUserId() == "carol" && m.GetContent() == "hello" })
		cancel()
		for _, c := range attackers {
			c.Close()
		}
		report(t, b, "stream 33 of one user refused with ResourceExhausted, on any connection; others served",
			fmt.Sprintf("%v: %s; carol served", status.Code(refusal), status.Convert(refusal).Message()),
			"nothing once his streams close")
		healthy(t, conn)
	})

	t.Run("Bad_inputs_get_their_status_codes", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		chat := pb.NewChatServiceClient(conn)
		room := fmt.Sprint("bad-", time.Now().UnixNano()%1000000)
		// Without a token, or with a wrong one, the stream is refused.
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"no token", ctx}, {"bad token", bearer.WithToken(ctx, "guessed-token")}} {
			s, err := chat.Chat(c.ctx)
			require.NoError(t, err)
			_, err = s.Recv()
			assert.Equal(t, codes.Unauthenticated, status.Code(err), "a chat with %s", c.name)
		}
		// alice's stream: each bad request answered in-band, the stream
		// goes on.
		s, err := chat.Chat(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		msg := func(typ pb.MessageType, room, content string) *pb.ChatMessage {
			return &pb.ChatMessage{Type: typ, RoomId: room, Content: content}
		}
		cases := []struct {
			name string
			req  *pb.ChatMessage
			want codes.Code
		}{
			{"chat before joining", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, "hello"), codes.PermissionDenied},
			{"an invalid room", msg(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, "Bad Room!", ""), codes.InvalidArgument},
			{"an unknown type", msg(pb.MessageType(99), room, "x"), codes.InvalidArgument},
			{"empty content", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, ""), codes.InvalidArgument},
			{"huge content", msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, strings.Repeat("h", 2001)), codes.InvalidArgument},
		}
		joined := false
		right := 0
		for _, c := range cases {
			if c.req.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && c.req.GetContent() != "hello" && !joined {
				require.NoError(t, s.Send(msg(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, room, "")))
				waitFor(t, s, func(m *pb.ChatMessage) bool { return m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM })
				joined = true
			}
			require.NoError(t, s.Send(c.req))
			var answer *pb.ChatMessage
			waitFor(t, s, func(m *pb.ChatMessage) bool { answer = m; return m.GetType() == pb.MessageType_MESSAGE_TYPE_ERROR })
			if assert.Equal(t, c.want, codes.Code(answer.GetErrorCode()), "the in-band answer to %s: %s", c.name, answer.GetContent()) {
				right++
			}
		}
		// A spoofed sender is replaced by the authenticated one.
		spoof := msg(pb.MessageType_MESSAGE_TYPE_CHAT, room, "from whom?")
		spoof.UserId = "mallory"
		require.NoError(t, s.Send(spoof))
		var echo *pb.ChatMessage
		waitFor(t, s, func(m *pb.ChatMessage) bool { echo = m; return m.GetContent() == "from whom?" })
		assert.Equal(t, "alice", echo.GetUserId(), "the sender of a message that claimed to be mallory's")
		require.NoError(t, s.CloseSend())
		for {
			if _, err := s.Recv(); err != nil {
				break
			}
		}

		// The editor: an unknown document, then a revision from the future.
		e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "no-such-document"}}}))
		ev, err := e.Recv()
		require.NoError(t, err)
		unknown := codes.Code(ev.GetError().GetCode())
		assert.Equal(t, codes.NotFound, unknown, "opening an unknown document")
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err = e.Recv()
		require.NoError(t, err)
		future := ev.GetSnapshot().GetRevision() + 100
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: future, ClientOpId: "future",
			Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "x"}}}}}}))
		var futureErr error
		for futureErr == nil {
			_, futureErr = e.Recv()
		}
		assert.Equal(t, codes.FailedPrecondition, status.Code(futureErr), "a submit based on a future revision")

		// The game: a move before joining, then, joined, a move out of
		// bounds and a teleport; each answered in-band, naming its move.
		g, err := pb.NewGameServiceClient(conn).Play(bearer.WithToken(ctx, "alice-demo-token"))
		require.NoError(t, err)
		move := func(seq int64, x, y int32) *pb.PlayerInput {
			return &pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: seq, Target: &pb.Position{X: x, Y: y}}}}
		}
		gameError := func(seq int64) codes.Code {
			for {
				u, err := g.Recv()
				require.NoError(t, err, "the game stream, waiting for the answer to move %d", seq)
				if e := u.GetError(); e != nil && e.GetSequence() == seq {
					return codes.Code(e.GetCode())
				}
			}
		}
		require.NoError(t, g.Send(move(1, 1, 1)))
		beforeJoin := gameError(1)
		require.NoError(t, g.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: "alice"}}}))
		var at *pb.Position
		for at == nil {
			u, err := g.Recv()
			require.NoError(t, err, "the game stream, waiting for alice in a snapshot")
			for _, p := range u.GetSnapshot().GetPlayers() {
				if p.GetName() == "alice" {
					at = p.GetPosition()
				}
			}
		}
		require.NoError(t, g.Send(move(2, -1, -1)))
		outOfBounds := gameError(2)
		require.NoError(t, g.Send(move(3, (at.GetX()+500)%1000, at.GetY())))
		teleport := gameError(3)
		assert.Equal(t, []codes.Code{codes.FailedPrecondition, codes.InvalidArgument, codes.InvalidArgument}, []codes.Code{beforeJoin, outOfBounds, teleport},
			"the answers to a move before joining, out of bounds and a teleport")
		require.NoError(t, g.CloseSend())
		for {
			if _, err := g.Recv(); err != nil {
				break
			}
		}

		report(t, b, "refused without a valid token; each bad chat request answered in-band with its code; the sender is the token's; an unknown document NotFound; a future revision ends the edit; game moves before joining, out of bounds or teleporting answered in-band",
			fmt.Sprintf("%d of %d in-band chat codes right; spoofed message shown as from %q; unknown document %v; future revision %v; game moves %v, %v, %v", right, len(cases), echo.GetUserId(), unknown, status.Code(futureErr), beforeJoin, outOfBounds, teleport),
			"nothing")
		healthy(t, conn)
	})

	t.Run("Chat_content_that_is_not_UTF8_is_answered_in_band", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		room := fmt.Sprint("utf8-", time.Now().UnixNano()%1000000)
		stream, err := conn.NewStream(bearer.WithToken(ctx, "carol-demo-token"), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/streaming.v1.ChatService/Chat", grpc.ForceCodecV2(katatest.RawCodec{}))
		require.NoError(t, err)
		send := func(m *pb.ChatMessage, rawContent string) {
			b, err := proto.Marshal(m)
			require.NoError(t, err)
			if rawContent != "" {
				b = protowire.AppendString(protowire.AppendTag(b, 5, protowire.BytesType), rawContent)
			}
			require.NoError(t, stream.SendMsg(&katatest.RawMessage{B: b}))
		}
		recv := func() *pb.ChatMessage {
			var raw katatest.RawMessage
			require.NoError(t, stream.RecvMsg(&raw), "the chat stream after a message that is not UTF-8")
			var m pb.ChatMessage
			require.NoError(t, proto.Unmarshal(raw.B, &m))
			return &m
		}
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}, "")
		for recv().GetType() != pb.MessageType_MESSAGE_TYPE_JOIN_ROOM {
		}
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room}, "caf\xe9")
		refusal := recv()
		assert.Equal(t, pb.MessageType_MESSAGE_TYPE_ERROR, refusal.GetType(), "the answer to content that is not UTF-8")
		assert.EqualValues(t, codes.InvalidArgument, refusal.GetErrorCode(), "its code")
		send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: "still here"}, "")
		echo := recv()
		assert.Equal(t, "still here", echo.GetContent(), "the next message on the same stream")
		stream.CloseSend()
		report(t, b, "in-band InvalidArgument naming the field; the stream goes on", fmt.Sprintf("in-band %v %q; the next message echoed", codes.Code(refusal.GetErrorCode()), refusal.GetContent()), "nothing: the same stream goes on")
	})

	t.Run("An_editor_that_pipelines_a_burst_and_reads_is_not_evicted", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "carol-demo-token"))
		require.NoError(t, err)
		require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := e.Recv()
		require.NoError(t, err)
		base := ev.GetSnapshot().GetRevision()
		// 800 inserts sent without waiting, all on the same base, while a
		// reader takes the acks as they come.
		const burst = 800
		acks := make(chan error, 1)
		go func() {
			n := 0
			for n < burst {
				ev, err := e.Recv()
				if err != nil {
					acks <- fmt.Errorf("after %d acks: %w", n, err)
					return
				}
				if ev.GetAck() != nil {
					n++
				}
			}
			acks <- nil
		}()
		for i := range burst {
			require.NoError(t, e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: base, ClientOpId: fmt.Sprint("burst-", i),
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "b"}}}}}}))
		}
		require.NoError(t, <-acks, "the editor that sent a burst of %d and read its acks", burst)
		require.NoError(t, e.CloseSend())
		for {
			if _, err := e.Recv(); err != nil {
				break
			}
		}
		report(t, b, "every operation acked; the editor is slowed down, never evicted", fmt.Sprintf("%d of %d acked", burst, burst), "nothing")
		healthy(t, conn)
	})

	t.Run("An_editor_flood_is_paced_per_user_across_connections", func(t *testing.T) {
		// dave floods edits on two connections at once; the server paces
		// dave, not each stream, at the editor's default of 200 edits a
		// second after a burst of 200. bob edits the same document
		// meanwhile and is answered.
		conn, b := attack(t, "49")
		second := dial(t, "ABUSE_ADDR_49")
		ctx := attackContext(t)
		const perStream, perSecond, burst = 500, 200, 200
		start := time.Now()
		results := make(chan error, 2)
		for i, c := range []*grpc.ClientConn{conn, second} {
			go func() { results <- floodEdits(ctx, c, "dave-demo-token", fmt.Sprint("flood-", i, "-"), perStream) }()
		}
		other, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, other.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := other.Recv()
		require.NoError(t, err, "bob opening the document during the flood")
		require.NoError(t, other.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: ev.GetSnapshot().GetRevision(), ClientOpId: "bob-1",
			Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "b"}}}}}}))
		for ev.GetAck().GetClientOpId() != "bob-1" {
			ev, err = other.Recv()
			require.NoError(t, err, "bob's edit during the flood")
		}
		require.NoError(t, other.CloseSend())
		for range 2 {
			require.NoError(t, <-results, "dave's flood")
		}
		took := time.Since(start)
		// Each stream's open is received too: 2*(perStream+1) requests.
		want := time.Duration(float64(2*(perStream+1)-burst) / perSecond * float64(time.Second))
		require.GreaterOrEqual(t, took, want, "dave's %d edits on two connections were all received in %v, want at least %v at %d a second after a burst of %d: the pace is per user", 2*perStream, took, want, perSecond, burst)
		for {
			if _, err := other.Recv(); err != nil {
				break
			}
		}
		second.Close() // its streams are done; the report counts the server's goroutines
		report(t, b, "paced per user at 200 edits a second after a burst of 200, across connections; another editor is answered meanwhile",
			fmt.Sprintf("%d edits on two connections took %.1fs (at least %.1fs); bob's edit acked during the flood", 2*perStream, took.Seconds(), want.Seconds()), "nothing")
		healthy(t, conn)
	})

	t.Run("Editor_document_stays_openable", func(t *testing.T) {
		conn, b := attack(t, "49")
		client := pb.NewEditorServiceClient(conn)
		ctx := attackContext(t)
		// Insert 4-byte characters into the demo's document until the
		// server refuses: the limit is in bytes, so a snapshot always fits.
		s, err := client.Edit(bearer.WithToken(ctx, "mallory-demo-token"))
		require.NoError(t, err)
		require.NoError(t, s.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		ev, err := s.Recv()
		require.NoError(t, err)
		revision := ev.GetSnapshot().GetRevision()
		chunk := strings.Repeat("😀", 9000) // 36,000 bytes, under the insert limit of 10,000 characters
		refused := false
		for i := 0; i < 200 && !refused; i++ {
			id := fmt.Sprint("fill-", i)
			require.NoError(t, s.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: revision, ClientOpId: id,
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: chunk}}}}}}))
			for {
				ev, err := s.Recv()
				require.NoError(t, err)
				if ack := ev.GetAck(); ack.GetClientOpId() == id {
					revision = ack.GetRevision()
					break
				}
				if e := ev.GetError(); e != nil && e.GetClientOpId() == id {
					assert.Equal(t, codes.ResourceExhausted, codes.Code(e.GetCode()), "the insert past the limit: %s", e.GetMessage())
					refused = true
					break
				}
			}
		}
		s.CloseSend()
		require.True(t, refused, "the server took 200 inserts of 36,000 bytes (7 MiB) into one document, want a byte limit")
		// Everyone can still open it.
		o, err := client.Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, o.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		snap, err := o.Recv()
		require.NoError(t, err, "opening the filled document")
		o.CloseSend()
		report(t, b, "refused past 1 MiB encoded; the document still opens", fmt.Sprintf("refused at revision %d; a snapshot of %d bytes opens", revision, len(snap.GetSnapshot().GetContent())), "the document at its limit, which a new editor still opens")
		healthy(t, conn)
	})

	t.Run("Edits_on_a_large_document_are_paced_by_its_size", func(t *testing.T) {
		// The document is now at its limit (the test above): each edit
		// copies it, so the server charges each one the document's length
		// against dave's 16Mi characters a second, after a burst of 2Mi.
		conn, b := attack(t, "49")
		ctx := attackContext(t)
		o, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, "bob-demo-token"))
		require.NoError(t, err)
		require.NoError(t, o.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}))
		snap, err := o.Recv()
		require.NoError(t, err, "bob opening the document")
		o.CloseSend()
		chars := utf8.RuneCountInString(snap.GetSnapshot().GetContent())
		const edits, perSecond, burst = 100, 16 << 20, 2 << 20
		start := time.Now()
		require.NoError(t, floodEdits(ctx, conn, "dave-demo-token", "large-", edits), "dave's edits on the large document")
		took := time.Since(start)
		// Each edit costs at least the length bob saw; dave's own inserts
		// only add to it.
		want := time.Duration(float64(edits*chars-burst) / perSecond * float64(time.Second))
		require.GreaterOrEqual(t, took, want, "dave's %d edits on a document of %d characters took %v, want at least %v at %d characters a second after a burst of %d", edits, chars, took, want, perSecond, burst)
		for {
			if _, err := o.Recv(); err != nil {
				break
			}
		}
		report(t, b, "each edit charged the document's length: 16Mi characters a second per user, after a burst of 2Mi",
			fmt.Sprintf("%d edits on a document of %d characters took %.1fs (at least %.1fs)", edits, chars, took.Seconds(), want.Seconds()), "nothing")
		healthy(t, conn)
	})

	t.Run("Answers_to_streams_whose_window_never_opens_are_bounded", testZeroWindowStreams)

	t.Run("Oversized_metadata_is_refused", func(t *testing.T) {
		conn, b := attack(t, "49")
		ctx := metadata.AppendToOutgoingContext(attackContext(t), "x-junk", strings.Repeat("j", 1<<20))
		_, err := pb.NewChatServiceClient(conn).Chat(ctx)
		if err == nil {
			// The stream may open before the refusal arrives.
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		}
		require.Error(t, err, "a call carrying 1 MiB of metadata")
		healthy(t, conn)
		report(t, b, "refused (16 KiB header limit)", fmt.Sprintf("refused: %v", status.Code(err)), "nothing: the same connection serves the next call")
	})
}

// floodEdits opens the demo's document as token's user and sends n
// inserts without waiting, while it reads the acks, until all n are
// acked.
func floodEdits(ctx context.Context, conn *grpc.ClientConn, token, prefix string, n int) error {
	e, err := pb.NewEditorServiceClient(conn).Edit(bearer.WithToken(ctx, token))
	if err != nil {
		return err
	}
	if err := e.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "groceries"}}}); err != nil {
		return err
	}
	ev, err := e.Recv()
	if err != nil {
		return err
	}
	base := ev.GetSnapshot().GetRevision()
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := e.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: base, ClientOpId: fmt.Sprint(prefix, i),
				Operation: &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 0, Text: "d"}}}}}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- e.CloseSend()
	}()
	for acked := 0; acked < n; {
		ev, err := e.Recv()
		if err != nil {
			return fmt.Errorf("after %d of %d acks: %w", acked, n, err)
		}
		if ev.GetAck() != nil {
			acked++
		}
	}
	if err := <-sent; err != nil {
		return err
	}
	for {
		if _, err := e.Recv(); err != nil {
			return nil
		}
	}
}

// waitFor receives on a chat stream until done says so.
func waitFor(t *testing.T, s pb.ChatService_ChatClient, done func(*pb.ChatMessage) bool) {
	t.Helper()
	for {
		m, err := s.Recv()
		require.NoError(t, err, "chat stream")
		if done(m) {
			return
		}
	}
}
