package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
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
	srv    *FileUploadServer
	dir    string
	clock  *fakeClock
	client pb.FileUploadServiceClient
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
	s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterFileUploadServiceServer(g, srv) }, opts...)
	return &uploadEnv{Server: s, srv: srv, dir: cfg.UploadDir, clock: clock, client: pb.NewFileUploadServiceClient(s.Conn)}
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

// sendChunks sends chunks on a new stream and returns what CloseAndRecv
// answers. A Send that fails with io.EOF means the server has already
// answered, so the status is taken from CloseAndRecv as a client should.
func sendChunks(ctx context.Context, client pb.FileUploadServiceClient, chunks ...*pb.FileChunk) (*pb.UploadResult, error) {
	stream, err := client.UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range chunks {
		if err := stream.Send(c); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
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
		select {
		case <-b.reached:
		case <-ctx.Done():
			t.Fatal("the server did not receive 2 chunks before the test's deadline")
		}
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
		env.WaitInFlight(t, uploadMethod, 1)
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
		if ctx.Err() != nil {
			t.Fatalf("GetUploadStatus(%q) = %v, %v; want state %v", id, st, err, want)
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
		go func() {
			_, err := c.UploadFile(ctx, path)
			done <- err
		}()
		env.WaitInFlight(t, uploadMethod, 1)
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
