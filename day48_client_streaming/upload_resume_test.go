package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUploadResume(t *testing.T) {
	const id = "resume-0001"
	data := randomBytes(t, 8*testChunk+7)

	// breakMidway starts an upload that loses its connection after three
	// chunks and returns the environment once the server has let go of it.
	breakMidway := func(t *testing.T, cfg Config) *uploadEnv {
		t.Helper()
		b := &streamBreaker{afterChunks: 3, breakFirst: 1}
		env := startUploadServer(t, cfg, katatest.WithStreamInterceptor(b.intercept))
		_, err := sendChunks(katatest.Context(t), env.client, chunksOf("resume.txt", id, data, testChunk)...)
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(upload_id=%q) through a connection that drops", id)
		env.WaitIdle(t)
		return env
	}

	t.Run("Keeps_committed_bytes_after_a_broken_stream", func(t *testing.T) {
		env := breakMidway(t, Config{})
		st, err := env.client.GetUploadStatus(katatest.Context(t), &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.OK, "GetUploadStatus(%q) after a broken stream", id)
		katatest.EqualProto(t, &pb.GetUploadStatusResponse{
			UploadId: id, State: pb.UploadState_UPLOAD_STATE_PAUSED, CommittedOffset: 3 * testChunk, TotalSize: int64(len(data)), FileName: "resume.txt",
		}, st, "GetUploadStatus(%q) after a broken stream", id)
		partial := env.partialFiles(t)
		require.Len(t, partial, 1, "incoming folder, want exactly one partial file")
		info, err := os.Stat(filepath.Join(env.dir, incomingDirName, partial[0]))
		if err != nil || info.Size() != st.GetCommittedOffset() {
			t.Fatalf("partial file is %v bytes (err %v), want the %d committed bytes written to disk as they arrived", info.Size(), err, st.GetCommittedOffset())
		}
		require.Empty(t, env.storedFiles(t), "upload folder before the upload completed, want nothing visible")
	})

	t.Run("Resumes_from_committed_offset", func(t *testing.T) {
		env := breakMidway(t, Config{})
		chunks := chunksOf("resume.txt", id, data, testChunk)
		rest := chunks[3:]
		rest[0].FileName, rest[0].TotalSize, rest[0].UploadId = "resume.txt", int64(len(data)), id
		res, err := sendChunks(katatest.Context(t), env.client, rest...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(upload_id=%q) resumed at offset %d", id, rest[0].Offset)
		checkStored(t, env, res, "resume.txt", data)
		st, err := env.client.GetUploadStatus(katatest.Context(t), &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.OK, "GetUploadStatus(%q) after completion", id)
		assert.Equal(t, pb.UploadState_UPLOAD_STATE_COMPLETED, st.GetState(), "GetUploadStatus(%q).state after completion", id)
		assert.Equal(t, res.GetFileId(), st.GetFileId(), "GetUploadStatus(%q).file_id after completion", id)
	})

	t.Run("Upload_cut_off_by_shutdown_resumes_after_a_restart", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("resume.txt", id, data, testChunk)
		stream, err := env.client.UploadFile(katatest.Context(t))
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		for _, c := range chunks[:3] {
			if err := stream.Send(c); err != nil {
				break // the status comes from CloseAndRecv
			}
		}
		waitForOffset(t, env, id, 3*testChunk)
		// The client stalls: the server's graceful stop waits, then cuts it off.
		forced := serving.GracefulStop(env.grpcServer, nil, 50*time.Millisecond)
		require.True(t, forced, "GracefulStop with a stalled upload finished gracefully, want it cut off")
		_, err = stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(upload_id=%q) when the server stops", id)
		env.WaitIdle(t)
		require.Empty(t, env.storedFiles(t), "upload folder after the cut-off, want nothing visible")

		// The same service on a new server (a restarted process keeping
		// its upload folder) continues from the committed offset.
		restarted := katatest.Start(t, func(g *grpc.Server) { pb.RegisterFileUploadServiceServer(g, env.srv) }, env.auth())
		conn, err := grpc.NewClient(katatest.Target, append(restarted.DialOptions(), uploadAuth(aliceUploadToken)...)...)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		rest := chunks[3:]
		rest[0].FileName, rest[0].TotalSize, rest[0].UploadId = "resume.txt", int64(len(data)), id
		res, err := sendChunks(katatest.Context(t), pb.NewFileUploadServiceClient(conn), rest...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(upload_id=%q) resumed after the restart", id)
		checkStored(t, env, res, "resume.txt", data)
	})

	t.Run("Rejects_resume_at_the_wrong_offset", func(t *testing.T) {
		env := breakMidway(t, Config{})
		chunks := chunksOf("resume.txt", id, data, testChunk)
		rest := chunks[2:] // one chunk the server already has
		rest[0].FileName, rest[0].TotalSize, rest[0].UploadId = "resume.txt", int64(len(data)), id
		_, err := sendChunks(katatest.Context(t), env.client, rest...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(upload_id=%q) resumed at offset %d, committed %d", id, rest[0].Offset, 3*testChunk)
	})

	t.Run("Rejects_resume_as_another_file", func(t *testing.T) {
		env := breakMidway(t, Config{})
		rest := chunksOf("other.txt", id, data, testChunk)[3:]
		rest[0].FileName, rest[0].TotalSize, rest[0].UploadId = "other.txt", int64(len(data)), id
		_, err := sendChunks(katatest.Context(t), env.client, rest...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(upload_id=%q, name=%q) resuming resume.txt", id, "other.txt")
	})

	t.Run("Rejects_a_second_stream_for_a_receiving_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		chunks := chunksOf("twice.txt", id, data, testChunk)
		first, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		sendOrFail(t, first, chunks[0], "first UploadFile(upload_id=%q) chunk 0", id)
		// The first stream is receiving once its status says so.
		waitForState(t, env, id, pb.UploadState_UPLOAD_STATE_RECEIVING)
		second := chunksOf("twice.txt", id, data, testChunk)[1:]
		second[0].FileName, second[0].TotalSize, second[0].UploadId = "twice.txt", int64(len(data)), id
		_, err = sendChunks(ctx, env.client, second...)
		katatest.WantCode(t, err, codes.Aborted, "UploadFile(upload_id=%q) while another stream receives it", id)
		for _, c := range chunks[1:] {
			sendOrFail(t, first, c, "first UploadFile(upload_id=%q) at offset %d", id, c.Offset)
		}
		res, err := first.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "first UploadFile(upload_id=%q)", id)
		checkStored(t, env, res, "twice.txt", data)
	})

	t.Run("Expired_upload_is_removed", func(t *testing.T) {
		env := breakMidway(t, Config{ResumeTTL: time.Minute})
		env.clock.Advance(time.Minute + time.Second)
		_, err := env.client.GetUploadStatus(katatest.Context(t), &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(%q) after ResumeTTL", id)
		require.Empty(t, env.partialFiles(t), "incoming folder after ResumeTTL, want the partial file removed")
	})

	t.Run("Failed_checks_discard_a_resumable_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("bad.txt", id, data, testChunk)
		chunks[len(chunks)-1].Checksum = sha256Hex([]byte("nope"))
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.DataLoss, "UploadFile(upload_id=%q, wrong checksum)", id)
		env.requireNothingLeft(t)
		_, err = env.client.GetUploadStatus(katatest.Context(t), &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(%q) after a failed check", id)
	})

	t.Run("Rejects_unknown_and_invalid_ids", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		_, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: "never-started"})
		katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(%q)", "never-started")
		for _, bad := range []string{"", "../etc", strings.Repeat("x", 65)} {
			_, err = env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: bad})
			katatest.WantCode(t, err, codes.InvalidArgument, "GetUploadStatus(%q)", bad)
		}
	})

	t.Run("Upload_ids_belong_to_their_owner", func(t *testing.T) {
		env := breakMidway(t, Config{}) // alice's upload, paused after 3 chunks
		ctx := katatest.Context(t)
		bob := env.uploadClient(t, bobUploadToken)
		_, err := bob.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(%q) by bob, of alice's upload", id)
		bobData := []byte("bob's own file under the same id")
		res, err := sendChunks(ctx, bob, chunksOf("bob.txt", id, bobData, testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(upload_id=%q) by bob: his own upload, from offset 0", id)
		assert.EqualValues(t, len(bobData), res.GetTotalSize(), "bob's stored size")
		st, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.OK, "GetUploadStatus(%q) by alice after bob's upload", id)
		assert.EqualValues(t, 3*testChunk, st.GetCommittedOffset(), "alice's committed offset, untouched by bob")
		assert.Equal(t, pb.UploadState_UPLOAD_STATE_PAUSED, st.GetState(), "alice's upload state")
	})

	t.Run("Paused_uploads_are_bounded_per_user_oldest_evicted", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 1, breakFirst: 3}
		env := startUploadServer(t, Config{MaxPendingPerUser: 2}, katatest.WithStreamInterceptor(b.intercept))
		ctx := katatest.Context(t)
		for i := range 3 {
			upload := fmt.Sprint("paused-", i)
			_, err := sendChunks(ctx, env.client, chunksOf("paused.txt", upload, data, testChunk)...)
			katatest.WantCode(t, err, codes.Unavailable, "UploadFile(%s) through a connection that drops", upload)
			env.WaitIdle(t)
			env.clock.Advance(time.Second) // each paused later than the one before
		}
		_, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: "paused-0"})
		katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(paused-0), alice's oldest paused upload when her third began with MaxPendingPerUser=2")
		for _, upload := range []string{"paused-1", "paused-2"} {
			st, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: upload})
			katatest.WantCode(t, err, codes.OK, "GetUploadStatus(%s)", upload)
			assert.Equal(t, pb.UploadState_UPLOAD_STATE_PAUSED, st.GetState(), "state of %s", upload)
		}
		assert.Len(t, env.partialFiles(t), 2, "partial files, want the evicted upload's removed")
		res, err := sendChunks(ctx, env.uploadClient(t, bobUploadToken), chunksOf("bob.txt", "", []byte("b"), testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile() by bob while alice is at her limit")
		assert.EqualValues(t, 1, res.GetTotalSize(), "bob's stored size")
	})

	t.Run("Refuses_a_user_whose_uploads_are_all_receiving", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxPendingPerUser: 1})
		ctx, cancel := context.WithCancel(katatest.Context(t))
		defer cancel()
		stream, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		sendOrFail(t, stream, chunksOf("slow.txt", "receiving-1", data, testChunk)[0], "UploadFile(receiving-1) first chunk")
		waitForState(t, env, "receiving-1", pb.UploadState_UPLOAD_STATE_RECEIVING)
		_, err = sendChunks(katatest.Context(t), env.client, chunksOf("two.txt", "", []byte("2"), testChunk)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile() by alice with MaxPendingPerUser=1 receiving")
		katatest.WantMessage(t, err, "UploadFile() at the limit")("MaxPendingPerUser")
		cancel()
		env.WaitIdle(t)
	})

	t.Run("Rejects_a_missing_token", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		anonymous := env.uploadClient(t, "")
		_, err := sendChunks(ctx, anonymous, chunksOf("anonymous.txt", "", []byte("a"), testChunk)...)
		katatest.WantCode(t, err, codes.Unauthenticated, "UploadFile() without a token")
		_, err = anonymous.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
		katatest.WantCode(t, err, codes.Unauthenticated, "GetUploadStatus() without a token")
		res, err := sendChunks(ctx, env.client, chunksOf("anonymous.txt", "", []byte("a"), testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(the same file with alice's token)")
		assert.EqualValues(t, 1, res.GetTotalSize(), "stored size")
	})

	t.Run("Bounds_unfinished_uploads", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxPendingUploads: 1}, katatest.WithStreamInterceptor((&streamBreaker{afterChunks: 1, breakFirst: 1}).intercept))
		ctx := katatest.Context(t)
		_, err := sendChunks(ctx, env.client, chunksOf("one.txt", "pending-1", data, testChunk)...)
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(pending-1) through a connection that drops")
		env.WaitIdle(t)
		_, err = sendChunks(ctx, env.client, chunksOf("two.txt", "pending-2", data, testChunk)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(pending-2) with MaxPendingUploads=1 already paused")
	})

	t.Run("A_refused_upload_takes_no_slot_and_evicts_nothing", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 1, breakFirst: 1}
		env := startUploadServer(t, Config{MaxPendingPerUser: 1, MaxFileSize: int64(len(data))}, katatest.WithStreamInterceptor(b.intercept))
		ctx := katatest.Context(t)
		_, err := sendChunks(ctx, env.client, chunksOf("paused.txt", "paused-0", data, testChunk)...)
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(paused-0) through a connection that drops")
		env.WaitIdle(t)
		badName := chunksOf("bad.exe", "refused-1", data, testChunk)
		_, err = sendChunks(ctx, env.client, badName...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(refused-1, bad.exe) by alice with one paused upload and MaxPendingPerUser=1")
		tooBig := chunksOf("big.txt", "refused-2", data, testChunk)
		tooBig[0].TotalSize++
		_, err = sendChunks(ctx, env.client, tooBig...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(refused-2, total_size one over MaxFileSize)")
		env.WaitIdle(t)
		st, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: "paused-0"})
		katatest.WantCode(t, err, codes.OK, "GetUploadStatus(paused-0) after two refused uploads: a refused first chunk must not begin an upload, take a slot or evict a paused one")
		assert.Equal(t, pb.UploadState_UPLOAD_STATE_PAUSED, st.GetState(), "state of paused-0")
		for _, id := range []string{"refused-1", "refused-2"} {
			_, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
			katatest.WantCode(t, err, codes.NotFound, "GetUploadStatus(%s), an upload whose first chunk was refused", id)
		}
		assert.Len(t, env.partialFiles(t), 1, "partial files, want only paused-0's")
	})

	t.Run("Staging_matches_its_model", testStagingMatchesItsModel)
}

func waitForState(t *testing.T, env *uploadEnv, id string, want pb.UploadState) {
	t.Helper()
	ctx := katatest.Context(t)
	for {
		st, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
		if err == nil && st.GetState() == want {
			return
		}
		// NotFound only means the handler has not begun the upload yet.
		if (err != nil && status.Code(err) != codes.NotFound) || handlerEnded(env.Server, uploadMethod) || ctx.Err() != nil {
			t.Fatalf("GetUploadStatus(%q) = %v, %v; want state %v", id, st, err, want)
		}
	}
}

// waitForOffset waits until the server has committed offset bytes of
// upload id while its handler runs.
func waitForOffset(t *testing.T, env *uploadEnv, id string, offset int64) {
	t.Helper()
	ctx := katatest.Context(t)
	for {
		st, err := env.client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
		if err == nil && st.GetCommittedOffset() == offset {
			return
		}
		if (err != nil && status.Code(err) != codes.NotFound) || handlerEnded(env.Server, uploadMethod) || ctx.Err() != nil {
			t.Fatalf("GetUploadStatus(%q) = %v, %v; want committed_offset %d while the upload runs", id, st, err, offset)
		}
	}
}
