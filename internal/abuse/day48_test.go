package abuse

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
