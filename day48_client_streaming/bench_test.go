package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// startTCPServer serves a FileUploadServer on 127.0.0.1 over real TCP, as
// the demo does, so benchmarks include the kernel's loopback path. Its
// clients upload with aliceUploadToken.
func startTCPServer(b *testing.B, cfg Config) (addr string) {
	b.Helper()
	return startTCPServerIn(b, cfg, b.TempDir())
}

// startTCPServerIn is startTCPServer storing uploads into dir.
func startTCPServerIn(b *testing.B, cfg Config, dir string, opts ...grpc.ServerOption) (addr string) {
	b.Helper()
	cfg.UploadDir = dir
	srv, err := NewFileUploadServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	tokens := NewTokenStore()
	tokens.Add(aliceUploadToken, Identity{User: "alice", Expires: time.Now().Add(24 * time.Hour)})
	// The options the demo server runs with (serving.ServerOptions), then
	// the benchmark's own.
	opts = append(append(serving.ServerOptions(serving.Limits{}),
		grpc.ChainStreamInterceptor(AuthInterceptor(tokens, time.Now)),
		grpc.ChainUnaryInterceptor(AuthUnaryInterceptor(tokens, time.Now))), opts...)
	return katatest.ServeTCP(b, func(g *grpc.Server) { pb.RegisterFileUploadServiceServer(g, srv) }, opts...)
}

// sha256Rate hashes data once with SHA-256 and returns the rate in bytes
// per second: the ceiling an upload that hashes every byte cannot beat.
func sha256Rate(data []byte) float64 {
	start := time.Now()
	sha256.Sum256(data)
	return float64(len(data)) / time.Since(start).Seconds()
}

// benchFile writes a file of size bytes for the upload benchmarks and
// returns its path and its contents.
func benchFile(b *testing.B, size int) (string, []byte) {
	b.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(b.TempDir(), "bench.csv")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	return path, data
}

// BenchmarkFileUpload uploads a 64 MiB file through StreamingClient over
// TCP loopback with each chunk size and reports throughput (MB/s, the
// median upload), the allocations, and x-sha256: throughput as a
// fraction of SHA-256 over the same bytes. Each op alternates
// uploadPairs uploads with as many hashes of the file, and x-sha256 is
// the median of the pairs' ratios, with its range. It is context, not a
// target: the server hashes every byte and also writes and syncs it.
func BenchmarkFileUpload(b *testing.B) {
	const size = 64 << 20
	path, data := benchFile(b, size)
	for _, chunk := range []int{32 << 10, 64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", chunk>>10), func(b *testing.B) {
			addr := startTCPServer(b, Config{})
			c, err := NewStreamingClient(addr, WithChunkSize(chunk), WithUploadToken(aliceUploadToken))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ReportAllocs()
			var rates, ratios []float64
			for b.Loop() {
				for range uploadPairs {
					rate := uploadRate(b, c, path, size)
					rates, ratios = append(rates, rate), append(ratios, rate/sha256Rate(data))
				}
			}
			b.ReportMetric(katatest.Median(rates)/1e6, "MB/s")
			katatest.ReportPairs(b, "x-sha256", ratios)
		})
	}
}

// putPeer is the peer a user might pick instead of gRPC: a plain
// net/http server on 127.0.0.1 that takes a streaming PUT of a file,
// hashes and writes it as it arrives, syncs, renames it into place and
// checks the checksum, as the upload service does.
type putPeer struct {
	url string
	srv *http.Server
}

// startPutPeer starts a putPeer that stores into dir.
func startPutPeer(b *testing.B, dir string) *putPeer {
	b.Helper()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.CreateTemp(dir, "put-*")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer os.Remove(f.Name())
		h := sha256.New()
		_, err = io.Copy(io.MultiWriter(f, h), r.Body)
		if err == nil {
			err = f.Sync()
		}
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err == nil && hex.EncodeToString(h.Sum(nil)) != r.Trailer.Get("X-Checksum") {
			err = errors.New("checksum mismatch")
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, "stored"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &putPeer{url: "http://" + lis.Addr().String() + "/upload", srv: &http.Server{Handler: handler}}
	go p.srv.Serve(lis)
	b.Cleanup(func() {
		p.srv.Close()
		http.DefaultClient.CloseIdleConnections()
	})
	return p
}

// upload PUTs the file at path, hashing it while it sends, as
// StreamingClient does, with the checksum in a trailer; it returns the
// throughput in bytes per second.
func (p *putPeer) upload(b *testing.B, path string, size int64) float64 {
	b.Helper()
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	body := &hashingReader{r: f, h: sha256.New()}
	req, err := http.NewRequest(http.MethodPut, p.url, body)
	if err != nil {
		b.Fatal(err)
	}
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Checksum": nil}
	body.done = func(sum string) { req.Trailer.Set("X-Checksum", sum) }
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("PUT: %s", resp.Status)
	}
	return float64(size) / time.Since(start).Seconds()
}

// uploadPairs is how many uploads the paired upload benchmarks alternate
// with their peer (a hash, an HTTP upload) in each iteration.
const uploadPairs = 7

// BenchmarkFileUploadPaired compares the gRPC upload at the default chunk
// size with the net/http peer, the two alternating (gRPC, HTTP, gRPC,
// HTTP, ...) so that each pair shares one moment of the machine's disk
// and CPU, and both writing into the same folder. It reports the median of
// the pairs' ratios (x-http-put) with the smallest and largest, and each
// side's median MB/s. dir=disk stores into the test's temporary folder;
// dir=shm into a RAM-backed folder under /dev/shm, where fsync costs
// nothing, so the transport's own cost shows.
func BenchmarkFileUploadPaired(b *testing.B) {
	const size = 64 << 20
	path, _ := benchFile(b, size)
	for _, where := range []string{"disk", "shm"} {
		b.Run("dir="+where, func(b *testing.B) {
			dir := b.TempDir()
			if where == "shm" {
				shm, err := os.MkdirTemp("/dev/shm", "upload-bench-")
				if err != nil {
					b.Skipf("no RAM-backed folder: %v", err)
				}
				b.Cleanup(func() { os.RemoveAll(shm) })
				dir = shm
			}
			grpcDir, httpDir := filepath.Join(dir, "grpc"), filepath.Join(dir, "http")
			for _, d := range []string{grpcDir, httpDir} {
				if err := os.Mkdir(d, 0o700); err != nil {
					b.Fatal(err)
				}
			}
			addr := startTCPServerIn(b, Config{}, grpcDir)
			c, err := NewStreamingClient(addr, WithUploadToken(aliceUploadToken))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			peer := startPutPeer(b, httpDir)
			var ratios, grpcRates, httpRates []float64
			for b.Loop() {
				for range uploadPairs {
					g := uploadRate(b, c, path, size)
					h := peer.upload(b, path, size)
					grpcRates, httpRates, ratios = append(grpcRates, g), append(httpRates, h), append(ratios, g/h)
				}
			}
			katatest.ReportPairs(b, "x-http-put", ratios)
			b.ReportMetric(katatest.Median(grpcRates)/1e6, "grpc-MB/s")
			b.ReportMetric(katatest.Median(httpRates)/1e6, "http-MB/s")
			b.ReportMetric(float64(len(ratios)), "pairs")
		})
	}
}

// BenchmarkUploadLevers measures, one lever at a time, what a change of
// settings does to the upload: the default upload (the demo's server
// options, serving.ServerOptions, and the client's defaults) and the
// changed one
// alternate, uploadLeverPairs pairs of 64 MiB uploads into RAM-backed
// folders (/dev/shm, where fsync costs nothing, so the transport's own
// cost shows), and x-default is the median of the pairs' throughput
// ratios (changed over default), with its range.
func BenchmarkUploadLevers(b *testing.B) {
	const size = 64 << 20
	path, _ := benchFile(b, size)
	for _, lever := range []struct {
		name   string
		server []grpc.ServerOption
		client []ClientOption
	}{
		{"server-read-buffer=256KiB", []grpc.ServerOption{grpc.ReadBufferSize(256 << 10)}, nil},
		{"client-write-buffer=256KiB", nil, []ClientOption{WithDialOptions(grpc.WithWriteBufferSize(256 << 10))}},
		{"chunk=1MiB", nil, []ClientOption{WithChunkSize(1 << 20)}},
		{"server-windows=4MiB/16MiB", []grpc.ServerOption{grpc.InitialWindowSize(4 << 20), grpc.InitialConnWindowSize(16 << 20)}, nil},
	} {
		b.Run(lever.name, func(b *testing.B) {
			shm, err := os.MkdirTemp("/dev/shm", "upload-lever-")
			if err != nil {
				b.Skipf("no RAM-backed folder: %v", err)
			}
			b.Cleanup(func() { os.RemoveAll(shm) })
			upload := func(name string, server []grpc.ServerOption, client []ClientOption) func() float64 {
				dir := filepath.Join(shm, name)
				if err := os.Mkdir(dir, 0o700); err != nil {
					b.Fatal(err)
				}
				addr := startTCPServerIn(b, Config{}, dir, server...)
				c, err := NewStreamingClient(addr, append([]ClientOption{WithUploadToken(aliceUploadToken)}, client...)...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				return func() float64 { return uploadRate(b, c, path, size) }
			}
			baseline, changed := upload("default", nil, nil), upload("changed", lever.server, lever.client)
			var ratios, rates []float64
			for b.Loop() {
				for range uploadLeverPairs {
					base := baseline()
					rate := changed()
					ratios, rates = append(ratios, rate/base), append(rates, rate)
				}
			}
			katatest.ReportPairs(b, "x-default", ratios)
			b.ReportMetric(katatest.Median(rates)/1e6, "MB/s")
		})
	}
}

// uploadLeverPairs is how many default and changed uploads
// BenchmarkUploadLevers alternates for each lever.
const uploadLeverPairs = 7

// uploadRate uploads the file at path, size bytes, with c and returns
// the throughput in bytes per second.
func uploadRate(b *testing.B, c *StreamingClient, path string, size int) float64 {
	b.Helper()
	start := time.Now()
	if _, err := c.UploadFile(context.Background(), path); err != nil {
		b.Fatal(err)
	}
	return float64(size) / time.Since(start).Seconds()
}

// hashingReader hashes what is read through it and reports the hex sum at
// the end.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	done func(sum string)
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		hr.done(hex.EncodeToString(hr.h.Sum(nil)))
	}
	return n, err
}

// BenchmarkUploadHeap uploads 64 MiB and then 1 GiB over TCP loopback
// (client and server share the process) and reports, for each, the peak
// live heap (what the last garbage collection found in use) and the
// peak of all heap objects (garbage not yet collected included), and the
// ratio of the live peaks, which stays near 1 when memory does not grow
// with the file. The objects' peak depends on when collections happen
// to run, and a longer upload has more chances to catch a high one, so
// the target is on the live heap. The uploads alternate, heapPairs
// pairs; each figure is the median, the live ratio's with its range.
func BenchmarkUploadHeap(b *testing.B) {
	addr := startTCPServer(b, Config{MaxFileSize: 2 << 30})
	c, err := NewStreamingClient(addr, WithUploadToken(aliceUploadToken))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var smallLive, largeLive, smallObjects, largeObjects, ratios []float64
	for b.Loop() {
		for range heapPairs {
			small := peakHeapDuring(b, func() error { return uploadGenerated(c, "small.txt", 64<<20) })
			large := peakHeapDuring(b, func() error { return uploadGenerated(c, "large.txt", 1<<30) })
			smallLive, largeLive = append(smallLive, float64(small.live)/(1<<20)), append(largeLive, float64(large.live)/(1<<20))
			smallObjects, largeObjects = append(smallObjects, float64(small.objects)/(1<<20)), append(largeObjects, float64(large.objects)/(1<<20))
			ratios = append(ratios, float64(large.live)/float64(small.live))
		}
	}
	b.ReportMetric(katatest.Median(smallLive), "live-MiB-64MiB")
	b.ReportMetric(katatest.Median(largeLive), "live-MiB-1GiB")
	b.ReportMetric(katatest.Median(ratios), "live-ratio-1GiB/64MiB")
	b.ReportMetric(slices.Min(ratios), "live-ratio-min")
	b.ReportMetric(slices.Max(ratios), "live-ratio-max")
	b.ReportMetric(katatest.Median(smallObjects), "objects-MiB-64MiB")
	b.ReportMetric(katatest.Median(largeObjects), "objects-MiB-1GiB")
}

// heapPairs is how many 64 MiB and 1 GiB uploads BenchmarkUploadHeap
// alternates.
const heapPairs = 3

// uploadGenerated streams size generated bytes without a file on the
// client side, so only the server writes to disk.
func uploadGenerated(c *StreamingClient, name string, size int64) error {
	stream, err := c.uploads.UploadFile(context.Background())
	if err != nil {
		return err
	}
	buf := make([]byte, DefaultChunkSize)
	for i := range buf {
		buf[i] = byte(i)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		chunk := &pb.FileChunk{Data: buf[:min(int64(len(buf)), size-off)], Offset: off, IsLastChunk: off+int64(len(buf)) >= size}
		if off == 0 {
			chunk.FileName, chunk.TotalSize = name, size
		}
		if err := stream.Send(chunk); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			return err
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

// heapPeaks are the highest heap figures seen while something ran.
type heapPeaks struct {
	live    uint64 // live heap as of the latest collection
	objects uint64 // every heap object, collected or not yet
}

// peakHeapDuring runs fn and samples the heap every millisecond,
// returning the highest samples.
func peakHeapDuring(b *testing.B, fn func() error) heapPeaks {
	b.Helper()
	runtime.GC()
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	var peak heapPeaks
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			peak.live = max(peak.live, samples[0].Value.Uint64())
			peak.objects = max(peak.objects, samples[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	err := fn()
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	return peak
}

// receiveOnlyCollector receives and counts, nothing more: the transport's
// own cost, against which the real handlers are measured.
type receiveOnlyCollector struct {
	pb.UnimplementedDataCollectionServiceServer
}

func (receiveOnlyCollector) CollectDataPoints(stream pb.DataCollectionService_CollectDataPointsServer) error {
	var n int64
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.CollectionResult{TotalProcessed: n, SuccessfulCount: n})
		} else if err != nil {
			return err
		}
		n++
	}
}

func (receiveOnlyCollector) CollectLogs(stream pb.DataCollectionService_CollectLogsServer) error {
	var n int64
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.LogCollectionResult{TotalReceived: n, IndexedCount: n})
		} else if err != nil {
			return err
		}
		n++
	}
}

// startCollectionTCP serves impl on 127.0.0.1 and returns a client for it.
func startCollectionTCP(b *testing.B, impl pb.DataCollectionServiceServer) pb.DataCollectionServiceClient {
	b.Helper()
	addr := katatest.ServeTCP(b, func(g *grpc.Server) { pb.RegisterDataCollectionServiceServer(g, impl) })
	c, err := NewStreamingClient(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() }) // runs before the server stops
	return c.collection
}

// collectionBenchmark measures send over the real handler and reports
// messages per second and x-receive-only: the real rate as a fraction of
// the same send over receiveOnlyCollector. Each op alternates
// collectionPairs sends of each, so that each pair sees one moment of
// the machine; x-receive-only is the median of the pairs' ratios, with
// its range. The baseline's time is kept out of ns/op.
func collectionBenchmark(b *testing.B, n int, send func(pb.DataCollectionServiceClient) error) {
	baseline := startCollectionTCP(b, receiveOnlyCollector{})
	real := startCollectionTCP(b, NewDataCollectionServer(CollectionConfig{MaxPointsPerStream: int64(n)}))
	timed := func(c pb.DataCollectionServiceClient) time.Duration {
		start := time.Now()
		if err := send(c); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var realTime time.Duration
	var ratios []float64
	b.ReportAllocs()
	for b.Loop() {
		for range collectionPairs {
			r := timed(real)
			realTime += r
			b.StopTimer()
			ratios = append(ratios, timed(baseline).Seconds()/r.Seconds())
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(len(ratios)*n)/realTime.Seconds(), "msgs/s")
	katatest.ReportPairs(b, "x-receive-only", ratios)
}

// collectionPairs is how many real and receive-only sends one op of the
// collection benchmarks alternates.
const collectionPairs = 7

// BenchmarkDataCollection streams 10,000 valid points per operation.
func BenchmarkDataCollection(b *testing.B) {
	const n = 10_000
	now := time.Now()
	points := make([]*pb.DataPoint, n)
	for i := range points {
		points[i] = &pb.DataPoint{
			Source:    fmt.Sprintf("web-%02d", i%8),
			Timestamp: timestamppb.New(now.Add(-time.Duration(i) * time.Millisecond)),
			Metrics:   map[string]float64{"cpu": float64(i % 100), "mem": 512, "disk": 0.5},
			Tags:      map[string]string{"region": "eu-west-1", "az": "b"},
		}
	}
	collectionBenchmark(b, n, func(c pb.DataCollectionServiceClient) error {
		stream, err := c.CollectDataPoints(context.Background())
		if err != nil {
			return err
		}
		for _, p := range points {
			if err := stream.Send(p); err != nil {
				return err
			}
		}
		res, err := stream.CloseAndRecv()
		if err == nil && res.GetSuccessfulCount() != n {
			err = fmt.Errorf("%d of %d points accepted", res.GetSuccessfulCount(), n)
		}
		return err
	})
}

// BenchmarkLogCollection streams 10,000 log entries per operation, one in
// four carrying a field that must be redacted.
func BenchmarkLogCollection(b *testing.B) {
	const n = 10_000
	entries := make([]*pb.LogEntry, n)
	for i := range entries {
		entries[i] = &pb.LogEntry{
			Application: "checkout",
			Level:       pb.LogLevel_LOG_LEVEL_WARN,
			Timestamp:   timestamppb.Now(),
			Message:     fmt.Sprintf("order %d took %d ms", i, i%700),
			Fields:      map[string]string{"order": fmt.Sprint(i), "user": "alice"},
		}
		if i%4 == 0 {
			entries[i].Fields["api_key"] = "k-123"
		}
	}
	collectionBenchmark(b, n, func(c pb.DataCollectionServiceClient) error {
		stream, err := c.CollectLogs(context.Background())
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := stream.Send(e); err != nil {
				return err
			}
		}
		res, err := stream.CloseAndRecv()
		if err == nil && res.GetIndexedCount() != n {
			err = fmt.Errorf("%d of %d entries indexed", res.GetIndexedCount(), n)
		}
		return err
	})
}
