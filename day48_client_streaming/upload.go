package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// Config holds the upload server's limits. The zero value of a field means
// its default; tests shrink the limits to reach them quickly.
type Config struct {
	// UploadDir is where stored files go, named by their file id. Partial
	// uploads live in its hidden ".incoming" folder until they complete.
	UploadDir string
	// MaxFileSize is the largest total_size accepted. Default 1 GiB.
	MaxFileSize int64
	// MaxChunkSize is the most data one FileChunk may carry. Default 1 MiB,
	// under gRPC's default 4 MiB message limit so this check speaks first.
	MaxChunkSize int
	// AllowedExtensions lists the accepted file extensions, lower case with
	// the dot. Default .txt .csv .json .xml.
	AllowedExtensions []string
	// ResumeTTL is how long a paused upload can be resumed, and how long a
	// completed upload id is remembered. Default 1 hour.
	ResumeTTL time.Duration
	// MaxPendingPerUser bounds the uploads one user has receiving or
	// paused at once. A new upload past it evicts that user's oldest
	// paused upload (its upload id is then unknown); when none is paused,
	// it is refused. Default 16.
	MaxPendingPerUser int
	// MaxPendingUploads bounds the uploads receiving or paused at once,
	// over all users.
	// Default 1000.
	MaxPendingUploads int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// WrapPartial, when set, wraps each partial file as it is opened, so a
	// test can make the disk fail (full, or unable to flush) where a real
	// one rarely does. Default: none.
	WrapPartial func(*os.File) PartialFile
}

// PartialFile is what an upload writes its bytes to: an *os.File unless
// Config.WrapPartial says otherwise.
type PartialFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	Name() string
}

const (
	defaultMaxFileSize       = 1 << 30
	defaultMaxChunkSize      = 1 << 20
	defaultResumeTTL         = time.Hour
	defaultMaxPendingUploads = 1000
	// maxFileNameBytes is the longest original file name accepted, the
	// common limit of Linux and macOS file systems.
	maxFileNameBytes = 255
)

func (c Config) withDefaults() Config {
	if c.MaxFileSize == 0 {
		c.MaxFileSize = defaultMaxFileSize
	}
	if c.MaxChunkSize == 0 {
		c.MaxChunkSize = defaultMaxChunkSize
	}
	if c.AllowedExtensions == nil {
		c.AllowedExtensions = []string{".txt", ".csv", ".json", ".xml"}
	}
	if c.ResumeTTL == 0 {
		c.ResumeTTL = defaultResumeTTL
	}
	if c.MaxPendingPerUser == 0 {
		c.MaxPendingPerUser = 16
	}
	if c.MaxPendingUploads == 0 {
		c.MaxPendingUploads = defaultMaxPendingUploads
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// FileUploadServer implements pb.FileUploadServiceServer. Its handlers are
// in main.go; this file holds the parts the lesson gives you.
type FileUploadServer struct {
	pb.UnimplementedFileUploadServiceServer

	cfg     Config
	staging *stagingArea
}

// NewFileUploadServer prepares cfg.UploadDir and returns a server. Partial
// files left by an earlier process cannot be resumed (their hash state was
// in memory) and are removed.
func NewFileUploadServer(cfg Config) (*FileUploadServer, error) {
	cfg = cfg.withDefaults()
	if cfg.UploadDir == "" {
		return nil, fmt.Errorf("new upload server: Config.UploadDir is empty")
	}
	incoming := filepath.Join(cfg.UploadDir, incomingDirName)
	if err := os.RemoveAll(incoming); err != nil {
		return nil, fmt.Errorf("new upload server: clearing stale partial uploads: %w", err)
	}
	if err := os.MkdirAll(incoming, 0o700); err != nil {
		return nil, fmt.Errorf("new upload server: %w", err)
	}
	return &FileUploadServer{
		cfg: cfg,
		staging: &stagingArea{
			incomingDir: incoming,
			storeDir:    cfg.UploadDir,
			ttl:         cfg.ResumeTTL,
			maxPending:  cfg.MaxPendingUploads,
			maxPerUser:  cfg.MaxPendingPerUser,
			now:         cfg.Now,
			wrap:        cfg.WrapPartial,
			uploads:     make(map[string]*upload),
			stored:      make(map[string]StoredFile),
		},
	}, nil
}

// StoredFile describes a completed upload.
type StoredFile struct {
	FileID    string
	FileName  string // the original name, kept as metadata only
	Size      int64
	Checksum  string
	StoredAt  time.Time
	LocalPath string
}

// StoredFile returns the stored file with the given id.
func (s *FileUploadServer) StoredFile(fileID string) (StoredFile, bool) {
	s.staging.mu.Lock()
	defer s.staging.mu.Unlock()
	f, ok := s.staging.stored[fileID]
	return f, ok
}

const incomingDirName = ".incoming"

// uploadIDPattern keeps client-chosen ids short and safe to log.
var uploadIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// stagingArea owns every upload that has not completed: its partial file in
// the incoming folder, its running SHA-256, and its committed byte count.
type stagingArea struct {
	incomingDir string
	storeDir    string
	ttl         time.Duration
	maxPending  int
	maxPerUser  int
	now         func() time.Time
	wrap        func(*os.File) PartialFile

	mu      sync.Mutex
	uploads map[string]*upload    // by "<owner>/<upload id>"; one-shot uploads by a random key
	stored  map[string]StoredFile // by file id
}

// upload is one file being received. Only the stream that began (or
// resumed) touches file and hash, so those need no lock.
type upload struct {
	staging   *stagingArea
	key       string
	owner     string // the user who began it; only they can see or resume it
	id        string // the client's upload_id; empty for a one-shot upload
	fileName  string
	totalSize int64

	file      PartialFile
	hash      hash.Hash
	committed atomic.Int64 // written by the receiving stream, read by status queries

	// Guarded by staging.mu.
	state     pb.UploadState
	hashState []byte // the SHA-256 state at committed, while paused
	fileID    string
	touched   time.Time
}

// begin starts a new upload for the caller in ctx, or resumes the
// caller's paused upload with this upload id. The name and size must be
// those the upload began with. Upload ids are the caller's own: another
// user's upload with the same id is neither seen nor touched.
func (a *stagingArea) begin(ctx context.Context, uploadID, fileName string, totalSize int64) (*upload, error) {
	caller, ok := identityFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no authenticated caller: an upload belongs to the user of its bearer token")
	}
	if uploadID != "" && !uploadIDPattern.MatchString(uploadID) {
		return nil, status.Errorf(codes.InvalidArgument, "upload_id %q is invalid: want 1 to 64 letters, digits, '-' or '_'", uploadID)
	}
	owner := caller.User
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked()

	if u, ok := a.uploads[owner+"/"+uploadID]; ok && uploadID != "" {
		return a.resumeLocked(u, fileName, totalSize)
	}
	mine, all := a.unfinishedLocked(owner)
	if mine >= a.maxPerUser {
		if !a.evictOldestPausedLocked(owner) {
			return nil, status.Errorf(codes.ResourceExhausted, "user %q has %d uploads receiving at once: limit %d (MaxPendingPerUser)", owner, mine, a.maxPerUser)
		}
		all--
	}
	if all >= a.maxPending {
		return nil, status.Errorf(codes.ResourceExhausted, "too many unfinished uploads: limit %d (MaxPendingUploads)", a.maxPending)
	}
	f, err := os.CreateTemp(a.incomingDir, "upload-*.part") // mode 0600
	if err != nil {
		return nil, diskError("creating partial file", err)
	}
	u := &upload{
		staging:   a,
		key:       owner + "/" + uploadID,
		owner:     owner,
		id:        uploadID,
		fileName:  fileName,
		totalSize: totalSize,
		file:      a.partial(f),
		hash:      sha256.New(),
		state:     pb.UploadState_UPLOAD_STATE_RECEIVING,
		touched:   a.now(),
	}
	if uploadID == "" {
		u.key = owner + "/one-shot-" + randomHex(16)
	}
	a.uploads[u.key] = u
	return u, nil
}

func (a *stagingArea) resumeLocked(u *upload, fileName string, totalSize int64) (*upload, error) {
	switch u.state {
	case pb.UploadState_UPLOAD_STATE_RECEIVING:
		return nil, status.Errorf(codes.Aborted, "upload %q is receiving on another stream; retry after it ends", u.id)
	case pb.UploadState_UPLOAD_STATE_COMPLETED:
		return nil, status.Errorf(codes.AlreadyExists, "upload %q already completed as file %s", u.id, u.fileID)
	}
	if fileName != u.fileName || totalSize != u.totalSize {
		return nil, status.Errorf(codes.InvalidArgument, "upload %q began as %q (%d bytes), cannot resume as %q (%d bytes)",
			u.id, u.fileName, u.totalSize, fileName, totalSize)
	}
	f, err := os.OpenFile(u.file.Name(), os.O_WRONLY, 0)
	if err != nil {
		return nil, internalError("reopening partial file", err)
	}
	if _, err := f.Seek(u.committed.Load(), 0); err != nil {
		f.Close()
		return nil, internalError("seeking partial file", err)
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.hashState); err != nil {
		f.Close()
		return nil, internalError("restoring checksum state", err)
	}
	u.file, u.hash, u.hashState = a.partial(f), h, nil
	u.state = pb.UploadState_UPLOAD_STATE_RECEIVING
	u.touched = a.now()
	return u, nil
}

// write appends data to the partial file and the running checksum.
func (u *upload) write(data []byte) error {
	if _, err := u.file.Write(data); err != nil {
		return diskError("writing partial file", err)
	}
	u.hash.Write(data) // a hash.Hash never returns an error
	u.committed.Add(int64(len(data)))
	return nil
}

// sum returns the lowercase hex SHA-256 of the bytes committed so far.
func (u *upload) sum() string { return hex.EncodeToString(u.hash.Sum(nil)) }

// commit makes the upload durable and visible: it flushes the partial file
// to disk and renames it to a fresh random file id in the upload folder.
// On error the partial file is removed.
func (u *upload) commit() (StoredFile, error) {
	sum := u.sum()
	if err := u.file.Sync(); err != nil {
		u.discard()
		return StoredFile{}, diskError("flushing partial file", err)
	}
	if err := u.file.Close(); err != nil {
		u.discard()
		return StoredFile{}, internalError("closing partial file", err)
	}
	a := u.staging
	fileID := randomHex(16)
	dest := filepath.Join(a.storeDir, fileID)
	if err := os.Rename(u.file.Name(), dest); err != nil {
		u.discard()
		return StoredFile{}, internalError("storing file", err)
	}
	stored := StoredFile{FileID: fileID, FileName: u.fileName, Size: u.committed.Load(), Checksum: sum, StoredAt: a.now(), LocalPath: dest}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.stored[fileID] = stored
	if u.id == "" {
		delete(a.uploads, u.key)
	} else {
		// Remembered until the TTL, so a client whose result was lost can
		// learn the file id from GetUploadStatus.
		u.state = pb.UploadState_UPLOAD_STATE_COMPLETED
		u.fileID = fileID
		u.touched = a.now()
	}
	return stored, nil
}

// abort ends an upload that did not complete. A resumable upload whose
// stream broke (cancel, deadline, lost connection) is paused so a new
// stream can continue it; every other failure discards the partial file.
func (u *upload) abort(cause error) {
	switch status.Code(cause) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		if u.id != "" {
			u.pause()
			return
		}
	}
	u.discard()
}

func (u *upload) pause() {
	state, err := u.hash.(encoding.BinaryMarshaler).MarshalBinary()
	closeErr := u.file.Close()
	if err != nil || closeErr != nil {
		slog.Error("pausing upload failed; discarding it", "upload_id", u.id, "err", err, "close_err", closeErr)
		u.discard()
		return
	}
	a := u.staging
	a.mu.Lock()
	defer a.mu.Unlock()
	u.state = pb.UploadState_UPLOAD_STATE_PAUSED
	u.hashState = state
	u.touched = a.now()
}

func (u *upload) discard() {
	u.file.Close() // may already be closed; the file is removed either way
	if err := os.Remove(u.file.Name()); err != nil && !os.IsNotExist(err) {
		slog.Error("removing partial file", "upload_id", u.id, "err", err)
	}
	a := u.staging
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.uploads, u.key)
}

// uploadStatus reports a resumable upload by its upload id.
func (a *stagingArea) uploadStatus(ctx context.Context, uploadID string) (*pb.GetUploadStatusResponse, bool) {
	caller, ok := identityFrom(ctx)
	if !ok || uploadID == "" {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked()
	u, ok := a.uploads[caller.User+"/"+uploadID]
	if !ok {
		return nil, false
	}
	return &pb.GetUploadStatusResponse{
		UploadId:        u.id,
		FileName:        u.fileName,
		CommittedOffset: u.committed.Load(),
		TotalSize:       u.totalSize,
		State:           u.state,
		FileId:          u.fileID,
	}, true
}

// unfinishedLocked counts the uploads receiving or paused: owner's, and
// everybody's. Completed uploads, remembered only so that a lost result
// can be found again, count toward no quota.
func (a *stagingArea) unfinishedLocked(owner string) (mine, all int) {
	for _, u := range a.uploads {
		if u.state == pb.UploadState_UPLOAD_STATE_COMPLETED {
			continue
		}
		all++
		if u.owner == owner {
			mine++
		}
	}
	return mine, all
}

// evictOldestPausedLocked discards owner's paused upload that was touched
// longest ago, and reports whether there was one.
func (a *stagingArea) evictOldestPausedLocked(owner string) bool {
	var oldest *upload
	for _, u := range a.uploads {
		if u.owner == owner && u.state == pb.UploadState_UPLOAD_STATE_PAUSED && (oldest == nil || u.touched.Before(oldest.touched)) {
			oldest = u
		}
	}
	if oldest == nil {
		return false
	}
	a.forgetLocked(oldest)
	return true
}

// forgetLocked forgets a paused or completed upload, removing a paused
// one's partial file.
func (a *stagingArea) forgetLocked(u *upload) {
	if u.state == pb.UploadState_UPLOAD_STATE_PAUSED {
		if err := os.Remove(u.file.Name()); err != nil && !os.IsNotExist(err) {
			slog.Error("removing a partial file", "upload_id", u.id, "err", err)
		}
	}
	delete(a.uploads, u.key)
}

// sweepLocked forgets paused and completed uploads older than the TTL and
// removes their partial files. Receiving uploads are never swept.
func (a *stagingArea) sweepLocked() {
	cutoff := a.now().Add(-a.ttl)
	for _, u := range a.uploads {
		if u.state != pb.UploadState_UPLOAD_STATE_RECEIVING && u.touched.Before(cutoff) {
			a.forgetLocked(u)
		}
	}
}

// internalError logs the cause (which may name server paths) and returns a
// status that does not leak it.
func internalError(what string, err error) error {
	slog.Error("upload storage failed", "step", what, "err", err)
	return status.Errorf(codes.Internal, "%s failed", what)
}

// diskError is internalError, except that a full disk or an exhausted
// disk quota is ResourceExhausted: the server is out of room, which may
// pass, rather than broken.
func diskError(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		slog.Warn("upload storage is full", "step", what, "err", err)
		return status.Errorf(codes.ResourceExhausted, "%s failed: the upload folder is out of space", what)
	}
	return internalError(what, err)
}

// partial wraps a newly opened partial file as the config asks.
func (a *stagingArea) partial(f *os.File) PartialFile {
	if a.wrap == nil {
		return f
	}
	return a.wrap(f)
}

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
