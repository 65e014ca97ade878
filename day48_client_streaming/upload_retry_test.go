package main

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleepRecorder replaces StreamingClient.sleep: it records each backoff
// and returns at once, or runs onSleep first when set.
type sleepRecorder struct {
	mu      sync.Mutex
	delays  []time.Duration
	onSleep func(ctx context.Context) error
}

func (r *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.delays = append(r.delays, d)
	r.mu.Unlock()
	if r.onSleep != nil {
		return r.onSleep(ctx)
	}
	return ctx.Err()
}

func (r *sleepRecorder) recorded() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delays)
}

func TestUploadWithRetry(t *testing.T) {
	policy := RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 150 * time.Millisecond, Multiplier: 2}

	t.Run("Resumes_after_a_dropped_stream", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 3, breakFirst: 1}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRetryPolicy(policy))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		data := randomBytes(t, 8*testChunk+5)
		path := writeTestFile(t, t.TempDir(), "flaky.json", data)
		res, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) over a connection that drops once", "flaky.json")
		checkStored(t, env, res, "flaky.json", data)
		var sent int
		for _, c := range b.received() {
			sent += len(c.Data)
		}
		assert.Equal(t, len(data), sent, "bytes the server received in all, want each byte once (resume from the committed offset, not restart)")
		assert.Len(t, sleeps.recorded(), 1, "UploadWithRetry backoffs for one dropped stream")
	})

	t.Run("Does_not_retry_permanent_errors", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := newClient(t, env.Server, WithRetryPolicy(policy))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "virus.exe", []byte("MZ"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadWithRetry(%q)", "virus.exe")
		assert.Equal(t, 1, env.Started(uploadMethod), "UploadWithRetry(%q) attempts, want no retry for InvalidArgument", "virus.exe")
		assert.Empty(t, sleeps.recorded(), "UploadWithRetry(%q) backoffs, want none for InvalidArgument", "virus.exe")
	})

	t.Run("Gives_up_after_MaxAttempts_with_exponential_backoff", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 0, breakFirst: 100}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		p := RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Multiplier: 2}
		c := newClient(t, env.Server, WithRetryPolicy(p))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		jitters := []float64{0, 0.5, 0.25, 0.75}
		var drawn int
		c.jitter = func() float64 {
			j := jitters[drawn%len(jitters)]
			drawn++
			return j
		}
		path := writeTestFile(t, t.TempDir(), "down.txt", []byte("server is down"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.Unavailable, "UploadWithRetry(%q) while every stream drops", "down.txt")
		require.Equal(t, 5, env.Started(uploadMethod), "UploadWithRetry(MaxAttempts=5) attempts")
		delays := sleeps.recorded()
		// Bases 100ms, 200ms, 300ms (400ms capped), 300ms; each wait is
		// base/2 + jitter*base/2.
		bases := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
		require.Len(t, delays, len(bases), "UploadWithRetry(MaxAttempts=5) backoffs")
		for i, d := range delays {
			want := bases[i]/2 + time.Duration(jitters[i]*float64(bases[i]/2))
			if d != want {
				t.Fatalf("backoff %d = %v, want %v (base %v: InitialBackoff times Multiplier per retry, capped at MaxBackoff; then base/2 + jitter %v * base/2)", i+1, d, want, bases[i], jitters[i])
			}
		}
	})

	t.Run("Uses_jitter", func(t *testing.T) {
		p := RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Second, Multiplier: 2}
		seen := map[time.Duration]bool{}
		for range 5 {
			b := &streamBreaker{afterChunks: 0, breakFirst: 1}
			env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
			c := newClient(t, env.Server, WithRetryPolicy(p))
			sleeps := &sleepRecorder{}
			c.sleep = sleeps.sleep
			path := writeTestFile(t, t.TempDir(), "jitter.txt", []byte("j"))
			_, err := c.UploadWithRetry(katatest.Context(t), path)
			katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q)", "jitter.txt")
			for _, d := range sleeps.recorded() {
				seen[d] = true
			}
		}
		assert.GreaterOrEqual(t, len(seen), 2, "distinct delays of 5 retries (%v), want jittered delays that differ", seen)
	})

	t.Run("Honours_RetryInfo", func(t *testing.T) {
		throttle := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			st, _ := status.New(codes.ResourceExhausted, "busy, try later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
			return st.Err()
		}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(throttle))
		c := newClient(t, env.Server, WithRetryPolicy(RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "busy.txt", []byte("b"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadWithRetry(%q) against a throttling server", "busy.txt")
		if d := sleeps.recorded(); len(d) != 1 || d[0] < 3*time.Second {
			t.Fatalf("UploadWithRetry backed off %v after RetryInfo asked for 3s, want one wait of at least 3s", d)
		}
	})

	t.Run("Stops_when_the_context_ends", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 0, breakFirst: 100}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := newClient(t, env.Server, WithRetryPolicy(policy))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		sleeps := &sleepRecorder{onSleep: func(ctx context.Context) error {
			cancel()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(katatest.WaitTimeout):
				t.Errorf("the context c.sleep got was still live %v after UploadWithRetry's was cancelled: back off on the caller's ctx, never context.Background()", katatest.WaitTimeout)
				return errors.New("gave up waiting for the backoff's context to end")
			}
		}}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "stop.txt", []byte("s"))
		_, err := c.UploadWithRetry(ctx, path)
		katatest.WantCode(t, err, codes.Canceled, "UploadWithRetry(%q) cancelled while backing off", "stop.txt")
		assert.Equal(t, 1, env.Started(uploadMethod), "UploadWithRetry attempts, want none after the context was cancelled while backing off")
	})

	t.Run("Returns_a_failed_status_query_without_uploading", func(t *testing.T) {
		refuse := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return nil, status.Error(codes.PermissionDenied, "not your upload (injected by the test)")
		}
		env := startUploadServer(t, Config{}, katatest.WithServerOptions(grpc.ChainUnaryInterceptor(refuse)))
		c := newClient(t, env.Server, WithRetryPolicy(policy))
		c.sleep = (&sleepRecorder{}).sleep
		path := writeTestFile(t, t.TempDir(), "mine.txt", []byte("mine"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.PermissionDenied, "UploadWithRetry(%q) when GetUploadStatus is refused", "mine.txt")
		assert.Zero(t, env.Started(uploadMethod), "UploadFile streams opened after GetUploadStatus failed with PermissionDenied, want none: only NotFound means start at 0")
	})

	t.Run("Fails_without_sending_when_the_file_is_shorter_than_the_committed_offset", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 3, breakFirst: 1}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRetryPolicy(policy))
		path := writeTestFile(t, t.TempDir(), "changed.json", randomBytes(t, 8*testChunk))
		c.sleep = func(ctx context.Context, d time.Duration) error {
			// While the client backs off, the file is replaced by a
			// shorter one: the server's 3 committed chunks are no longer
			// a prefix of it.
			return os.Truncate(path, testChunk)
		}
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		require.Error(t, err, "UploadWithRetry(%q) resuming at %d bytes a file now %d bytes long", "changed.json", 3*testChunk, testChunk)
		assert.Equal(t, 1, env.Started(uploadMethod), "UploadFile streams, want none after the first: the file is shorter than what the server committed")
	})

	t.Run("Retries_an_attempt_that_times_out", func(t *testing.T) {
		var calls atomic.Int32
		hang := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if info.FullMethod == uploadMethod && calls.Add(1) == 1 {
				<-ss.Context().Done() // the first attempt hangs until its deadline
				return ss.Context().Err()
			}
			return handler(srv, ss)
		}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(hang))
		p := policy
		p.AttemptTimeout = 200 * time.Millisecond
		c := newClient(t, env.Server, WithRetryPolicy(p))
		c.sleep = (&sleepRecorder{}).sleep
		data := []byte("eventually")
		path := writeTestFile(t, t.TempDir(), "hang.txt", data)
		res, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) whose first attempt hangs past AttemptTimeout", "hang.txt")
		checkStored(t, env, res, "hang.txt", data)
	})

	t.Run("Retries_an_attempt_whose_status_query_times_out", func(t *testing.T) {
		// The attempt's timeout covers its status query too: a query that
		// hangs is cut off with the attempt, which is then retried.
		var calls atomic.Int32
		hang := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done() // the first status query hangs until its deadline
				return nil, ctx.Err()
			}
			return handler(ctx, req)
		})
		env := startUploadServer(t, Config{}, katatest.WithServerOptions(hang))
		p := policy
		p.AttemptTimeout = 200 * time.Millisecond
		c := newClient(t, env.Server, WithRetryPolicy(p))
		c.sleep = (&sleepRecorder{}).sleep
		data := []byte("eventually")
		path := writeTestFile(t, t.TempDir(), "query.txt", data)
		ctx, cancel := context.WithTimeout(katatest.Context(t), katatest.WaitTimeout)
		defer cancel()
		res, err := c.UploadWithRetry(ctx, path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) whose first status query hangs past AttemptTimeout (%v): run the query on the attempt's context", "query.txt", p.AttemptTimeout)
		checkStored(t, env, res, "query.txt", data)
	})

	t.Run("Progress_counts_the_prefix_the_server_already_has", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 3, breakFirst: 1}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := newClient(t, env.Server, WithChunkSize(testChunk), WithRetryPolicy(policy))
		c.sleep = (&sleepRecorder{}).sleep
		data := randomBytes(t, 6*testChunk)
		path := writeTestFile(t, t.TempDir(), "resumed.txt", data)
		var reports []Progress
		_, err := c.UploadWithRetry(katatest.Context(t), path, WithProgress(func(p Progress) { reports = append(reports, p) }))
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) over a connection that drops once", "resumed.txt")
		require.NotEmpty(t, reports, "progress reports of UploadWithRetry")
		last := reports[len(reports)-1]
		assert.Equal(t, Progress{FileName: "resumed.txt", Sent: int64(len(data)), Total: int64(len(data))}, last, "the last progress report after a resume, want Sent to count the committed prefix too")
		for i := 1; i < len(reports); i++ {
			if r := reports[i]; r.Sent <= 3*testChunk && reports[i-1].Sent >= 3*testChunk {
				t.Fatalf("progress report %d = %+v after %+v: a resumed upload reports from the committed offset %d on, never from 0", i, r, reports[i-1], 3*testChunk)
			}
		}
	})

	t.Run("Waits_the_longer_of_its_backoff_and_RetryInfo", func(t *testing.T) {
		var calls atomic.Int32
		throttleOnce := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if calls.Add(1) == 1 {
				st, _ := status.New(codes.ResourceExhausted, "busy, try later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)})
				return st.Err()
			}
			return handler(srv, ss)
		}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(throttleOnce))
		p := RetryPolicy{MaxAttempts: 2, InitialBackoff: 2 * time.Second, MaxBackoff: 2 * time.Second, Multiplier: 2}
		c := newClient(t, env.Server, WithRetryPolicy(p))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		c.jitter = func() float64 { return 0 }
		path := writeTestFile(t, t.TempDir(), "busy.txt", []byte("b"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) against a server that throttles once with a RetryInfo of 1ms", "busy.txt")
		assert.Equal(t, []time.Duration{time.Second}, sleeps.recorded(), "UploadWithRetry backoffs, want the backoff (base 2s, jitter 0: 1s) when RetryInfo asks for less")
	})

	t.Run("Does_not_send_again_a_file_stored_before_its_answer_was_lost", func(t *testing.T) {
		var calls atomic.Int32
		loseFirstAnswer := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if info.FullMethod == uploadMethod && calls.Add(1) == 1 {
				if err := handler(srv, &lostAnswer{ServerStream: ss}); err != nil {
					return err
				}
				return status.Error(codes.Unavailable, "the answer was lost (injected by the test)")
			}
			return handler(srv, ss)
		}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(loseFirstAnswer))
		c := newClient(t, env.Server, WithRetryPolicy(policy))
		c.sleep = (&sleepRecorder{}).sleep
		data := []byte("stored once")
		path := writeTestFile(t, t.TempDir(), "once.txt", data)
		res, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) whose first answer was lost after the file was stored", "once.txt")
		assert.Equal(t, 1, env.Started(uploadMethod), "UploadFile streams, want one: GetUploadStatus says COMPLETED, so the file is not sent again")
		require.Len(t, env.storedFiles(t), 1, "stored files")
		stored, ok := env.srv.StoredFile(res.GetFileId())
		require.True(t, ok, "StoredFile(%q) not found, want the file_id of the file stored by the first attempt", res.GetFileId())
		assert.Equal(t, int64(len(data)), stored.Size, "stored size")
		want := &pb.UploadResult{FileId: stored.FileID, FileName: "once.txt", TotalSize: int64(len(data)), Status: pb.UploadStatus_UPLOAD_STATUS_COMPLETED}
		got := proto.CloneOf(res)
		if got.Checksum == sha256Hex(data) {
			got.Checksum = "" // GetUploadStatus does not report it; the file's own is right too
		}
		katatest.EqualProto(t, want, got, "UploadWithRetry(%q) result for a file GetUploadStatus reports COMPLETED", "once.txt")
	})

	t.Run("Cancel_during_an_attempt_stops_it", func(t *testing.T) {
		for _, held := range []string{"the status query", "the upload"} {
			g := &gate{release: make(chan struct{})}
			opts := []katatest.Option{katatest.WithStreamInterceptor(g.intercept)}
			asked := make(chan struct{}, 1)
			if held == "the status query" {
				opts = []katatest.Option{katatest.WithServerOptions(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
					asked <- struct{}{}
					<-ctx.Done()
					return nil, ctx.Err()
				}))}
			}
			env := startUploadServer(t, Config{}, opts...)
			p := policy
			p.AttemptTimeout = time.Minute
			c := newClient(t, env.Server, WithRetryPolicy(p))
			c.sleep = (&sleepRecorder{}).sleep
			path := writeTestFile(t, t.TempDir(), "held.txt", []byte("held"))
			ctx, cancel := context.WithCancel(katatest.Context(t))
			done := make(chan error, 1)
			go func() {
				_, err := c.UploadWithRetry(ctx, path)
				done <- err
			}()
			if held == "the upload" && !env.WaitStartedUnless(t, uploadMethod, 1, nil) {
				t.Fatal("UploadWithRetry did not start its upload")
			}
			if held == "the status query" {
				select {
				case <-asked:
				case <-time.After(katatest.WaitTimeout):
					t.Fatal("UploadWithRetry did not ask for the upload's status")
				}
			}
			cancel()
			select {
			case err := <-done:
				katatest.WantCode(t, err, codes.Canceled, "UploadWithRetry() cancelled while the server holds %s", held)
			case <-time.After(katatest.WaitTimeout):
				t.Fatalf("UploadWithRetry() did not return after cancel while the server held %s: every call of an attempt runs on the caller's context", held)
			}
			close(g.release)
			env.WaitIdle(t)
		}
	})
	t.Run("Cancel_during_a_resumed_attempt_stops_it", testCancelDuringAResumedAttemptStopsIt)
}

func testCancelDuringAResumedAttemptStopsIt(t *testing.T) {
	// The first upload stream breaks after one chunk; every later one is
	// held until its client goes away.
	var streams atomic.Int32
	hold := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod == uploadMethod && streams.Add(1) > 1 {
			<-ss.Context().Done()
			return ss.Context().Err()
		}
		return handler(srv, ss)
	}
	b := &streamBreaker{afterChunks: 1, breakFirst: 1}
	env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(hold), katatest.WithStreamInterceptor(b.intercept))
	c := newClient(t, env.Server, WithChunkSize(testChunk), WithRetryPolicy(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Multiplier: 2}))
	c.sleep = (&sleepRecorder{}).sleep
	path := writeTestFile(t, t.TempDir(), "resumed.txt", randomBytes(t, 3*testChunk))
	ctx, cancel := context.WithCancel(katatest.Context(t))
	done := make(chan error, 1)
	go func() {
		_, err := c.UploadWithRetry(ctx, path)
		done <- err
	}()
	if !env.WaitStartedUnless(t, uploadMethod, 2, nil) {
		t.Fatal("UploadWithRetry did not resume after its first stream broke")
	}
	cancel()
	select {
	case err := <-done:
		katatest.WantCode(t, err, codes.Canceled, "UploadWithRetry() cancelled while the server holds the resumed upload")
	case <-time.After(katatest.WaitTimeout):
		t.Fatal("UploadWithRetry() did not return after cancel while the server held the resumed upload: the resumed stream, like the first, runs on the caller's context")
	}
	env.WaitIdle(t)
}

// reverseOrder holds the UploadFile handler of each file named in names
// until the handler of the next one has ended, so the uploads end in the
// reverse of that order.
type reverseOrder struct {
	names []string
	once  sync.Once
	ended map[string]chan struct{}
}

func (o *reverseOrder) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	o.once.Do(func() {
		o.ended = make(map[string]chan struct{})
		for _, name := range o.names {
			o.ended[name] = make(chan struct{})
		}
	})
	if info.FullMethod != uploadMethod {
		return handler(srv, ss)
	}
	first := new(pb.FileChunk)
	if err := ss.RecvMsg(first); err != nil {
		return err
	}
	name := first.GetFileName()
	if i := slices.Index(o.names, name); i >= 0 {
		defer close(o.ended[name])
		if i+1 < len(o.names) {
			select {
			case <-o.ended[o.names[i+1]]:
			case <-ss.Context().Done():
				return ss.Context().Err()
			}
		}
	}
	return handler(srv, &replayFirst{ServerStream: ss, first: first})
}

// replayFirst hands the handler a first message the interceptor already
// received.
type replayFirst struct {
	grpc.ServerStream
	first *pb.FileChunk
}

func (r *replayFirst) RecvMsg(m any) error {
	if r.first != nil {
		proto.Merge(m.(*pb.FileChunk), r.first)
		r.first = nil
		return nil
	}
	return r.ServerStream.RecvMsg(m)
}

// lostAnswer lets a handler finish but never sends its answer.
type lostAnswer struct{ grpc.ServerStream }

func (lostAnswer) SendMsg(any) error { return nil }
