package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

const (
	shutdownTimeout = 5 * time.Second
	demoUserToken   = "alice-demo-token"
	demoAdminToken  = "root-demo-token"
)

// serverLimits size the transport for this lesson's messages. The largest
// message received is an upload chunk: MaxChunkSize (1 MiB) of data and
// a few hundred bytes of metadata; a batch item is at most 64 KiB and a
// log entry about 43 KiB. Eight streams a connection are plenty for a
// client uploading four files at once. So one connection can make the
// server hold at most 8 x (1 MiB + 16 KiB) while messages arrive; see
// RELIABILITY.md for the whole bound.
var serverLimits = serving.Limits{
	MaxRecvBytes:         1<<20 + 16<<10,
	MaxConcurrentStreams: 8,
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on (port 0 picks a free port)")
	once := flag.Bool("once", false, "run the demo, then exit instead of serving")
	serveOnly := flag.Bool("serve", false, "skip the demo and only serve")
	uploadDir := flag.String("upload-dir", "", "where uploaded files are stored (default: a new temporary folder)")
	idle := flag.Duration("stream-idle", 30*time.Second, "the longest an upload, batch or collection stream may go without a message; it must also average 1 KiB/s after that")
	verbose := flag.Bool("v", false, "log every finished call: method, peer, status code, duration (never tokens or payloads)")
	diskRoom := flag.Int64("disk-room", 0, "fault injection, for tests: each upload's file fails as if the disk were full (ENOSPC) once it holds this many bytes; 0 means never")
	debugAddr := flag.String("debug-addr", "", "also serve /debug/state (goroutines, live heap) and /debug/pprof/ on this loopback address")
	flag.Parse()
	if *once && *serveOnly {
		fmt.Fprintln(os.Stderr, "-once and -serve exclude each other")
		os.Exit(2)
	}
	if err := run(options{addr: *addr, uploadDir: *uploadDir, once: *once, serveOnly: *serveOnly, verbose: *verbose, debugAddr: *debugAddr, streamIdle: *idle, diskRoom: *diskRoom}); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	addr, uploadDir, debugAddr string
	once, serveOnly, verbose   bool
	streamIdle                 time.Duration
	diskRoom                   int64
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if o.uploadDir == "" {
		dir, err := os.MkdirTemp("", "day48-uploads-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.uploadDir = dir
	}
	cfg := Config{UploadDir: o.uploadDir}
	if o.diskRoom > 0 {
		cfg.WrapPartial = func(f *os.File) PartialFile { return &roomLimitedFile{File: f, room: o.diskRoom} }
	}
	uploads, err := NewFileUploadServer(cfg)
	if err != nil {
		return err
	}
	collection := NewDataCollectionServer(CollectionConfig{})
	// Demo callers: the tokens are printed in the README for grpcurl.
	tokens := NewTokenStore()
	tokens.Add(demoUserToken, Identity{User: "alice", Expires: time.Now().Add(24 * time.Hour)})
	tokens.Add(demoAdminToken, Identity{User: "root", Admin: true, Expires: time.Now().Add(24 * time.Hour)})
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	lis = serving.LimitListener(lis, serving.ConnLimits{}, slog.Default())
	stopDebug, err := serving.StartDebug(o.debugAddr) // "" serves nothing
	if err != nil {
		return err
	}
	defer stopDebug()
	logUnary, logStream := serving.LogCalls(slog.Default())
	srv := grpc.NewServer(append(serving.ServerOptions(serverLimits),
		grpc.ChainUnaryInterceptor(logUnary, AuthUnaryInterceptor(tokens, time.Now)),
		grpc.ChainStreamInterceptor(logStream, AuthInterceptor(tokens, time.Now), serving.StreamLimits{Idle: o.streamIdle}.Interceptor(bearer.User)))...)
	pb.RegisterFileUploadServiceServer(srv, uploads)
	pb.RegisterDataCollectionServiceServer(srv, collection)
	pb.RegisterBatchServiceServer(srv, NewBatchServer(BatchConfig{}))
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		healthSrv.Shutdown()
		// Uploads end by themselves; one that stalls is cut off after the
		// timeout and stays resumable.
		serving.GracefulStop(srv, nil, shutdownTimeout)
	}()

	fmt.Println("=== Day 48: gRPC client-side streaming ===")
	fmt.Printf("Serving FileUploadService, DataCollectionService and BatchService on %s (uploads in %s)\n\n", lis.Addr(), o.uploadDir)
	if !o.serveOnly {
		if err := runDemo(ctx, lis.Addr().String()); err != nil {
			return err
		}
		if o.once {
			return nil
		}
	}
	fmt.Println("\nServing until Ctrl+C ...")
	select {
	case <-ctx.Done():
		fmt.Println("\nShutting down ...")
		return nil
	case err := <-served:
		return err
	}
}

// runDemo drives the server through the client, the way a user would.
func runDemo(ctx context.Context, target string) error {
	client, err := NewStreamingClient(target, WithUploadToken(demoUserToken))
	if err != nil {
		return err
	}
	defer client.Close()

	workDir, err := os.MkdirTemp("", "day48-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	const size = 10 << 20
	path := filepath.Join(workDir, "test_file.txt")
	if err := writeRandomFile(path, size); err != nil {
		return err
	}

	fmt.Printf("Uploading test_file.txt (%d MiB) ...\n", size>>20)
	nextReport := int64(0)
	result, err := client.UploadFile(ctx, path, WithProgress(func(p Progress) {
		if p.Sent >= nextReport || p.Sent == p.Total {
			fmt.Printf("Upload progress: %d KiB / %d KiB (%.1f%%)\n", p.Sent>>10, p.Total>>10, 100*float64(p.Sent)/float64(p.Total))
			nextReport = p.Sent + p.Total/5
		}
	}))
	if err != nil {
		return explain("upload", err)
	}
	fmt.Printf("Upload completed: %s (ID: %s, %d bytes, sha256 %.16s...)\n\n", result.GetFileName(), result.GetFileId(), result.GetTotalSize(), result.GetChecksum())

	fmt.Println("Uploading a file named ../../etc/passwd.txt straight through the stream ...")
	if err := sendRawUpload(ctx, client, "../../etc/passwd.txt"); err != nil {
		fmt.Printf("Rejected as it should be: %s: %s\n\n", status.Code(err), status.Convert(err).Message())
	} else {
		return errors.New("the server accepted a path traversal name; task 1 or 2 is not done yet")
	}

	fmt.Println("Uploading 3 files concurrently with retry and resume ...")
	var paths []string
	for i := range 3 {
		p := filepath.Join(workDir, fmt.Sprintf("report-%d.csv", i+1))
		if err := writeRandomFile(p, 1<<20); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	results, err := client.UploadFilesConcurrently(ctx, paths)
	if err != nil {
		return explain("concurrent upload", err)
	}
	for _, r := range results {
		fmt.Printf("  %s -> %s\n", r.GetFileName(), r.GetFileId())
	}
	r, err := client.UploadWithRetry(ctx, paths[0])
	if err != nil {
		return explain("upload with retry", err)
	}
	fmt.Printf("  %s uploaded again as a resumable upload -> %s\n\n", r.GetFileName(), r.GetFileId())

	if err := demoDataPoints(ctx, client); err != nil {
		return err
	}
	if err := demoLogs(ctx, client); err != nil {
		return err
	}
	if err := demoBatch(ctx, client); err != nil {
		return err
	}
	fmt.Println("\nDemo completed.")
	return nil
}

// demoDataPoints sends 10,000 points, 15 of them invalid in known ways.
func demoDataPoints(ctx context.Context, client *StreamingClient) error {
	const total, invalidEvery = 10_000, 667
	fmt.Printf("Sending %d data points (%d of them invalid) ...\n", total, total/invalidEvery)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the producer if the upload ends early
	points := make(chan *pb.DataPoint, 100)
	go func() {
		defer close(points)
		now := time.Now()
		for i := range total {
			p := &pb.DataPoint{
				Source:    fmt.Sprintf("web-%02d", i%4+1),
				Timestamp: timestamppb.New(now.Add(time.Duration(i-total) * time.Millisecond)),
				Metrics:   map[string]float64{"cpu_percent": float64(20 + i%60), "rss_mib": float64(300 + i%50)},
				Tags:      map[string]string{"region": "eu-west-1"},
			}
			if i%invalidEvery == invalidEvery-1 {
				switch (i / invalidEvery) % 3 {
				case 0:
					p.Metrics["cpu_percent"] = math.NaN()
				case 1:
					p.Timestamp = timestamppb.New(now.Add(24 * time.Hour))
				default:
					p.Source = ""
				}
			}
			select {
			case points <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	res, err := client.SendDataPoints(ctx, points)
	if err != nil {
		return explain("data points", err)
	}
	fmt.Printf("Collection completed: %d total, %d successful, %d errors\n", res.GetTotalProcessed(), res.GetSuccessfulCount(), res.GetErrorCount())
	for _, e := range res.GetErrors()[:min(3, len(res.GetErrors()))] {
		fmt.Println("  rejected:", e)
	}
	sum, err := client.collection.GetMetricsSummary(ctx, &pb.GetMetricsSummaryRequest{Source: "web-01"})
	if err != nil {
		return explain("metrics summary", err)
	}
	for _, m := range sum.GetMetrics() {
		fmt.Printf("  web-01 %-12s count %d  min %.0f  max %.0f  mean %.1f\n", m.GetName(), m.GetCount(), m.GetMin(), m.GetMax(), m.GetMean())
	}
	fmt.Println()
	return nil
}

// demoLogs sends log entries, one carrying a password, and searches them.
func demoLogs(ctx context.Context, client *StreamingClient) error {
	entries := make(chan *pb.LogEntry, 300)
	levels := []pb.LogLevel{pb.LogLevel_LOG_LEVEL_DEBUG, pb.LogLevel_LOG_LEVEL_INFO, pb.LogLevel_LOG_LEVEL_WARN, pb.LogLevel_LOG_LEVEL_ERROR}
	for i := range 300 {
		e := &pb.LogEntry{Application: "checkout", Level: levels[i%4], Timestamp: timestamppb.Now(), Message: fmt.Sprintf("order %d placed", i)}
		if e.Level == pb.LogLevel_LOG_LEVEL_ERROR {
			e.Message = fmt.Sprintf("order %d: payment provider timeout", i)
			e.Fields = map[string]string{"order": fmt.Sprint(i), "password": "hunter2"}
		}
		entries <- e
	}
	close(entries)
	fmt.Println("Sending 300 log entries (DEBUG is below the server's minimum level) ...")
	res, err := client.SendLogs(ctx, entries)
	if err != nil {
		return explain("logs", err)
	}
	fmt.Printf("Logs completed: %d received, %d indexed, %d filtered, %d errors\n", res.GetTotalReceived(), res.GetIndexedCount(), res.GetFilteredCount(), res.GetErrorCount())
	found, err := client.collection.SearchLogs(ctx, &pb.SearchLogsRequest{MinLevel: pb.LogLevel_LOG_LEVEL_ERROR, Term: "timeout", Limit: 2})
	if err != nil {
		return explain("log search", err)
	}
	fmt.Printf("Search level>=ERROR term=\"timeout\": %d matches, newest:\n", found.GetTotalMatches())
	for _, e := range found.GetEntries() {
		fmt.Printf("  [%s] %s %v\n", strings.TrimPrefix(e.GetLevel().String(), "LOG_LEVEL_"), e.GetMessage(), e.GetFields())
	}
	return nil
}

// sendRawUpload sends a one-chunk upload with the given name, bypassing the
// client's own use of the file's base name.
func sendRawUpload(ctx context.Context, c *StreamingClient, name string) error {
	stream, err := c.uploads.UploadFile(ctx)
	if err != nil {
		return err
	}
	data := []byte("root:x:0:0\n")
	if err := stream.Send(&pb.FileChunk{FileName: name, Data: data, TotalSize: int64(len(data)), IsLastChunk: true}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// explain turns an unfinished task into a hint instead of a crash.
func explain(step string, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %s\nThis part of the kata is not written yet. Run `make progress` to see what is left", step, status.Convert(err).Message())
	}
	return fmt.Errorf("%s: %w", step, err)
}

func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// demoBatch runs alice's batch, one item of which touches root's key.
func demoBatch(ctx context.Context, client *StreamingClient) error {
	items := []*pb.BatchItem{
		{ItemId: "1", Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "alice/cart", Payload: []byte(`{"items":3}`)},
		{ItemId: "2", Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "alice/profile", Payload: []byte(`{"theme":"dark"}`)},
		{ItemId: "3", Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "root/config", Payload: []byte(`{"admin":"alice"}`)},
		{ItemId: "4", Operation: pb.BatchOperation_BATCH_OPERATION_DELETE, Key: "alice/cart"},
	}
	fmt.Printf("\nRunning a batch of %d items as alice, one of them on root's key ...\n", len(items))
	res, err := client.ProcessBatch(ctx, demoUserToken, items)
	if err != nil {
		return explain("batch", err)
	}
	fmt.Printf("Batch completed: %d items, %d applied, %d rejected\n", res.GetTotalItems(), res.GetAppliedCount(), res.GetRejectedCount())
	for _, o := range res.GetOutcomes() {
		fmt.Printf("  item %s: %s %s\n", o.GetItemId(), codes.Code(o.GetCode()), o.GetMessage())
	}
	return nil
}

// roomLimitedFile is a partial file on a disk that is full once the file
// holds room bytes: the -disk-room fault, with which the abuse suite
// checks over TCP that a full disk is ResourceExhausted and leaves no
// file. Only one upload writes to it.
type roomLimitedFile struct {
	*os.File
	room int64
}

func (f *roomLimitedFile) Write(p []byte) (int, error) {
	if int64(len(p)) > f.room {
		n, _ := f.File.Write(p[:f.room])
		f.room = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.room -= int64(len(p))
	return f.File.Write(p)
}
