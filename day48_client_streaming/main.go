// Command day48_client_streaming is the Day 48 kata: gRPC client-side
// streaming. This file holds the parts you write; README.md walks through
// them task by task, and `make progress` shows which are done.
package main

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// validateFileName checks an upload's original name before anything is
// written (task 1).
//
// Reject, with codes.InvalidArgument and a message saying what was wrong:
// an empty name; a name longer than maxFileNameBytes bytes; invalid UTF-8;
// a path separator ('/' or '\'), which also covers absolute paths; ".."
// anywhere; a NUL or any other control character; a bidirectional control
// character (unicode.Bidi_Control, such as U+202E, which makes a name
// display as another); an extension (compared in lower case, with its
// dot) not in allowedExtensions. For a control or bidirectional control
// character, name the first one as %U and its byte offset in the name:
// "U+202E at byte 7".
func validateFileName(name string, allowedExtensions []string) error {
	// TODO(task 1): implement the checks above, cheapest first.
	return status.Errorf(codes.Unimplemented, "validateFileName: not implemented yet (see README, task 1)")
}

// UploadFile receives one file as a stream of chunks (task 2).
//
// The first chunk carries file_name (check it with validateFileName) and
// total_size (negative: InvalidArgument; over MaxFileSize:
// ResourceExhausted). Check both before starting the upload: a refused
// first chunk takes no slot of the user's quota and evicts none of their
// paused uploads. Start the upload with s.staging.begin, passing the
// stream's context (the upload belongs to its caller), and make sure
// that, whatever happens next, an upload that does not complete is
// aborted with the error that ended it (upload.abort).
//
// For every chunk, before writing it: data over MaxChunkSize is
// ResourceExhausted; an offset other than the bytes committed so far is
// InvalidArgument naming both offsets; bytes beyond total_size are
// ResourceExhausted; a checksum that is not 64 lowercase hex digits is
// InvalidArgument, and so is a checksum other than one an earlier chunk of
// the stream declared (a chunk may also declare none). Write each chunk as it arrives (upload.write): never
// hold the whole file in memory.
//
// The upload ends at is_last_chunk or io.EOF; after is_last_chunk the next
// Recv must be io.EOF, and a further chunk is InvalidArgument (never
// silently dropped). Then the bytes received must
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
// unknown or expired one is NotFound, and so is another user's: ask
// s.staging.uploadStatus with ctx, which carries the caller, and answer
// what it reports.
func (s *FileUploadServer) GetUploadStatus(ctx context.Context, req *pb.GetUploadStatusRequest) (*pb.GetUploadStatusResponse, error) {
	// TODO(task 3): validate the id, look it up, answer.
	return nil, status.Errorf(codes.Unimplemented, "GetUploadStatus: not implemented yet (see README, task 3)")
}

// UploadFile sends the file at path to the server in chunks of
// c.chunkSize bytes and returns the server's result (task 4).
//
// Open the file and close it before returning, whatever happens. The
// first chunk carries the base name of path and the file's size;
// every chunk carries its offset; the last one sets is_last_chunk and the
// hex SHA-256 of the whole file. Read the file a chunk at a time (memory
// must not grow with the file), wait on c.limiter for each chunk's bytes
// when it is not nil (a wait that cannot end before ctx's deadline fails
// at once, as rate.Limiter.WaitN does: return it as DeadlineExceeded),
// and report progress after each Send: the base name
// on every report, Sent counting the file's bytes sent so far (with
// UploadWithRetry, the prefix the server already had counts too), Total
// the file's size. A file whose size is a multiple of c.chunkSize ends on
// its last full chunk, with no empty chunk after it; an empty file is one
// empty chunk. If Send returns
// io.EOF the server has ended the stream: its real status comes from
// CloseAndRecv. When ctx ends, the upload stops promptly with its error
// and sends nothing more. Whenever it gives up before CloseAndRecv, the
// stream must end with it (open it on a context you cancel on return), so
// the server's handler does not wait for chunks that never come. A path that is not a regular file, and a file
// that ends before its size said (it shrank while being sent), are errors
// too.
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
// naming its path, in the order of paths (not the order the uploads
// finished). When ctx ends, files not yet started fail with an error that
// names the path and wraps ctx's error, and the method returns only after
// every upload it started has ended.
func (c *StreamingClient) UploadFilesConcurrently(ctx context.Context, paths []string, opts ...UploadOption) ([]*pb.UploadResult, error) {
	// TODO(task 6): bounded concurrency, every failure reported.
	return nil, status.Errorf(codes.Unimplemented, "UploadFilesConcurrently: not implemented yet (see README, task 6)")
}

// UploadWithRetry uploads path as a resumable upload and retries
// retryable failures (task 7).
//
// Choose a random upload_id once. Before each attempt ask GetUploadStatus
// where the server stands (NotFound: start at 0; COMPLETED: the file was
// stored but its answer lost, so send nothing and return a COMPLETED
// result with its file id, name and size, and a checksum that is empty
// (the status carries none) or the file's own; any other error: that is the
// attempt's error) and send only
// the rest. Retry only when IsRetryable, at most
// c.retry.MaxAttempts attempts in all, waiting with c.sleep between them.
// The wait after attempt n has a base of InitialBackoff times Multiplier
// to the power n-1, capped at MaxBackoff; jitter keeps half of the base
// and a random part of the other half: base/2 + c.jitter()*base/2. Wait
// the longer of that backoff and the delay a RetryInfo asks for. Apply c.retry.AttemptTimeout to
// each attempt, its status query included. An attempt that ends with
// DeadlineExceeded while ctx lives ran out of its own time, and is
// wrapped in ErrAttemptTimeout: decide it that way, not by the attempt
// context's own state, because the server sees the same deadline and may
// answer a moment before that context expires. Stop as soon as ctx ends.
func (c *StreamingClient) UploadWithRetry(ctx context.Context, path string, opts ...UploadOption) (*pb.UploadResult, error) {
	// TODO(task 7): resume, retry, back off.
	return nil, status.Errorf(codes.Unimplemented, "UploadWithRetry: not implemented yet (see README, task 7)")
}

// validateDataPoint checks one metric sample (task 8).
//
// Reject with codes.InvalidArgument, the message naming the problem and the
// limit: an empty source, one over 64 bytes or not matching sourcePattern;
// a missing or zero timestamp, one out of range, or one more than
// maxFutureSkew ahead of now; no metrics or more than maxMetricsPerPoint;
// a metric name empty or over maxMetricNameBytes; a NaN or infinite value;
// more than maxTagsPerPoint tags, or a tag key or value over maxTagBytes.
// When several metrics or tags are wrong, name the first in name order:
// map order is random, and the same point must get the same message every
// time.
func validateDataPoint(p *pb.DataPoint, now time.Time, maxFutureSkew time.Duration) error {
	// TODO(task 8): check the point, cheapest checks first.
	return status.Errorf(codes.Unimplemented, "validateDataPoint: not implemented yet (see README, task 8)")
}

// CollectDataPoints receives a stream of metric samples (task 9).
//
// Check each point with validateDataPoint; an invalid point is counted as
// an error, reported as "point <index>: <reason>" through an errorList of
// s.cfg.MaxErrorsReported, and the stream goes on. Collect valid points in
// batches of s.cfg.BatchSize and save each full batch with
// s.cfg.Store.SaveBatch, then start a new slice: the store may keep the
// one it was given. Fold a saved batch into s.aggregates. A batch the
// store refuses counts all its points as errors and adds one error, in
// the same list, that includes the store's error text. More than
// s.cfg.MaxPointsPerStream points end the stream with ResourceExhausted;
// every point received counts toward that cap, valid or not.
// Whenever the handler returns, the valid points it received are saved
// first, on context.WithoutCancel(stream.Context()): it keeps the
// stream's values and outlives a stream that broke. At io.EOF answer with
// counts that add up: total_processed =
// successful_count + error_count, and processing_time_ms, the time from
// the handler's start to its answer in milliseconds by the server's clock
// s.cfg.Now (never time.Now).
func (s *DataCollectionServer) CollectDataPoints(stream pb.DataCollectionService_CollectDataPointsServer) error {
	// TODO(task 9): receive, validate, batch, save, count, SendAndClose.
	return status.Errorf(codes.Unimplemented, "CollectDataPoints: not implemented yet (see README, task 9)")
}

// ProcessBatch authorises and applies a stream of key-value operations
// and answers with one outcome per item (task 10).
//
// The caller is the Identity that AuthInterceptor put in the stream's
// context (identityFrom): never trust anything an item says about who
// sends it. Get the caller's pacer with s.newPacer(caller.User) (it is the
// user's, shared by all of the user's streams) and wait on it before
// every Recv, so a fast client is slowed down by flow control instead of
// being buffered. For each item received, in this order:
//
//   - Re-check the token with checkTokenFresh(ctx, s.cfg.Now); an expired
//     token ends the stream with its Unauthenticated error, even on an
//     item past the cap. Items applied before stay applied.
//   - More than s.cfg.MaxItemsPerStream items end the stream with
//     ResourceExhausted naming the limit; every item received counts
//     toward it, applied or refused.
//   - Then decide the item's outcome with these checks, in this order;
//     the first that fails decides it, and the stream goes on whatever it
//     is. An empty item_id or one over maxItemIDBytes is InvalidArgument. An
//     item_id seen earlier in this stream is AlreadyExists and is not
//     applied again; an id that passes its own checks is seen from then
//     on, whether its item is then applied or refused (an empty or
//     over-long id is never seen). An unknown operation, a key keyOwner rejects, or a
//     payload over s.cfg.MaxPayloadBytes is InvalidArgument. WRITE and
//     DELETE of a key whose owner is not the caller, and PURGE by a
//     caller who is not Admin, are PermissionDenied. Otherwise apply it:
//     WRITE stores the payload (s.store.put), DELETE removes the key
//     (s.store.delete; a missing key is fine), PURGE removes every key of
//     the key's owner (s.store.purgeOwner; the name part is ignored).
//
// Each outcome carries outcomeID(item_id) (an over-long id cut to its
// limit), the code as int32 (codes.OK when applied) and a message saying
// what was wrong; a message quotes an id or a key with quoteShort, never
// whole, so that an outcome stays within maxOutcomeBytes and the answer to
// a full stream within 1 MiB. At io.EOF answer with
// SendAndClose: outcomes in the order received, and truthful counts
// (total_items = applied_count + rejected_count). An error from Recv is
// returned as it is; a failed Wait (the stream's context ended, or its
// deadline comes before the pace allows the next item) ends the stream
// with Canceled or DeadlineExceeded.
func (s *BatchServer) ProcessBatch(stream pb.BatchService_ProcessBatchServer) error {
	// TODO(task 10): pace, receive, re-check the token, authorise, apply, SendAndClose.
	return status.Errorf(codes.Unimplemented, "ProcessBatch: not implemented yet (see README, task 10)")
}

// ProcessBatch sends items on one ProcessBatch stream as the caller that
// token stands for, and returns the server's result (task 11).
//
// Open the stream with pb.NewBatchServiceClient(c.conn), its context
// carrying the token (WithToken). Send the items in order, then
// CloseAndRecv. If Send returns io.EOF the server has ended the stream:
// its real status comes from CloseAndRecv. When ctx ends, stop sending
// promptly and return its error as a status (Canceled or
// DeadlineExceeded).
func (c *StreamingClient) ProcessBatch(ctx context.Context, token string, items []*pb.BatchItem) (*pb.BatchResult, error) {
	// TODO(task 11): open the stream with the token, send, CloseAndRecv.
	return nil, status.Errorf(codes.Unimplemented, "StreamingClient.ProcessBatch: not implemented yet (see README, task 11)")
}

// CollectLogs receives a stream of log entries (task 12).
//
// An entry whose level is not one of DEBUG, INFO, WARN, ERROR and FATAL
// (LOG_LEVEL_UNSPECIFIED and numbers the enum does not name), an application that is empty or over
// maxApplicationBytes, a message over s.cfg.MaxLogMessageBytes or not
// UTF-8, more than maxLogFields fields, or a field whose key is over
// maxLogFieldKeyBytes or whose value is over maxLogFieldValueBytes counts
// as an error: an entry's size is bounded, so what the index keeps is.
// These limits apply to the entry as it arrived, before redaction. A
// valid entry below s.cfg.MinLevel counts as filtered; an invalid one is
// an error whatever its level. Every other entry is redacted
// with redactEntry before anything stores or prints it, then buffered.
//
// One goroutine owns the buffer: it indexes it (s.logs.addBatch) when it
// holds s.cfg.LogBufferSize entries, on every tick of a ticker from
// s.cfg.NewTicker(s.cfg.FlushInterval), and a last time when the stream
// ends; it stops the ticker when it returns. The handler hands it entries
// over a bounded channel and waits for it to finish before answering, so
// the final flush comes before SendAndClose, the indexed count is the one
// the goroutine returns, and the goroutine never outlives the stream. The answer
// counts what was received, indexed, filtered and refused as an error,
// with status "OK".
func (s *DataCollectionServer) CollectLogs(stream pb.DataCollectionService_CollectLogsServer) error {
	// TODO(task 12): receive, filter, redact, hand over, flush, SendAndClose.
	return status.Errorf(codes.Unimplemented, "CollectLogs: not implemented yet (see README, task 12)")
}

// SendDataPoints sends every point received from points until the channel
// is closed, then returns the server's result (task 13).
//
// If Send returns io.EOF the server has ended the stream: its status comes
// from CloseAndRecv. When ctx ends first, return its error as a status
// (status.FromContextError) without waiting for more points.
func (c *StreamingClient) SendDataPoints(ctx context.Context, points <-chan *pb.DataPoint) (*pb.CollectionResult, error) {
	// TODO(task 13): stream the channel's points, then CloseAndRecv.
	return nil, status.Errorf(codes.Unimplemented, "SendDataPoints: not implemented yet (see README, task 13)")
}

// SendLogs is SendDataPoints for log entries (task 13).
func (c *StreamingClient) SendLogs(ctx context.Context, entries <-chan *pb.LogEntry) (*pb.LogCollectionResult, error) {
	// TODO(task 13): the same shape as SendDataPoints.
	return nil, status.Errorf(codes.Unimplemented, "SendLogs: not implemented yet (see README, task 13)")
}

// MonitorConnection calls onChange with the connection's state, first the
// current one (a READY connection reports READY at once) and then each
// change, until ctx ends; it then returns ctx's error (task 14). It asks
// an idle connection to connect.
func (c *StreamingClient) MonitorConnection(ctx context.Context, onChange func(connectivity.State)) error {
	// TODO(task 14): Connect, GetState, WaitForStateChange.
	return status.Errorf(codes.Unimplemented, "MonitorConnection: not implemented yet (see README, task 14)")
}
