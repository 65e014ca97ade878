package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	up, err := s.staging.begin(first.GetUploadId(), first.GetFileName(), first.GetTotalSize())
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
	resp, ok := s.staging.uploadStatus(id)
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
		o.progress(Progress{FileName: chunk.GetFileName(), Sent: offset, Total: size})
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
		delay := backoff(p, attempt)
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
// multiplier each attempt up to MaxBackoff, and a random half of it is
// jittered away so clients that failed together do not retry together.
func backoff(p RetryPolicy, attempt int) time.Duration {
	base := float64(p.InitialBackoff)
	for range attempt - 1 {
		base *= p.Multiplier
		if base >= float64(p.MaxBackoff) {
			break
		}
	}
	base = min(base, float64(p.MaxBackoff))
	return time.Duration(base/2 + rand.Float64()*base/2)
}
