package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// stagingModel is the upload staging area as a plain sequential model:
// which uploads each user has paused or completed, how far each got, and
// how many files are stored. Between two operations nothing is receiving.
type stagingModel struct {
	perUser, total int
	ttl            time.Duration
	uploads        map[string]*modelUpload // by "<user>/<upload id>"
	stored         int
}

type modelUpload struct {
	completed bool
	name      string
	size      int64
	committed int64
	touched   time.Time
}

// sweep forgets what expired, as the server does whenever it begins an
// upload or answers a status query.
func (m *stagingModel) sweep(now time.Time) {
	for k, u := range m.uploads {
		if u.touched.Before(now.Add(-m.ttl)) {
			delete(m.uploads, k)
		}
	}
}

func (m *stagingModel) partials() (n int) {
	for _, u := range m.uploads {
		if !u.completed {
			n++
		}
	}
	return n
}

// admit applies the quotas to a new upload by user: past the user's own
// limit their oldest paused upload is evicted, or the upload is refused.
func (m *stagingModel) admit(user string) codes.Code {
	mine, oldest := 0, ""
	for k, u := range m.uploads {
		if u.completed || !strings.HasPrefix(k, user+"/") {
			continue
		}
		mine++
		if oldest == "" || u.touched.Before(m.uploads[oldest].touched) {
			oldest = k
		}
	}
	if mine >= m.perUser {
		if oldest == "" {
			return codes.ResourceExhausted
		}
		delete(m.uploads, oldest)
	}
	if m.partials() >= m.total {
		return codes.ResourceExhausted
	}
	return codes.OK
}

// cutter is a server interceptor that fails the next UploadFile stream
// with Unavailable when the handler asks for message number at+1, as if
// the connection dropped after at chunks. at < 0 lets every stream pass.
type cutter struct{ at atomic.Int64 }

func (c *cutter) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	at := c.at.Swap(-1)
	if info.FullMethod != uploadMethod || at < 0 {
		return handler(srv, ss)
	}
	return handler(srv, &cutStream{ServerStream: ss, left: at})
}

type cutStream struct {
	grpc.ServerStream
	left int64
}

func (s *cutStream) RecvMsg(m any) error {
	if s.left == 0 {
		return status.Error(codes.Unavailable, "connection lost (injected by the test)")
	}
	s.left--
	return s.ServerStream.RecvMsg(m)
}

// switchedUploads serves whichever upload server the current check of a
// property test uses, so that each check starts from an empty staging
// area behind the same connection.
type switchedUploads struct {
	pb.UnimplementedFileUploadServiceServer
	cur atomic.Pointer[FileUploadServer]
}

func (s *switchedUploads) UploadFile(stream pb.FileUploadService_UploadFileServer) error {
	return s.cur.Load().UploadFile(stream)
}

func (s *switchedUploads) GetUploadStatus(ctx context.Context, req *pb.GetUploadStatusRequest) (*pb.GetUploadStatusResponse, error) {
	return s.cur.Load().GetUploadStatus(ctx, req)
}

// testStagingMatchesItsModel drives UploadFile and GetUploadStatus and the
// model with the same random operations (uploads that finish, break, fail
// their checksum or are refused; status queries; time passing) and
// compares codes, statuses, stored and partial files after every step. A
// failing sequence is shrunk to the shortest that still fails.
func testStagingMatchesItsModel(t *testing.T) {
	const chunk, maxSize = 4, 13
	env := startUploadServer(t, Config{})
	cut := &cutter{}
	cut.at.Store(-1)
	switched := &switchedUploads{}
	srv := katatest.Start(t, func(g *grpc.Server) { pb.RegisterFileUploadServiceServer(g, switched) },
		env.auth(), katatest.WithStreamInterceptor(cut.intercept))
	clients := map[string]pb.FileUploadServiceClient{}
	for user, token := range map[string]string{"alice": aliceUploadToken, "bob": bobUploadToken} {
		conn, err := grpc.NewClient(katatest.Target, append(srv.DialOptions(), uploadAuth(token)...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[user] = pb.NewFileUploadServiceClient(conn)
	}

	rapid.Check(t, func(rt *rapid.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dir, err := os.MkdirTemp(t.TempDir(), "model-*")
		if err != nil {
			rt.Fatal(err)
		}
		clock := katatest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		s, err := NewFileUploadServer(Config{UploadDir: dir, MaxFileSize: maxSize, MaxChunkSize: chunk,
			ResumeTTL: 10 * time.Minute, MaxPendingPerUser: 2, MaxPendingUploads: 3, Now: clock.Now})
		if err != nil {
			rt.Fatal(err)
		}
		switched.cur.Store(s)
		model := &stagingModel{perUser: 2, total: 3, ttl: 10 * time.Minute, uploads: map[string]*modelUpload{}}

		for step := range rapid.IntRange(1, 25).Draw(rt, "steps") {
			clock.Advance(time.Second) // no two uploads are touched at the same instant
			user := rapid.SampledFrom([]string{"alice", "bob"}).Draw(rt, "user")
			id := rapid.SampledFrom([]string{"", "a", "b", "c"}).Draw(rt, "id")
			client := clients[user]
			var what string
			switch op := rapid.SampledFrom([]string{"send", "send", "send", "status", "wait", "refused"}).Draw(rt, "op"); op {
			case "wait":
				clock.Advance(4 * time.Minute)
				continue
			case "status":
				id = rapid.SampledFrom([]string{"a", "b", "c"}).Draw(rt, "status id")
				what = fmt.Sprintf("step %d: %s's GetUploadStatus(%q)", step, user, id)
				model.sweep(clock.Now())
				got, err := client.GetUploadStatus(ctx, &pb.GetUploadStatusRequest{UploadId: id})
				u := model.uploads[user+"/"+id]
				if u == nil {
					if status.Code(err) != codes.NotFound {
						rt.Fatalf("%s = %v, %v; want code NotFound", what, got, err)
					}
					break
				}
				state := pb.UploadState_UPLOAD_STATE_PAUSED
				if u.completed {
					state = pb.UploadState_UPLOAD_STATE_COMPLETED
				}
				if err != nil || got.GetState() != state || got.GetCommittedOffset() != u.committed || got.GetTotalSize() != u.size ||
					got.GetFileName() != u.name || got.GetUploadId() != id || (got.GetFileId() != "") != u.completed {
					rt.Fatalf("%s = %v, %v; want state %v, committed_offset %d, total_size %d, file_name %q, and a file_id only once completed",
						what, got, err, state, u.committed, u.size, u.name)
				}
			case "refused":
				// A first chunk the checks refuse never reaches the staging area.
				name, size, want := "f.exe", int64(1), codes.InvalidArgument
				if rapid.Bool().Draw(rt, "too big") {
					name, size, want = "f.txt", maxSize+1, codes.ResourceExhausted
				}
				what = fmt.Sprintf("step %d: %s's UploadFile(%q, %q, total_size %d)", step, user, id, name, size)
				_, err := sendChunks(ctx, client, &pb.FileChunk{UploadId: id, FileName: name, TotalSize: size, Data: []byte("x"), IsLastChunk: true})
				if status.Code(err) != want {
					rt.Fatalf("%s = %v, want code %v", what, err, want)
				}
			case "send":
				name := rapid.SampledFrom([]string{"f.txt", "g.csv"}).Draw(rt, "name")
				size := int64(rapid.IntRange(0, maxSize).Draw(rt, "size"))
				u := model.uploads[user+"/"+id]
				if id != "" && u != nil && !u.completed && rapid.IntRange(0, 3).Draw(rt, "same file") > 0 {
					name, size = u.name, u.size // usually a resume; otherwise a mismatch
				}
				data := make([]byte, size) // the same bytes every time this file is sent
				for i := range data {
					data[i] = byte('a' + (7*i+len(name))%26)
				}
				from := int64(0)
				if u != nil && !u.completed && u.name == name && u.size == size {
					from = u.committed
				}
				// A cut never falls after the last chunk, so the committed
				// offset is always where one of the chunks begins.
				var chunks []*pb.FileChunk
				for _, c := range chunksOf(name, id, data, chunk) {
					if c.Offset >= from {
						chunks = append(chunks, c)
					}
				}
				chunks[0].FileName, chunks[0].TotalSize, chunks[0].UploadId = name, size, id
				end := rapid.SampledFrom([]string{"finish", "finish", "cut", "bad checksum"}).Draw(rt, "end")
				sent := len(chunks)
				switch end {
				case "cut":
					if len(chunks) == 1 {
						end = "finish" // only the last chunk is left: nothing to cut before it
						break
					}
					sent = rapid.IntRange(0, len(chunks)-1).Draw(rt, "chunks before the cut")
					cut.at.Store(int64(sent))
				case "bad checksum":
					chunks[len(chunks)-1].Checksum = sha256Hex([]byte("not the data"))
				}
				what = fmt.Sprintf("step %d: %s's UploadFile(%q, %q, %d bytes from offset %d, %d of %d chunks, %s)", step, user, id, name, size, from, sent, len(chunks), end)
				res, err := sendChunks(ctx, client, chunks[:sent]...)
				want := model.send(clock.Now(), user, id, name, size, end, sent, chunk)
				if status.Code(err) != want {
					rt.Fatalf("%s = %v, want code %v", what, err, want)
				}
				if want == codes.OK && (res.GetTotalSize() != size || res.GetFileName() != name || res.GetChecksum() != sha256Hex(data)) {
					rt.Fatalf("%s = %v, want file_name %q, total_size %d and the data's checksum", what, res, name, size)
				}
			}
			srv.WaitIdle(t)
			if got, want := len(listDir(t, dir, incomingDirName)), model.stored; got != want {
				rt.Fatalf("after %s the upload folder holds %d stored file(s), want %d", what, got, want)
			}
			if got, want := len(listDir(t, dir+"/"+incomingDirName)), model.partials(); got != want {
				rt.Fatalf("after %s the incoming folder holds %d partial file(s), want %d (one per paused upload)", what, got, want)
			}
		}
	})
}

// send applies one UploadFile stream to the model and returns its code.
func (m *stagingModel) send(now time.Time, user, id, name string, size int64, end string, sent, chunk int) codes.Code {
	if end == "cut" && sent == 0 {
		return codes.Unavailable // the stream broke before its first chunk
	}
	m.sweep(now)
	key := user + "/" + id
	u := m.uploads[key]
	switch {
	case id != "" && u != nil && u.completed:
		return codes.AlreadyExists
	case id != "" && u != nil && (u.name != name || u.size != size):
		return codes.InvalidArgument
	case id == "" || u == nil:
		if code := m.admit(user); code != codes.OK {
			return code
		}
		u = &modelUpload{name: name, size: size}
	}
	switch end {
	case "cut":
		u.committed += int64(sent * chunk)
		u.touched = now
		if id != "" {
			m.uploads[key] = u
		}
		return codes.Unavailable
	case "bad checksum":
		delete(m.uploads, key)
		return codes.DataLoss
	}
	m.stored++
	if id == "" {
		return codes.OK
	}
	u.completed, u.committed, u.touched = true, size, now
	m.uploads[key] = u
	return codes.OK
}
