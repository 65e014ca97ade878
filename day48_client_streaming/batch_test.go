package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const batchMethod = "/streaming.v1.BatchService/ProcessBatch"

// The tokens every batch test server knows. shortToken is alice's too,
// but expires a minute after batchEpoch; the others an hour after.
const (
	aliceToken   = "alice-token"
	bobToken     = "bob-token"
	malloryToken = "mallory-token"
	rootToken    = "root-token"
	shortToken   = "alice-short-lived-token"
)

var batchEpoch = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// batchEnv is one test's batch server, its clock and a raw client.
type batchEnv struct {
	*katatest.Server
	srv    *BatchServer
	clock  *katatest.Clock
	client pb.BatchServiceClient
}

// startBatchServer starts a BatchServer behind AuthInterceptor, paced by
// its real rate limiter.
func startBatchServer(t *testing.T, cfg BatchConfig, opts ...katatest.Option) *batchEnv {
	t.Helper()
	return startPacedBatchServer(t, cfg, nil, opts...)
}

// startPacedBatchServer is startBatchServer whose streams wait on probe
// instead of a rate limiter, when probe is not nil.
func startPacedBatchServer(t *testing.T, cfg BatchConfig, probe *pacingProbe, extra ...katatest.Option) *batchEnv {
	t.Helper()
	clock := katatest.NewClock(batchEpoch)
	cfg.Now = clock.Now
	tokens := NewTokenStore()
	tokens.Add(aliceToken, Identity{User: "alice", Expires: batchEpoch.Add(time.Hour)})
	tokens.Add(bobToken, Identity{User: "bob", Expires: batchEpoch.Add(time.Hour)})
	tokens.Add(malloryToken, Identity{User: "mallory", Expires: batchEpoch.Add(time.Hour)})
	tokens.Add(rootToken, Identity{User: "root", Admin: true, Expires: batchEpoch.Add(time.Hour)})
	tokens.Add(shortToken, Identity{User: "alice", Expires: batchEpoch.Add(time.Minute)})

	srv := NewBatchServer(cfg)
	opts := []katatest.Option{katatest.WithStreamInterceptor(AuthInterceptor(tokens, clock.Now))}
	if probe != nil {
		srv.newPacer = func(string) pacer { return probe }
		opts = append(opts, katatest.WithStreamInterceptor(probe.intercept))
	}
	s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterBatchServiceServer(g, srv) }, append(opts, extra...)...)
	return &batchEnv{Server: s, srv: srv, clock: clock, client: pb.NewBatchServiceClient(s.Conn)}
}

// wantStored fails the test unless key holds payload.
func (env *batchEnv) wantStored(t *testing.T, key, payload string) {
	t.Helper()
	got, ok := env.srv.store.get(key)
	require.True(t, ok, "store[%q] is absent, want %q", key, payload)
	require.Equal(t, payload, string(got), "store[%q]", key)
}

// wantAbsent fails the test if key holds anything.
func (env *batchEnv) wantAbsent(t *testing.T, key string) {
	t.Helper()
	got, ok := env.srv.store.get(key)
	require.False(t, ok, "store[%q] = %q, want no such key", key, got)
}

// write, del and purge build one item each.
func write(id, key, payload string) *pb.BatchItem {
	return &pb.BatchItem{ItemId: id, Operation: pb.BatchOperation_BATCH_OPERATION_WRITE, Key: key, Payload: []byte(payload)}
}

func del(id, key string) *pb.BatchItem {
	return &pb.BatchItem{ItemId: id, Operation: pb.BatchOperation_BATCH_OPERATION_DELETE, Key: key}
}

func purge(id, key string) *pb.BatchItem {
	return &pb.BatchItem{ItemId: id, Operation: pb.BatchOperation_BATCH_OPERATION_PURGE, Key: key}
}

// sendBatch sends items on a new stream authenticated by token (none when
// empty) and returns what CloseAndRecv answers. A Send that fails with
// io.EOF means the server has already answered, so the status is taken
// from CloseAndRecv as a client should.
func sendBatch(ctx context.Context, client pb.BatchServiceClient, token string, items ...*pb.BatchItem) (*pb.BatchResult, error) {
	if token != "" {
		ctx = WithToken(ctx, token)
	}
	stream, err := client.ProcessBatch(ctx)
	if err != nil {
		return nil, err
	}
	return streamAll(stream, items)
}

// outcome is what a test expects for one item.
type outcome struct {
	id   string
	code codes.Code
}

// wantOutcomes fails the test unless res holds exactly want, in order, a
// message on every rejected item, and counts that add up.
func wantOutcomes(t *testing.T, call string, res *pb.BatchResult, want ...outcome) {
	t.Helper()
	got := res.GetOutcomes()
	if len(got) != len(want) {
		t.Fatalf("%s returned %d outcomes %v, want %d, one per item in the order sent", call, len(got), got, len(want))
	}
	var applied int64
	for i, w := range want {
		g := got[i]
		if g.GetItemId() != w.id || codes.Code(g.GetCode()) != w.code {
			t.Fatalf("%s outcome %d = {item_id %q, code %v, %q}, want {item_id %q, code %v}", call, i, g.GetItemId(), codes.Code(g.GetCode()), g.GetMessage(), w.id, w.code)
		}
		if w.code == codes.OK {
			applied++
		} else if g.GetMessage() == "" {
			t.Fatalf("%s outcome %d (item_id %q, code %v) has no message, want one saying what was wrong", call, i, w.id, w.code)
		}
	}
	total, rejected := int64(len(want)), int64(len(want))-applied
	if res.GetTotalItems() != total || res.GetAppliedCount() != applied || res.GetRejectedCount() != rejected {
		t.Fatalf("%s counts total=%d applied=%d rejected=%d, want total=%d applied=%d rejected=%d",
			call, res.GetTotalItems(), res.GetAppliedCount(), res.GetRejectedCount(), total, applied, rejected)
	}
}

func TestBatchProcessing(t *testing.T) {
	t.Run("Applies_own_writes_and_deletes", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		res, err := sendBatch(katatest.Context(t), env.client, aliceToken,
			write("w1", "alice/a", "first a"),
			write("w2", "alice/b", "b"),
			del("d1", "alice/b"),
			write("w3", "alice/a", "second a"),
			del("d2", "alice/never-written"),
		)
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: own writes and deletes)")
		wantOutcomes(t, "ProcessBatch(alice: own writes and deletes)", res,
			outcome{"w1", codes.OK}, outcome{"w2", codes.OK}, outcome{"d1", codes.OK}, outcome{"w3", codes.OK}, outcome{"d2", codes.OK})
		env.wantStored(t, "alice/a", "second a")
		env.wantAbsent(t, "alice/b")
	})

	t.Run("Rejects_missing_token", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		_, err := sendBatch(ctx, env.client, "", write("w1", "alice/x", "x"))
		katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(no authorization metadata)")
		katatest.WantMessage(t, err, "ProcessBatch(no authorization metadata)")("authorization")
		env.WaitIdle(t)
		env.wantAbsent(t, "alice/x")
		// The same item with a token goes through: the token made the difference.
		res, err := sendBatch(ctx, env.client, aliceToken, write("w1", "alice/x", "x"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: the same item with a token)")
		wantOutcomes(t, "ProcessBatch(alice: the same item with a token)", res, outcome{"w1", codes.OK})
		env.wantStored(t, "alice/x", "x")
	})

	t.Run("Rejects_unknown_token", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		for _, token := range []string{"stolen-token", "alice-token-but-longer"} {
			_, err := sendBatch(ctx, env.client, token, write("w1", "alice/x", "x"))
			katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(token=%q)", token)
			katatest.WantMessage(t, err, "ProcessBatch(token=%q)", token)("unknown")
			assert.NotContains(t, err.Error(), token, "ProcessBatch(token=%q) error, want a message that does not repeat the token", token)
		}
		// A header that is not "Bearer <token>" is refused as malformed.
		stream, err := env.client.ProcessBatch(metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+aliceToken))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch()")
		_, err = stream.CloseAndRecv()
		katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(authorization=%q)", "Basic <token>")
		env.WaitIdle(t)
		env.wantAbsent(t, "alice/x")
		res, err := sendBatch(ctx, env.client, aliceToken, write("w1", "alice/x", "x"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: the same item with her token)")
		wantOutcomes(t, "ProcessBatch(alice: the same item with her token)", res, outcome{"w1", codes.OK})
	})

	t.Run("Expired_token_mid_stream_ends_the_stream", func(t *testing.T) {
		env, err := expireBeforeThirdItem(t, BatchConfig{}, "e", 4)
		katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(token expired after 2 of 4 items)")
		katatest.WantMessage(t, err, "ProcessBatch(token expired after 2 of 4 items)")("expired")
		env.WaitIdle(t)
		// Items applied before the expiry stay applied; none after.
		env.wantStored(t, "alice/e1", "e")
		env.wantStored(t, "alice/e2", "e")
		env.wantAbsent(t, "alice/e3")
		env.wantAbsent(t, "alice/e4")
	})

	t.Run("An_expired_token_is_checked_before_the_item_cap", func(t *testing.T) {
		// Two items fill the cap; the third ends the stream as
		// Unauthenticated: the token is checked first, on every item,
		// even one past the cap.
		env, err := expireBeforeThirdItem(t, BatchConfig{MaxItemsPerStream: 2}, "c", 3)
		katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(3 items, MaxItemsPerStream=2, token expired before the 3rd): re-check the token before the cap")
		env.WaitIdle(t)
		env.wantStored(t, "alice/c2", "c")
		env.wantAbsent(t, "alice/c3")
	})

	t.Run("Every_outcome_fits_in_maxOutcomeBytes", func(t *testing.T) {
		// Ids and keys at their byte limits, made of control characters,
		// which %q writes as 4 bytes each: an outcome that quotes one
		// whole is twice the limit. With maxOutcomeBytes an outcome, the
		// answer to a full stream stays under 1 MiB.
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		ctl := func(n int, tail string) string { return strings.Repeat("\x01", n-len(tail)) + tail }
		dup := ctl(maxItemIDBytes, "")
		items := []*pb.BatchItem{
			write(dup, "alice/a", "x"),
			write(dup, "alice/a", "x"),                                          // AlreadyExists
			write(ctl(maxItemIDBytes, "1"), ctl(maxKeyBytes, ""), "x"),          // a malformed key
			write(ctl(maxItemIDBytes, "2"), "bob/"+ctl(maxKeyBytes-4, ""), "x"), // another user's key
			del(ctl(maxItemIDBytes, "3"), "bob/"+ctl(maxKeyBytes-4, "")),
			purge(ctl(maxItemIDBytes, "4"), ctl(maxKeyBytes-2, "")+"/x"),      // PURGE by a non-admin
			{ItemId: ctl(maxItemIDBytes, "5"), Operation: 99, Key: "alice/a"}, // an unknown operation
			write(ctl(maxItemIDBytes, "6"), "alice/"+ctl(maxKeyBytes-6, ""), strings.Repeat("p", defaultMaxPayloadBytes+1)),
			write(ctl(maxItemIDBytes, "7"), "alice/"+ctl(maxKeyBytes-6, ""), "x"),             // applied
			write(strings.Repeat("\U000f0000", 1024), "alice/b", "x"),                         // an over-long id: refused, and cut in its outcome
			write(ctl(maxItemIDBytes, "8"), strings.Repeat("\U000f0000", maxKeyBytes/4), "x"), // %q writes each as 10 bytes
			write(ctl(maxItemIDBytes, "9"), "bob/"+strings.Repeat("\U000f0000", maxKeyBytes/4-1), "x"),
		}
		res, err := sendBatch(ctx, env.client, aliceToken, items...)
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(items with ids and keys of control characters at their limits)")
		require.Len(t, res.GetOutcomes(), len(items), "outcomes")
		for i, o := range res.GetOutcomes() {
			if n := proto.Size(o); n > maxOutcomeBytes {
				t.Fatalf("outcome %d (%v) is %d bytes encoded, want at most maxOutcomeBytes (%d): carry outcomeID(item_id), and quote ids and keys in a message with quoteShort", i+1, codes.Code(o.GetCode()), n, maxOutcomeBytes)
			}
		}
		if n := proto.Size(res) / len(items) * defaultMaxItemsPerStream; n > 1<<20 {
			t.Fatalf("at this size an outcome, the answer to a full stream of %d items would be %d bytes, want at most 1 MiB", defaultMaxItemsPerStream, n)
		}
	})

	t.Run("Denies_another_users_key", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		res, err := sendBatch(ctx, env.client, bobToken, write("b1", "bob/secret", "bob's"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(bob: own write)")
		wantOutcomes(t, "ProcessBatch(bob: own write)", res, outcome{"b1", codes.OK})
		call := "ProcessBatch(alice: bob's keys and her own)"
		res, err = sendBatch(ctx, env.client, aliceToken,
			write("a1", "bob/secret", "alice's"),
			del("a2", "bob/secret"),
			write("a3", "bob/new", "alice's"),
			write("a4", "alice/own", "mine"),
			write("a5", "alicebob/x", "a prefix of the owner is not the owner"),
		)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res,
			outcome{"a1", codes.PermissionDenied}, outcome{"a2", codes.PermissionDenied}, outcome{"a3", codes.PermissionDenied},
			outcome{"a4", codes.OK}, outcome{"a5", codes.PermissionDenied})
		env.wantStored(t, "bob/secret", "bob's")
		env.wantAbsent(t, "bob/new")
		env.wantStored(t, "alice/own", "mine")
		env.wantAbsent(t, "alicebob/x")
	})

	t.Run("Denies_purge_to_non_admin", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		_, err := sendBatch(ctx, env.client, bobToken, write("b1", "bob/keep", "b"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(bob: own write)")
		call := "ProcessBatch(alice: PURGE)"
		res, err := sendBatch(ctx, env.client, aliceToken,
			write("a1", "alice/keep", "a"),
			purge("p1", "alice/*"),
			purge("p2", "bob/*"),
		)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"a1", codes.OK}, outcome{"p1", codes.PermissionDenied}, outcome{"p2", codes.PermissionDenied})
		env.wantStored(t, "alice/keep", "a")
		env.wantStored(t, "bob/keep", "b")
	})

	t.Run("Allows_purge_to_admin", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		_, err := sendBatch(ctx, env.client, aliceToken, write("a1", "alice/one", "1"), write("a2", "alice/two/deep", "2"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: own writes)")
		_, err = sendBatch(ctx, env.client, bobToken, write("b1", "bob/keep", "b"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(bob: own write)")
		call := "ProcessBatch(root: PURGE alice)"
		res, err := sendBatch(ctx, env.client, rootToken, purge("p1", "alice/*"))
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"p1", codes.OK})
		env.wantAbsent(t, "alice/one")
		env.wantAbsent(t, "alice/two/deep")
		env.wantStored(t, "bob/keep", "b")
	})

	t.Run("Reports_duplicate_ids_once_applied_once", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		call := "ProcessBatch(alice: item_id w1 three times)"
		res, err := sendBatch(ctx, env.client, aliceToken,
			write("w1", "alice/doc", "first"),
			write("w1", "alice/doc", "second"),
			del("w1", "alice/doc"),
			write("w2", "alice/other", "other"),
		)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"w1", codes.OK}, outcome{"w1", codes.AlreadyExists}, outcome{"w1", codes.AlreadyExists}, outcome{"w2", codes.OK})
		env.wantStored(t, "alice/doc", "first")
		// Ids are unique within a stream; a new stream may use them again.
		call = "ProcessBatch(alice: item_id w1 on a new stream)"
		res, err = sendBatch(ctx, env.client, aliceToken, write("w1", "alice/doc", "third"))
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"w1", codes.OK})
		env.wantStored(t, "alice/doc", "third")
	})

	t.Run("Rejects_invalid_items_and_goes_on", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxPayloadBytes: 16})
		longID := strings.Repeat("é", maxItemIDBytes/2) + "i" // 129 bytes in 65 runes
		items := []*pb.BatchItem{
			write("", "alice/a", "no id"),
			write(longID, "alice/a", "long id"),
			{ItemId: "op0", Operation: pb.BatchOperation_BATCH_OPERATION_UNSPECIFIED, Key: "alice/a"},
			{ItemId: "op99", Operation: pb.BatchOperation(99), Key: "alice/a"},
			write("k1", "noslash", "x"),
			write("k2", "/a", "x"),
			write("k3", "alice/", "x"),
			write("k4", "", "x"),
			write("k5", "alice/"+strings.Repeat("k", maxKeyBytes), "x"),
			write("big", "alice/a", strings.Repeat("p", 17)),
			write("ok", "alice/ok", "fine"),
		}
		call := "ProcessBatch(alice: invalid items, then a valid one)"
		res, err := sendBatch(katatest.Context(t), env.client, aliceToken, items...)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		want := []outcome{{"", codes.InvalidArgument}, {strings.Repeat("é", maxItemIDBytes/2), codes.InvalidArgument}} // the over-long id cut to its limit (outcomeID)
		for _, id := range []string{"op0", "op99", "k1", "k2", "k3", "k4", "k5", "big"} {
			want = append(want, outcome{id, codes.InvalidArgument})
		}
		wantOutcomes(t, call, res, append(want, outcome{"ok", codes.OK})...)
		assert.Contains(t, res.GetOutcomes()[9].GetMessage(), "16", "%s outcome for a 17-byte payload, want it to name the limit 16", call)
		env.wantAbsent(t, "alice/a")
		env.wantStored(t, "alice/ok", "fine")
	})

	t.Run("Accepts_items_at_their_limits", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxPayloadBytes: 16})
		id := strings.Repeat("é", maxItemIDBytes/2) // 128 bytes
		key := "alice/" + strings.Repeat("k", maxKeyBytes-len("alice/"))
		call := "ProcessBatch(alice: a 128-byte id, a 256-byte key, a 16-byte payload)"
		res, err := sendBatch(katatest.Context(t), env.client, aliceToken, write(id, key, strings.Repeat("p", 16)))
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{id, codes.OK})
		env.wantStored(t, key, strings.Repeat("p", 16))
	})

	t.Run("Ends_stream_past_MaxItemsPerStream", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxItemsPerStream: 3})
		ctx := katatest.Context(t)
		items := func(prefix string, n int) []*pb.BatchItem {
			var items []*pb.BatchItem
			for i := range n {
				items = append(items, write(fmt.Sprint(prefix, i+1), fmt.Sprint("alice/", prefix, i+1), "m"))
			}
			return items
		}
		res, err := sendBatch(ctx, env.client, aliceToken, items("at", 3)...)
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(3 items, MaxItemsPerStream=3)")
		wantOutcomes(t, "ProcessBatch(3 items, MaxItemsPerStream=3)", res, outcome{"at1", codes.OK}, outcome{"at2", codes.OK}, outcome{"at3", codes.OK})
		_, err = sendBatch(ctx, env.client, aliceToken, items("over", 5)...)
		katatest.WantCode(t, err, codes.ResourceExhausted, "ProcessBatch(5 items, MaxItemsPerStream=3)")
		katatest.WantMessage(t, err, "ProcessBatch(5 items, MaxItemsPerStream=3)")("3")
		env.WaitIdle(t)
		env.wantStored(t, "alice/over3", "m")
		env.wantAbsent(t, "alice/over4")
	})

	t.Run("Identity_comes_from_the_token_not_the_item", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{})
		ctx := katatest.Context(t)
		// Items carry keys, not users: the same items mean different
		// things for different callers.
		items := []*pb.BatchItem{write("p1", "alice/profile", "from the sender"), purge("p2", "alice/*"), write("p3", "mallory/profile", "from the sender")}
		call := "ProcessBatch(mallory: alice's keys)"
		res, err := sendBatch(ctx, env.client, malloryToken, items...)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"p1", codes.PermissionDenied}, outcome{"p2", codes.PermissionDenied}, outcome{"p3", codes.OK})
		env.wantAbsent(t, "alice/profile")
		env.wantStored(t, "mallory/profile", "from the sender")
		call = "ProcessBatch(alice: the same items)"
		res, err = sendBatch(ctx, env.client, aliceToken, items...)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"p1", codes.OK}, outcome{"p2", codes.PermissionDenied}, outcome{"p3", codes.PermissionDenied})
		env.wantStored(t, "alice/profile", "from the sender")
	})

	t.Run("Handler_refuses_a_stream_without_an_identity", func(t *testing.T) {
		srv := NewBatchServer(BatchConfig{})
		s := katatest.Start(t, func(g *grpc.Server) { pb.RegisterBatchServiceServer(g, srv) }) // no AuthInterceptor
		// No items: nothing but the handler's own check can refuse it.
		_, err := sendBatch(katatest.Context(t), pb.NewBatchServiceClient(s.Conn), "")
		katatest.WantCode(t, err, codes.Unauthenticated, "ProcessBatch(no items) served without AuthInterceptor, so with no identity in its context")
	})

	t.Run("Ends_the_stream_at_once_when_the_pace_cannot_be_kept_before_its_deadline", func(t *testing.T) {
		// One item an hour: the second cannot be received before the
		// stream's deadline, and a rate.Limiter says so at once.
		env := startBatchServer(t, BatchConfig{ItemsPerSecond: 1.0 / 3600, Burst: 1})
		ctx, cancel := context.WithTimeout(katatest.Context(t), katatest.WaitTimeout)
		defer cancel()
		_, err := sendBatch(ctx, env.client, aliceToken, write("w1", "alice/w1", "p"), write("w2", "alice/w2", "p"), write("w3", "alice/w3", "p"))
		require.NoError(t, ctx.Err(), "ProcessBatch() = %v only when the stream's deadline passed, want the server to answer as soon as its pacer says the deadline cannot be met", err)
		katatest.WantCode(t, err, codes.DeadlineExceeded, "ProcessBatch(3 items at one an hour, deadline in %v)", katatest.WaitTimeout)
		env.WaitIdle(t)
		env.wantAbsent(t, "alice/w2") // never paced, so never received
	})

	t.Run("Pace_holds_across_a_users_streams", func(t *testing.T) {
		// A burst of three an hour: alice's first stream spends it all
		// (a Wait before each of its two items and one before the Recv
		// that sees its end), and her second, opened after the first
		// ended, has none left; bob's pace is his own.
		env := startBatchServer(t, BatchConfig{ItemsPerSecond: 1.0 / 3600, Burst: 3})
		res, err := sendBatch(katatest.Context(t), env.client, aliceToken, write("w1", "alice/w1", "p"), write("w2", "alice/w2", "p"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice: her burst of 2)")
		wantOutcomes(t, "ProcessBatch(alice: her burst of 2)", res, outcome{"w1", codes.OK}, outcome{"w2", codes.OK})
		ctx, cancel := context.WithTimeout(katatest.Context(t), katatest.WaitTimeout)
		defer cancel()
		_, err = sendBatch(ctx, env.client, aliceToken, write("w3", "alice/w3", "p"))
		require.NoError(t, ctx.Err(), "ProcessBatch(alice's second stream) = %v only at its deadline, want the server to answer at once", err)
		katatest.WantCode(t, err, codes.DeadlineExceeded, "ProcessBatch(alice's second stream, her pace spent by the first)")
		res, err = sendBatch(katatest.Context(t), env.client, bobToken, write("b1", "bob/b1", "p"))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(bob, while alice's pace is spent)")
		wantOutcomes(t, "ProcessBatch(bob)", res, outcome{"b1", codes.OK})
		env.WaitIdle(t)
		env.wantAbsent(t, "alice/w3")
	})

	t.Run("Cancel_while_pacing_ends_the_handler_with_Canceled", func(t *testing.T) {
		probe := newPacingProbe(1) // holds the second Wait
		env := startPacedBatchServer(t, BatchConfig{}, probe)
		ctx, cancel := context.WithCancel(katatest.Context(t))
		stream, err := env.client.ProcessBatch(WithToken(ctx, aliceToken))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice)")
		sendOrFail(t, stream, write("w1", "alice/w1", "p"), "ProcessBatch item w1")
		if !probe.waitForWaits(t, 2, nil) {
			t.Fatal("the handler never waited on the pacer for a second item")
		}
		cancel()
		env.WaitIdle(t)
		if ended := env.Ended(batchMethod); assert.Len(t, ended, 1, "ProcessBatch handlers that ended") {
			katatest.WantCode(t, ended[0], codes.Canceled, "the ProcessBatch handler when the client cancelled while it waited on the pacer")
		}
	})

	t.Run("Oversized_item_ends_the_stream_with_ResourceExhausted", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxPayloadBytes: 1 << 20}, katatest.WithServerOptions(grpc.MaxRecvMsgSize(4096)))
		done := make(chan error, 1)
		go func() {
			_, err := sendBatch(katatest.Context(t), env.client, aliceToken, write("w1", "alice/w1", "p"), write("big", "alice/big", strings.Repeat("x", 8192)))
			done <- err
		}()
		select {
		case err := <-done:
			katatest.WantCode(t, err, codes.ResourceExhausted, "ProcessBatch(an 8 KiB item to a server with MaxRecvMsgSize 4096)")
		case <-time.After(katatest.WaitTimeout):
			t.Fatalf("ProcessBatch() did not end within %v after an item over the server's message limit, want Recv's error returned", katatest.WaitTimeout)
		}
		env.WaitIdle(t)
		if ended := env.Ended(batchMethod); assert.Len(t, ended, 1, "ProcessBatch handlers that ended") {
			katatest.WantCode(t, ended[0], codes.ResourceExhausted, "the ProcessBatch handler after Recv failed on an item over the message limit")
		}
	})

	t.Run("Paces_with_the_limiter", func(t *testing.T) {
		// The pacer lets 3 items through and holds the 4th Wait.
		probe := newPacingProbe(3)
		env := startPacedBatchServer(t, BatchConfig{}, probe)
		ctx := katatest.Context(t)
		stream, err := env.client.ProcessBatch(WithToken(ctx, aliceToken))
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(alice)")
		var want []outcome
		for i := range 6 {
			id := fmt.Sprint("w", i+1)
			want = append(want, outcome{id, codes.OK})
			if err := stream.Send(write(id, "alice/"+id, "p")); err != nil {
				break // the server has answered; CloseAndRecv says how
			}
		}
		var res *pb.BatchResult
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err = stream.CloseAndRecv()
		}()
		if !probe.waitForWaits(t, 4, done) {
			waits, _, _ := probe.counts()
			t.Fatalf("ProcessBatch(6 items) = %v after %d waits on the pacer, want a Wait before every Recv", err, waits)
		}
		check := func(when string) {
			t.Helper()
			if _, received, _ := probe.counts(); received != 3 {
				t.Fatalf("%s the pacer held the 4th item, the handler had received %d items, want 3: receive only after the pacer allows it", when, received)
			}
			env.wantStored(t, "alice/w3", "p")
			env.wantAbsent(t, "alice/w4")
		}
		check("when")
		select {
		case <-done:
			t.Fatalf("ProcessBatch(6 items) = %v while the pacer held the 4th item, want it to wait", err)
		case <-time.After(katatest.NeverWindow):
		}
		check(fmt.Sprint(katatest.NeverWindow, " after"))
		close(probe.open)
		<-done
		katatest.WantCode(t, err, codes.OK, "ProcessBatch(6 items, paced)")
		wantOutcomes(t, "ProcessBatch(6 items, paced)", res, want...)
		_, _, early := probe.counts()
		assert.Empty(t, early, "ProcessBatch receives before waiting on the pacer for them")
	})

	t.Run("Refused_items_count_toward_MaxItemsPerStream", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxItemsPerStream: 3})
		ctx := katatest.Context(t)
		call := "ProcessBatch(alice: 2 refused items, then 1 applied, MaxItemsPerStream=3)"
		res, err := sendBatch(ctx, env.client, aliceToken, write("r1", "bob/x", "m"), write("r2", "noslash", "m"), write("a1", "alice/a1", "m"))
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res, outcome{"r1", codes.PermissionDenied}, outcome{"r2", codes.InvalidArgument}, outcome{"a1", codes.OK})
		call = "ProcessBatch(alice: 2 refused items, then 2 valid, MaxItemsPerStream=3)"
		_, err = sendBatch(ctx, env.client, aliceToken, write("r1", "bob/x", "m"), write("r2", "noslash", "m"), write("a2", "alice/a2", "m"), write("a3", "alice/a3", "m"))
		katatest.WantCode(t, err, codes.ResourceExhausted, "%s: every item received counts toward the cap, applied or refused", call)
		env.WaitIdle(t)
		env.wantAbsent(t, "alice/a3")
	})

	t.Run("A_refused_item_id_is_never_applied_later_on_the_stream", func(t *testing.T) {
		env := startBatchServer(t, BatchConfig{MaxPayloadBytes: 4})
		call := "ProcessBatch(alice: ids x, y and z refused, then each sent again with a valid item)"
		res, err := sendBatch(katatest.Context(t), env.client, aliceToken,
			write("x", "bob/doc", "m"),
			&pb.BatchItem{ItemId: "y", Operation: pb.BatchOperation(99), Key: "alice/y"},
			write("z", "alice/z", "too long"),
			write("x", "alice/x", "m"),
			write("y", "alice/y", "m"),
			write("z", "alice/z", "m"),
		)
		katatest.WantCode(t, err, codes.OK, "%s", call)
		wantOutcomes(t, call, res,
			outcome{"x", codes.PermissionDenied}, outcome{"y", codes.InvalidArgument}, outcome{"z", codes.InvalidArgument},
			outcome{"x", codes.AlreadyExists}, outcome{"y", codes.AlreadyExists}, outcome{"z", codes.AlreadyExists})
		for _, key := range []string{"alice/x", "alice/y", "alice/z"} {
			env.wantAbsent(t, key)
		}
	})

	t.Run("Matches_its_model", testBatchMatchesItsModel)
}

// expireBeforeThirdItem sends n writes of alice's, keys alice/<prefix>N,
// with a short-lived token to a server of cfg: two items pass the pacer,
// the third waits while the clock moves past the token's expiry. It
// returns the server and the stream's end.
func expireBeforeThirdItem(t *testing.T, cfg BatchConfig, prefix string, n int) (*batchEnv, error) {
	t.Helper()
	probe := newPacingProbe(2)
	env := startPacedBatchServer(t, cfg, probe)
	stream, err := env.client.ProcessBatch(WithToken(katatest.Context(t), shortToken))
	katatest.WantCode(t, err, codes.OK, "ProcessBatch(short-lived token)")
	for i := range n {
		if err := stream.Send(write(fmt.Sprint(prefix, i+1), fmt.Sprint("alice/", prefix, i+1), prefix)); err != nil {
			break // the server has answered; CloseAndRecv says how
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err = stream.CloseAndRecv()
	}()
	if !probe.waitForWaits(t, 3, done) {
		t.Fatalf("ProcessBatch(%d items) = %v before waiting on the pacer for the 3rd item, want a Wait before every Recv", n, err)
	}
	env.clock.Advance(2 * time.Minute)
	close(probe.open)
	<-done
	return env, err
}
