package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateFileName(t *testing.T) {
	allowed := []string{".txt", ".csv", ".json", ".xml"}
	// The limit is 255 bytes, not runes: "é" is two bytes, "日" three.
	valid := []struct{ test, name string }{
		{"Plain", "a.txt"},
		{"Extension_in_any_case", "Report.CSV"},
		{"JSON", "data.json"},
		{"Dots_inside_the_name", "v1.2.feed.xml"},
		{"Space", "with space.txt"},
		{"Multi_byte_UTF-8", "日本語.txt"},
		{"Exactly_255_bytes", strings.Repeat("a", 251) + ".txt"},
		{"Exactly_255_bytes_of_multi_byte_runes", strings.Repeat("é", 125) + "a.txt"},
		{"Printable_just_past_the_C1_controls", "\u00a0nbsp.txt"},
	}
	t.Run("Names_the_character_and_its_byte", func(t *testing.T) {
		for _, tc := range []struct{ name, want string }{
			{"bad\x07name.txt", "U+0007 at byte 3"},
			{"invoice\u202efdp.txt", "U+202E at byte 7"},
			{"日\x1f.txt", "U+001F at byte 3"},
			{"a\x01b\x02.txt", "U+0001 at byte 1"},     // the first of two
			{"x\u202ay\u202e.txt", "U+202A at byte 1"}, // the first of two
		} {
			err := validateFileName(tc.name, allowed)
			katatest.WantCode(t, err, codes.InvalidArgument, "validateFileName(%q)", tc.name)
			katatest.WantMessage(t, err, "validateFileName(%q)", tc.name)(tc.want)
		}
	})
	for _, tc := range valid {
		t.Run("Accepts_"+tc.test, func(t *testing.T) {
			assert.NoError(t, validateFileName(tc.name, allowed), "validateFileName(%q) (%d bytes)", tc.name, len(tc.name))
		})
	}
	invalid := []struct {
		test, name string
		mention    string // a fragment the message must contain
	}{
		{"Empty", "", "empty"},
		{"Parent_directory", "../x.txt", ""},
		{"Absolute_path", "/etc/passwd", ""},
		{"Directory", "a/b.txt", ""},
		{"Backslash", `a\b.txt`, ""},
		{"Dot_dot", "..", ""},
		{"Dot_dot_inside", "a..b.txt", ".."},
		{"NUL", "a\x00.txt", ""},
		{"Newline", "a\nb.txt", ""},
		{"First_control_character", "\x01a.txt", ""},
		{"Last_ASCII_control_character", "unit\x1fsep.txt", ""},
		{"DEL", "del\x7f.txt", ""},
		{"C1_control_character", "next\u0085line.txt", ""},
		{"Last_C1_control_character", "apc\u009f.txt", ""},
		{"Right_to_left_override", "invoice\u202efdp.txt", "bidirectional"},
		{"First_bidirectional_control_character", "\u061cname.txt", "bidirectional"},
		{"Last_bidirectional_control_character", "name\u2069.txt", "bidirectional"},
		{"Invalid_UTF-8", "\xff\xfe.txt", ""},
		{"256_bytes", strings.Repeat("a", 252) + ".txt", "255"},
		{"256_bytes_of_multi_byte_runes", strings.Repeat("é", 126) + ".txt", "255"},
		{"300_bytes_in_100_runes", strings.Repeat("日", 96) + ".txt", "255"},
		{"Disallowed_extension", "x.exe", ".exe"},
		{"Allowed_extension_then_another", "evil.txt.exe", ".exe"},
		{"Allowed_extension_without_a_dot", "mytxt", ""},
		{"No_extension", "README", ""},
	}
	for _, tc := range invalid {
		t.Run("Rejects_"+tc.test, func(t *testing.T) {
			err := validateFileName(tc.name, allowed)
			katatest.WantCode(t, err, codes.InvalidArgument, "validateFileName(%q) (%d bytes)", tc.name, len(tc.name))
			katatest.WantMessage(t, err, "validateFileName(%q)", tc.name)(tc.mention)
		})
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

	t.Run("Rejects_a_checksum_that_changes_mid_stream", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 3*testChunk)
		chunks := chunksOf("data.csv", "", data, testChunk)
		chunks[0].Checksum = sha256Hex([]byte("another file")) // the first chunk declares one file
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(first chunk declares one checksum, the last another)")
		katatest.WantMessage(t, err, "UploadFile(checksum changed mid-stream)")("checksum")
		env.requireNothingLeft(t)
	})

	t.Run("Accepts_the_same_checksum_on_every_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 3*testChunk)
		chunks := chunksOf("data.csv", "", data, testChunk)
		for _, c := range chunks {
			c.Checksum = sha256Hex(data)
		}
		res, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(the same checksum declared on every chunk)")
		checkStored(t, env, res, "data.csv", data)
	})

	t.Run("Full_disk_is_ResourceExhausted_and_leaves_nothing", func(t *testing.T) {
		env := startUploadServer(t, Config{WrapPartial: func(f *os.File) PartialFile { return &failingDisk{File: f, writeRoom: testChunk} }})
		chunks := chunksOf("data.csv", "", randomBytes(t, 3*testChunk), testChunk)
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(3 chunks onto a disk with room for 1)")
		env.requireNothingLeft(t)
	})

	t.Run("Failed_flush_stores_nothing", func(t *testing.T) {
		env := startUploadServer(t, Config{WrapPartial: func(f *os.File) PartialFile { return &failingDisk{File: f, writeRoom: -1, syncErr: syscall.EIO} }})
		chunks := chunksOf("data.csv", "", randomBytes(t, testChunk), testChunk)
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.Internal, "UploadFile(onto a disk that cannot flush)")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_a_chunk_after_the_last_one", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 2*testChunk)
		chunks := chunksOf("data.csv", "", data, testChunk)
		extra := &pb.FileChunk{Data: []byte("more"), Offset: int64(len(data))}
		_, err := sendChunks(katatest.Context(t), env.client, append(chunks, extra)...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(a chunk after the one marked is_last_chunk)")
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

	t.Run("Accepts_declared_size_at_limit", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxFileSize: 3 * testChunk})
		data := randomBytes(t, 3*testChunk)
		res, err := sendChunks(katatest.Context(t), env.client, chunksOf("full.txt", "", data, testChunk)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(total_size=%d, MaxFileSize=%d)", len(data), 3*testChunk)
		checkStored(t, env, res, "full.txt", data)
	})

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

	t.Run("Rejects_one_byte_beyond_declared_size", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 2*testChunk+1)
		chunks := chunksOf("plus1.txt", "", data, testChunk)
		chunks[0].TotalSize = 2 * testChunk
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(sends %d bytes, declares %d)", len(data), chunks[0].TotalSize)
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

	t.Run("Accepts_chunks_of_exactly_MaxChunkSize", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxChunkSize: 32 << 10})
		data := randomBytes(t, 3*32<<10)
		res, err := sendChunks(katatest.Context(t), env.client, chunksOf("exact.txt", "", data, 32<<10)...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(chunks of 32768 bytes, MaxChunkSize 32768)")
		checkStored(t, env, res, "exact.txt", data)
	})

	t.Run("Rejects_oversized_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxChunkSize: 32 << 10})
		_, err := sendChunks(katatest.Context(t), env.client, chunksOf("chunky.txt", "", randomBytes(t, 100<<10), 32<<10+1)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(chunk of 32769 bytes, MaxChunkSize 32768)")
		katatest.WantMessage(t, err, "UploadFile(oversized chunk)")("32768")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_an_oversized_first_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{MaxChunkSize: 32 << 10})
		_, err := sendChunks(katatest.Context(t), env.client, chunksOf("first.txt", "", randomBytes(t, 32<<10+1), 64<<10)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "UploadFile(one chunk of 32769 bytes, MaxChunkSize 32768)")
		env.requireNothingLeft(t)
	})

	t.Run("Rejects_malformed_checksum", func(t *testing.T) {
		sum := sha256Hex([]byte("data"))
		for _, bad := range []string{"not-a-sha256", sum[:63], sum + "0", strings.ToUpper(sum), sum[:63] + "g"} {
			env := startUploadServer(t, Config{})
			chunks := chunksOf("sum.txt", "", []byte("data"), testChunk)
			chunks[0].Checksum = bad
			_, err := sendChunks(katatest.Context(t), env.client, chunks...)
			katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(checksum=%q)", bad)
			env.requireNothingLeft(t)
		}
	})

	t.Run("Reports_the_computed_checksum_when_none_is_declared", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 2*testChunk+3)
		chunks := chunksOf("undeclared.txt", "", data, testChunk)
		chunks[len(chunks)-1].Checksum = ""
		res, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.OK, "UploadFile(no checksum declared)")
		checkStored(t, env, res, "undeclared.txt", data)
	})

	t.Run("Checks_the_offset_of_the_first_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		chunks := chunksOf("late.txt", "", randomBytes(t, 2*testChunk), testChunk)
		chunks[0].Offset = 1
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.InvalidArgument, "UploadFile(first chunk at offset 1)")
		katatest.WantMessage(t, err, "UploadFile(first chunk at offset 1)")("offset 1")
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
			sendOrFail(t, stream, c, "UploadFile(name=%q) at offset %d", c.GetFileName(), c.Offset)
		}
		awaitWhileRunning(t, env.Server, uploadMethod, b.reached, "the server to receive 2 chunks")
		cancel()
		_, err = stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Canceled, "CloseAndRecv() after cancel")
		env.requireNothingLeft(t)
	})

	t.Run("Cancel_after_the_last_chunk_stores_nothing", func(t *testing.T) {
		b := &streamBreaker{reachAt: 2, reached: make(chan struct{})}
		env := startUploadServer(t, Config{}, katatest.WithStreamInterceptor(b.intercept))
		ctx, cancel := context.WithCancel(katatest.Context(t))
		stream, err := env.client.UploadFile(ctx)
		katatest.WantCode(t, err, codes.OK, "UploadFile()")
		for _, c := range chunksOf("late.txt", "", randomBytes(t, 2*testChunk), testChunk) {
			sendOrFail(t, stream, c, "UploadFile(name=%q) at offset %d", c.GetFileName(), c.Offset)
		}
		// The server has the whole file, marked last, but the client gives
		// up before closing its side: the upload did not end well.
		awaitWhileRunning(t, env.Server, uploadMethod, b.reached, "the server to receive both chunks")
		cancel()
		// RecvMsg, not CloseAndRecv: a half-close sent after the cancel
		// could still reach the server first and end the upload well.
		err = stream.RecvMsg(new(pb.UploadResult))
		katatest.WantCode(t, err, codes.Canceled, "RecvMsg() after cancel")
		env.WaitIdle(t)
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
			sendOrFail(t, sa, ca[i], "first UploadFile(name=%q) chunk %d", "same.txt", i)
			sendOrFail(t, sb, cb[i], "second UploadFile(name=%q) chunk %d", "same.txt", i)
		}
		ra, err := sa.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "first UploadFile(name=%q)", "same.txt")
		rb, err := sb.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "second UploadFile(name=%q)", "same.txt")
		require.NotEqual(t, ra.GetFileId(), rb.GetFileId(), "file_id of two uploads of same.txt, want distinct ids")
		checkStored(t, env, ra, "same.txt", a)
		checkStored(t, env, rb, "same.txt", b)
	})

	t.Run("Verifies_a_checksum_sent_only_on_the_first_chunk", func(t *testing.T) {
		env := startUploadServer(t, Config{})
		data := randomBytes(t, 3*testChunk)
		chunks := chunksOf("first.txt", "", data, testChunk)
		chunks[len(chunks)-1].Checksum = ""
		chunks[0].Checksum = sha256Hex([]byte("other bytes"))
		_, err := sendChunks(katatest.Context(t), env.client, chunks...)
		katatest.WantCode(t, err, codes.DataLoss, "UploadFile(a wrong checksum on the first chunk only)")
		env.requireNothingLeft(t)
	})
}

// failingDisk is a partial file on a disk that fails as the test says:
// full after writeRoom bytes (-1: never), and unable to flush when syncErr
// is set.
type failingDisk struct {
	*os.File
	writeRoom int
	syncErr   error
}

func (d *failingDisk) Write(p []byte) (int, error) {
	if d.writeRoom >= 0 && len(p) > d.writeRoom {
		return 0, &os.PathError{Op: "write", Path: d.Name(), Err: syscall.ENOSPC}
	}
	if d.writeRoom >= 0 {
		d.writeRoom -= len(p)
	}
	return d.File.Write(p)
}

func (d *failingDisk) Sync() error {
	if d.syncErr != nil {
		return &os.PathError{Op: "sync", Path: d.Name(), Err: d.syncErr}
	}
	return d.File.Sync()
}
