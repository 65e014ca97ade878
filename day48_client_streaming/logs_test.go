package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

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

	t.Run("Redacts_whatever_the_case_and_separators", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		ctx := katatest.Context(t)
		sensitive := []string{"DB_PASSWORD", "passwd", "X-Api-Key", "APIKEY", "Client-Secret", "refresh_token", "Set-Cookie", "private_key", "aws-credentials", "Proxy-Authorization", "SESSION"}
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
	})
}
