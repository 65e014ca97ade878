package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBatchClient(t *testing.T) {
	t.Run("Sends_items_with_the_token_and_returns_outcomes", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		c := newClient(t, env.Server)
		_, err := sendBatch(katatest.Context(t), env.client, aliceToken, write("seed", "alice/old", "old"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: seed)")
		call := "StreamingClient.ProcessBatch(alice-token, 3 items)"
		res, err := c.ProcessBatch(katatest.Context(t), aliceToken, []*pb.BatchItem{
			write("w1", "alice/notes", "hello"),
			write("w2", "bob/notes", "not hers"),
			del("d1", "alice/old"),
		})
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"w1", codes.OK}, outcome{"w2", codes.PermissionDenied}, outcome{"d1", codes.OK})
		env.wantStored(t, "alice/notes", "hello")
		env.wantAbsent(t, "bob/notes")
		env.wantAbsent(t, "alice/old")
	})

	t.Run("Returns_the_server_status_when_Send_fails", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		c := newClient(t, env.Server)
		// 16 MiB of items: far more than flow control lets the client send
		// before the server's rejection arrives, so a later Send fails.
		items := bigItems(512, 32<<10)
		_, err := c.ProcessBatch(katatest.Context(t), "stolen-token", items)
		katatest.WantCode(t, err, codes.Unauthenticated, "StreamingClient.ProcessBatch(unknown token, %d items) rejected by the server mid-stream", len(items))
	})

	t.Run("Fails_cleanly_after_Close", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		c := newClient(t, env.Server)
		require.NoError(t, c.Close())
		_, err := c.ProcessBatch(katatest.Context(t), aliceToken, []*pb.BatchItem{write("w1", "alice/x", "x")})
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.ProcessBatch() after Close: the error of opening the stream on a closed connection")
		assert.Zero(t, env.Started(batchMethod), "ProcessBatch streams the server saw from a closed client")
	})

	t.Run("Sends_nothing_after_the_context_ends", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx, cancel := context.WithCancel(katatest.Context(t))
		defer cancel()
		sends := &sendCounter{nth: 1, afterSend: cancel}
		c := newClient(t, env.Server, sends.dialOption())
		_, err := c.ProcessBatch(ctx, aliceToken, []*pb.BatchItem{write("w1", "alice/1", "x"), write("w2", "alice/2", "x"), write("w3", "alice/3", "x")})
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.ProcessBatch() cancelled after its first item")
		assert.Equal(t, 1, sends.count(), "items passed to Send, want none after the context ended: check ctx before each Send")
	})

	t.Run("Stops_promptly_on_cancel", func(t *testing.T) {
		// The pacer lets one item through and holds the rest, so the
		// client is still sending (or waiting for flow control) when the
		// test cancels.
		probe := newPacingProbe(1)
		env := startPacedBatchServer(t, BatchConfig{}, probe)
		c := newClient(t, env.Server)
		items := bigItems(512, 32<<10)
		ctx, cancel := context.WithCancel(katatest.Context(t))
		defer cancel()
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err = c.ProcessBatch(ctx, aliceToken, items)
		}()
		if !probe.waitForWaits(t, 2, done) {
			t.Fatalf("StreamingClient.ProcessBatch(%d items) = %v before the server received the first item", len(items), err)
		}
		cancel()
		// The server first: a stream opened without the caller's context
		// is never cancelled, so its handler runs on. Checking this before
		// the client's return gives that mistake one verdict, whether its
		// Send is then blocked by flow control or not.
		env.WaitIdle(t)
		select {
		case <-done:
		case <-time.After(katatest.WaitTimeout):
			t.Fatal("StreamingClient.ProcessBatch() did not return after its context was cancelled")
		}
		katatest.WantCode(t, err, codes.Canceled, "StreamingClient.ProcessBatch() cancelled after the first item")
	})
}

// bigItems returns n WRITE items for alice of size bytes each, sharing one
// payload, with ids and keys big-1 to big-n.
func bigItems(n, size int) []*pb.BatchItem {
	payload := bytes.Repeat([]byte{'b'}, size)
	items := make([]*pb.BatchItem, n)
	for i := range items {
		id := fmt.Sprint("big-", i+1)
		items[i] = &pb.BatchItem{ItemId: id, Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: "alice/" + id, Payload: payload}
	}
	return items
}
