// Command day48_client_streaming is the Day 48 kata: gRPC client-side
// streaming. This file holds the parts you write; README.md walks through
// them task by task, and `make progress` shows which are done.
package main

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// validateFileName checks an upload's original name before anything is
// written (task 1).
//
// Reject, with codes.InvalidArgument and a message saying what was wrong:
// an empty name; a name longer than maxFileNameBytes bytes; invalid UTF-8;
// a path separator ('/' or '\'), which also covers absolute paths; ".."
// anywhere; a NUL or any other control character; an extension (compared
// in lower case, with its dot) not in allowedExtensions.
func validateFileName(name string, allowedExtensions []string) error {
	// TODO(task 1): implement the checks above, cheapest first.
	return status.Errorf(codes.Unimplemented, "validateFileName: not implemented yet (see README, task 1)")
}

// UploadFile receives one file as a stream of chunks (task 2).
//
// The first chunk carries file_name (check it with validateFileName) and
// total_size (negative: InvalidArgument; over MaxFileSize:
// ResourceExhausted). Start the upload with s.staging.begin and make sure
// that, whatever happens next, an upload that does not complete is
// aborted with the error that ended it (upload.abort).
//
// For every chunk, before writing it: data over MaxChunkSize is
// ResourceExhausted; an offset other than the bytes committed so far is
// InvalidArgument naming both offsets; bytes beyond total_size are
// ResourceExhausted; a checksum that is not 64 lowercase hex digits is
// InvalidArgument. Write each chunk as it arrives (upload.write): never
// hold the whole file in memory.
//
// The upload ends at is_last_chunk or io.EOF. Then the bytes received must
// equal total_size and their SHA-256 must equal the declared checksum, if
// one was sent, else DataLoss. Only then commit (upload.commit) and answer
// with SendAndClose. An empty stream is InvalidArgument; an error from
// Recv is returned as it is.
func (s *FileUploadServer) UploadFile(stream pb.FileUploadService_UploadFileServer) error {
	// TODO(task 2): receive, check, write, verify, commit, SendAndClose.
	return status.Errorf(codes.Unimplemented, "UploadFile: not implemented yet (see README, task 2)")
}

// GetUploadStatus reports how far a resumable upload has got, so a client
// can continue it after a broken stream (task 3).
//
// An upload_id that does not match uploadIDPattern is InvalidArgument; an
// unknown or expired one is NotFound. Otherwise answer what
// s.staging.uploadStatus reports.
func (s *FileUploadServer) GetUploadStatus(ctx context.Context, req *pb.GetUploadStatusRequest) (*pb.GetUploadStatusResponse, error) {
	// TODO(task 3): validate the id, look it up, answer.
	return nil, status.Errorf(codes.Unimplemented, "GetUploadStatus: not implemented yet (see README, task 3)")
}

// UploadFile sends the file at path to the server in chunks of
// c.chunkSize bytes and returns the server's result (task 4).
//
// The first chunk carries the base name of path and the file's size;
// every chunk carries its offset; the last one sets is_last_chunk and the
// hex SHA-256 of the whole file. Read the file a chunk at a time (memory
// must not grow with the file), wait on c.limiter for each chunk's bytes
// when it is not nil, and report progress after each Send. If Send returns
// io.EOF the server has ended the stream: its real status comes from
// CloseAndRecv. When ctx ends, the upload stops promptly with its error.
func (c *StreamingClient) UploadFile(ctx context.Context, path string, opts ...UploadOption) (*pb.UploadResult, error) {
	// TODO(task 4): open, stream the chunks, CloseAndRecv.
	return nil, status.Errorf(codes.Unimplemented, "StreamingClient.UploadFile: not implemented yet (see README, task 4)")
}

// IsRetryable reports whether an upload that failed with err may succeed
// if tried again (task 5).
//
// Unavailable and Aborted are retryable. ResourceExhausted is retryable
// only when the status carries an errdetails.RetryInfo. An error wrapping
// ErrAttemptTimeout (one attempt ran out of its own time while the
// caller's context lived) is retryable. Everything else, including nil,
// a plain DeadlineExceeded or Canceled, and errors without a gRPC status,
// is not.
func IsRetryable(err error) bool {
	// TODO(task 5): classify err.
	return false
}

// UploadFilesConcurrently uploads every path, at most c.maxConcurrency at
// a time, and returns the results in the order of paths (task 6).
//
// A failed upload leaves nil at its index and does not stop the others;
// the returned error joins (errors.Join) one error per failed file, each
// naming its path. When ctx ends, files not yet started fail with ctx's
// error.
func (c *StreamingClient) UploadFilesConcurrently(ctx context.Context, paths []string, opts ...UploadOption) ([]*pb.UploadResult, error) {
	// TODO(task 6): bounded concurrency, every failure reported.
	return nil, status.Errorf(codes.Unimplemented, "UploadFilesConcurrently: not implemented yet (see README, task 6)")
}

// UploadWithRetry uploads path as a resumable upload and retries
// retryable failures (task 7).
//
// Choose a random upload_id once. Before each attempt ask GetUploadStatus
// where the server stands (NotFound: start at 0; COMPLETED: return its
// file id) and send only the rest. Retry only when IsRetryable, at most
// c.retry.MaxAttempts attempts in all, waiting with c.sleep between them
// for an exponential backoff with jitter (and at least the delay a
// RetryInfo asks for). Apply c.retry.AttemptTimeout to each attempt. Stop
// as soon as ctx ends.
func (c *StreamingClient) UploadWithRetry(ctx context.Context, path string, opts ...UploadOption) (*pb.UploadResult, error) {
	// TODO(task 7): resume, retry, back off.
	return nil, status.Errorf(codes.Unimplemented, "UploadWithRetry: not implemented yet (see README, task 7)")
}
