package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

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
// so that it is transformed against that many committed operations. The
// ceiling is the same apply and save without transforming or telling
// anyone: commits/s divided by it is the cost of the transaction.
func BenchmarkEditCommit(b *testing.B) {
	for _, behind := range []int{0, 10} {
		b.Run(fmt.Sprintf("behind=%d", behind), func(b *testing.B) {
			srv, author, stop := benchDocument(b)
			defer stop()
			d := author.doc
			// Inserts alternate with deletes, so the document keeps its size.
			ops := []*pb.Operation{Insert(5000, "x").toProto(), Delete(4000, 1).toProto()}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
	b.Run("ceiling_apply_and_save", func(b *testing.B) {
		store := NewMemoryStore()
		text := []rune(strings.Repeat("a", 10000))
		b.ReportAllocs()
		rev := int64(0)
		for b.Loop() {
			next, err := Insert(5000, "x").apply(text)
			if err != nil {
				b.Fatal(err)
			}
			rev++
			if err := store.Save(context.Background(), "doc", rev, string(next)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
}

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
