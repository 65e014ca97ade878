package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollectionClient(t *testing.T) {
	t.Run("SendDataPoints_streams_until_the_channel_closes", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		points := make(chan *pb.DataPoint)
		go func() {
			defer close(points)
			for i := range 300 {
				points <- point("edge-1", i)
			}
		}()
		res, err := c.SendDataPoints(katatest.Context(t), points)
		katatest.WantCode(t, err, codes.OK, "SendDataPoints(300 points)")
		wantCounts(t, res, 300, 300, 0)
	})

	t.Run("SendLogs_streams_until_the_channel_closes", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		entries := make(chan *pb.LogEntry, 3)
		for i := range 3 {
			entries <- logEntry("edge", pb.LogLevel_LOG_LEVEL_ERROR, fmt.Sprint("disk ", i))
		}
		close(entries)
		res, err := c.SendLogs(katatest.Context(t), entries)
		katatest.WantCode(t, err, codes.OK, "SendLogs(3 entries)")
		assert.Equal(t, logCounts{Received: 3, Indexed: 3}, countsOf(res), "SendLogs(3 entries) result")
	})

	t.Run("Fail_cleanly_after_Close", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		require.NoError(t, c.Close())
		points := make(chan *pb.DataPoint, 1)
		points <- point("web-1", 1)
		close(points)
		_, err := c.SendDataPoints(katatest.Context(t), points)
		katatest.WantCode(t, err, codes.Canceled, "SendDataPoints() after Close: the error of opening the stream on a closed connection")
		entries := make(chan *pb.LogEntry, 1)
		entries <- logEntry("api", pb.LogLevel_LOG_LEVEL_INFO, "late")
		close(entries)
		_, err = c.SendLogs(katatest.Context(t), entries)
		katatest.WantCode(t, err, codes.Canceled, "SendLogs() after Close: the error of opening the stream on a closed connection")
	})

	t.Run("SendDataPoints_returns_a_Send_error_without_waiting_for_more", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		points := make(chan *pb.DataPoint, 1)
		defer close(points)                                                               // open until the test ends: only the error can end the call
		points <- &pb.DataPoint{Source: "caf\xe9", Metrics: map[string]float64{"cpu": 1}} // not UTF-8: cannot be marshalled
		done := make(chan error, 1)
		go func() {
			_, err := c.SendDataPoints(katatest.Context(t), points)
			done <- err
		}()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.Internal, "SendDataPoints(a point whose source is not UTF-8)")
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("SendDataPoints() did not return within %v after a failed Send, want Send's error at once", katatest.WaitTimeout)
		}
	})

	t.Run("SendDataPoints_stops_promptly_on_cancel", func(t *testing.T) {
		checkStopsOnCancel(t, "SendDataPoints", pointsMethod, "points", point("edge-2", 0), (*StreamingClient).SendDataPoints)
	})

	t.Run("SendLogs_stops_promptly_on_cancel", func(t *testing.T) {
		checkStopsOnCancel(t, "SendLogs", logsMethod, "entries", logEntry("edge", pb.LogLevel_LOG_LEVEL_INFO, "first"), (*StreamingClient).SendLogs)
	})

	t.Run("SendDataPoints_returns_the_server_status_when_Send_fails", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{MaxPointsPerStream: 10})
		c := newClient(t, env.Server)
		points := make(chan *pb.DataPoint)
		done := make(chan error, 1)
		go func() {
			_, err := c.SendDataPoints(katatest.Context(t), points)
			done <- err
		}()
		// Feed points until the client gives up: once the server has ended
		// the stream, Send fails with io.EOF.
		for i := 0; ; i++ {
			select {
			case points <- point("edge-3", i):
				continue
			case err := <-done:
				katatest.WantCode(t, err, codes.ResourceExhausted, "SendDataPoints(endless points, MaxPointsPerStream=10)")
			}
			break
		}
	})
}

func TestMonitorConnection(t *testing.T) {
	t.Run("Connects_and_reports_until_cancelled", func(t *testing.T) {
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		ctx, cancel := context.WithCancel(katatest.Context(t))
		states := make(chan connectivity.State, 16)
		done := make(chan error, 1)
		go func() { done <- c.MonitorConnection(ctx, func(s connectivity.State) { states <- s }) }()
		var seen []connectivity.State
		for ready := false; !ready; {
			select {
			case s := <-states:
				seen = append(seen, s)
				ready = s == connectivity.Ready
			case err := <-done:
				t.Fatalf("MonitorConnection() = %v after reporting %v, want it to report until cancelled", err, seen)
			case <-ctx.Done():
				t.Fatalf("MonitorConnection reported %v, want it to connect and report READY", seen)
			}
		}
		cancel()
		waitMonitorCancelled(t, done)
	})

	t.Run("Reports_the_state_it_starts_in", func(t *testing.T) {
		// A connection that is already READY does not change: only a
		// monitor that reports the current state first says anything.
		env := startCollectionServer(t, CollectionConfig{})
		c := newClient(t, env.Server)
		_, err := c.collection.GetMetricsSummary(katatest.Context(t), &pb.GetMetricsSummaryRequest{Source: "web-01"})
		katatest.WantCode(t, err, codes.NotFound, "GetMetricsSummary(%q) to make the connection READY", "web-01")
		ctx, cancel := context.WithCancel(katatest.Context(t))
		states := make(chan connectivity.State, 16)
		done := make(chan error, 1)
		go func() { done <- c.MonitorConnection(ctx, func(s connectivity.State) { states <- s }) }()
		select {
		case s := <-states:
			if s != connectivity.Ready {
				t.Fatalf("MonitorConnection on a READY connection first reported %v, want READY", s)
			}
		case err := <-done:
			t.Fatalf("MonitorConnection() = %v before reporting anything, want it to report until cancelled", err)
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("MonitorConnection on a READY connection reported nothing within %v: call onChange with the current state first, then with each change", katatest.WaitTimeout)
		}
		cancel()
		waitMonitorCancelled(t, done)
	})
}

func waitMonitorCancelled(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("MonitorConnection() after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(katatest.WaitTimeout):
		t.Fatal("MonitorConnection() did not return after cancel")
	}
}

// checkStopsOnCancel runs send, a client method that streams what a
// channel gives it, hands it first, and cancels once the server has it:
// the client's Send is then over and it waits for the next item, a wait
// only ctx can end. send must return Canceled at once.
func checkStopsOnCancel[Item, Result any](t *testing.T, name, method, items string, first Item, send func(*StreamingClient, context.Context, <-chan Item) (Result, error)) {
	t.Helper()
	received := make(chan struct{})
	var once sync.Once
	signal := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &recvSignal{ServerStream: ss, onRecv: func() { once.Do(func() { close(received) }) }})
	}
	env := startCollectionServer(t, CollectionConfig{}, katatest.WithStreamInterceptor(signal))
	c := newClient(t, env.Server)
	ctx, cancel := context.WithCancel(katatest.Context(t))
	ch := make(chan Item) // never closed: only cancel ends it
	done := make(chan error, 1)
	go func() {
		_, err := send(c, ctx, ch)
		done <- err
	}()
	select {
	case ch <- first:
	case err := <-done:
		t.Fatalf("%s() = %v before reading its first item", name, err)
	}
	awaitWhileRunning(t, env.Server, method, received, "the server to receive the first item")
	cancel()
	select {
	case err := <-done:
		katatest.WantCode(t, err, codes.Canceled, "%s() after cancel", name)
	case <-time.After(katatest.WaitTimeout):
		t.Fatalf("%s() did not return after cancel while waiting for %s", name, items)
	}
	env.WaitIdle(t)
}
