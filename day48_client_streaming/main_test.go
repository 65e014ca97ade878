package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	uploadMethod = "/streaming.v1.FileUploadService/UploadFile"
	testChunk    = 64 << 10
)

// uploadEnv is one test's server, its upload folder and a raw client.
type uploadEnv struct {
	*katatest.Server
	grpcServer *grpc.Server
	srv        *FileUploadServer
	dir        string
	clock      *fakeClock
	client     pb.FileUploadServiceClient
}

func startUploadServer(t *testing.T, cfg Config, opts ...katatest.Option) *uploadEnv {
	t.Helper()
	cfg.UploadDir = t.TempDir()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	srv, err := NewFileUploadServer(cfg)
	if err != nil {
		t.Fatalf("NewFileUploadServer() = %v", err)
	}
	env := &uploadEnv{srv: srv, dir: cfg.UploadDir, clock: clock}
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		env.grpcServer = g
		pb.RegisterFileUploadServiceServer(g, srv)
	}, opts...)
	env.client = pb.NewFileUploadServiceClient(env.Conn)
	return env
}

// newClient returns a StreamingClient connected to env's server.
func (env *uploadEnv) newClient(t *testing.T, opts ...ClientOption) *StreamingClient {
	t.Helper()
	opts = append([]ClientOption{WithDialOptions(env.DialOptions()...)}, opts...)
	c, err := NewStreamingClient(katatest.Target, opts...)
	if err != nil {
		t.Fatalf("NewStreamingClient() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// storedFiles lists the visible files in the upload folder.
func (env *uploadEnv) storedFiles(t *testing.T) []string {
	t.Helper()
	return listDir(t, env.dir, incomingDirName)
}

// partialFiles lists the files in the hidden incoming folder.
func (env *uploadEnv) partialFiles(t *testing.T) []string {
	t.Helper()
	return listDir(t, filepath.Join(env.dir, incomingDirName))
}

// requireNothingLeft waits for every handler to return, then checks that no
// stored or partial file remains.
func (env *uploadEnv) requireNothingLeft(t *testing.T) {
	t.Helper()
	env.WaitIdle(t)
	if got := env.storedFiles(t); len(got) != 0 {
		t.Fatalf("upload folder after a failed upload holds %q, want nothing", got)
	}
	if got := env.partialFiles(t); len(got) != 0 {
		t.Fatalf("incoming folder after a failed upload holds %q, want nothing", got)
	}
}

func listDir(t *testing.T, dir string, skip ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !slices.Contains(skip, e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// awaitWhileRunning waits for ready while a handler of method runs. It
// fails at once when that handler has already returned (a stub answers
// straight away), and after katatest.TestTimeout otherwise.
func awaitWhileRunning[T any](t *testing.T, s *katatest.Server, method string, ready <-chan T, what string) {
	t.Helper()
	deadline := time.After(katatest.TestTimeout)
	for {
		changed := s.HandlersChanged()
		select {
		case <-ready:
			return
		default:
		}
		if handlerEnded(s, method) {
			t.Fatalf("waiting for %s: the %s handler returned first", what, method)
		}
		select {
		case <-ready:
			return
		case <-changed:
		case <-deadline:
			t.Fatalf("waited %v for %s", katatest.TestTimeout, what)
		}
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// chunksOf splits data into well-formed chunks for name: metadata on the
// first, offsets on all, is_last_chunk and checksum on the last.
func chunksOf(name, uploadID string, data []byte, chunkSize int) []*pb.FileChunk {
	var chunks []*pb.FileChunk
	for off := 0; ; off += chunkSize {
		end := min(off+chunkSize, len(data))
		c := &pb.FileChunk{Data: data[off:end], Offset: int64(off)}
		if off == 0 {
			c.FileName, c.TotalSize, c.UploadId = name, int64(len(data)), uploadID
		}
		if end == len(data) {
			c.IsLastChunk, c.Checksum = true, sha256Hex(data)
			return append(chunks, c)
		}
		chunks = append(chunks, c)
	}
}

// streamAll sends items on a client stream and returns what CloseAndRecv
// answers. A Send that fails with io.EOF means the server has already
// answered, so the status is taken from CloseAndRecv as a client should.
func streamAll[Req, Resp any](stream interface {
	Send(Req) error
	CloseAndRecv() (Resp, error)
}, items []Req) (Resp, error) {
	for _, item := range items {
		if err := stream.Send(item); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			var none Resp
			return none, err
		}
	}
	return stream.CloseAndRecv()
}

// sendChunks sends chunks on a new UploadFile stream.
func sendChunks(ctx context.Context, client pb.FileUploadServiceClient, chunks ...*pb.FileChunk) (*pb.UploadResult, error) {
	stream, err := client.UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	return streamAll(stream, chunks)
}

func TestValidateFileName(t *testing.T) {
	allowed := []string{".txt", ".csv", ".json", ".xml"}
	valid := []string{"a.txt", "Report.CSV", "data.json", "v1.2.feed.xml", "with space.txt", "日本語.txt", strings.Repeat("a", 251) + ".txt"}
	for _, name := range valid {
		if err := validateFileName(name, allowed); err != nil {
			t.Errorf("validateFileName(%q) = %v, want nil", name, err)
		}
	}
	invalid := []struct {
		name    string
		mention string // a fragment the message must contain
	}{
		{"", "empty"},
		{"../x.txt", ""},
		{"/etc/passwd", ""},
		{"a/b.txt", ""},
		{`a\b.txt`, ""},
		{"..", ""},
		{"a..b.txt", ".."},
		{"a\x00.txt", ""},
		{"a\nb.txt", ""},
		{"bell\a.txt", ""},
		{"\xff\xfe.txt", ""},
		{strings.Repeat("a", 296) + ".txt", "255"},
		{"x.exe", ".exe"},
		{"README", ""},
	}
	for _, tc := range invalid {
		err := validateFileName(tc.name, allowed)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("validateFileName(%q) = %v, want code InvalidArgument", tc.name, err)
			continue
		}
		if !strings.Contains(status.Convert(err).Message(), tc.mention) {
			t.Errorf("validateFileName(%q) = %v, want a message mentioning %q", tc.name, err, tc.mention)
		}
	}
}

func TestFileUpload(t *testing.T) {
	t.Run("Small_file_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		data := []byte("hello, client-side streaming\n")
		res, err := sendChunks(ctx, env.client, chunksOf("hello.txt", "", data, testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(name=%q)", "hello.txt")
		checkStored(t, env, res, "hello.txt", data)
	})

	t.Run("Large_file_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		data := randomBytes(t, 8<<20+123)
		res, err := sendChunks(ctx, env.client, chunksOf("large.csv", "", data, testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(name=%q, %d bytes)", "large.csv", len(data))
		checkStored(t, env, res, "large.csv", data)
	})

	t.Run("Empty_file_upload", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		res, err := sendChunks(katatest.Context(t), env.client, chunksOf("empty.json", "", nil, testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(name=%q, 0 bytes)", "empty.json")
		checkStored(t, env, res, "empty.json", nil)
	})

	t.Run("Checksum_verification", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 300<<10)
		chunks := chunksOf("data.csv", "", data, testChunk)
		chunks[len(chunks)-1].Checksum = sha256Hex([]byte("something else"))
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.DataLoss, "UploadFile(wrong checksum)")
		katatest.WantMessage(t, err, "UploadFile(wrong checksum)")("checksum")
		env.requireNothingLeft(t)
	})

	t.Run("Accepts_a_stream_ending_without_is_last_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 100<<10)
		chunks := chunksOf("eof.txt", "", data, testChunk)
		chunks[len(chunks)-1].IsLastChunk = false
		res, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(ended by EOF)")
		checkStored(t, env, res, "eof.txt", data)
	})

	badNames := []struct{ test, name string }{
		{"Rejects_path_traversal", "../x.txt"},
		{"Rejects_absolute_path", "/etc/passwd"},
		{"Rejects_directory_in_name", "a/b.txt"},
		{"Rejects_dot_dot", ".."},
		{"Rejects_empty_name", ""},
		{"Rejects_NUL_in_name", "evil\x00.txt"},
		{"Rejects_control_character_in_name", "line\nbreak.txt"},
		{"Rejects_300_byte_name", strings.Repeat("n", 296) + ".txt"},
		{"Rejects_disallowed_extension", "setup.exe"},
	}
	for _, tc := range badNames {
		t.Run(tc.test, func(t *testing.T) {
			env := startUploadServer(t, Config{})
			_, err := sendChunks(katatest.Context(t), env.client, chunksOf(tc.name, "", []byte("payload"), testChunk)...)
			katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(name=%q)", tc.name)
			env.requireNothingLeft(t)
		})
	}

	t.Run("Rejects_declared_size_over_limit", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxFileSize: 1 << 20})
		first := &pb.FileChunk{FileName: "big.txt", TotalSize: 1<<20 + 1, Data: []byte("x")}
		_, err := sendChunks(katatest.Context(t), env.client, first)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(total_size=%d, MaxFileSize=%d)", first.TotalSize, 1<<20)
		katatest.WantMessage(t, err, "UploadFile(total_size over limit)")("1048576")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_negative_size", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		_, err := sendChunks(katatest.Context(t), env.client, &pb.FileChunk{FileName: "neg.txt", TotalSize: -1, IsLastChunk: true})
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(total_size=-1)")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_bytes_beyond_declared_size", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 200<<10)
		chunks := chunksOf("liar.txt", "", data, testChunk)
		chunks[0].TotalSize = 100 << 10
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(sends %d bytes, declares %d)", len(data), chunks[0].TotalSize)
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_offset_gap", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("gap.txt", "", randomBytes(t, 3*testChunk), testChunk)
		chunks[1].Offset += 10
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(second chunk at offset %d)", chunks[1].Offset)
		katatest.WantMessage(t, err, "UploadFile(offset gap)")("65546", "65536")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_offset_overlap", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("overlap.txt", "", randomBytes(t, 3*testChunk), testChunk)
		chunks[2].Offset -= 100
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(third chunk at offset %d)", chunks[2].Offset)
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_oversized_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxChunkSize: 32 << 10})
		_, err := sendChunks(katatest.Context(t), env.client, chunksOf("chunky.txt", "", randomBytes(t, 100<<10), 64<<10)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(64 KiB chunk, MaxChunkSize 32 KiB)")
		katatest.WantMessage(t, err, "UploadFile(oversized chunk)")("32768")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_malformed_checksum", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("sum.txt", "", []byte("data"), testChunk)
		chunks[0].Checksum = "not-a-sha256"
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(checksum=%q)", "not-a-sha256")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_short_stream", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 4*testChunk)
		chunks := chunksOf("short.txt", "", data, testChunk)
		_, err := sendChunks(katatest.Context(t), env.client, chunks[:2]...)
		katatest.WantCode(t, err, codes.DataLoss, "UploadFile(2 of 4 chunks, then EOF)")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_is_last_chunk_before_total_size", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("early.txt", "", randomBytes(t, 4*testChunk), testChunk)
		chunks[1].IsLastChunk = true
		_, err := sendChunks(katatest.Context(t), env.client, chunks[:2]...)
		katatest.WantCode(t, err, codes.DataLoss, "UploadFile(is_last_chunk after 2 of 4 chunks)")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_empty_stream", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		_, err := sendChunks(katatest.Context(t), env.client)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(no chunks)")
		env.requireNothingLeft(t)
	})

	t.Run("Cleans_up_after_client_cancel", func(t *testing.T) {
		b := &streamBreaker{reachAt: 2, reached: make(chan struct{})}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		stream, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		chunks := chunksOf("cancelled.txt", "", randomBytes(t, 4*testChunk), testChunk)
		for _, c := range chunks[:2] {
			if err := stream.Send(c); err != nil {
				t.Fatalf("Send(offset=%d) = %v, want nil", c.Offset, err)
			}
		}
		awaitWhileRunning(t, env.Server, uploadMethod, b.reached, "the server to receive 2 chunks")
		cancel()
		_, err = stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Canceled, "CloseAndRecv() after cancel")
		env.requireNothingLeft(t)
	})

	t.Run("Concurrent_uploads_of_the_same_name", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		ctx := katatest.Context(t)
		a, b := randomBytes(t, 3*testChunk), randomBytes(t, 3*testChunk)
		sa, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		sb, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		ca, cb := chunksOf("same.txt", "", a, testChunk), chunksOf("same.txt", "", b, testChunk)
		for i := range ca {
			if err := sa.Send(ca[i]); err != nil {
				t.Fatalf("first stream Send(%d) = %v", i, err)
			}
			if err := sb.Send(cb[i]); err != nil {
				t.Fatalf("second stream Send(%d) = %v", i, err)
			}
		}
		ra, err := sa.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "first UploadFile(name=%q)", "same.txt")
		rb, err := sb.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "second UploadFile(name=%q)", "same.txt")
		if ra.GetFileId() == rb.GetFileId() {
			t.Fatalf("two uploads of same.txt got the same file_id %q, want distinct ids", ra.GetFileId())
		}
		checkStored(t, env, ra, "same.txt", a)
		checkStored(t, env, rb, "same.txt", b)
	})
}

// checkStored checks the result and the stored file: named by a random
// file id, original name kept as metadata, content intact, mode 0600, and
// no partial file left behind.
func checkStored(t *testing.T, env *uploadEnv, res *pb.UploadResult, name string, data []byte) {
	t.Helper()
	want := &pb.UploadResult{FileName: name, TotalSize: int64(len(data)), Checksum: sha256Hex(data), Status: pb.UploadStatus_UPLOAD_STATUS_COMPLETED}
	if res.GetFileName() != want.FileName || res.GetTotalSize() != want.TotalSize || res.GetChecksum() != want.Checksum || res.GetStatus() != want.Status {
		t.Fatalf("UploadFile(%q) result = {name %q, size %d, checksum %q, status %v}, want {name %q, size %d, checksum %q, status %v}",
			name, res.GetFileName(), res.GetTotalSize(), res.GetChecksum(), res.GetStatus(), want.FileName, want.TotalSize, want.Checksum, want.Status)
	}
	if len(res.GetFileId()) < 32 || strings.Contains(res.GetFileId(), name) {
		t.Fatalf("UploadFile(%q) file_id = %q, want a random id of at least 128 bits that does not contain the name", name, res.GetFileId())
	}
	env.WaitIdle(t)
	stored, ok := env.srv.StoredFile(res.GetFileId())
	if !ok || stored.FileName != name {
		t.Fatalf("StoredFile(%q) = %+v, %v; want the original name %q kept as metadata", res.GetFileId(), stored, ok, name)
	}
	path := filepath.Join(env.dir, res.GetFileId())
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the stored file: %v (want it named by its file_id in the upload folder)", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("stored file has %d bytes with sha256 %s, want %d bytes with sha256 %s", len(got), sha256Hex(got), len(data), sha256Hex(data))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("stored file mode = %v, want -rw------- (0600)", perm)
	}
	if got := env.partialFiles(t); len(got) != 0 {
		t.Fatalf("incoming folder after a completed upload holds %q, want nothing", got)
	}
}

// streamBreaker is a server interceptor that fails the first breakFirst
// UploadFile streams after they received afterChunks chunks, as if the
// connection had dropped. It records every chunk it lets through, and
// closes reached (when set) once the handler has received reachAt chunks.
type streamBreaker struct {
	afterChunks int
	breakFirst  int // how many streams to break; the rest pass
	reachAt     int
	reached     chan struct{}

	mu      sync.Mutex
	started int
	chunks  []*pb.FileChunk
}

func (b *streamBreaker) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != uploadMethod {
		return handler(srv, ss)
	}
	b.mu.Lock()
	b.started++
	breakThis := b.started <= b.breakFirst
	b.mu.Unlock()
	return handler(srv, &brokenStream{ServerStream: ss, breaker: b, breakAfter: b.afterChunks, broken: breakThis})
}

func (b *streamBreaker) received() []*pb.FileChunk {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.chunks)
}

type brokenStream struct {
	grpc.ServerStream
	breaker    *streamBreaker
	breakAfter int
	broken     bool
	n          int
}

func (s *brokenStream) RecvMsg(m any) error {
	if s.broken && s.n == s.breakAfter {
		return status.Error(codes.Unavailable, "connection lost (injected by the test)")
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.n++
	c := m.(*pb.FileChunk)
	s.breaker.mu.Lock()
	s.breaker.chunks = append(s.breaker.chunks, &pb.FileChunk{
		FileName: c.FileName, Offset: c.Offset, TotalSize: c.TotalSize, IsLastChunk: c.IsLastChunk,
		Checksum: c.Checksum, UploadId: c.UploadId, Data: make([]byte, len(c.Data)),
	})
	if len(s.breaker.chunks) == s.breaker.reachAt && s.breaker.reached != nil {
		close(s.breaker.reached)
	}
	s.breaker.mu.Unlock()
	return nil
}

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
		if st.GetState() != pb.UploadState_UPLOAD_STATE_PAUSED || st.GetCommittedOffset() != 3*testChunk || st.GetTotalSize() != int64(len(data)) || st.GetFileName() != "resume.txt" {
			t.Fatalf("GetUploadStatus(%q) = %v, want state PAUSED, committed_offset %d, total_size %d, file_name resume.txt", id, st, 3*testChunk, len(data))
		}
		partial := env.partialFiles(t)
		if len(partial) != 1 {
			t.Fatalf("incoming folder holds %q, want exactly one partial file", partial)
		}
		info, err := os.Stat(filepath.Join(env.dir, incomingDirName, partial[0]))
		if err != nil || info.Size() != st.GetCommittedOffset() {
			t.Fatalf("partial file is %v bytes (err %v), want the %d committed bytes written to disk as they arrived", info.Size(), err, st.GetCommittedOffset())
		}
		if got := env.storedFiles(t); len(got) != 0 {
			t.Fatalf("upload folder holds %q before the upload completed, want nothing visible", got)
		}
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
		if st.GetState() != pb.UploadState_UPLOAD_STATE_COMPLETED || st.GetFileId() != res.GetFileId() {
			t.Fatalf("GetUploadStatus(%q) = %v, want state COMPLETED with file_id %q", id, st, res.GetFileId())
		}
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
		if forced := serving.GracefulStop(env.grpcServer, nil, 50*time.Millisecond); !forced {
			t.Fatal("GracefulStop with a stalled upload finished gracefully, want it cut off")
		}
		_, err = stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(upload_id=%q) when the server stops", id)
		env.WaitIdle(t)
		if got := env.storedFiles(t); len(got) != 0 {
			t.Fatalf("upload folder after the cut-off holds %q, want nothing visible", got)
		}

		// The same service on a new server (a restarted process keeping
		// its upload folder) continues from the committed offset.
		restarted := katatest.Start(t, func(g *grpc.Server) { pb.RegisterFileUploadServiceServer(g, env.srv) })
		rest := chunks[3:]
		rest[0].FileName, rest[0].TotalSize, rest[0].UploadId = "resume.txt", int64(len(data)), id
		res, err := sendChunks(katatest.Context(t), pb.NewFileUploadServiceClient(restarted.Conn), rest...)
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
		if err := first.Send(chunks[0]); err != nil {
			t.Fatalf("Send() = %v", err)
		}
		// The first stream is receiving once its status says so.
		waitForState(t, env, id, pb.UploadState_UPLOAD_STATE_RECEIVING)
		second := chunksOf("twice.txt", id, data, testChunk)[1:]
		second[0].FileName, second[0].TotalSize, second[0].UploadId = "twice.txt", int64(len(data)), id
		_, err = sendChunks(ctx, env.client, second...)
		katatest.WantCode(t, err, codes.Aborted, "UploadFile(upload_id=%q) while another stream receives it", id)
		for _, c := range chunks[1:] {
			if err := first.Send(c); err != nil {
				t.Fatalf("Send() = %v", err)
			}
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
		if got := env.partialFiles(t); len(got) != 0 {
			t.Fatalf("incoming folder after ResumeTTL holds %q, want the partial file removed", got)
		}
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

	t.Run("Bounds_unfinished_uploads", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxPendingUploads: 1}, katatest.WithStreamInterceptor((&streamBreaker{afterChunks: 1, breakFirst: 1}).intercept))
		ctx := katatest.Context(t)
		_, err := sendChunks(ctx, env.client, chunksOf("one.txt", "pending-1", data, testChunk)...)
		katatest.WantCode(t, err, codes.Unavailable, "UploadFile(pending-1) through a connection that drops")
		env.WaitIdle(t)
		_, err = sendChunks(ctx, env.client, chunksOf("two.txt", "pending-2", data, testChunk)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(pending-2) with MaxPendingUploads=1 already paused")
	})
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

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClientUpload(t *testing.T) {
	t.Run("Uploads_in_chunks_with_metadata_and_checksum", func(t *testing.T) {
		b := &streamBreaker{}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		c := env.newClient(t, WithChunkSize(testChunk))
		data := randomBytes(t, 5*testChunk+1)
		path := writeTestFile(t, t.TempDir(), "report.csv", data)
		res, err := c.UploadFile(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(%q)", "report.csv")
		checkStored(t, env, res, "report.csv", data)
		got := b.received()
		if len(got) != 6 {
			t.Fatalf("server received %d chunks, want 6 chunks of at most %d bytes for %d bytes", len(got), testChunk, len(data))
		}
		for i, c := range got {
			if c.Offset != int64(i*testChunk) || (i < 5 && len(c.Data) != testChunk) {
				t.Fatalf("chunk %d at offset %d with %d bytes, want offset %d with %d bytes", i, c.Offset, len(c.Data), i*testChunk, min(testChunk, len(data)-i*testChunk))
			}
		}
		first, last := got[0], got[len(got)-1]
		if first.FileName != "report.csv" || first.TotalSize != int64(len(data)) {
			t.Fatalf("first chunk names %q with total_size %d, want %q with %d", first.FileName, first.TotalSize, "report.csv", len(data))
		}
		if !last.IsLastChunk || last.Checksum != sha256Hex(data) {
			t.Fatalf("last chunk has is_last_chunk=%v checksum=%q, want true and %q", last.IsLastChunk, last.Checksum, sha256Hex(data))
		}
	})

	t.Run("Reports_progress", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := env.newClient(t, WithChunkSize(testChunk))
		data := randomBytes(t, 3*testChunk+10)
		path := writeTestFile(t, t.TempDir(), "progress.txt", data)
		var reports []Progress
		_, err := c.UploadFile(katatest.Context(t), path, WithProgress(func(p Progress) { reports = append(reports, p) }))
		katatest.WantCode(t, err, codes.OK, "StreamingClient.UploadFile(%q)", "progress.txt")
		want := []int64{testChunk, 2 * testChunk, 3 * testChunk, int64(len(data))}
		var sent []int64
		for _, r := range reports {
			sent = append(sent, r.Sent)
			if r.Total != int64(len(data)) {
				t.Fatalf("progress report %+v, want Total %d", r, len(data))
			}
		}
		if !slices.Equal(sent, want) {
			t.Fatalf("progress reported Sent = %v, want %v (one report per chunk)", sent, want)
		}
	})

	t.Run("Returns_the_server_status_when_Send_fails", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := env.newClient(t, WithChunkSize(testChunk))
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
		c := env.newClient(t, WithChunkSize(testChunk))
		path := writeTestFile(t, t.TempDir(), "cancel.txt", randomBytes(t, 10*testChunk))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		var reports int
		_, err := c.UploadFile(ctx, path, WithProgress(func(Progress) {
			if reports++; reports == 2 {
				cancel()
			}
		}))
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.UploadFile() cancelled after 2 chunks")
		if reports != 2 {
			t.Fatalf("progress reported %d chunks, want the upload to stop after the 2nd when cancelled", reports)
		}
		env.requireNothingLeft(t)
	})

	t.Run("Waits_for_the_rate_limiter", func(t *testing.T) {
		b := &streamBreaker{}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		// One chunk of burst, then a fifth of a chunk a second: the second
		// chunk waits 5s, inside the test's deadline and far past the
		// window in which it must not arrive.
		c := env.newClient(t, WithChunkSize(testChunk), WithRateLimit(testChunk/5))
		if c.limiter == nil {
			t.Fatalf("WithRateLimit(%d) left the client without a limiter", testChunk/5)
		}
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
		case <-time.After(katatest.TestTimeout):
			t.Fatal("StreamingClient.UploadFile() did not return after cancel while waiting for the rate limiter")
		}
		env.WaitIdle(t)
		if n := len(b.received()); n > 1 {
			t.Fatalf("server received %d chunks before the limiter allowed a second, want at most 1", n)
		}
	})

	t.Run("Reports_a_missing_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := env.newClient(t)
		missing := filepath.Join(t.TempDir(), "missing.txt")
		_, err := c.UploadFile(katatest.Context(t), missing)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("StreamingClient.UploadFile(%q) = %v, want an error wrapping os.ErrNotExist", missing, err)
		}
	})
}

func TestIsRetryable(t *testing.T) {
	withRetryInfo, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"Unavailable", status.Error(codes.Unavailable, "connection lost"), true},
		{"Aborted", status.Error(codes.Aborted, "conflict"), true},
		{"ResourceExhausted with RetryInfo", withRetryInfo.Err(), true},
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
	}
	for _, tc := range cases {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
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
		c := env.newClient(t, WithMaxConcurrency(3), WithChunkSize(testChunk))
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
		if !env.WaitInFlightUnless(t, uploadMethod, 3, done) {
			t.Fatalf("UploadFilesConcurrently(8 files, max 3) = %v with %d uploads started, want it to run 3 at once", err, env.Started(uploadMethod))
		}
		select {
		case <-done:
			t.Fatal("UploadFilesConcurrently returned while uploads were held")
		case <-time.After(katatest.NeverWindow):
		}
		if n := env.Started(uploadMethod); n != 3 {
			t.Fatalf("UploadFilesConcurrently(8 files, max 3) started %d uploads at once, want 3", n)
		}
		close(g.release)
		<-done
		katatest.WantCode(t, err, codes.OK, "UploadFilesConcurrently(8 files)")
		if peak := env.PeakInFlight(uploadMethod); peak > 3 {
			t.Fatalf("UploadFilesConcurrently(max 3) ran %d uploads at once", peak)
		}
		if len(results) != len(paths) {
			t.Fatalf("UploadFilesConcurrently(8 files) returned %d results, want 8", len(results))
		}
		for i, r := range results {
			if r.GetFileName() != filepath.Base(paths[i]) {
				t.Fatalf("result %d is for %q, want %q (results in the order of paths)", i, r.GetFileName(), filepath.Base(paths[i]))
			}
		}
	})

	t.Run("Reports_every_failure_with_its_file", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := env.newClient(t, WithMaxConcurrency(2))
		dir := t.TempDir()
		good1 := writeTestFile(t, dir, "good1.txt", []byte("one"))
		bad := writeTestFile(t, dir, "bad.exe", []byte("two"))
		good2 := writeTestFile(t, dir, "good2.txt", []byte("three"))
		missing := filepath.Join(dir, "missing.txt")
		results, err := c.UploadFilesConcurrently(katatest.Context(t), []string{good1, bad, good2, missing})
		if err == nil {
			t.Fatal("UploadFilesConcurrently(with bad.exe and missing.txt) = nil error, want both failures reported")
		}
		joined, ok := err.(interface{ Unwrap() []error })
		if !ok || len(joined.Unwrap()) != 2 {
			t.Fatalf("UploadFilesConcurrently error = %v, want errors.Join of exactly 2 errors", err)
		}
		for _, name := range []string{"bad.exe", "missing.txt"} {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("UploadFilesConcurrently error = %v, want it to name %s", err, name)
			}
		}
		if status.Code(joined.Unwrap()[0]) != codes.InvalidArgument {
			t.Fatalf("error for bad.exe = %v, want code InvalidArgument kept in the chain", joined.Unwrap()[0])
		}
		if len(results) != 4 || results[0].GetFileName() != "good1.txt" || results[1] != nil || results[2].GetFileName() != "good2.txt" || results[3] != nil {
			t.Fatalf("UploadFilesConcurrently results = %v, want [good1.txt, nil, good2.txt, nil]", results)
		}
	})
}

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
		c := env.newClient(t, WithChunkSize(testChunk), WithRetryPolicy(policy))
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
		if sent != len(data) {
			t.Fatalf("server received %d bytes in all for a %d-byte file, want each byte once (resume from the committed offset, not restart)", sent, len(data))
		}
		if n := len(sleeps.recorded()); n != 1 {
			t.Fatalf("UploadWithRetry backed off %d times for one dropped stream, want 1", n)
		}
	})

	t.Run("Does_not_retry_permanent_errors", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		c := env.newClient(t, WithRetryPolicy(policy))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "virus.exe", []byte("MZ"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadWithRetry(%q)", "virus.exe")
		if n := env.Started(uploadMethod); n != 1 || len(sleeps.recorded()) != 0 {
			t.Fatalf("UploadWithRetry(%q) made %d attempts and %d backoffs, want 1 attempt and no retry for InvalidArgument", "virus.exe", n, len(sleeps.recorded()))
		}
	})

	t.Run("Gives_up_after_MaxAttempts_with_exponential_backoff", func(t *testing.T) {
		b := &streamBreaker{afterChunks: 0, breakFirst: 100}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		p := policy
		p.MaxAttempts = 4
		c := env.newClient(t, WithRetryPolicy(p))
		sleeps := &sleepRecorder{}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "down.txt", []byte("server is down"))
		_, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.Unavailable, "UploadWithRetry(%q) while every stream drops", "down.txt")
		if n := env.Started(uploadMethod); n != 4 {
			t.Fatalf("UploadWithRetry(MaxAttempts=4) made %d attempts, want 4", n)
		}
		delays := sleeps.recorded()
		// Base delays 100ms, 150ms (200ms capped), 150ms; jitter keeps
		// each in [base/2, base].
		bases := []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}
		if len(delays) != len(bases) {
			t.Fatalf("UploadWithRetry(MaxAttempts=4) backed off %v, want 3 backoffs", delays)
		}
		for i, d := range delays {
			if d < bases[i]/2 || d > bases[i] {
				t.Fatalf("backoff %d = %v, want within [%v, %v] (exponential, capped at MaxBackoff, with jitter)", i+1, d, bases[i]/2, bases[i])
			}
		}
	})

	t.Run("Uses_jitter", func(t *testing.T) {
		p := RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Second, Multiplier: 2}
		seen := map[time.Duration]bool{}
		for range 5 {
			b := &streamBreaker{afterChunks: 0, breakFirst: 1}
			env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
			c := env.newClient(t, WithRetryPolicy(p))
			sleeps := &sleepRecorder{}
			c.sleep = sleeps.sleep
			path := writeTestFile(t, t.TempDir(), "jitter.txt", []byte("j"))
			_, err := c.UploadWithRetry(katatest.Context(t), path)
			katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q)", "jitter.txt")
			for _, d := range sleeps.recorded() {
				seen[d] = true
			}
		}
		if len(seen) < 2 {
			t.Fatalf("5 retries all waited %v, want jittered delays that differ", seen)
		}
	})

	t.Run("Honours_RetryInfo", func(t *testing.T) {
		throttle := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			st, _ := status.New(codes.ResourceExhausted, "busy, try later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
			return st.Err()
		}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(throttle))
		c := env.newClient(t, WithRetryPolicy(RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}))
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
		c := env.newClient(t, WithRetryPolicy(policy))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		sleeps := &sleepRecorder{onSleep: func(ctx context.Context) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}}
		c.sleep = sleeps.sleep
		path := writeTestFile(t, t.TempDir(), "stop.txt", []byte("s"))
		_, err := c.UploadWithRetry(ctx, path)
		katatest.WantCode(t, err, codes.Canceled, "UploadWithRetry(%q) cancelled while backing off", "stop.txt")
		if n := env.Started(uploadMethod); n != 1 {
			t.Fatalf("UploadWithRetry made %d attempts, want none after the context was cancelled", n)
		}
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
		c := env.newClient(t, WithRetryPolicy(p))
		c.sleep = (&sleepRecorder{}).sleep
		data := []byte("eventually")
		path := writeTestFile(t, t.TempDir(), "hang.txt", data)
		res, err := c.UploadWithRetry(katatest.Context(t), path)
		katatest.WantCode(t, err, codes.OK, "UploadWithRetry(%q) whose first attempt hangs past AttemptTimeout", "hang.txt")
		checkStored(t, env, res, "hang.txt", data)
	})
}

const (
	pointsMethod = "/streaming.v1.DataCollectionService/CollectDataPoints"
	logsMethod   = "/streaming.v1.DataCollectionService/CollectLogs"
)

var collectionNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// collectionEnv is one test's data collection server and clients.
type collectionEnv struct {
	*katatest.Server
	srv    *DataCollectionServer
	store  *recordingStore
	ticks  chan time.Time
	client pb.DataCollectionServiceClient
}

// startCollectionServer starts a server with a recording store, a fixed
// clock and a flush ticker the test fires by hand. After the server has
// stopped it checks that no goroutine of this test is left.
func startCollectionServer(t *testing.T, cfg CollectionConfig, opts ...katatest.Option) *collectionEnv {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last
	store := &recordingStore{saved: make(chan int, 1000)}
	ticks := make(chan time.Time)
	if cfg.Store == nil {
		cfg.Store = store
	}
	cfg.Now = func() time.Time { return collectionNow }
	cfg.NewTicker = func(time.Duration) Ticker { return manualTicker(ticks) }
	srv := NewDataCollectionServer(cfg)
	s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterDataCollectionServiceServer(g, srv) }, opts...)
	return &collectionEnv{Server: s, srv: srv, store: store, ticks: ticks, client: pb.NewDataCollectionServiceClient(s.Conn)}
}

type manualTicker chan time.Time

func (m manualTicker) C() <-chan time.Time { return m }
func (m manualTicker) Stop()               {}

// recordingStore saves in memory, reports each batch's size on saved, and
// fails the batches whose 1-based numbers are in failBatches.
type recordingStore struct {
	failBatches []int
	saved       chan int

	mu      sync.Mutex
	batches [][]*pb.DataPoint
	calls   int
}

func (r *recordingStore) SaveBatch(_ context.Context, points []*pb.DataPoint) error {
	r.mu.Lock()
	r.calls++
	fail := slices.Contains(r.failBatches, r.calls)
	if !fail {
		r.batches = append(r.batches, points)
	}
	r.mu.Unlock()
	r.saved <- len(points)
	if fail {
		return errors.New("disk full (injected by the test)")
	}
	return nil
}

func (r *recordingStore) savedSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sizes []int
	for _, b := range r.batches {
		sizes = append(sizes, len(b))
	}
	return sizes
}

// waitSaves waits for n more SaveBatch calls while the stream is open.
func (r *recordingStore) waitSaves(t *testing.T, s *katatest.Server, n int) {
	t.Helper()
	for i := range n {
		awaitWhileRunning(t, s, pointsMethod, r.saved, fmt.Sprintf("batch %d of %d to be saved while the stream is open (batches are saved as they fill)", i+1, n))
	}
}

func point(source string, i int) *pb.DataPoint {
	return &pb.DataPoint{
		Source:    source,
		Timestamp: timestamppb.New(collectionNow.Add(-time.Duration(i) * time.Second)),
		Metrics:   map[string]float64{"cpu": float64(i % 100), "mem": 512},
		Tags:      map[string]string{"region": "eu-west-1"},
	}
}

func sendPoints(ctx context.Context, client pb.DataCollectionServiceClient, points ...*pb.DataPoint) (*pb.CollectionResult, error) {
	stream, err := client.CollectDataPoints(ctx)
	if err != nil {
		return nil, err
	}
	return streamAll(stream, points)
}

func wantCounts(t *testing.T, res *pb.CollectionResult, total, ok, failed int64) {
	t.Helper()
	if res.GetTotalProcessed() != total || res.GetSuccessfulCount() != ok || res.GetErrorCount() != failed {
		t.Fatalf("CollectDataPoints result = {total %d, successful %d, errors %d}, want {total %d, successful %d, errors %d}",
			res.GetTotalProcessed(), res.GetSuccessfulCount(), res.GetErrorCount(), total, ok, failed)
	}
}

func TestValidateDataPoint(t *testing.T) {
	now, skew := collectionNow, 5*time.Minute
	valid := []*pb.DataPoint{
		point("web-01", 1),
		{Source: "db.eu-west-1", Timestamp: timestamppb.New(now.Add(skew)), Metrics: map[string]float64{"q": -1e300}},
	}
	for _, p := range valid {
		if err := validateDataPoint(p, now, skew); err != nil {
			t.Errorf("validateDataPoint(%v) = %v, want nil", p, err)
		}
	}
	manyMetrics, manyTags := map[string]float64{}, map[string]string{}
	for i := range maxMetricsPerPoint + 1 {
		manyMetrics[fmt.Sprint("m", i)] = 1
	}
	for i := range maxTagsPerPoint + 1 {
		manyTags[fmt.Sprint("t", i)] = "v"
	}
	invalid := []struct {
		name    string
		edit    func(p *pb.DataPoint)
		mention string
	}{
		{"empty source", func(p *pb.DataPoint) { p.Source = "" }, "source"},
		{"65-byte source", func(p *pb.DataPoint) { p.Source = strings.Repeat("s", 65) }, "64"},
		{"source with a quote", func(p *pb.DataPoint) { p.Source = "x'; DROP TABLE points; --" }, "source"},
		{"no timestamp", func(p *pb.DataPoint) { p.Timestamp = nil }, "timestamp"},
		{"zero timestamp", func(p *pb.DataPoint) { p.Timestamp = &timestamppb.Timestamp{} }, "timestamp"},
		{"far-future timestamp", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(now.Add(time.Hour)) }, "ahead"},
		{"no metrics", func(p *pb.DataPoint) { p.Metrics = nil }, "metrics"},
		{"65 metrics", func(p *pb.DataPoint) { p.Metrics = manyMetrics }, "64"},
		{"NaN", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.NaN() }, "NaN"},
		{"+Inf", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(1) }, "Inf"},
		{"-Inf", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(-1) }, "Inf"},
		{"empty metric name", func(p *pb.DataPoint) { p.Metrics[""] = 1 }, "metric"},
		{"33 tags", func(p *pb.DataPoint) { p.Tags = manyTags }, "32"},
		{"oversized tag", func(p *pb.DataPoint) { p.Tags["note"] = strings.Repeat("x", maxTagBytes+1) }, "128"},
	}
	for _, tc := range invalid {
		p := point("web-01", 1)
		tc.edit(p)
		err := validateDataPoint(p, now, skew)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("validateDataPoint(%s) = %v, want code InvalidArgument", tc.name, err)
			continue
		}
		if !strings.Contains(status.Convert(err).Message(), tc.mention) {
			t.Errorf("validateDataPoint(%s) = %v, want a message mentioning %q", tc.name, err, tc.mention)
		}
	}
}

func TestDataCollection(t *testing.T) {
	t.Run("Batch_data_points", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		var points []*pb.DataPoint
		for i := range 1000 {
			points = append(points, point("web-01", i))
		}
		res, err := sendPoints(ctx, env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(1000 valid points)")
		wantCounts(t, res, 1000, 1000, 0)
		if sizes := env.store.savedSizes(); len(sizes) != 10 || slices.Max(sizes) != 100 {
			t.Fatalf("store saved batches of %v points, want 10 batches of 100", sizes)
		}
		sum, err := env.client.GetMetricsSummary(ctx, &pb.GetMetricsSummaryRequest{Source: "web-01"})
		katatest.WantCode(t, err, codes.OK, "GetMetricsSummary(%q)", "web-01")
		cpu := sum.GetMetrics()[0]
		if cpu.GetName() != "cpu" || cpu.GetCount() != 1000 || cpu.GetMin() != 0 || cpu.GetMax() != 99 || cpu.GetMean() != 49.5 || cpu.GetLast() != 99 {
			t.Fatalf("GetMetricsSummary(web-01) cpu = %v, want count 1000, min 0, max 99, mean 49.5, last 99", cpu)
		}
	})

	t.Run("Real_time_streaming", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		stream, err := env.client.CollectDataPoints(ctx)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints()")
		for i := range 250 {
			if err := stream.Send(point("web-02", i)); err != nil {
				t.Fatalf("Send(point %d) = %v", i, err)
			}
			if i == 199 {
				env.store.waitSaves(t, env.Server, 2) // both full batches, before the stream ends
			}
		}
		res, err := stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(250 points)")
		wantCounts(t, res, 250, 250, 0)
		if sizes := env.store.savedSizes(); !slices.Equal(sizes, []int{100, 100, 50}) {
			t.Fatalf("store saved batches of %v points, want [100 100 50] (the rest saved at the end)", sizes)
		}
	})

	t.Run("Counts_invalid_points_and_goes_on", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		var points []*pb.DataPoint
		for i := range 300 {
			p := point("web-03", i)
			if i%30 == 17 {
				p.Metrics["cpu"] = math.NaN()
			}
			points = append(points, p)
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(300 points, 10 NaN)")
		wantCounts(t, res, 300, 290, 10)
		if len(res.GetErrors()) != 10 || !strings.HasPrefix(res.GetErrors()[0], "point 17:") || !strings.Contains(res.GetErrors()[0], "NaN") {
			t.Fatalf("CollectDataPoints errors = %q, want 10 entries starting %q naming the reason", res.GetErrors(), "point 17: ... NaN")
		}
	})

	t.Run("Reports_the_first_errors_then_how_many_more", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxErrorsReported: 5})
		var points []*pb.DataPoint
		for range 12 {
			points = append(points, &pb.DataPoint{Source: "web-04"})
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(12 invalid points)")
		wantCounts(t, res, 12, 0, 12)
		if errs := res.GetErrors(); len(errs) != 6 || errs[5] != "and 7 more" {
			t.Fatalf("CollectDataPoints errors = %q, want 5 errors then %q", errs, "and 7 more")
		}
	})

	t.Run("Failed_batch_counts_as_errors", func(t *testing.T) {
		store := &recordingStore{saved: make(chan int, 100), failBatches: []int{2}}
		env := startCollectionServer(t, CollectionConfig{Store: store})
		var points []*pb.DataPoint
		for i := range 300 {
			points = append(points, point("web-05", i))
		}
		res, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(300 points, second batch fails)")
		wantCounts(t, res, 300, 200, 100)
		if len(res.GetErrors()) == 0 || !strings.Contains(res.GetErrors()[0], "saving failed") {
			t.Fatalf("CollectDataPoints errors = %q, want the failed batch reported", res.GetErrors())
		}
	})

	t.Run("Ends_a_stream_past_its_cap_keeping_what_it_received", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 150})
		var points []*pb.DataPoint
		for i := range 400 {
			points = append(points, point("web-06", i))
		}
		_, err := sendPoints(katatest.Context(t), env.client, points...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "CollectDataPoints(400 points, MaxPointsPerStream=150)")
		katatest.WantMessage(t, err, "CollectDataPoints(past the cap)")("150")
		env.WaitIdle(t)
		if sizes := env.store.savedSizes(); !slices.Equal(sizes, []int{100, 50}) {
			t.Fatalf("store saved batches of %v points, want [100 50]: the 150 accepted points saved", sizes)
		}
	})

	t.Run("Empty_stream", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		res, err := sendPoints(katatest.Context(t), env.client)
		katatest.WantCode(t, err, codes.OK, "CollectDataPoints(no points)")
		wantCounts(t, res, 0, 0, 0)
	})

	badPoints := []struct {
		test string
		edit func(p *pb.DataPoint)
	}{
		{"Rejects_empty_source", func(p *pb.DataPoint) { p.Source = "" }},
		{"Rejects_oversized_source", func(p *pb.DataPoint) { p.Source = strings.Repeat("a", 100) }},
		{"Rejects_NaN", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.NaN() }},
		{"Rejects_positive_infinity", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(1) }},
		{"Rejects_negative_infinity", func(p *pb.DataPoint) { p.Metrics["cpu"] = math.Inf(-1) }},
		{"Rejects_no_metrics", func(p *pb.DataPoint) { p.Metrics = nil }},
		{"Rejects_too_many_metrics", func(p *pb.DataPoint) {
			for i := range 70 {
				p.Metrics[fmt.Sprint("m", i)] = 1
			}
		}},
		{"Rejects_too_many_tags", func(p *pb.DataPoint) {
			for i := range 40 {
				p.Tags[fmt.Sprint("t", i)] = "v"
			}
		}},
		{"Rejects_zero_timestamp", func(p *pb.DataPoint) { p.Timestamp = &timestamppb.Timestamp{} }},
		{"Rejects_far_future_timestamp", func(p *pb.DataPoint) { p.Timestamp = timestamppb.New(collectionNow.Add(24 * time.Hour)) }},
	}
	for _, tc := range badPoints {
		t.Run(tc.test, func(t *testing.T) {
			env := startCollectionServer(t, CollectionConfig{})
			bad := point("web-07", 1)
			tc.edit(bad)
			res, err := sendPoints(katatest.Context(t), env.client, point("web-07", 0), bad, point("web-07", 2))
			katatest.WantCode(t, err, codes.OK, "CollectDataPoints(good, bad, good)")
			wantCounts(t, res, 3, 2, 1)
			if errs := res.GetErrors(); len(errs) != 1 || !strings.HasPrefix(errs[0], "point 1:") {
				t.Fatalf("CollectDataPoints errors = %q, want one error for point 1", errs)
			}
		})
	}
}

func logEntry(app string, level pb.LogLevel, msg string) *pb.LogEntry {
	return &pb.LogEntry{Application: app, Level: level, Timestamp: timestamppb.New(collectionNow), Message: msg, Fields: map[string]string{"request_id": "r-1"}}
}

// logSender is an open CollectLogs stream.
type logSender struct {
	t      *testing.T
	stream pb.DataCollectionService_CollectLogsClient
}

func openLogs(t *testing.T, ctx context.Context, env *collectionEnv) *logSender {
	t.Helper()
	stream, err := env.client.CollectLogs(ctx)
	katatest.WantCode(t, err, codes.OK, "CollectLogs()")
	return &logSender{t: t, stream: stream}
}

func (l *logSender) send(entries ...*pb.LogEntry) {
	l.t.Helper()
	for _, e := range entries {
		if err := l.stream.Send(e); err != nil {
			l.t.Fatalf("CollectLogs Send(%q) = %v", e.GetMessage(), err)
		}
	}
}

// waitIndexed waits until the index holds n entries, without the stream
// ending: only a flush by size or by tick can get them there.
func waitIndexed(t *testing.T, env *collectionEnv, n int, why string) {
	t.Helper()
	deadline := time.After(katatest.TestTimeout)
	for {
		handlers := env.HandlersChanged()
		got, _, changed := env.srv.logs.stats()
		if got == n {
			return
		}
		if handlerEnded(env.Server, logsMethod) {
			t.Fatalf("CollectLogs returned with %d entries indexed, want %d indexed while the stream is open (%s)", got, n, why)
		}
		select {
		case <-changed:
		case <-handlers:
		case <-deadline:
			t.Fatalf("index holds %d entries while the stream is open, want %d (%s)", got, n, why)
		}
	}
}

// handlerEnded reports whether a handler of method started and none is
// running now.
func handlerEnded(s *katatest.Server, method string) bool {
	return s.Started(method) > 0 && s.InFlight(method) == 0
}

func TestLogAggregation(t *testing.T) {
	t.Run("Log_collection", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 2500 {
			l.send(logEntry("checkout", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("order ", i, " placed")))
		}
		waitIndexed(t, env, 2000, "a flush every LogBufferSize=1000 entries")
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(2500 entries)")
		if res.GetTotalReceived() != 2500 || res.GetIndexedCount() != 2500 || res.GetFilteredCount() != 0 || res.GetErrorCount() != 0 {
			t.Fatalf("CollectLogs result = %v, want 2500 received and 2500 indexed", res)
		}
		if n, flushes, _ := env.srv.logs.stats(); n != 2500 || flushes != 3 {
			t.Fatalf("index holds %d entries from %d flushes when the result arrives, want 2500 from 3 (the final flush before SendAndClose)", n, flushes)
		}
	})

	t.Run("Filtering_and_indexing", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MinLevel: pb.LogLevel_LOG_LEVEL_WARN})
		ctx := katatest.Context(t)
		l := openLogs(t, ctx, env)
		l.send(
			logEntry("api", pb.LogLevel_LOG_LEVEL_DEBUG, "cache miss"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "request served"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_WARN, "slow upstream"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, "upstream Timeout after 3s"),
			logEntry("billing", pb.LogLevel_LOG_LEVEL_ERROR, "payment timeout"),
			logEntry("billing", pb.LogLevel_LOG_LEVEL_FATAL, "out of memory"),
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(6 entries, MinLevel WARN)")
		if res.GetTotalReceived() != 6 || res.GetIndexedCount() != 4 || res.GetFilteredCount() != 2 || res.GetErrorCount() != 0 {
			t.Fatalf("CollectLogs result = %v, want 6 received, 4 indexed, 2 filtered", res)
		}
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{MinLevel: pb.LogLevel_LOG_LEVEL_ERROR, Term: "timeout"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(ERROR, %q)", "timeout")
		if found.GetTotalMatches() != 2 || found.GetEntries()[0].GetMessage() != "payment timeout" {
			t.Fatalf("SearchLogs(ERROR, timeout) = %v, want 2 matches, newest first", found)
		}
		found, err = env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "billing"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=billing)")
		if found.GetTotalMatches() != 2 {
			t.Fatalf("SearchLogs(application=billing) = %v, want 2 matches", found)
		}
	})

	t.Run("Redacts_secrets_before_indexing", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		e := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "login failed")
		e.Fields = map[string]string{"user": "alice", "password": "hunter2", "Authorization": "Bearer abc.def", "api_key": "k-123", "session_token": "s-9"}
		l := openLogs(t, ctx, env)
		l.send(e)
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(entry with secrets)")
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "auth"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=auth)")
		if len(found.GetEntries()) != 1 {
			t.Fatalf("SearchLogs(application=auth) = %v, want the entry", found)
		}
		fields := found.GetEntries()[0].GetFields()
		for _, k := range []string{"password", "Authorization", "api_key", "session_token"} {
			if fields[k] != redacted {
				t.Fatalf("indexed field %s = %q, want %q", k, fields[k], redacted)
			}
		}
		if fields["user"] != "alice" {
			t.Fatalf("indexed field user = %q, want %q (only sensitive fields are redacted)", fields["user"], "alice")
		}
	})

	t.Run("Flushes_on_the_interval", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		l.send(logEntry("cron", pb.LogLevel_LOG_LEVEL_INFO, "tick 1"), logEntry("cron", pb.LogLevel_LOG_LEVEL_INFO, "tick 2"))
		// Fire the ticker until both entries are indexed: a tick that
		// arrives before the entries only flushes an empty buffer.
		deadline := time.After(katatest.TestTimeout)
		for {
			handlers := env.HandlersChanged()
			if n, _, _ := env.srv.logs.stats(); n == 2 {
				break
			}
			if handlerEnded(env.Server, logsMethod) {
				t.Fatal("CollectLogs returned before indexing the 2 entries on a tick while the stream was open")
			}
			select {
			case env.ticks <- collectionNow:
			case <-handlers:
			case <-deadline:
				t.Fatal("the flush goroutine stopped taking ticks, or never indexed the 2 entries on a tick while the stream was open")
			}
		}
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(2 entries)")
		if res.GetIndexedCount() != 2 {
			t.Fatalf("CollectLogs result = %v, want 2 indexed", res)
		}
	})

	t.Run("Flushes_when_the_buffer_fills", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{LogBufferSize: 10})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 25 {
			l.send(logEntry("batch", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("job ", i)))
		}
		waitIndexed(t, env, 20, "a flush every LogBufferSize=10 entries")
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(25 entries)")
		if res.GetIndexedCount() != 25 {
			t.Fatalf("CollectLogs result = %v, want 25 indexed", res)
		}
	})

	t.Run("Counts_invalid_entries_and_goes_on", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxLogMessageBytes: 100})
		l := openLogs(t, katatest.Context(t), env)
		l.send(
			logEntry("api", pb.LogLevel(42), "unknown level"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_UNSPECIFIED, "no level"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, strings.Repeat("x", 101)),
			logEntry("", pb.LogLevel_LOG_LEVEL_ERROR, "no application"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, "fine"),
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(4 invalid, 1 valid)")
		if res.GetTotalReceived() != 5 || res.GetErrorCount() != 4 || res.GetIndexedCount() != 1 {
			t.Fatalf("CollectLogs result = %v, want 5 received, 4 errors (unknown or missing level, oversized message, no application), 1 indexed", res)
		}
	})

	t.Run("Cancel_mid_stream_leaves_no_goroutine", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx, cancel := context.WithCancel(katatest.Context(t))
		l := openLogs(t, ctx, env)
		l.send(logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "one"))
		for {
			changed := env.HandlersChanged()
			if env.Started(logsMethod) > 0 {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatal("the CollectLogs handler never started")
			}
		}
		if handlerEnded(env.Server, logsMethod) {
			_, err := l.stream.CloseAndRecv()
			t.Fatalf("CollectLogs returned %v before the client ended the stream, want it to run until cancelled", err)
		}
		cancel()
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Canceled, "CollectLogs() after cancel")
		env.WaitIdle(t) // the per-test leak check then finds no flusher
	})
}

func TestCollectionClient(t *testing.T) {
	t.Run("SendDataPoints_streams_until_the_channel_closes", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newCollectionClient(t, env)
		points := make(chan *pb.DataPoint)
		go func() {
			defer close(points)
			for i := range 300 {
				points <- point("edge-1", i)
			}
		}()
		res, err := c.SendDataPoints(katatest.Context(t), points)
		katatest.WantCode(t, err, codes.OK, "SendDataPoints(300 points)")
		wantCounts(t, res, 300, 300, 0)
	})

	t.Run("SendLogs_streams_until_the_channel_closes", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newCollectionClient(t, env)
		entries := make(chan *pb.LogEntry, 3)
		for i := range 3 {
			entries <- logEntry("edge", pb.LogLevel_LOG_LEVEL_ERROR, fmt.Sprint("disk ", i))
		}
		close(entries)
		res, err := c.SendLogs(katatest.Context(t), entries)
		katatest.WantCode(t, err, codes.OK, "SendLogs(3 entries)")
		if res.GetIndexedCount() != 3 {
			t.Fatalf("SendLogs result = %v, want 3 indexed", res)
		}
	})

	t.Run("SendDataPoints_stops_promptly_on_cancel", func(t *testing.T) {
		received := make(chan struct{})
		var once sync.Once
		signal := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &recvSignal{ServerStream: ss, onRecv: func() { once.Do(func() { close(received) }) }})
		}
		env := startCollectionServer(t, CollectionConfig{}, katatest.WithStreamInterceptor(signal))
		c := newCollectionClient(t, env)
		ctx, cancel := context.WithCancel(katatest.Context(t))
		points := make(chan *pb.DataPoint) // never closed: only cancel ends it
		done := make(chan error, 1)
		go func() {
			_, err := c.SendDataPoints(ctx, points)
			done <- err
		}()
		select {
		case points <- point("edge-2", 0):
		case err := <-done:
			t.Fatalf("SendDataPoints() = %v before reading its first point", err)
		}
		// Once the server has the point, the client's Send is over and it
		// waits for the next point: only ctx can end that wait.
		awaitWhileRunning(t, env.Server, pointsMethod, received, "the server to receive the first point")
		cancel()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Canceled, "SendDataPoints() after cancel")
		case <-time.After(katatest.TestTimeout):
			t.Fatal("SendDataPoints() did not return after cancel while waiting for points")
		}
		env.WaitIdle(t)
	})

	t.Run("SendDataPoints_returns_the_server_status_when_Send_fails", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 10})
		c := newCollectionClient(t, env)
		points := make(chan *pb.DataPoint)
		done := make(chan error, 1)
		go func() {
			_, err := c.SendDataPoints(katatest.Context(t), points)
			done <- err
		}()
		// Feed points until the client gives up: once the server has ended
		// the stream, Send fails with io.EOF.
		for i := 0; ; i++ {
			select {
			case points <- point("edge-3", i):
				continue
			case err := <-done:
				katatest.WantCode(t, err, codes.ResourceExhausted, "SendDataPoints(endless points, MaxPointsPerStream=10)")
			}
			break
		}
	})
}

// recvSignal calls onRecv after each message the handler receives.
type recvSignal struct {
	grpc.ServerStream
	onRecv func()
}

func (r *recvSignal) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if err == nil {
		r.onRecv()
	}
	return err
}

func newCollectionClient(t *testing.T, env *collectionEnv) *StreamingClient {
	t.Helper()
	c, err := NewStreamingClient(katatest.Target, WithDialOptions(env.DialOptions()...))
	if err != nil {
		t.Fatalf("NewStreamingClient() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMonitorConnection(t *testing.T) {
	env := startCollectionServer(t, CollectionConfig{})
	c := newCollectionClient(t, env)
	ctx, cancel := context.WithCancel(katatest.Context(t))
	states := make(chan connectivity.State, 16)
	done := make(chan error, 1)
	go func() { done <- c.MonitorConnection(ctx, func(s connectivity.State) { states <- s }) }()
	var seen []connectivity.State
	for ready := false; !ready; {
		select {
		case s := <-states:
			seen = append(seen, s)
			ready = s == connectivity.Ready
		case err := <-done:
			t.Fatalf("MonitorConnection() = %v after reporting %v, want it to report until cancelled", err, seen)
		case <-ctx.Done():
			t.Fatalf("MonitorConnection reported %v, want it to connect and report READY", seen)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("MonitorConnection() after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(katatest.TestTimeout):
		t.Fatal("MonitorConnection() did not return after cancel")
	}
}
