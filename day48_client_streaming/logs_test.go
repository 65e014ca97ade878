package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logSender is an open CollectLogs stream.
type logSender struct {
	t      *testing.T
	stream pb.DataCollectionService_CollectLogsClient
}

func openLogs(t *testing.T, ctx context.Context, env *collectionEnv) *logSender {
	t.Helper()
	stream, err := env.client.CollectLogs(ctx)
	katatest.WantCode(t, err, codes.OK, "CollectLogs()")
	return &logSender{t: t, stream: stream}
}

func (l *logSender) send(entries ...*pb.LogEntry) {
	l.t.Helper()
	for _, e := range entries {
		sendOrFail(l.t, l.stream, e, "CollectLogs entry %q", e.GetMessage())
	}
}

// logCounts is what a LogCollectionResult counts, compared as one value
// so that a failure shows every count.
type logCounts struct{ Received, Indexed, Filtered, Errors int64 }

func countsOf(res *pb.LogCollectionResult) logCounts {
	return logCounts{res.GetTotalReceived(), res.GetIndexedCount(), res.GetFilteredCount(), res.GetErrorCount()}
}

// waitIndexed waits until the index holds n entries, without the stream
// ending: only a flush by size or by tick can get them there.
func waitIndexed(t *testing.T, env *collectionEnv, n int, why string) {
	t.Helper()
	deadline := time.After(katatest.WaitTimeout)
	for {
		handlers := env.HandlersChanged()
		got, _, changed := env.srv.logs.stats()
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("index holds %d entries while the stream is open, want %d (%s)", got, n, why)
		}
		if handlerEnded(env.Server, logsMethod) {
			t.Fatalf("CollectLogs returned with %d entries indexed, want %d indexed while the stream is open (%s)", got, n, why)
		}
		select {
		case <-changed:
		case <-handlers:
		case <-deadline:
			t.Fatalf("index holds %d entries while the stream is open, want %d (%s)", got, n, why)
		}
	}
}

func TestLogAggregation(t *testing.T) {
	t.Run("Log_collection", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 2500 {
			l.send(logEntry("checkout", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("order ", i, " placed")))
		}
		waitIndexed(t, env, 2000, "a flush every LogBufferSize=1000 entries")
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(2500 entries)")
		assert.Equal(t, logCounts{Received: 2500, Indexed: 2500}, countsOf(res), "CollectLogs(2500 entries) result")
		if n, flushes, _ := env.srv.logs.stats(); n != 2500 || flushes != 3 {
			t.Fatalf("index holds %d entries from %d flushes when the result arrives, want 2500 from 3 (the final flush before SendAndClose)", n, flushes)
		}
	})

	t.Run("Answers_after_the_final_flush_and_stops_its_ticker", testFinalFlushBeforeTheAnswer)

	t.Run("An_invalid_entry_below_MinLevel_is_an_error", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MinLevel: pb.LogLevel_LOG_LEVEL_WARN})
		l := openLogs(t, katatest.Context(t), env)
		l.send(
			logEntry("", pb.LogLevel_LOG_LEVEL_DEBUG, "no application"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_DEBUG, "cache miss"),
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(an invalid DEBUG entry, a valid one, MinLevel WARN)")
		require.Equal(t, logCounts{Received: 2, Filtered: 1, Errors: 1}, countsOf(res), "CollectLogs(an invalid DEBUG entry, a valid one, MinLevel WARN) result: the invalid entry is an error, the valid one filtered")
	})

	t.Run("Filtering_and_indexing", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MinLevel: pb.LogLevel_LOG_LEVEL_WARN})
		ctx := katatest.Context(t)
		l := openLogs(t, ctx, env)
		l.send(
			logEntry("api", pb.LogLevel_LOG_LEVEL_DEBUG, "cache miss"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "request served"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_WARN, "slow upstream"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, "upstream Timeout after 3s"),
			logEntry("billing", pb.LogLevel_LOG_LEVEL_ERROR, "payment timeout"),
			logEntry("billing", pb.LogLevel_LOG_LEVEL_FATAL, "out of memory"),
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(6 entries, MinLevel WARN)")
		require.Equal(t, logCounts{Received: 6, Indexed: 4, Filtered: 2}, countsOf(res), "CollectLogs(6 entries, MinLevel WARN) result")
		require.Equal(t, "OK", res.GetStatus(), "CollectLogs(6 entries, MinLevel WARN) result's status")
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{MinLevel: pb.LogLevel_LOG_LEVEL_ERROR, Term: "timeout"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(ERROR, %q)", "timeout")
		if found.GetTotalMatches() != 2 || found.GetEntries()[0].GetMessage() != "payment timeout" {
			t.Fatalf("SearchLogs(ERROR, timeout) = %v, want 2 matches, newest first", found)
		}
		found, err = env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "billing"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=billing)")
		assert.EqualValues(t, 2, found.GetTotalMatches(), "SearchLogs(application=billing) total_matches")
	})

	t.Run("Redacts_secrets_before_indexing", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		e := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "login failed")
		e.Fields = map[string]string{"user": "alice", "password": "hunter2", "Authorization": "Bearer abc.def", "api_key": "k-123", "session_token": "s-9"}
		l := openLogs(t, ctx, env)
		l.send(e)
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(entry with secrets)")
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "auth"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=auth)")
		require.Len(t, found.GetEntries(), 1, "SearchLogs(application=auth) entries")
		fields := found.GetEntries()[0].GetFields()
		for _, k := range []string{"password", "Authorization", "api_key", "session_token"} {
			assert.Equal(t, redacted, fields[k], "indexed field %s", k)
		}
		assert.Equal(t, "alice", fields["user"], "indexed field user, want it kept (only sensitive fields are redacted)")
	})

	t.Run("Redacts_credentials_inside_text", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		e := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, `login failed for user=alice password=hunter2, api_key: "k 123"; retry=3`)
		e.Fields = map[string]string{
			"callback": "https://example.com/cb?access_token=xyz789&state=ok",
			"header":   "Bearer abc.def.ghi",
			"note":     "nothing secret here",
		}
		l := openLogs(t, ctx, env)
		l.send(e)
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(entry with secrets in its text)")
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "auth"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=auth)")
		require.Len(t, found.GetEntries(), 1, "SearchLogs(application=auth) entries")
		got := found.GetEntries()[0]
		assert.Equal(t, "login failed for user=alice password=[REDACTED], api_key: [REDACTED]; retry=3", got.GetMessage(), "indexed message")
		assert.Equal(t, map[string]string{
			"callback": "https://example.com/cb?access_token=[REDACTED]&state=ok",
			"header":   "Bearer [REDACTED]",
			"note":     "nothing secret here",
		}, got.GetFields(), "indexed fields")
		for _, secret := range []string{"hunter2", "xyz789", "abc.def"} {
			found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Term: secret})
			katatest.WantCode(t, err, codes.OK, "SearchLogs(term=%q)", secret)
			assert.Zero(t, found.GetTotalMatches(), "entries found by searching for the secret %q", secret)
		}
	})

	t.Run("Redacts_whatever_the_case_and_separators", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		sensitive := []string{"DB_PASSWORD", "passwd", "pwd", "Passphrase", "X-Api-Key", "APIKEY", "api.key", "api key", "Client-Secret", "refresh_token", "Set-Cookie", "private_key", "aws-credentials", "Proxy-Authorization", "auth", "bearer", "JWT", "Access-Key-Id", "SESSION"}
		kept := map[string]string{"user": "alice", "path": "/login", "status": "401"}
		e := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "login failed")
		e.Fields = maps.Clone(kept)
		for _, k := range sensitive {
			e.Fields[k] = "s3cr3t-" + k
		}
		l := openLogs(t, ctx, env)
		l.send(e)
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(entry with secrets)")
		found, err := env.client.SearchLogs(ctx, &pb.SearchLogsRequest{Application: "auth"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=auth)")
		require.Len(t, found.GetEntries(), 1, "SearchLogs(application=auth) entries")
		fields := found.GetEntries()[0].GetFields()
		for _, k := range sensitive {
			assert.Equal(t, redacted, fields[k], "indexed field %s", k)
		}
		for k, v := range kept {
			assert.Equal(t, v, fields[k], "indexed field %s, want it kept (only sensitive fields are redacted)", k)
		}
	})

	t.Run("Flushes_at_exactly_LogBufferSize", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{LogBufferSize: 10})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 10 {
			l.send(logEntry("batch", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("job ", i)))
		}
		waitIndexed(t, env, 10, "a flush once LogBufferSize=10 entries are buffered")
		for i := range 9 {
			l.send(logEntry("batch", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("job ", 10+i)))
		}
		// Nine more entries are one short of the next flush.
		n, _, changed := env.srv.logs.stats()
		if n == 10 {
			select {
			case <-changed:
				n, _, _ = env.srv.logs.stats()
			case <-time.After(katatest.NeverWindow):
			}
		}
		require.Equal(t, 10, n, "entries indexed after 19 sent with LogBufferSize=10, want 10 until the buffer fills again")
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(19 entries)")
		assert.Equal(t, logCounts{Received: 19, Indexed: 19}, countsOf(res), "CollectLogs(19 entries) result")
	})

	t.Run("Limits_messages_in_bytes", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxLogMessageBytes: 100})
		l := openLogs(t, katatest.Context(t), env)
		l.send(
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, strings.Repeat("é", 50)),     // 100 bytes: accepted
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, strings.Repeat("é", 50)+"x"), // 101 bytes
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, strings.Repeat("é", 51)),     // 102 bytes in 51 runes
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(messages of 100, 101 and 102 bytes, MaxLogMessageBytes 100)")
		assert.Equal(t, logCounts{Received: 3, Indexed: 1, Errors: 2}, countsOf(res),
			"CollectLogs result, want the 100-byte message indexed and the longer two counted as errors (the limit is in bytes, not runes)")
	})

	t.Run("Accepts_an_application_and_fields_at_their_limits", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		atLimit := logEntry(strings.Repeat("a", maxApplicationBytes), pb.LogLevel_LOG_LEVEL_INFO, "at the limits")
		atLimit.Fields = map[string]string{}
		for i := range maxLogFields {
			atLimit.Fields[fmt.Sprint("field_", i)] = "v"
		}
		// A key and a value at their byte limits, in two-byte runes.
		atLimit.Fields["field_0"] = strings.Repeat("é", maxLogFieldValueBytes/2)
		delete(atLimit.Fields, "field_1")
		atLimit.Fields[strings.Repeat("k", maxLogFieldKeyBytes)] = "v"
		longApp := logEntry(strings.Repeat("a", maxApplicationBytes+1), pb.LogLevel_LOG_LEVEL_INFO, "application one byte over")
		manyFields := logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "one field over")
		manyFields.Fields = maps.Clone(atLimit.Fields)
		manyFields.Fields["one_more"] = "v"
		longKey := logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "a key one byte over")
		longKey.Fields = map[string]string{strings.Repeat("k", maxLogFieldKeyBytes+1): "v"}
		longValue := logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "a value one byte over")
		longValue.Fields = map[string]string{"big": strings.Repeat("é", maxLogFieldValueBytes/2) + "x"}
		l := openLogs(t, katatest.Context(t), env)
		l.send(atLimit, longApp, manyFields, longKey, longValue)
		res, err := l.stream.CloseAndRecv()
		call := fmt.Sprintf("CollectLogs(application of %d bytes, %d fields, a %d-byte key, a %d-byte value; then one past each limit)", maxApplicationBytes, maxLogFields, maxLogFieldKeyBytes, maxLogFieldValueBytes)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		assert.Equal(t, logCounts{Received: 5, Indexed: 1, Errors: 4}, countsOf(res), "%s result, want the entry at every limit indexed and each one past a limit counted as an error", call)
	})

	t.Run("Counts_a_message_that_is_not_UTF8_as_an_error", func(t *testing.T) {
		// grpc-go's codec refuses a string that is not UTF-8 before any
		// handler runs, so this entry reaches CollectLogs through a fake
		// stream, as it would with another codec.
		env := startCollectionServer(t, CollectionConfig{})
		stream := &fakeLogStream{ctx: katatest.Context(t), entries: []*pb.LogEntry{
			logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "caf\xe9"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "café"),
		}}
		err := runHandler(t, "CollectLogs(fake stream)", func() error { return env.srv.CollectLogs(stream) })
		katatest.WantCode(t, err, codes.OK, "CollectLogs(a message that is not UTF-8, then a good one)")
		require.NotNil(t, stream.answer(), "CollectLogs returned OK without SendAndClose")
		assert.Equal(t, logCounts{Received: 2, Indexed: 1, Errors: 1}, countsOf(stream.answer()), "CollectLogs result, want the message that is not UTF-8 counted as an error")
	})

	t.Run("Oversized_entry_ends_the_stream_with_ResourceExhausted", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxLogMessageBytes: 1 << 20}, katatest.WithServerOptions(grpc.MaxRecvMsgSize(4096)))
		l := openLogs(t, katatest.Context(t), env)
		l.send(logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "fits"))
		// The big entry may or may not be sent before the server ends the
		// stream; either way CloseAndRecv has the status.
		l.stream.Send(logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, strings.Repeat("x", 8192)))
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.ResourceExhausted, "CollectLogs(an 8 KiB entry to a server with MaxRecvMsgSize 4096): return Recv's error, never a result that hides the lost entry")
		env.WaitIdle(t)
		if ended := env.Ended(logsMethod); assert.Len(t, ended, 1, "CollectLogs handlers that ended") {
			katatest.WantCode(t, ended[0], codes.ResourceExhausted, "the CollectLogs handler after Recv failed on an entry over the message limit")
		}
	})

	t.Run("Search_answers_stay_under_their_byte_bound", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		// 40 entries of about 33 KiB each: 1.3 MiB in all.
		var entries []*pb.LogEntry
		for i := range 40 {
			e := logEntry("big", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("entry ", i))
			e.Fields = map[string]string{}
			for j := range maxLogFields {
				e.Fields[fmt.Sprint("f", j)] = strings.Repeat("v", maxLogFieldValueBytes)
			}
			entries = append(entries, e)
		}
		l := openLogs(t, katatest.Context(t), env)
		l.send(entries...)
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(40 entries of 33 KiB)")
		found, err := env.client.SearchLogs(katatest.Context(t), &pb.SearchLogsRequest{Application: "big"})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=big)")
		assert.EqualValues(t, 40, found.GetTotalMatches(), "total_matches")
		assert.True(t, found.GetTruncated(), "truncated, for an answer that stopped at its byte bound")
		assert.LessOrEqual(t, proto.Size(found), searchMaxBytes+64, "the answer's encoded size")
		require.NotEmpty(t, found.GetEntries(), "entries")
		assert.Equal(t, "entry 39", found.GetEntries()[0].GetMessage(), "the first entry, want the newest")
	})

	t.Run("Never_flushes_an_empty_buffer", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		select { // the ticker is unbuffered: taken means the flusher saw it
		case env.ticks <- collectionNow:
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("the flush goroutine took no tick within %v", katatest.WaitTimeout)
		}
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(no entries, one tick)")
		assert.Equal(t, logCounts{}, countsOf(res), "CollectLogs(no entries) result")
		env.WaitIdle(t)
		_, flushes, _ := env.srv.logs.stats()
		assert.Zero(t, flushes, "index writes after a tick and a close with nothing buffered, want none: each is a write to the index for nothing")
	})

	t.Run("Flushes_on_the_interval", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		l.send(logEntry("cron", pb.LogLevel_LOG_LEVEL_INFO, "tick 1"), logEntry("cron", pb.LogLevel_LOG_LEVEL_INFO, "tick 2"))
		// Fire the ticker until both entries are indexed: a tick that
		// arrives before the entries only flushes an empty buffer.
		deadline := time.After(katatest.WaitTimeout)
		for {
			handlers := env.HandlersChanged()
			if n, _, _ := env.srv.logs.stats(); n == 2 {
				break
			}
			if handlerEnded(env.Server, logsMethod) {
				t.Fatal("CollectLogs returned before indexing the 2 entries on a tick while the stream was open")
			}
			select {
			case env.ticks <- collectionNow:
			case <-handlers:
			case <-deadline:
				t.Fatal("the flush goroutine stopped taking ticks, or never indexed the 2 entries on a tick while the stream was open")
			}
		}
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(2 entries)")
		assert.Equal(t, logCounts{Received: 2, Indexed: 2}, countsOf(res), "CollectLogs(2 entries) result")
	})

	t.Run("Ticks_between_entries_lose_and_repeat_nothing", func(t *testing.T) {
		// A tick after every entry: the goroutine that owns the buffer
		// takes each tick itself (the ticker is unbuffered), so entries
		// and flushes interleave as tightly as they can. With -race, a
		// flush run anywhere else is caught; without it, lost or repeated
		// entries are.
		env := startCollectionServer(t, CollectionConfig{})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 300 {
			l.send(logEntry("cron", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("tick ", i)))
			select {
			case env.ticks <- collectionNow:
			case <-time.After(katatest.WaitTimeout):
				t.Fatalf("the flush goroutine took no tick within %v after entry %d", katatest.WaitTimeout, i)
			}
		}
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(300 entries, a tick after each)")
		assert.Equal(t, logCounts{Received: 300, Indexed: 300}, countsOf(res), "CollectLogs(300 entries, a tick after each) result")
		env.WaitIdle(t)
		found, err := env.client.SearchLogs(katatest.Context(t), &pb.SearchLogsRequest{Application: "cron", Limit: 1000})
		katatest.WantCode(t, err, codes.OK, "SearchLogs(application=cron)")
		assert.EqualValues(t, 300, found.GetTotalMatches(), "entries indexed, want each of the 300 once")
	})

	t.Run("Flushes_when_the_buffer_fills", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{LogBufferSize: 10})
		l := openLogs(t, katatest.Context(t), env)
		for i := range 25 {
			l.send(logEntry("batch", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("job ", i)))
		}
		waitIndexed(t, env, 20, "a flush every LogBufferSize=10 entries")
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(25 entries)")
		assert.Equal(t, logCounts{Received: 25, Indexed: 25}, countsOf(res), "CollectLogs(25 entries) result")
	})

	t.Run("Counts_invalid_entries_and_goes_on", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxLogMessageBytes: 100})
		l := openLogs(t, katatest.Context(t), env)
		l.send(
			logEntry("api", pb.LogLevel(42), "unknown level"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_UNSPECIFIED, "no level"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, strings.Repeat("x", 101)),
			logEntry("", pb.LogLevel_LOG_LEVEL_ERROR, "no application"),
			logEntry("api", pb.LogLevel_LOG_LEVEL_ERROR, "fine"),
		)
		res, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.OK, "CollectLogs(4 invalid, 1 valid)")
		assert.Equal(t, logCounts{Received: 5, Indexed: 1, Errors: 4}, countsOf(res),
			"CollectLogs result, want 4 errors (unknown or missing level, oversized message, no application)")
	})

	t.Run("Cancel_mid_stream_leaves_no_goroutine", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx, cancel := context.WithCancel(katatest.Context(t))
		l := openLogs(t, ctx, env)
		l.send(logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "one"))
		for {
			changed := env.HandlersChanged()
			if env.Started(logsMethod) > 0 {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatal("the CollectLogs handler never started")
			}
		}
		if handlerEnded(env.Server, logsMethod) {
			_, err := l.stream.CloseAndRecv()
			t.Fatalf("CollectLogs returned %v before the client ended the stream, want it to run until cancelled", err)
		}
		cancel()
		_, err := l.stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Canceled, "CollectLogs() after cancel")
		env.WaitIdle(t) // the per-test leak check then finds no flusher
		if ended := env.Ended(logsMethod); assert.Len(t, ended, 1, "CollectLogs handlers that ended") {
			katatest.WantCode(t, ended[0], codes.Canceled, "the CollectLogs handler after the client cancelled: return Recv's error, never a result")
		}
	})

	t.Run("Checks_limits_before_redacting", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxLogMessageBytes: 40})
		// Redacted, each of these would fit its limit: the limits apply to
		// what the client sent.
		longSecret := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "password="+strings.Repeat("s", 40))
		longField := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "login failed")
		longField.Fields = map[string]string{"password": strings.Repeat("s", maxLogFieldValueBytes+1)}
		atLimit := logEntry("auth", pb.LogLevel_LOG_LEVEL_WARN, "password="+strings.Repeat("s", 31)) // 40 bytes
		l := openLogs(t, katatest.Context(t), env)
		l.send(longSecret, longField, atLimit)
		res, err := l.stream.CloseAndRecv()
		call := fmt.Sprintf("CollectLogs(a 49-byte message holding a secret, a %d-byte password field, a 40-byte message holding a secret; MaxLogMessageBytes 40)", maxLogFieldValueBytes+1)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		assert.Equal(t, logCounts{Received: 3, Indexed: 1, Errors: 2}, countsOf(res), "%s result, want the two entries over a limit counted as errors: validate what arrived, then redact", call)
	})
}

// runHandler calls a handler directly and returns its result, failing the
// test if it does not return within katatest.WaitTimeout.
func runHandler(t *testing.T, what string, handler func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- handler() }()
	select {
	case err := <-done:
		return err
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("%s did not return within %v", what, katatest.WaitTimeout)
		return nil
	}
}
