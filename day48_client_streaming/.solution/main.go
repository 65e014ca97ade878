package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// validateFileName checks an upload's original name before anything is
// written. See the task 1 stub for the contract.
func validateFileName(name string, allowedExtensions []string) error {
	switch {
	case name == "":
		return status.Error(codes.InvalidArgument, "file name is empty")
	case len(name) > maxFileNameBytes:
		return status.Errorf(codes.InvalidArgument, "file name is %d bytes long, limit %d", len(name), maxFileNameBytes)
	case !utf8.ValidString(name):
		return status.Errorf(codes.InvalidArgument, "file name %q is not valid UTF-8", name)
	case strings.ContainsAny(name, `/\`):
		return status.Errorf(codes.InvalidArgument, "file name %q contains a path separator", name)
	case strings.Contains(name, ".."):
		return status.Errorf(codes.InvalidArgument, "file name %q contains \"..\"", name)
	}
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 {
		return status.Errorf(codes.InvalidArgument, "file name %q contains control character %U at byte %d", name, []rune(name[i:])[0], i)
	}
	// A right-to-left override shows "invoice\u202Efdp.txt" as
	// "invoicetxt.pdf": the name a user sees is not the name stored.
	if i := strings.IndexFunc(name, func(r rune) bool { return unicode.Is(unicode.Bidi_Control, r) }); i >= 0 {
		return status.Errorf(codes.InvalidArgument, "file name %q contains bidirectional control character %U at byte %d", name, []rune(name[i:])[0], i)
	}
	ext := strings.ToLower(filepath.Ext(name))
	if !slices.Contains(allowedExtensions, ext) {
		return status.Errorf(codes.InvalidArgument, "file extension %q is not allowed: allowed %s", ext, strings.Join(allowedExtensions, " "))
	}
	return nil
}

// UploadFile receives one file. See the task 2 stub for the contract.
func (s *FileUploadServer) UploadFile(stream pb.FileUploadService_UploadFileServer) (err error) {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "empty upload: the stream ended before the first chunk")
	}
	if err != nil {
		return err
	}
	if err := s.checkFirstChunk(first); err != nil {
		return err
	}
	up, err := s.staging.begin(stream.Context(), first.GetUploadId(), first.GetFileName(), first.GetTotalSize())
	if err != nil {
		return err
	}
	stored := false
	defer func() {
		if !stored {
			up.abort(err)
		}
	}()

	var declaredChecksum string
	for chunk := first; ; {
		if err := s.checkChunk(up, chunk); err != nil {
			return err
		}
		if sum := chunk.GetChecksum(); sum != "" {
			if declaredChecksum != "" && sum != declaredChecksum {
				return status.Errorf(codes.InvalidArgument, "checksum changed mid-stream: %q, earlier %q", sum, declaredChecksum)
			}
			declaredChecksum = sum
		}
		if err := up.write(chunk.GetData()); err != nil {
			return err
		}
		if chunk.GetIsLastChunk() {
			// The last chunk ends the upload: anything after it is a
			// client bug, refused rather than silently dropped.
			if _, err := stream.Recv(); err == nil {
				return status.Errorf(codes.InvalidArgument, "a chunk arrived after the one marked is_last_chunk at offset %d", chunk.GetOffset())
			} else if !errors.Is(err, io.EOF) {
				return err
			}
			break
		}
		if chunk, err = stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}

	if got := up.committed.Load(); got != up.totalSize {
		return status.Errorf(codes.DataLoss, "upload ended after %d bytes, declared total_size %d", got, up.totalSize)
	}
	if sum := up.sum(); declaredChecksum != "" && sum != declaredChecksum {
		return status.Errorf(codes.DataLoss, "checksum mismatch: received bytes hash to %s, declared %s", sum, declaredChecksum)
	}
	file, err := up.commit()
	stored = true // commit removed the partial file itself if it failed
	if err != nil {
		return err
	}
	return stream.SendAndClose(&pb.UploadResult{
		FileId:    file.FileID,
		FileName:  file.FileName,
		TotalSize: file.Size,
		Checksum:  file.Checksum,
		Status:    pb.UploadStatus_UPLOAD_STATUS_COMPLETED,
	})
}

// checkFirstChunk validates what only the first chunk declares.
func (s *FileUploadServer) checkFirstChunk(c *pb.FileChunk) error {
	if err := validateFileName(c.GetFileName(), s.cfg.AllowedExtensions); err != nil {
		return err
	}
	switch size := c.GetTotalSize(); {
	case size < 0:
		return status.Errorf(codes.InvalidArgument, "total_size %d is negative", size)
	case size > s.cfg.MaxFileSize:
		return status.Errorf(codes.ResourceExhausted, "total_size %d exceeds the limit of %d bytes (MaxFileSize)", size, s.cfg.MaxFileSize)
	}
	return nil
}

// checkChunk validates one chunk against what the upload has committed.
func (s *FileUploadServer) checkChunk(up *upload, c *pb.FileChunk) error {
	n, committed := int64(len(c.GetData())), up.committed.Load()
	switch {
	case len(c.GetData()) > s.cfg.MaxChunkSize:
		return status.Errorf(codes.ResourceExhausted, "chunk at offset %d carries %d bytes, limit %d (MaxChunkSize)", c.GetOffset(), n, s.cfg.MaxChunkSize)
	case c.GetOffset() != committed:
		return status.Errorf(codes.InvalidArgument, "chunk offset %d, want %d (the bytes committed so far)", c.GetOffset(), committed)
	case committed+n > up.totalSize:
		return status.Errorf(codes.ResourceExhausted, "upload exceeds its declared total_size of %d bytes: %d bytes received", up.totalSize, committed+n)
	case c.GetChecksum() != "" && !isSHA256Hex(c.GetChecksum()):
		return status.Errorf(codes.InvalidArgument, "checksum %q is not a lowercase hex SHA-256 (64 characters)", c.GetChecksum())
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// GetUploadStatus reports a resumable upload. See the task 3 stub.
func (s *FileUploadServer) GetUploadStatus(ctx context.Context, req *pb.GetUploadStatusRequest) (*pb.GetUploadStatusResponse, error) {
	id := req.GetUploadId()
	if !uploadIDPattern.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "upload_id %q is invalid: want 1 to 64 letters, digits, '-' or '_'", id)
	}
	resp, ok := s.staging.uploadStatus(ctx, id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no upload with upload_id %q (it never started, or expired after %v)", id, s.cfg.ResumeTTL)
	}
	return resp, nil
}

// UploadFile sends the file at path in chunks. See the task 4 stub.
func (c *StreamingClient) UploadFile(ctx context.Context, path string, opts ...UploadOption) (*pb.UploadResult, error) {
	return c.sendFile(ctx, path, "", 0, collectUploadOptions(opts))
}

// sendFile streams path from byte offset from on, under uploadID (empty
// for a one-shot upload). The committed prefix is read and hashed but not
// sent, so the checksum on the last chunk covers the whole file.
func (c *StreamingClient) sendFile(ctx context.Context, path, uploadID string, from int64, o uploadOptions) (*pb.UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("upload %s: not a regular file", path)
	}
	size := info.Size()
	hash := sha256.New()
	if _, err := io.CopyN(hash, f, from); err != nil {
		return nil, fmt.Errorf("upload %s: hashing the first %d bytes: %w", path, from, err)
	}

	// Cancelling on return ends the stream if we give up before
	// CloseAndRecv, so neither side keeps it open.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.uploads.UploadFile(ctx)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, c.chunkSize) // reused: Send has encoded the chunk when it returns
	for offset := from; ; {
		// Send may still succeed into the transport's buffer after ctx
		// ends; checking first stops the upload at the next chunk.
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		n, err := io.ReadFull(f, buf)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("upload %s: reading at offset %d: %w", path, offset, err)
		}
		if err != nil && offset+int64(n) < size {
			// Without this, a file that shrank would be sent as empty
			// chunks that never reach its size.
			return nil, fmt.Errorf("upload %s: the file shrank to %d bytes while being sent, %d expected", path, offset+int64(n), size)
		}
		hash.Write(buf[:n])
		last := offset+int64(n) >= size
		chunk := &pb.FileChunk{Data: buf[:n], Offset: offset, IsLastChunk: last}
		if offset == from {
			chunk.FileName, chunk.TotalSize, chunk.UploadId = filepath.Base(path), size, uploadID
		}
		if last {
			chunk.Checksum = hex.EncodeToString(hash.Sum(nil))
		}
		if c.limiter != nil {
			if err := c.limiter.WaitN(ctx, n); err != nil {
				if ctx.Err() != nil {
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				// WaitN fails at once when the wait would outlast ctx's deadline.
				return nil, status.Errorf(codes.DeadlineExceeded, "rate limit: chunk at offset %d cannot be sent before the deadline: %v", offset, err)
			}
		}
		if err := stream.Send(chunk); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status says why.
				_, err = stream.CloseAndRecv()
			}
			return nil, err
		}
		offset += int64(n)
		o.progress(Progress{FileName: filepath.Base(path), Sent: offset, Total: size})
		if last {
			break
		}
	}
	return stream.CloseAndRecv()
}

// IsRetryable reports whether an upload that failed with err may succeed
// if tried again. See the task 5 stub.
func IsRetryable(err error) bool {
	if errors.Is(err, ErrAttemptTimeout) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		return retryDelay(st) >= 0
	}
	return false
}

// retryDelay returns the delay a RetryInfo detail asks for, or -1 when st
// has none.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			return info.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// UploadFilesConcurrently uploads every path. See the task 6 stub.
func (c *StreamingClient) UploadFilesConcurrently(ctx context.Context, paths []string, opts ...UploadOption) ([]*pb.UploadResult, error) {
	results := make([]*pb.UploadResult, len(paths))
	errs := make([]error, len(paths))
	slots := make(chan struct{}, c.maxConcurrency)
	var wg sync.WaitGroup
	for i, path := range paths {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("%s: not started: %w", path, ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			res, err := c.UploadFile(ctx, path, opts...)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", path, err)
				return
			}
			results[i] = res
		})
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// UploadWithRetry uploads path, resuming after retryable failures. See the
// task 7 stub.
func (c *StreamingClient) UploadWithRetry(ctx context.Context, path string, opts ...UploadOption) (*pb.UploadResult, error) {
	o := collectUploadOptions(opts)
	uploadID := randomHex(16)
	p := c.retry
	for attempt := 1; ; attempt++ {
		res, err := c.attemptUpload(ctx, path, uploadID, o)
		if err == nil {
			return res, nil
		}
		if !IsRetryable(err) || attempt == p.MaxAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("upload %s: attempt %d of %d: %w", path, attempt, p.MaxAttempts, err)
		}
		delay := backoff(p, attempt, c.jitter())
		if st, ok := status.FromError(err); ok {
			delay = max(delay, retryDelay(st))
		}
		if err := c.sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("upload %s: waiting to retry after attempt %d: %w", path, attempt, status.FromContextError(err).Err())
		}
	}
}

// attemptUpload asks the server how much of uploadID it has, then sends
// the rest, within the policy's per-attempt timeout.
func (c *StreamingClient) attemptUpload(ctx context.Context, path, uploadID string, o uploadOptions) (*pb.UploadResult, error) {
	attemptCtx := ctx
	ownDeadline := false // the attempt's deadline is earlier than the caller's
	if c.retry.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithTimeout(ctx, c.retry.AttemptTimeout)
		defer cancel()
		attemptDeadline, _ := attemptCtx.Deadline()
		callerDeadline, ok := ctx.Deadline()
		ownDeadline = !ok || attemptDeadline.Before(callerDeadline)
	}
	res, err := c.resumeUpload(attemptCtx, path, uploadID, o)
	// The server sees the deadline too and may report it a moment before
	// attemptCtx itself expires, so the context's state cannot decide.
	if ownDeadline && status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil {
		return nil, fmt.Errorf("%w after %v: %w", ErrAttemptTimeout, c.retry.AttemptTimeout, err)
	}
	return res, err
}

func (c *StreamingClient) resumeUpload(ctx context.Context, path, uploadID string, o uploadOptions) (*pb.UploadResult, error) {
	st, err := c.uploads.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: uploadID})
	switch {
	case status.Code(err) == codes.NotFound:
		return c.sendFile(ctx, path, uploadID, 0, o)
	case err != nil:
		return nil, err
	case st.GetState() == pb.UploadState_UPLOAD_STATE_COMPLETED:
		// An earlier attempt stored the file but its result was lost.
		return &pb.UploadResult{FileId: st.GetFileId(), FileName: st.GetFileName(), TotalSize: st.GetTotalSize(), Status: pb.UploadStatus_UPLOAD_STATUS_COMPLETED}, nil
	}
	return c.sendFile(ctx, path, uploadID, st.GetCommittedOffset(), o)
}

// backoff returns the delay before attempt+1: the base delay grows by the
// multiplier each attempt up to MaxBackoff, and a random part (jitter, in
// [0, 1)) of half of it is taken away, so clients that failed together do
// not retry together.
func backoff(p RetryPolicy, attempt int, jitter float64) time.Duration {
	base := float64(p.InitialBackoff)
	for range attempt - 1 {
		base *= p.Multiplier
		if base >= float64(p.MaxBackoff) {
			break
		}
	}
	base = min(base, float64(p.MaxBackoff))
	return time.Duration(base/2 + jitter*base/2)
}

// validateDataPoint checks one point. See the task 8 stub.
func validateDataPoint(p *pb.DataPoint, now time.Time, maxFutureSkew time.Duration) error {
	switch src := p.GetSource(); {
	case src == "":
		return status.Error(codes.InvalidArgument, "source is empty")
	case len(src) > 64:
		return status.Errorf(codes.InvalidArgument, "source is %d bytes long, limit 64", len(src))
	case !sourcePattern.MatchString(src):
		return status.Errorf(codes.InvalidArgument, "source %q does not match %s", src, sourcePattern)
	}
	switch ts := p.GetTimestamp(); {
	case ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0):
		return status.Error(codes.InvalidArgument, "timestamp is missing or zero")
	case !ts.IsValid():
		return status.Errorf(codes.InvalidArgument, "timestamp %v is out of range", ts)
	case ts.AsTime().After(now.Add(maxFutureSkew)):
		return status.Errorf(codes.InvalidArgument, "timestamp %s is more than %v ahead of the server's clock", ts.AsTime().Format(time.RFC3339), maxFutureSkew)
	}
	switch n := len(p.GetMetrics()); {
	case n == 0:
		return status.Error(codes.InvalidArgument, "no metrics: want 1 to 64")
	case n > maxMetricsPerPoint:
		return status.Errorf(codes.InvalidArgument, "%d metrics, limit %d", n, maxMetricsPerPoint)
	}
	// In name order: a point with two bad metrics gets one message.
	for _, name := range slices.Sorted(maps.Keys(p.GetMetrics())) {
		v := p.GetMetrics()[name]
		if name == "" || len(name) > maxMetricNameBytes {
			return status.Errorf(codes.InvalidArgument, "metric name %q: want 1 to %d bytes", name, maxMetricNameBytes)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return status.Errorf(codes.InvalidArgument, "metric %q is %v: want a finite value", name, v)
		}
	}
	if n := len(p.GetTags()); n > maxTagsPerPoint {
		return status.Errorf(codes.InvalidArgument, "%d tags, limit %d", n, maxTagsPerPoint)
	}
	for _, k := range slices.Sorted(maps.Keys(p.GetTags())) {
		if v := p.GetTags()[k]; len(k) > maxTagBytes || len(v) > maxTagBytes {
			return status.Errorf(codes.InvalidArgument, "tag %.20q is longer than %d bytes", k, maxTagBytes)
		}
	}
	return nil
}

// CollectDataPoints receives metric samples. See the task 9 stub.
func (s *DataCollectionServer) CollectDataPoints(stream pb.DataCollectionService_CollectDataPointsServer) error {
	start := s.cfg.Now()
	var received, saved int64
	errs := errorList{max: s.cfg.MaxErrorsReported}
	batch := make([]*pb.DataPoint, 0, s.cfg.BatchSize)
	// save hands the batch to the store; a failed batch counts as errors.
	// It runs on a context that outlives a broken stream, so points
	// already received are not lost with it.
	save := func() {
		if len(batch) == 0 {
			return
		}
		if err := s.cfg.Store.SaveBatch(context.WithoutCancel(stream.Context()), batch); err != nil {
			errs.add("%d points up to point %d: saving failed: %v", len(batch), received-1, err)
		} else {
			s.aggregates.add(batch)
			saved += int64(len(batch))
		}
		batch = make([]*pb.DataPoint, 0, s.cfg.BatchSize) // the store may keep the old one
	}

	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			save()
			return err
		}
		if received == s.cfg.MaxPointsPerStream {
			save()
			return status.Errorf(codes.ResourceExhausted, "stream sent more than %d points (MaxPointsPerStream); the first %d were processed", s.cfg.MaxPointsPerStream, received)
		}
		index := received
		received++
		if err := validateDataPoint(p, s.cfg.Now(), s.cfg.MaxFutureSkew); err != nil {
			errs.add("point %d: %s", index, status.Convert(err).Message())
			continue
		}
		if batch = append(batch, p); len(batch) == s.cfg.BatchSize {
			save()
		}
	}
	save()
	return stream.SendAndClose(&pb.CollectionResult{
		TotalProcessed:   received,
		SuccessfulCount:  saved,
		ErrorCount:       received - saved,
		Errors:           errs.list(),
		ProcessingTimeMs: s.cfg.Now().Sub(start).Milliseconds(),
	})
}

// CollectLogs receives log entries. See the task 12 stub.
func (s *DataCollectionServer) CollectLogs(stream pb.DataCollectionService_CollectLogsServer) error {
	// The flusher goroutine owns the buffer; this one only hands it
	// entries. The channel is bounded, so a slow index slows the stream.
	entries := make(chan *pb.LogEntry, s.cfg.LogBufferSize)
	indexed := make(chan int64, 1)
	go func() { indexed <- s.flushLogs(entries) }()

	var received, filtered, invalid int64
	var recvErr error
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			recvErr = err
			break
		}
		received++
		switch {
		case validateLogEntry(e, s.cfg.MaxLogMessageBytes) != nil:
			invalid++
		case e.GetLevel() < s.cfg.MinLevel:
			filtered++
		default:
			entries <- redactEntry(e)
		}
	}
	// Closing the channel makes the flusher index what is left and return;
	// waiting for it means it never outlives the stream.
	close(entries)
	n := <-indexed
	if recvErr != nil {
		return recvErr
	}
	return stream.SendAndClose(&pb.LogCollectionResult{
		TotalReceived: received,
		IndexedCount:  n,
		FilteredCount: filtered,
		ErrorCount:    invalid,
		Status:        "OK",
	})
}

// flushLogs buffers entries and indexes the buffer when it is full, on
// every tick, and when entries is closed. It returns how many it indexed.
func (s *DataCollectionServer) flushLogs(entries <-chan *pb.LogEntry) (indexed int64) {
	ticker := s.cfg.NewTicker(s.cfg.FlushInterval)
	defer ticker.Stop()
	buf := make([]*pb.LogEntry, 0, s.cfg.LogBufferSize)
	flush := func() {
		if len(buf) > 0 {
			s.logs.addBatch(buf)
			indexed += int64(len(buf))
			buf = make([]*pb.LogEntry, 0, s.cfg.LogBufferSize) // the index keeps the old one
		}
	}
	for {
		select {
		case e, ok := <-entries:
			if !ok {
				flush()
				return indexed
			}
			if buf = append(buf, e); len(buf) == s.cfg.LogBufferSize {
				flush()
			}
		case <-ticker.C():
			flush()
		}
	}
}

// validateLogEntry checks one log entry.
func validateLogEntry(e *pb.LogEntry, maxMessageBytes int) error {
	switch {
	case e.GetLevel() < pb.LogLevel_LOG_LEVEL_DEBUG || e.GetLevel() > pb.LogLevel_LOG_LEVEL_FATAL:
		return fmt.Errorf("unknown level %d", e.GetLevel())
	case e.GetApplication() == "" || len(e.GetApplication()) > maxApplicationBytes:
		return fmt.Errorf("application must be 1 to %d bytes", maxApplicationBytes)
	case len(e.GetMessage()) > maxMessageBytes:
		return fmt.Errorf("message is %d bytes, limit %d", len(e.GetMessage()), maxMessageBytes)
	case !utf8.ValidString(e.GetMessage()):
		return errors.New("message is not valid UTF-8")
	case len(e.GetFields()) > maxLogFields:
		return fmt.Errorf("%d fields, limit %d", len(e.GetFields()), maxLogFields)
	}
	for key, value := range e.GetFields() {
		if len(key) > maxLogFieldKeyBytes || len(value) > maxLogFieldValueBytes {
			return fmt.Errorf("field %.20q is %d bytes with a value of %d bytes, limits %d and %d", key, len(key), len(value), maxLogFieldKeyBytes, maxLogFieldValueBytes)
		}
	}
	return nil
}

// SendDataPoints streams points until the channel closes. See the task 13
// stub.
func (c *StreamingClient) SendDataPoints(ctx context.Context, points <-chan *pb.DataPoint) (*pb.CollectionResult, error) {
	stream, err := c.collection.CollectDataPoints(ctx)
	if err != nil {
		return nil, err
	}
	return sendAll(ctx, stream, points)
}

// SendLogs streams log entries until the channel closes. See the task 13
// stub.
func (c *StreamingClient) SendLogs(ctx context.Context, entries <-chan *pb.LogEntry) (*pb.LogCollectionResult, error) {
	stream, err := c.collection.CollectLogs(ctx)
	if err != nil {
		return nil, err
	}
	return sendAll(ctx, stream, entries)
}

// clientStream is the sending half of a client-streaming call.
type clientStream[Req, Resp any] interface {
	Send(Req) error
	CloseAndRecv() (Resp, error)
}

// sendAll sends every item from items until it is closed, then returns
// the server's answer. The stream was opened with ctx, so returning on
// ctx's end also ends the stream on the server.
func sendAll[Req, Resp any](ctx context.Context, stream clientStream[Req, Resp], items <-chan Req) (Resp, error) {
	var none Resp
	for {
		select {
		case <-ctx.Done():
			return none, status.FromContextError(ctx.Err()).Err()
		case item, ok := <-items:
			if !ok {
				return stream.CloseAndRecv()
			}
			if err := stream.Send(item); err != nil {
				if errors.Is(err, io.EOF) {
					// The server ended the stream; its status says why.
					return stream.CloseAndRecv()
				}
				return none, err
			}
		}
	}
}

// MonitorConnection reports the connection's state changes. See the task
// 14 stub.
func (c *StreamingClient) MonitorConnection(ctx context.Context, onChange func(connectivity.State)) error {
	c.conn.Connect()
	for state := c.conn.GetState(); ; state = c.conn.GetState() {
		onChange(state)
		if !c.conn.WaitForStateChange(ctx, state) {
			return ctx.Err()
		}
	}
}

// ProcessBatch authorises and applies a stream of items. See the task 10
// stub for the contract.
func (s *BatchServer) ProcessBatch(stream pb.BatchService_ProcessBatchServer) error {
	ctx := stream.Context()
	caller, ok := identityFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller: the stream did not pass through AuthInterceptor")
	}
	pace := s.newPacer(caller.User)
	// seen holds at most MaxItemsPerStream ids of at most maxItemIDBytes:
	// a stream past the limit ends before it can add more.
	seen := make(map[string]bool)
	result := &pb.BatchResult{}
	for {
		// Waiting before Recv leaves the next items unread in the
		// transport, whose flow control then holds the client back, so
		// nothing piles up in this process.
		if err := pace.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.DeadlineExceeded, "item %d cannot be received before the stream's deadline at %v items/s: %v", len(result.Outcomes)+1, s.cfg.ItemsPerSecond, err)
		}
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		// A token that expires mid-stream ends it here. The items applied
		// before stay applied; the client, which gets no result, sends
		// the batch again with a fresh token, and WRITE, DELETE and PURGE
		// all give the same result when repeated.
		if err := checkTokenFresh(ctx, s.cfg.Now); err != nil {
			return err
		}
		if len(result.Outcomes) == s.cfg.MaxItemsPerStream {
			return status.Errorf(codes.ResourceExhausted, "stream sent more items than the limit of %d (MaxItemsPerStream)", s.cfg.MaxItemsPerStream)
		}
		msg, err := s.applyItem(caller, item, seen)
		if err != nil {
			msg = status.Convert(err).Message()
			result.RejectedCount++
		} else {
			result.AppliedCount++
		}
		result.Outcomes = append(result.Outcomes, &pb.ItemOutcome{
			ItemId:  outcomeID(item.GetItemId()),
			Code:    int32(status.Code(err)),
			Message: msg,
		})
	}
	result.TotalItems = int64(len(result.Outcomes))
	return stream.SendAndClose(result)
}

// applyItem checks one item and applies it for caller. It returns what it
// did, or a status error saying why the item was rejected.
func (s *BatchServer) applyItem(caller Identity, item *pb.BatchItem, seen map[string]bool) (string, error) {
	id, key, op := item.GetItemId(), item.GetKey(), item.GetOperation()
	switch {
	case id == "":
		return "", status.Error(codes.InvalidArgument, "item_id is empty")
	case len(id) > maxItemIDBytes:
		return "", status.Errorf(codes.InvalidArgument, "item_id is %d bytes long, limit %d", len(id), maxItemIDBytes)
	case seen[id]:
		return "", status.Errorf(codes.AlreadyExists, "item_id %s was already sent on this stream; not applied again", quoteShort(id))
	}
	seen[id] = true

	switch op {
	case pb.BatchOperation_BATCH_OPERATION_WRITE, pb.BatchOperation_BATCH_OPERATION_DELETE, pb.BatchOperation_BATCH_OPERATION_PURGE:
	default:
		return "", status.Errorf(codes.InvalidArgument, "operation %d is unknown: want WRITE, DELETE or PURGE", op)
	}
	owner, err := keyOwner(key)
	if err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	if n := len(item.GetPayload()); n > s.cfg.MaxPayloadBytes {
		return "", status.Errorf(codes.InvalidArgument, "payload is %d bytes, limit %d (MaxPayloadBytes)", n, s.cfg.MaxPayloadBytes)
	}

	if op == pb.BatchOperation_BATCH_OPERATION_PURGE {
		if !caller.Admin {
			return "", status.Errorf(codes.PermissionDenied, "PURGE is for admins only, and user %s is not one", quoteShort(caller.User))
		}
		return fmt.Sprintf("purged every key of %s: %d removed", quoteShort(owner), s.store.purgeOwner(owner)), nil
	}
	if owner != caller.User {
		return "", status.Errorf(codes.PermissionDenied, "user %s may not touch key %s: only keys under %s are theirs", quoteShort(caller.User), quoteShort(key), quoteShort(caller.User+"/"))
	}
	if op == pb.BatchOperation_BATCH_OPERATION_WRITE {
		s.store.put(key, item.GetPayload())
		return "written", nil
	}
	if !s.store.delete(key) {
		return "deleted (it was not there)", nil
	}
	return "deleted", nil
}

// ProcessBatch sends items on one ProcessBatch stream. See the task 11
// stub for the contract.
func (c *StreamingClient) ProcessBatch(ctx context.Context, token string, items []*pb.BatchItem) (*pb.BatchResult, error) {
	// Cancelling on return ends the stream if we give up before
	// CloseAndRecv, so neither side keeps it open.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewBatchServiceClient(c.conn).ProcessBatch(WithToken(ctx, token))
	if err != nil {
		return nil, err
	}
	for _, item := range items {
		// Send may still succeed into the transport's buffer after ctx
		// ends; checking first stops the batch at the next item.
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		if err := stream.Send(item); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the batch early; its status says why.
				_, err = stream.CloseAndRecv()
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}
