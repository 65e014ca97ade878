package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	// The model-based tests draw the same sequences on every run (a
	// -rapid.seed on the command line still wins), so that a mistake fails
	// the same way each time. They shrink a failure to its shortest
	// sequence within seconds and print it; a file of it in testdata/
	// would only make a later run replay an old failure.
	flag.Set("rapid.seed", "48049")
	flag.Set("rapid.shrinktime", "5s")
	flag.Set("rapid.nofailfile", "true")
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
	clock      *katatest.Clock
	tokens     *TokenStore
	client     pb.FileUploadServiceClient
}

// The upload tokens every upload test server knows; env.client and
// newClient send aliceUploadToken on every upload call.
const (
	aliceUploadToken = "alice-upload-token"
	bobUploadToken   = "bob-upload-token"
)

func startUploadServer(t *testing.T, cfg Config, opts ...katatest.Option) *uploadEnv {
	t.Helper()
	cfg.UploadDir = t.TempDir()
	clock := katatest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	cfg.Now = clock.Now
	srv, err := NewFileUploadServer(cfg)
	require.NoError(t, err, "NewFileUploadServer()")
	tokens := NewTokenStore()
	for token, user := range map[string]string{aliceUploadToken: "alice", bobUploadToken: "bob"} {
		tokens.Add(token, Identity{User: user, Expires: clock.Now().AddDate(10, 0, 0)})
	}
	env := &uploadEnv{srv: srv, dir: cfg.UploadDir, clock: clock, tokens: tokens}
	opts = append(opts, env.auth())
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		env.grpcServer = g
		pb.RegisterFileUploadServiceServer(g, srv)
	}, opts...)
	env.client = env.uploadClient(t, aliceUploadToken)
	return env
}

// auth is the option that puts the upload test server's authentication in
// front of a server.
func (env *uploadEnv) auth() katatest.Option {
	return katatest.WithServerOptions(
		grpc.ChainStreamInterceptor(AuthInterceptor(env.tokens, env.clock.Now)),
		grpc.ChainUnaryInterceptor(AuthUnaryInterceptor(env.tokens, env.clock.Now)))
}

// uploadClient is a raw FileUploadService client whose calls carry token
// (none when empty), on a connection of its own.
func (env *uploadEnv) uploadClient(t *testing.T, token string) pb.FileUploadServiceClient {
	t.Helper()
	opts := env.DialOptions()
	if token != "" {
		opts = append(opts, uploadAuth(token)...)
	}
	conn, err := grpc.NewClient(katatest.Target, opts...)
	require.NoError(t, err, "grpc.NewClient()")
	t.Cleanup(func() { conn.Close() })
	return pb.NewFileUploadServiceClient(conn)
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
	require.Empty(t, env.storedFiles(t), "upload folder after a failed upload, want nothing")
	require.Empty(t, env.partialFiles(t), "incoming folder after a failed upload, want nothing")
}

func listDir(t *testing.T, dir string, skip ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err, "reading the upload folder")
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
// straight away), and after katatest.WaitTimeout otherwise.
func awaitWhileRunning[T any](t *testing.T, s *katatest.Server, method string, ready <-chan T, what string) {
	t.Helper()
	deadline := time.After(katatest.WaitTimeout)
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
			t.Fatalf("waited %v for %s", katatest.WaitTimeout, what)
		}
	}
}

// newClient returns a StreamingClient connected to s, closed when the
// test ends.
func newClient(t *testing.T, s *katatest.Server, opts ...ClientOption) *StreamingClient {
	t.Helper()
	opts = append([]ClientOption{WithDialOptions(s.DialOptions()...), WithUploadToken(aliceUploadToken)}, opts...)
	c, err := NewStreamingClient(katatest.Target, opts...)
	require.NoError(t, err, "NewStreamingClient()")
	t.Cleanup(func() { c.Close() })
	return c
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

// sendOrFail sends m on a client stream. When the server has already
// ended the stream, Send says only io.EOF; the failure then names the
// status that CloseAndRecv returns, which is what went wrong.
func sendOrFail[Req, Resp any](t *testing.T, stream interface {
	Send(Req) error
	CloseAndRecv() (Resp, error)
}, m Req, format string, args ...any) {
	t.Helper()
	if err := stream.Send(m); err != nil {
		_, st := stream.CloseAndRecv()
		t.Fatalf("%s: Send() = %v; the server ended the stream with %v", fmt.Sprintf(format, args...), err, st)
	}
}

// sendChunks sends chunks on a new UploadFile stream.
func sendChunks(ctx context.Context, client pb.FileUploadServiceClient, chunks ...*pb.FileChunk) (*pb.UploadResult, error) {
	stream, err := client.UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	return streamAll(stream, chunks)
}

// checkStored checks the result and the stored file: named by a random
// file id, original name kept as metadata, content intact, mode 0600, and
// no partial file left behind.
func checkStored(t *testing.T, env *uploadEnv, res *pb.UploadResult, name string, data []byte) {
	t.Helper()
	require.NotNil(t, res, "UploadFile(%q) result", name)
	// Every field but the random file_id is computed from what was sent.
	got := proto.CloneOf(res)
	got.FileId = ""
	want := &pb.UploadResult{FileName: name, TotalSize: int64(len(data)), Checksum: sha256Hex(data), Status: pb.UploadStatus_UPLOAD_STATUS_COMPLETED}
	katatest.EqualProto(t, want, got, "UploadFile(%q) result", name)
	if len(res.GetFileId()) < 32 || strings.Contains(res.GetFileId(), name) {
		t.Fatalf("UploadFile(%q) file_id = %q, want a random id of at least 128 bits that does not contain the name", name, res.GetFileId())
	}
	env.WaitIdle(t)
	stored, ok := env.srv.StoredFile(res.GetFileId())
	require.True(t, ok, "StoredFile(%q) not found, want the upload's metadata", res.GetFileId())
	require.Equal(t, name, stored.FileName, "StoredFile(%q).FileName, want the original name kept as metadata", res.GetFileId())
	path := filepath.Join(env.dir, res.GetFileId())
	content, err := os.ReadFile(path)
	require.NoError(t, err, "reading the stored file, want it named by its file_id in the upload folder")
	if !bytes.Equal(content, data) {
		t.Fatalf("stored file has %d bytes with sha256 %s, want %d bytes with sha256 %s", len(content), sha256Hex(content), len(data), sha256Hex(data))
	}
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "stored file mode, want -rw------- (0600)")
	require.Empty(t, env.partialFiles(t), "incoming folder after a completed upload, want nothing")
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
	clock  *katatest.Clock
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
	clock := katatest.NewClock(collectionNow)
	cfg.Now = clock.Now
	cfg.NewTicker = func(time.Duration) Ticker { return manualTicker(ticks) }
	srv := NewDataCollectionServer(cfg)
	s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterDataCollectionServiceServer(g, srv) }, opts...)
	return &collectionEnv{Server: s, srv: srv, store: store, clock: clock, ticks: ticks, client: pb.NewDataCollectionServiceClient(s.Conn)}
}

type manualTicker chan time.Time

func (m manualTicker) C() <-chan time.Time { return m }

func (m manualTicker) Stop() {}

// recordingStore saves in memory, reports each batch's size on saved, and
// fails the batches whose 1-based numbers are in failBatches.
type recordingStore struct {
	failBatches []int
	saved       chan int

	mu      sync.Mutex
	batches [][]*pb.DataPoint
	calls   int
	ctxErrs []error  // the context's error at each call
	methods []string // the gRPC method each call's context carries
}

// contextMethods returns the gRPC method the context of each SaveBatch
// carried, "" when none.
func (r *recordingStore) contextMethods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.methods)
}

func (r *recordingStore) SaveBatch(ctx context.Context, points []*pb.DataPoint) error {
	r.mu.Lock()
	r.calls++
	r.ctxErrs = append(r.ctxErrs, ctx.Err())
	method, _ := grpc.Method(ctx)
	r.methods = append(r.methods, method)
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

// contextErrors returns the error of the context each SaveBatch got.
func (r *recordingStore) contextErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ctxErrs)
}

// savedPoints returns the points of every saved batch, in order, read from
// the slices SaveBatch was given: the store keeps them, as a real one may.
func (r *recordingStore) savedPoints() []*pb.DataPoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Concat(r.batches...)
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

func wantCounts(t *testing.T, res *pb.CollectionResult, total, ok, failed int64) {
	t.Helper()
	if res.GetTotalProcessed() != total || res.GetSuccessfulCount() != ok || res.GetErrorCount() != failed {
		t.Fatalf("CollectDataPoints result = {total %d, successful %d, errors %d}, want {total %d, successful %d, errors %d}",
			res.GetTotalProcessed(), res.GetSuccessfulCount(), res.GetErrorCount(), total, ok, failed)
	}
}

func logEntry(app string, level pb.LogLevel, msg string) *pb.LogEntry {
	return &pb.LogEntry{Application: app, Level: level, Timestamp: timestamppb.New(collectionNow), Message: msg, Fields: map[string]string{"request_id": "r-1"}}
}

// handlerEnded reports whether a handler of method started and none is
// running now.
func handlerEnded(s *katatest.Server, method string) bool {
	return s.Started(method) > 0 && s.InFlight(method) == 0
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

// sendCounter counts the streams a client opens and the messages they pass
// to SendMsg, and
// calls afterSend (when set) once the nth has been sent, before SendMsg
// returns: a test can cancel at an exact point and count what followed.
type sendCounter struct {
	opens     atomic.Int32 // streams opened
	sends     atomic.Int32
	nth       int32
	afterSend func()
}

// dialOption installs the counter on a client's connection.
func (c *sendCounter) dialOption() ClientOption {
	return WithDialOptions(grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		c.opens.Add(1)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countedClientStream{ClientStream: cs, counter: c}, nil
	}))
}

func (c *sendCounter) count() int { return int(c.sends.Load()) }

type countedClientStream struct {
	grpc.ClientStream
	counter *sendCounter
}

func (s *countedClientStream) SendMsg(m any) error {
	n := s.counter.sends.Add(1)
	err := s.ClientStream.SendMsg(m)
	if n == s.counter.nth && s.counter.afterSend != nil {
		s.counter.afterSend()
	}
	return err
}
