package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// batchModel is the batch service as a plain sequential model: the store,
// and what each item of a stream must come out as.
type batchModel struct {
	maxItems, maxPayload int
	store                map[string]string
}

// stream applies one ProcessBatch stream of caller to the model and
// returns the outcome of each item, or the code that ends the stream.
func (m *batchModel) stream(caller string, admin bool, items []*pb.BatchItem) ([]outcome, codes.Code) {
	seen := map[string]bool{}
	var out []outcome
	for i, item := range items {
		if i == m.maxItems {
			return nil, codes.ResourceExhausted // what came before stays applied
		}
		id, key, op := item.GetItemId(), item.GetKey(), item.GetOperation()
		code := codes.OK
		owner, name, _ := strings.Cut(key, "/")
		switch {
		case id == "", len(id) > maxItemIDBytes:
			code = codes.InvalidArgument
		case seen[id]:
			code = codes.AlreadyExists
		case op != pb.BatchOperation_BATCH_OPERATION_WRITE && op != pb.BatchOperation_BATCH_OPERATION_DELETE && op != pb.BatchOperation_BATCH_OPERATION_PURGE,
			owner == "" || name == "",
			len(item.GetPayload()) > m.maxPayload:
			code = codes.InvalidArgument
		case op == pb.BatchOperation_BATCH_OPERATION_PURGE && !admin,
			op != pb.BatchOperation_BATCH_OPERATION_PURGE && owner != caller:
			code = codes.PermissionDenied
		case op == pb.BatchOperation_BATCH_OPERATION_WRITE:
			m.store[key] = string(item.GetPayload())
		case op == pb.BatchOperation_BATCH_OPERATION_DELETE:
			delete(m.store, key)
		default: // PURGE
			for k := range m.store {
				if strings.HasPrefix(k, owner+"/") {
					delete(m.store, k)
				}
			}
		}
		if id != "" && len(id) <= maxItemIDBytes {
			seen[id] = true
		}
		out = append(out, outcome{id: outcomeID(id), code: code})
	}
	return out, codes.OK
}

// snapshot copies the store's keys and payloads.
func (k *keyStore) snapshot() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]string, len(k.values))
	for key, v := range k.values {
		out[key] = string(v)
	}
	return out
}

// testBatchMatchesItsModel sends random streams of items, for ordinary
// users and an admin, to ProcessBatch and to the model, and compares every
// outcome, the counts and the whole store after each stream. Items mix
// every fault: empty and repeated ids, unknown operations, malformed keys,
// payloads one past the limit, other users' keys, PURGE without the right;
// streams run to one past the item cap. A failing sequence is shrunk to the
// shortest that still fails.
func testBatchMatchesItsModel(t *testing.T) {
	const maxItems, maxPayload = 4, 3
	longID := strings.Repeat("i", maxItemIDBytes+1)
	probe := newPacingProbe(0)
	close(probe.open) // pacing is tested elsewhere; here every Wait passes
	env := startPacedBatchServer(t, BatchConfig{MaxItemsPerStream: maxItems, MaxPayloadBytes: maxPayload}, probe)
	callers := []struct {
		user, token string
		admin       bool
	}{{"alice", aliceToken, false}, {"bob", bobToken, false}, {"root", rootToken, true}}
	ops := []pb.BatchOperation{pb.BatchOperation_BATCH_OPERATION_WRITE, pb.BatchOperation_BATCH_OPERATION_WRITE,
		pb.BatchOperation_BATCH_OPERATION_DELETE, pb.BatchOperation_BATCH_OPERATION_PURGE, pb.BatchOperation(9)}

	rapid.Check(t, func(rt *rapid.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		env.srv.store.mu.Lock()
		clear(env.srv.store.values)
		env.srv.store.mu.Unlock()
		model := &batchModel{maxItems: maxItems, maxPayload: maxPayload, store: map[string]string{}}

		for step := range rapid.IntRange(1, 12).Draw(rt, "streams") {
			caller := rapid.SampledFrom(callers).Draw(rt, "caller")
			items := make([]*pb.BatchItem, rapid.IntRange(0, maxItems+1).Draw(rt, "items"))
			for i := range items {
				items[i] = &pb.BatchItem{
					ItemId:    rapid.SampledFrom([]string{"", "1", "2", "3", "4", longID}).Draw(rt, "item_id"),
					Operation: rapid.SampledFrom(ops).Draw(rt, "operation"),
					Key:       rapid.SampledFrom([]string{"alice/x", "alice/y", "bob/x", "root/z", "", "alice", "/x", "bob/"}).Draw(rt, "key"),
					// Each stream writes its own letter, so a lost or stale write shows.
					Payload: []byte(strings.Repeat(string(rune('a'+step)), rapid.IntRange(0, maxPayload+1).Draw(rt, "payload bytes"))),
				}
			}
			what := fmt.Sprintf("stream %d: %s's ProcessBatch(%s)", step, caller.user, describeItems(items))
			res, err := sendBatch(ctx, env.client, caller.token, items...)
			want, wantCode := model.stream(caller.user, caller.admin, items)
			if status.Code(err) != wantCode {
				rt.Fatalf("%s = %v, want code %v", what, err, wantCode)
			}
			if wantCode == codes.OK {
				if got := outcomesOf(res); !slices.Equal(got, want) {
					rt.Fatalf("%s outcomes = %v, want %v", what, got, want)
				}
				applied := int64(0)
				for _, o := range want {
					if o.code == codes.OK {
						applied++
					}
				}
				if res.GetTotalItems() != int64(len(want)) || res.GetAppliedCount() != applied || res.GetRejectedCount() != int64(len(want))-applied {
					rt.Fatalf("%s counts total=%d applied=%d rejected=%d, want total=%d applied=%d rejected=%d", what,
						res.GetTotalItems(), res.GetAppliedCount(), res.GetRejectedCount(), len(want), applied, int64(len(want))-applied)
				}
			}
			env.WaitIdle(t)
			if got := env.srv.store.snapshot(); !maps.Equal(got, model.store) {
				rt.Fatalf("after %s the store holds %v, want %v", what, got, model.store)
			}
		}
	})
}

func (o outcome) String() string { return fmt.Sprintf("{%q %v}", o.id, o.code) }

func outcomesOf(res *pb.BatchResult) []outcome {
	var out []outcome
	for _, o := range res.GetOutcomes() {
		out = append(out, outcome{id: o.GetItemId(), code: codes.Code(o.GetCode())})
	}
	return out
}

// describeItems lists items briefly: id, operation, key and payload size.
func describeItems(items []*pb.BatchItem) string {
	var parts []string
	for _, it := range items {
		op := strings.TrimPrefix(it.GetOperation().String(), "BATCH_OPERATION_")
		id := it.GetItemId()
		if len(id) > 8 {
			id = fmt.Sprintf("%.8s...(%d bytes)", id, len(id))
		}
		parts = append(parts, fmt.Sprintf("{%q %s %q %dB}", id, op, it.GetKey(), len(it.GetPayload())))
	}
	return strings.Join(parts, " ")
}
