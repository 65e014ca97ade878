package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientUpload(t *testing.T) {
	t.Run("Uploads_in_chunks_with_metadata_and_checksum", func(t *testing.T) {
		b := &streamBreaker{}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		data := randomBytes(t, 5*testChunk+1)
		path := writeTestFile(t, t.TempDir(), "report.csv", data)
		res, err := c.UploadFile(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(%q)", "report.csv")
		checkStored(t, env, res, "report.csv", data)
		// What the server received, data replaced by its length: offsets
		// on every chunk, metadata on the first, the end on the last.
		want := make([]*pb.FileChunk, 6)
		for i := range want {
			want[i] = &pb.FileChunk{Offset: int64(i * testChunk), Data: make([]byte, min(testChunk, len(data)-i*testChunk))}
		}
		want[0].FileName, want[0].TotalSize = "report.csv", int64(len(data))
		want[5].IsLastChunk, want[5].Checksum = true, sha256Hex(data)
		katatest.EqualProto(t, want, b.received(), "chunks the server received for a %d-byte file in %d-byte chunks", len(data), testChunk)
	})

	t.Run("Reports_progress", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		data := randomBytes(t, 3*testChunk+10)
		path := writeTestFile(t, t.TempDir(), "progress.txt", data)
		var reports []Progress
		_, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(p Progress) { reports = append(reports, p) }))
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(%q)", "progress.txt")
		want := []int64{testChunk, 2 * testChunk, 3 * testChunk, int64(len(data))}
		var sent []int64
		for _, r := range reports {
			sent = append(sent, r.Sent)
			assert.Equal(t, int64(len(data)), r.Total, "progress report %+v: Total", r)
		}
		assert.Equal(t, want, sent, "progress reports' Sent, want one report per chunk")
	})

	t.Run("Returns_the_server_status_when_Send_fails", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		path := writeTestFile(t, t.TempDir(), "malware.exe", randomBytes(t, 16<<20))
		// Hold the client after its first chunk until the server has
		// rejected the upload, so later Sends find the stream closed.
		first := true
		_, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(Progress) {
			if first {
				first = false
				env.WaitInFlight(t, uploadMethod, 0)
			}
		}))
		katatest.WantCode(t, err, codes.InvalidArgument, "StreamingClient.UploadFile(%q) rejected by the server mid-stream", "malware.exe")
	})

	t.Run("Stops_promptly_on_cancel", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx, cancel := context.WithCancel(katatest.Context(t))
		sends := &sendCounter{nth: 2, afterSend: cancel}
		c := newClient(t, env.Server, WithChunkSize(testChunk), sends.dialOption())
		path := writeTestFile(t, t.TempDir(), "cancel.txt", randomBytes(t, 10*testChunk))
		var reports int
		_, err := c.UploadFile(ctx, path, WithProgress(func(Progress) { reports++ }))
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.UploadFile() cancelled after 2 chunks")
		assert.Equal(t, 2, sends.count(), "chunks passed to Send, want none after the context ended: check ctx before each Send (a Send can still succeed into the transport's buffer)")
		assert.LessOrEqual(t, reports, 2, "progress reports, want none for a chunk after the context ended")
		env.requireNothingLeft(t)
	})

	t.Run("Waits_for_the_rate_limiter", func(t *testing.T) {
		b := &streamBreaker{}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		// One chunk of burst, then a fifth of a chunk a second: the second
		// chunk waits 5s, inside the test's deadline and far past the
		// window in which it must not arrive.
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRateLimit(testChunk/5))
		require.NotNil(t, c.limiter, "WithRateLimit(%d) left the client without a limiter", testChunk/5)
		c.limiter = rate.NewLimiter(testChunk/5, testChunk)
		path := writeTestFile(t, t.TempDir(), "slow.txt", randomBytes(t, 4*testChunk))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		done := make(chan error, 1)
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			_, err := c.UploadFile(ctx, path)
			done <- err
		}()
		if !env.WaitInFlightUnless(t, uploadMethod, 1, returned) {
			t.Fatalf("StreamingClient.UploadFile() = %v before its upload reached the server", <-done)
		}
		select {
		case err := <-done:
			t.Fatalf("StreamingClient.UploadFile() at %d bytes/s returned %v at once, want it to wait for the limiter", testChunk/5, err)
		case <-time.After(katatest.NeverWindow):
		}
		cancel()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Canceled, "StreamingClient.UploadFile() cancelled while rate limited")
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("StreamingClient.UploadFile() did not return after cancel while waiting for the rate limiter")
		}
		env.WaitIdle(t)
		if n := len(b.received()); n > 1 {
			t.Fatalf("StreamingClient.UploadFile() at %d bytes/s sent %d chunks before the limiter allowed a second, want 1: wait for the limiter before each chunk", testChunk/5, n)
		}
	})

	t.Run("Refuses_what_is_not_a_regular_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		streams := &sendCounter{}
		c := newClient(t, env.Server, streams.dialOption())
		data := []byte("a regular file goes through")
		res, err := c.UploadFile(katatest.Context(t), writeTestFile(t, t.TempDir(), "regular.txt", data))
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(a regular file)")
		checkStored(t, env, res, "regular.txt", data)
		streams.opens.Store(0)
		dir := filepath.Join(t.TempDir(), "folder.txt")
		require.NoError(t, os.Mkdir(dir, 0o700))
		_, err = c.UploadFile(katatest.Context(t), dir)
		require.Error(t, err, "StreamingClient.UploadFile(a directory)")
		assert.Zero(t, streams.opens.Load(), "UploadFile streams opened for a directory, want none: check the file before opening a stream")
	})

	t.Run("Fails_cleanly_after_Close", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server)
		require.NoError(t, c.Close())
		path := writeTestFile(t, t.TempDir(), "late.txt", []byte("too late"))
		_, err := c.UploadFile(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.UploadFile() after Close: the error of opening the stream on a closed connection")
		assert.Zero(t, env.Started(uploadMethod), "UploadFile streams the server saw from a closed client")
	})

	t.Run("Fails_when_the_file_shrinks_during_the_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		path := writeTestFile(t, t.TempDir(), "shrinking.txt", randomBytes(t, 4*testChunk))
		done := make(chan error, 1)
		firstSent, cut := make(chan struct{}), make(chan struct{})
		go func() {
			_, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(p Progress) {
				if p.Sent == testChunk {
					close(firstSent)
					<-cut // the test cuts the file short once the server's handler runs
				}
			}))
			done <- err
		}()
		select {
		case <-firstSent:
		case err := <-done:
			t.Fatalf("StreamingClient.UploadFile() = %v before reporting the progress of its first chunk, where the test cuts the file short", err)
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("StreamingClient.UploadFile() reported no progress of its first chunk within %v", katatest.WaitTimeout)
		}
		started := env.WaitStartedUnless(t, uploadMethod, 1, nil)
		require.True(t, started, "UploadFile handler started")
		require.NoError(t, os.Truncate(path, testChunk+10), "cutting the file short, as another program would")
		close(cut)
		select {
		case err := <-done:
			require.Error(t, err, "StreamingClient.UploadFile() of a file cut from %d to %d bytes mid-upload", 4*testChunk, testChunk+10)
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("StreamingClient.UploadFile() of a file that shrank mid-upload did not return within %v, want an error once the file ends before its size", katatest.WaitTimeout)
		}
		// The client gave up before CloseAndRecv: its stream must end
		// with it (cancel the stream's context on return), so the server's
		// handler, which has started, returns too.
		env.WaitIdle(t)
		env.requireNothingLeft(t)
	})

	t.Run("A_rate_limit_that_cannot_be_met_before_the_deadline_is_DeadlineExceeded", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRateLimit(1))
		require.NotNil(t, c.limiter, "WithRateLimit(1) left the client without a limiter")
		c.limiter = rate.NewLimiter(1, testChunk) // one chunk now, the next in 18 hours
		path := writeTestFile(t, t.TempDir(), "slow.txt", randomBytes(t, 3*testChunk))
		ctx, cancel := context.WithTimeout(katatest.Context(t), katatest.WaitTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := c.UploadFile(ctx, path)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done(): // a wait that ignores ctx would last 18 hours
		}
		require.NoError(t, ctx.Err(), "StreamingClient.UploadFile() had not failed when its deadline passed, want DeadlineExceeded at once: rate.Limiter.WaitN(ctx, n) fails when the wait would outlast ctx's deadline")
		katatest.WantCode(t, err, codes.DeadlineExceeded, "StreamingClient.UploadFile() at 1 byte/s with a %v deadline", katatest.WaitTimeout)
	})

	t.Run("Charges_the_limiter_each_chunks_own_bytes", func(t *testing.T) {
		// A limiter that holds exactly the file's bytes and refills at a
		// byte a second: charging the short last chunk as a full one
		// needs more than it holds, which it cannot refill in time.
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRateLimit(1))
		size := 2*testChunk + testChunk/2
		c.limiter = rate.NewLimiter(1, size)
		path := writeTestFile(t, t.TempDir(), "exact.txt", randomBytes(t, size))
		ctx, cancel := context.WithTimeout(katatest.Context(t), katatest.WaitTimeout)
		defer cancel()
		_, err := c.UploadFile(ctx, path)
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(%d bytes) with a limiter holding exactly %d bytes: wait for each chunk's own bytes, the last chunk's %d included", size, size, testChunk/2)
	})

	t.Run("A_Send_that_fails_is_not_reported_as_progress", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		// A name that is not UTF-8 cannot be marshalled, so the first
		// Send fails in the client itself.
		path := writeTestFile(t, t.TempDir(), "caf\xe9.txt", randomBytes(t, 3*testChunk))
		var reports []Progress
		_, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(p Progress) { reports = append(reports, p) }))
		katatest.WantCode(t, err, codes.Internal, "StreamingClient.UploadFile(a file name that is not UTF-8)")
		assert.Empty(t, reports, "progress reported for chunks that Send did not send")
	})

	t.Run("Closes_the_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithChunkSize(testChunk))
		path := writeTestFile(t, t.TempDir(), "closed.txt", randomBytes(t, 2*testChunk+1))
		_, err := c.UploadFile(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile()")
		if fds := openDescriptorsOf(t, path); len(fds) > 0 {
			t.Fatalf("after StreamingClient.UploadFile() returned, this process still has %s open as file descriptor(s) %v, want it closed (defer f.Close())", path, fds)
		}
	})

	t.Run("Reports_a_missing_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server)
		missing := filepath.Join(t.TempDir(), "missing.txt")
		_, err := c.UploadFile(katatest.Context(t), missing)
		require.ErrorIs(t, err, os.ErrNotExist, "StreamingClient.UploadFile(%q)", missing)
	})

	t.Run("A_file_of_whole_chunks_ends_on_its_last_full_chunk", func(t *testing.T) {
		for _, size := range []int{0, testChunk, 3 * testChunk} {
			b := &streamBreaker{}
			env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
			c := newClient(t, env.Server, WithChunkSize(testChunk))
			data := randomBytes(t, size)
			path := writeTestFile(t, t.TempDir(), "whole.txt", data)
			var reports []Progress
			res, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(p Progress) { reports = append(reports, p) }))
			katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(a %d-byte file in %d-byte chunks)", size, testChunk)
			checkStored(t, env, res, "whole.txt", data)
			want := max(1, size/testChunk)
			chunks := b.received()
			if len(chunks) != want {
				t.Fatalf("UploadFile(a %d-byte file in %d-byte chunks) sent %d chunks, want %d: no empty chunk after the last full one", size, testChunk, len(chunks), want)
			}
			assert.True(t, chunks[want-1].GetIsLastChunk(), "is_last_chunk on chunk %d of %d", want, want)
			var wantReports []Progress
			for i := range want {
				wantReports = append(wantReports, Progress{FileName: "whole.txt", Sent: int64(min(size, (i+1)*testChunk)), Total: int64(size)})
			}
			assert.Equal(t, wantReports, reports, "progress reports of a %d-byte file, want one per chunk, each naming the file", size)
		}
	})
}

func TestIsRetryable(t *testing.T) {
	withDetails := func(code codes.Code, details ...protoadapt.MessageV1) *status.Status {
		st, err := status.New(code, "slow down").WithDetails(details...)
		require.NoError(t, err)
		return st
	}
	withRetryInfo := withDetails(codes.ResourceExhausted, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	zeroRetryInfo := withDetails(codes.ResourceExhausted, &errdetails.RetryInfo{RetryDelay: durationpb.New(0)})
	otherDetails := withDetails(codes.ResourceExhausted, &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "uploads"}}})
	unavailableWithInfo := withDetails(codes.Unavailable, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"Unavailable", status.Error(codes.Unavailable, "connection lost"), true},
		{"Aborted", status.Error(codes.Aborted, "conflict"), true},
		{"ResourceExhausted with RetryInfo", withRetryInfo.Err(), true},
		{"ResourceExhausted with a RetryInfo of zero", zeroRetryInfo.Err(), true},
		{"ResourceExhausted with other details only", otherDetails.Err(), false},
		{"Unavailable with RetryInfo", unavailableWithInfo.Err(), true},
		{"fmt-wrapped Unavailable", fmt.Errorf("attempt 2: %w", status.Error(codes.Unavailable, "x")), true},
		{"attempt timeout alone", ErrAttemptTimeout, true},
		{"context.DeadlineExceeded", context.DeadlineExceeded, false},
		{"OK status", status.Error(codes.OK, ""), false},
		{"FailedPrecondition", status.Error(codes.FailedPrecondition, "stale"), false},
		{"NotFound", status.Error(codes.NotFound, "no upload"), false},
		{"PermissionDenied", status.Error(codes.PermissionDenied, "no"), false},
		{"Unknown", status.Error(codes.Unknown, "?"), false},
		{"wrapped Unavailable", errors.Join(errors.New("upload a.txt"), status.Error(codes.Unavailable, "x")), true},
		{"attempt timeout", errors.Join(ErrAttemptTimeout, status.Error(codes.DeadlineExceeded, "x")), true},
		{"nil", nil, false},
		{"ResourceExhausted without RetryInfo", status.Error(codes.ResourceExhausted, "file too large"), false},
		{"DeadlineExceeded", status.Error(codes.DeadlineExceeded, "caller's deadline"), false},
		{"Canceled", status.Error(codes.Canceled, "cancelled"), false},
		{"context.Canceled", context.Canceled, false},
		{"InvalidArgument", status.Error(codes.InvalidArgument, "bad name"), false},
		{"DataLoss", status.Error(codes.DataLoss, "checksum"), false},
		{"Internal", status.Error(codes.Internal, "bug"), false},
		{"Unauthenticated", status.Error(codes.Unauthenticated, "token"), false},
		{"plain error", os.ErrNotExist, false},
		{"InvalidArgument with RetryInfo", withDetails(codes.InvalidArgument, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}).Err(), false},
		{"PermissionDenied with RetryInfo", withDetails(codes.PermissionDenied, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}).Err(), false},
	}
	for _, want := range []bool{true, false} {
		name := map[bool]string{true: "Retryable", false: "Not_retryable"}[want]
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				if tc.want == want {
					assert.Equal(t, want, IsRetryable(tc.err), "IsRetryable(%s: %v)", tc.name, tc.err)
				}
			}
		})
	}
}

// gate holds every UploadFile handler at its start until released.
type gate struct {
	release chan struct{}
}

func (g *gate) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == uploadMethod {
		select {
		case <-g.release:
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
	}
	return handler(srv, ss)
}

func TestUploadFilesConcurrently(t *testing.T) {
	t.Run("Respects_the_concurrency_limit", func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(g.intercept))
		c := newClient(t, env.Server, WithMaxConcurrency(3), WithChunkSize(testChunk))
		dir := t.TempDir()
		var paths []string
		for i := range 8 {
			paths = append(paths, writeTestFile(t, dir, "file-"+string(rune('a'+i))+".txt", randomBytes(t, 2*testChunk)))
		}
		done := make(chan struct{})
		var results []*pb.UploadResult
		var err error
		go func() {
			defer close(done)
			results, err = c.UploadFilesConcurrently(katatest.Context(t), paths)
		}()
		if !env.WaitStartedUnless(t, uploadMethod, 3, done) {
			t.Fatalf("UploadFilesConcurrently(8 files, max 3) = %v with %d uploads started, want it to run 3 at once", err, env.Started(uploadMethod))
		}
		select {
		case <-done:
			t.Fatal("UploadFilesConcurrently returned while uploads were held")
		case <-time.After(katatest.NeverWindow):
		}
		require.Equal(t, 3, env.Started(uploadMethod), "uploads UploadFilesConcurrently(8 files, max 3) started at once")
		close(g.release)
		<-done
		katatest.WantCode(t, err, codes.OK, "UploadFilesConcurrently(8 files)")
		assert.LessOrEqual(t, env.PeakInFlight(uploadMethod), 3, "uploads UploadFilesConcurrently(max 3) ran at once")
		var names, wantNames []string
		for i, r := range results {
			names = append(names, r.GetFileName())
			wantNames = append(wantNames, filepath.Base(paths[i]))
		}
		assert.Equal(t, wantNames, names, "UploadFilesConcurrently(8 files) results, want one per path in the order of paths")
	})

	t.Run("Reports_every_failure_with_its_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithMaxConcurrency(2))
		dir := t.TempDir()
		good1 := writeTestFile(t, dir, "good1.txt", []byte("one"))
		bad := writeTestFile(t, dir, "bad.exe", []byte("two"))
		good2 := writeTestFile(t, dir, "good2.txt", []byte("three"))
		missing := filepath.Join(dir, "missing.txt")
		results, err := c.UploadFilesConcurrently(katatest.Context(t), []string{good1, bad, good2, missing})
		require.Error(t, err, "UploadFilesConcurrently(with bad.exe and missing.txt), want both failures reported")
		joined, ok := err.(interface{ Unwrap() []error })
		require.True(t, ok, "UploadFilesConcurrently error = %v, want errors.Join of the failures", err)
		require.Len(t, joined.Unwrap(), 2, "UploadFilesConcurrently error = %v, want errors.Join of exactly 2 errors", err)
		for _, name := range []string{"bad.exe", "missing.txt"} {
			assert.Contains(t, err.Error(), name, "UploadFilesConcurrently error, want it to name each failed file")
		}
		katatest.WantCode(t, joined.Unwrap()[0], codes.InvalidArgument, "the error for bad.exe, kept in the chain,")
		assert.ErrorIs(t, joined.Unwrap()[1], os.ErrNotExist, "the error for missing.txt")
		var names []string
		for _, r := range results {
			names = append(names, r.GetFileName())
		}
		assert.Equal(t, []string{"good1.txt", "", "good2.txt", ""}, names, "UploadFilesConcurrently results' file names, want nil results for the failures")
		if len(results) == 4 {
			assert.Nil(t, results[1], "result for bad.exe")
			assert.Nil(t, results[3], "result for missing.txt")
		}
	})

	t.Run("Joins_errors_in_the_order_of_paths", func(t *testing.T) {
		// Each upload is held until the one after it has ended, so they
		// finish in the reverse of the order of paths.
		order := &reverseOrder{names: []string{"a.exe", "b.exe", "c.exe", "d.exe"}}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(order.intercept))
		c := newClient(t, env.Server, WithMaxConcurrency(4))
		dir := t.TempDir()
		var paths []string
		for _, name := range order.names {
			paths = append(paths, writeTestFile(t, dir, name, []byte(name)))
		}
		_, err := c.UploadFilesConcurrently(katatest.Context(t), paths)
		joined, ok := err.(interface{ Unwrap() []error })
		require.True(t, ok, "UploadFilesConcurrently error = %v, want errors.Join of the failures", err)
		var named []string
		for _, e := range joined.Unwrap() {
			for _, name := range order.names {
				if strings.Contains(e.Error(), name) {
					named = append(named, name)
				}
			}
		}
		assert.Equal(t, order.names, named, "files named by the joined errors of uploads that finished in reverse order, want the order of paths")
	})

	t.Run("Cancel_waits_for_running_uploads_and_reports_every_file", func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(g.intercept))
		// Each upload's first progress report is held until the test lets
		// it go: an UploadFilesConcurrently that returns before then
		// leaves its uploads running.
		entered, release := make(chan struct{}, 2), make(chan struct{})
		var finished atomic.Int32
		holdFirst := WithProgress(func(p Progress) {
			if p.Sent == testChunk {
				entered <- struct{}{}
				<-release
				finished.Add(1)
			}
		})
		c := newClient(t, env.Server, WithMaxConcurrency(2), WithChunkSize(testChunk))
		dir := t.TempDir()
		var paths []string
		for _, name := range []string{"run-1.txt", "run-2.txt", "wait-3.txt", "wait-4.txt"} {
			paths = append(paths, writeTestFile(t, dir, name, randomBytes(t, 2*testChunk)))
		}
		ctx, cancel := context.WithCancel(katatest.Context(t))
		done := make(chan struct{})
		var err error
		var finishedAtReturn int32
		go func() {
			defer close(done)
			_, err = c.UploadFilesConcurrently(ctx, paths, holdFirst)
			finishedAtReturn = finished.Load()
		}()
		deadline := time.After(katatest.WaitTimeout)
		for range 2 {
			select {
			case <-entered:
			case <-deadline:
				t.Fatalf("waited %v for both running uploads to report their first chunk sent", katatest.WaitTimeout)
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(katatest.NeverWindow):
		}
		close(release)
		select {
		case <-done:
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("UploadFilesConcurrently() did not return within %v of cancel and of its running uploads ending: it must give back only the slots it took, and wait for every upload it started", katatest.WaitTimeout)
		}
		assert.EqualValues(t, 2, finishedAtReturn, "uploads whose progress callback had returned when UploadFilesConcurrently returned after cancel, want both running ones: return only after every started upload ends")
		joined, ok := err.(interface{ Unwrap() []error })
		require.True(t, ok, "UploadFilesConcurrently error after cancel = %v, want errors.Join of one error per file", err)
		require.Len(t, joined.Unwrap(), 4, "UploadFilesConcurrently error after cancel = %v, want one error per file: 2 cancelled, 2 never started", err)
		for i, e := range joined.Unwrap() {
			assert.Contains(t, e.Error(), filepath.Base(paths[i]), "error %d of the join, want it to name its file", i)
		}
		for _, e := range joined.Unwrap()[2:] {
			assert.ErrorIs(t, e, context.Canceled, "the error of a file never started, want ctx's error in its chain")
		}
	})
}

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// openDescriptorsOf returns the file descriptors of this process that
// refer to path. It reads /proc/self/fd, so it needs Linux.
func openDescriptorsOf(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list this process's open files here (%v); the check needs Linux", err)
	}
	var fds []string
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			fds = append(fds, e.Name())
		}
	}
	return fds
}
