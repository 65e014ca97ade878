package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// BenchmarkTransform measures one transform of two random concurrent
// operations on a short text.
func BenchmarkTransform(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	pairs := make([][2]Op, 1024)
	for i := range pairs {
		text := "the quick brown fox jumps over the lazy dog"
		pairs[i] = [2]Op{randomOp(rng, text), randomOp(rng, text)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := pairs[i%len(pairs)]
		transform(p[0], p[1])
		i++
	}
}

// BenchmarkEditCommit measures commits to a 10,000-character document
// with three other editors, each operation based `behind` revisions ago,
// so that it is transformed against that many committed operations. Its
// ceiling is the same apply and save without transforming or telling
// anyone. Batches of editBatch commits and editBatch ceiling operations
// alternate, editPairs pairs in every op; x-ceiling, the cost of the
// transaction, is the median of the pairs' rate ratios with its range.
func BenchmarkEditCommit(b *testing.B) {
	for _, behind := range []int{0, 10} {
		b.Run(fmt.Sprintf("behind=%d", behind), func(b *testing.B) {
			srv, author, stop := benchDocument(b)
			defer stop()
			d := author.doc
			// Inserts alternate with deletes, so the document keeps its size.
			ops := []*pb.Operation{Insert(5000, "x").toProto(), Delete(4000, 1).toProto()}
			i := 0
			commit := func() {
				d.mu.Lock()
				base := max(d.revision-int64(behind), d.revision-int64(len(d.history)))
				d.mu.Unlock()
				err := srv.commit(context.Background(), author, &pb.SubmitOperation{
					BaseRevision: base, ClientOpId: "op", Operation: ops[i%2],
				})
				i++
				if err != nil {
					b.Fatal(err)
				}
			}
			store := NewMemoryStore()
			text := []rune(strings.Repeat("a", 10000))
			rev := int64(0)
			ceiling := func() {
				next, err := Insert(5000, "x").apply(text)
				if err != nil {
					b.Fatal(err)
				}
				rev++
				if err := store.Save(context.Background(), "doc", rev, string(next)); err != nil {
					b.Fatal(err)
				}
			}
			timed := func(f func()) time.Duration {
				start := time.Now()
				for range editBatch {
					f()
				}
				return time.Since(start)
			}
			b.ReportAllocs()
			var commitTime time.Duration
			var ratios []float64
			for b.Loop() {
				for range editPairs {
					c := timed(commit)
					commitTime += c
					b.StopTimer()
					ratios = append(ratios, timed(ceiling).Seconds()/c.Seconds())
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(len(ratios)*editBatch)/commitTime.Seconds(), "commits/s")
			katatest.ReportPairs(b, "x-ceiling", ratios)
		})
	}
}

// A pair of BenchmarkEditCommit is editBatch commits and as many ceiling
// operations; an op runs editPairs pairs.
const (
	editBatch = 200
	editPairs = 7
)

// benchDocument opens a 10,000-character document for an author and three
// other editors whose queues are drained as a writer goroutine would.
func benchDocument(b *testing.B) (*EditorServer, *editor, func()) {
	b.Helper()
	store := NewMemoryStore()
	store.Create("doc", strings.Repeat("a", 10000))
	srv := NewEditorServer(EditorConfig{QueueSize: 4096}, store)
	ctx := context.Background()
	author := newEditor("author", 4096)
	if err := srv.open(ctx, author, "doc"); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	drain := func(e *editor) {
		wg.Go(func() {
			for {
				select {
				case <-e.out:
				case <-done:
					return
				}
			}
		})
	}
	drain(author)
	for range 3 {
		e := newEditor("other", 4096)
		if err := srv.open(ctx, e, "doc"); err != nil {
			b.Fatal(err)
		}
		drain(e)
	}
	return srv, author, func() { close(done); wg.Wait() }
}
