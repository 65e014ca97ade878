package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// fakeLogStream is the server side of a CollectLogs stream without a
// network: Recv hands out entries, then io.EOF, and SendAndClose records
// the answer. It lets a test run CollectLogs inside a synctest bubble,
// where "every other goroutine is blocked" is something it can wait for.
type fakeLogStream struct {
	grpc.ServerStream // not used by CollectLogs; nil
	ctx               context.Context
	entries           []*pb.LogEntry

	mu       sync.Mutex
	answered *pb.LogCollectionResult
}

func (f *fakeLogStream) Context() context.Context { return f.ctx }

func (f *fakeLogStream) Recv() (*pb.LogEntry, error) {
	if len(f.entries) == 0 {
		return nil, io.EOF
	}
	e := f.entries[0]
	f.entries = f.entries[1:]
	return e, nil
}

func (f *fakeLogStream) SendAndClose(res *pb.LogCollectionResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answered = res
	return nil
}

func (f *fakeLogStream) answer() *pb.LogCollectionResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.answered
}

// countingTickers hands out tickers that never tick and counts how many
// were started and stopped.
type countingTickers struct {
	mu               sync.Mutex
	started, stopped int
}

func (c *countingTickers) newTicker(time.Duration) Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started++
	return &countedTicker{c: make(chan time.Time), owner: c}
}

type countedTicker struct {
	c     chan time.Time
	owner *countingTickers
	once  sync.Once
}

func (t *countedTicker) C() <-chan time.Time { return t.c }

func (t *countedTicker) Stop() {
	t.once.Do(func() {
		t.owner.mu.Lock()
		defer t.owner.mu.Unlock()
		t.owner.stopped++
	})
}

// testFinalFlushBeforeTheAnswer runs CollectLogs in a synctest bubble.
// Before each flush reaches the index, it waits until every other
// goroutine is blocked or gone: a handler that answers without waiting
// for its flusher has answered by then, every time, whatever the
// scheduler does. It also counts the flush tickers started and stopped.
func testFinalFlushBeforeTheAnswer(t *testing.T) {
	const entries, bufferSize = 25, 10
	var (
		mu            sync.Mutex
		flushes, late int // late: flushes that reached the index after the answer
		res           *pb.LogCollectionResult
		handlerE      error
		tickers       = &countingTickers{}
	)
	synctest.Test(t, func(t *testing.T) {
		srv := NewDataCollectionServer(CollectionConfig{LogBufferSize: bufferSize, NewTicker: tickers.newTicker})
		stream := &fakeLogStream{ctx: t.Context()}
		for i := range entries {
			stream.entries = append(stream.entries, logEntry("checkout", pb.LogLevel_LOG_LEVEL_INFO, fmt.Sprint("order ", i, " placed")))
		}
		srv.logs.beforeAdd = func() {
			synctest.Wait() // the handler is blocked waiting, or has answered
			mu.Lock()
			defer mu.Unlock()
			if flushes++; stream.answer() != nil {
				late++
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			handlerE = srv.CollectLogs(stream)
			res = stream.answer()
		}()
		<-done
	})
	if handlerE != nil {
		t.Fatalf("CollectLogs(%d valid entries) = %v, want nil after SendAndClose", entries, handlerE)
	}
	mu.Lock()
	defer mu.Unlock()
	if late > 0 {
		t.Fatalf("CollectLogs(%d valid entries, LogBufferSize=%d): %d of %d flushes reached the index after SendAndClose; wait for the flusher to finish, its final flush included, then answer with the count it indexed", entries, bufferSize, late, flushes)
	}
	if got := countsOf(res); got != (logCounts{Received: entries, Indexed: entries}) {
		t.Fatalf("CollectLogs(%d valid entries, LogBufferSize=%d) result %+v, want %+v", entries, bufferSize, got, logCounts{Received: entries, Indexed: entries})
	}
	if tickers.started != 1 || tickers.stopped != 1 {
		t.Fatalf("CollectLogs started %d flush tickers and stopped %d, want 1 and 1: stop the ticker when the flusher ends (defer ticker.Stop())", tickers.started, tickers.stopped)
	}
}
