package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var editNow = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// editEnv is one test's editor server over bufconn, with tokens
// "<user>-token" and a store holding the document "notes".
type editEnv struct {
	*katatest.Server
	srv    *EditorServer
	store  *flakyStore
	client pb.EditorServiceClient
}

// flakyStore is a MemoryStore whose Save fails while failing is set.
type flakyStore struct {
	*MemoryStore
	mu        sync.Mutex
	failing   bool
	saves     int
	revisions []int64           // of every successful Save, in order
	ctxs      []context.Context // of every Load and Save, in order
}

// savedRevisions returns the revision of every successful Save so far.
func (f *flakyStore) savedRevisions() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.revisions)
}

// contexts returns the context of every Load and Save so far.
func (f *flakyStore) contexts() []context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ctxs)
}

func (f *flakyStore) Load(ctx context.Context, id string) (string, int64, error) {
	f.mu.Lock()
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	return f.MemoryStore.Load(ctx, id)
}

func (f *flakyStore) Save(ctx context.Context, id string, revision int64, content string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctxs = append(f.ctxs, ctx)
	if f.failing {
		return errors.New("disk full")
	}
	f.saves++
	f.revisions = append(f.revisions, revision)
	return f.MemoryStore.Save(ctx, id, revision, content)
}

func (f *flakyStore) setFailing(failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = failing
}

func startEditor(t *testing.T, cfg EditorConfig, notes string, opts ...katatest.Option) *editEnv {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last
	tokens := NewTokenStore()
	for _, u := range []string{"alice", "bob", "carol", "dave", "silent"} {
		tokens.Add(u+"-token", Identity{User: u, Expires: editNow.Add(time.Hour)})
	}
	store := &flakyStore{MemoryStore: NewMemoryStore()}
	store.Create("notes", notes)
	env := &editEnv{srv: NewEditorServer(cfg, store), store: store}
	env.Server = katatest.Start(t, func(g *grpc.Server) {
		pb.RegisterEditorServiceServer(g, env.srv)
	}, append(opts, katatest.WithServerOptions(grpc.ChainStreamInterceptor(AuthInterceptor(tokens, func() time.Time { return editNow }))))...)
	env.client = pb.NewEditorServiceClient(env.Conn)
	return env
}

// editStream is one raw Edit stream as a test drives it. It receives
// only when the test asks, so an editor the test does not read from never
// reads.
type editStream struct {
	*katatest.Peer[pb.EditRequest, pb.EditEvent]
	user   string
	nextID int
}

func (env *editEnv) connect(t *testing.T, user string) *editStream {
	t.Helper()
	peer := katatest.OpenPeer(t, user, func(ctx context.Context) (pb.EditorService_EditClient, error) {
		return env.client.Edit(WithToken(ctx, user+"-token"))
	})
	return &editStream{Peer: peer, user: user}
}

// open connects and opens "notes", returning the snapshot's revision.
func (env *editEnv) open(t *testing.T, user string) *editStream {
	t.Helper()
	s := env.connect(t, user)
	s.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}})
	if snap := s.next().GetSnapshot(); snap == nil {
		t.Fatalf("%s: open(notes) answered without a snapshot", user)
	}
	return s
}

// submit sends op based on revision base and returns its client op id.
func (s *editStream) submit(base int64, op Op) string {
	s.T().Helper()
	s.nextID++
	id := fmt.Sprintf("%s-%d", s.user, s.nextID)
	s.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{BaseRevision: base, ClientOpId: id, Operation: op.toProto()}}})
	return id
}

// next receives one event, failing the test if the stream ends. An
// in-band Unimplemented error is a stub's answer and fails at once.
func (s *editStream) next() *pb.EditEvent {
	s.T().Helper()
	ev := s.Next()
	if e := ev.GetError(); e != nil && e.GetCode() == int32(codes.Unimplemented) {
		s.T().Fatalf("%s: %s", s.user, e.GetMessage())
	}
	return ev
}

// wantAck receives the next event and checks it acknowledges id as
// revision.
func (s *editStream) wantAck(id string, revision int64) {
	s.T().Helper()
	ev := s.next()
	if ack := ev.GetAck(); ack.GetClientOpId() != id || ack.GetRevision() != revision {
		s.T().Fatalf("%s: got %v, want the ack of %s as revision %d", s.user, ev, id, revision)
	}
}

// wantRemote receives the next event and checks it is the remote
// operation op as revision, by author.
func (s *editStream) wantRemote(revision int64, author string, op Op) {
	s.T().Helper()
	ev := s.next()
	r := ev.GetRemote()
	got, err := opFromWire(r.GetOperation())
	if r == nil || err != nil || r.GetRevision() != revision || r.GetAuthor() != author || got != op {
		s.T().Fatalf("%s: got %v, want %s's operation %v as revision %d", s.user, ev, author, op, revision)
	}
}

// wantError receives the next event and checks it is an in-band error
// with code for the operation id.
func (s *editStream) wantError(id string, code codes.Code, what string) *pb.EditError {
	s.T().Helper()
	ev := s.NextFor(fmt.Sprintf("an in-band %v error for %s", code, what))
	e := ev.GetError()
	if e == nil || codes.Code(e.GetCode()) != code || e.GetClientOpId() != id {
		s.T().Fatalf("%s: %s answered with %v, want an in-band %v error for %q", s.user, what, ev, code, id)
	}
	return e
}

func (env *editEnv) wantText(t *testing.T, want string, revision int64) {
	t.Helper()
	text, rev, ok := env.srv.documentState("notes")
	if !ok || text != want || rev != revision {
		t.Fatalf("the server's notes are %q at revision %d, want %q at revision %d", text, rev, want, revision)
	}
}

func TestEditStream(t *testing.T) {
	t.Run("Open_sends_a_snapshot", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		s := env.connect(t, "alice")
		s.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}})
		snap := s.next().GetSnapshot()
		if snap.GetDocumentId() != "notes" || snap.GetContent() != "hello" || snap.GetRevision() != 0 {
			t.Fatalf("open(notes) = %v, want a snapshot of notes with %q at revision 0", snap, "hello")
		}
	})

	t.Run("Unknown_document", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.connect(t, "alice")
		alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "secret-plans"}}})
		alice.wantError("", codes.NotFound, "open(secret-plans)")
		alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}})
		if snap := alice.next().GetSnapshot(); snap.GetContent() != "hello" {
			t.Fatalf("open(notes) after a refused open = %v, want its snapshot", snap)
		}
	})

	t.Run("Invalid_document_id", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.connect(t, "alice")
		alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "../notes"}}})
		alice.wantError("", codes.InvalidArgument, "open(../notes)")
	})

	t.Run("Edit_before_open", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.connect(t, "alice")
		id := alice.submit(0, Insert(0, "x"))
		alice.wantError(id, codes.FailedPrecondition, "submit before open")
		if env.store.saves != 0 {
			t.Fatalf("a submit before open saved %d revisions, want none", env.store.saves)
		}
	})

	t.Run("Second_open", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}})
		alice.wantError("", codes.FailedPrecondition, "a second open")
	})

	t.Run("Rejects_a_missing_token", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.EditorService_EditClient, error) { return env.client.Edit(ctx) })
		katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Edit() without a token")
		env.open(t, "alice") // a valid token gets through to your handler
	})

	t.Run("Editor_that_pipelines_a_burst_and_reads_is_not_evicted", func(t *testing.T) {
		// alice sends 40 requests at once into a queue of 8 while her
		// writer is held: a reader without backpressure answers them all,
		// overflows her own queue and evicts her. Released, the writer
		// drains and every request is answered. The requests are empty, so
		// each answer is a refusal and no commit is needed.
		gate := newSendGate()
		env := startEditor(t, EditorConfig{QueueSize: 8}, "", katatest.WithStreamInterceptor(gate.intercept))
		alice := env.open(t, "alice")
		gate.hold()
		for range 40 {
			alice.Send(&pb.EditRequest{})
		}
		<-time.After(katatest.NeverWindow) // time for a reader without backpressure to overflow
		gate.open()
		for i := range 40 {
			alice.wantError("", codes.InvalidArgument, fmt.Sprintf("empty request %d of 40, pipelined", i+1))
		}
		katatest.WantCode(t, alice.Finish(), codes.OK, "alice's stream after 40 pipelined requests, all answered")
	})

	t.Run("Handler_refuses_a_stream_without_an_identity", func(t *testing.T) {
		store := NewMemoryStore()
		store.Create("notes", "hello")
		srv := NewEditorServer(EditorConfig{}, store)
		server := startWithoutAuth(t, func(g *grpc.Server) { pb.RegisterEditorServiceServer(g, srv) })
		anonymous := katatest.OpenPeer(t, "anonymous", func(ctx context.Context) (pb.EditorService_EditClient, error) {
			return pb.NewEditorServiceClient(server.Conn).Edit(ctx)
		})
		katatest.WantCode(t, anonymous.Status(), codes.Unauthenticated, "Edit() served without AuthInterceptor, so with no identity in its context")
	})

	t.Run("Half_close_delivers_every_queued_event", func(t *testing.T) {
		// As in TestStreamErrors/Half_close_delivers_every_queued_reply:
		// the writer is held in its first Send while 19 more answers
		// (refusals of empty requests) queue up behind it and the reader
		// ends.
		gate := newSendGate()
		env := startEditor(t, EditorConfig{QueueSize: 64}, "", katatest.WithStreamInterceptor(gate.intercept))
		alice := env.open(t, "alice")
		gate.hold()
		for range 20 {
			alice.Send(&pb.EditRequest{})
		}
		alice.CloseSend()
		gate.waitHalfClosed(t)
		gate.open()
		for i := range 20 {
			alice.wantError("", codes.InvalidArgument, fmt.Sprintf("empty request %d of 20, before the half-close", i+1))
		}
		katatest.WantCode(t, alice.Status(), codes.OK, "alice's stream after her half-close, with every answer delivered")
	})

	t.Run("Disconnect_leaves_nothing_behind", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		alice.Cancel()
		katatest.WantCode(t, alice.Status(), codes.Canceled, "alice's stream after cancel")
		katatest.WantCode(t, bob.Finish(), codes.OK, "bob's stream after CloseSend")
		env.WaitIdle(t)
		if streams, docEditors := env.srv.editorCounts(); streams+docEditors != 0 {
			t.Fatalf("after every stream ended the server holds %d streams and %d document editors, want none", streams, docEditors)
		}
	})

	t.Run("The_open_loads_with_the_streams_context", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		katatest.WantCode(t, alice.Finish(), codes.OK, "Edit(alice) after CloseSend")
		env.WaitIdle(t)
		ctxs := env.store.contexts()
		require.Len(t, ctxs, 1, "store calls for an open (Load)")
		assert.Error(t, ctxs[0].Err(), "the context of the open's Load after the stream ended, want the stream's own, ended with it: pass stream.Context() to s.open")
	})

	t.Run("The_servers_pace_charges_each_operation_the_documents_length", testPaceChargesTheDocumentsLength)

	t.Run("Shutdown_ends_live_streams_with_Unavailable", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		env.srv.Shutdown()
		katatest.WantCode(t, alice.Status(), codes.Unavailable, "a live Edit stream after Shutdown")
	})

	t.Run("Empty_request_is_refused_in_band", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		alice.Send(&pb.EditRequest{})
		alice.wantError("", codes.InvalidArgument, "an empty request")
		alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: "notes"}}})
		alice.wantError("", codes.FailedPrecondition, "a second open, after the refused empty request: the stream goes on")
		katatest.WantCode(t, alice.Finish(), codes.OK, "alice's stream after a refused empty request")
	})

}

func TestEditCommit(t *testing.T) {
	t.Run("The_store_is_called_with_the_streams_context", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		alice.wantAck(alice.submit(0, Insert(5, "!")), 1)
		alice.CloseSend()
		katatest.WantCode(t, alice.Status(), codes.OK, "Edit(alice) after CloseSend")
		env.WaitIdle(t)
		ctxs := env.store.contexts()
		require.Len(t, ctxs, 2, "store calls for an open and a commit (Load, then Save)")
		for i, ctx := range ctxs {
			assert.Error(t, ctx.Err(), "the context of store call %d after the stream ended, want the stream's own, ended with it (a store call must not outlive its caller)", i+1)
		}
	})

	t.Run("Ack_to_the_author_and_the_operation_to_the_others", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		first := alice.submit(0, Insert(5, " world"))
		alice.wantAck(first, 1)
		bob.wantRemote(1, "alice", Insert(5, " world"))
		// Alice's next event is the ack of her next operation: she never
		// gets her own operation back.
		second := alice.submit(1, Delete(0, 1))
		alice.wantAck(second, 2)
		bob.wantRemote(2, "alice", Delete(0, 1))
		env.wantText(t, "ello world", 2)
		assert.Equal(t, []int64{1, 2}, env.store.savedRevisions(), "the revisions saved, want each commit's new revision (the document's revision + 1)")
	})

	t.Run("Concurrent_inserts_at_one_position", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		a := alice.submit(0, Insert(0, "A"))
		alice.wantAck(a, 1)
		// Bob has not seen alice's insert: his is based on revision 0 too.
		b := bob.submit(0, Insert(0, "B"))
		bob.wantRemote(1, "alice", Insert(0, "A"))
		bob.wantAck(b, 2)
		// Committed first, alice's text goes first, on the server and in
		// what alice is told to apply.
		alice.wantRemote(2, "bob", Insert(1, "B"))
		env.wantText(t, "ABhello", 2)
	})

	t.Run("Insert_inside_a_deleted_range", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "abcdef")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		a := alice.submit(0, Delete(1, 4))
		alice.wantAck(a, 1)
		b := bob.submit(0, Insert(3, "X"))
		bob.wantRemote(1, "alice", Delete(1, 4))
		bob.wantAck(b, 2)
		alice.wantRemote(2, "bob", Op{})
		env.wantText(t, "af", 2)
	})

	t.Run("Overlapping_deletes", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "abcdef")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		a := alice.submit(0, Delete(1, 3))
		alice.wantAck(a, 1)
		b := bob.submit(0, Delete(2, 3))
		bob.wantRemote(1, "alice", Delete(1, 3))
		bob.wantAck(b, 2)
		alice.wantRemote(2, "bob", Delete(1, 1))
		env.wantText(t, "af", 2)
	})

	t.Run("Stale_revision_ends_the_stream", func(t *testing.T) {
		env := startEditor(t, EditorConfig{MaxHistory: 2}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		for rev := range int64(3) {
			alice.wantAck(alice.submit(rev, Insert(0, "x")), rev+1)
		}
		// Revision 1 is still transformable against the two kept
		// operations; revision 0 is not.
		bob.submit(0, Insert(0, "B"))
		bob.CloseSend() // accepted, the stream would end with OK
		err := bob.Status()
		katatest.WantCode(t, err, codes.FailedPrecondition, "submit(base 0) with revisions 1 to 3 kept")
		katatest.WantMessage(t, err, "submit(base 0)")("0", "1 to 3")
		env.wantText(t, "xxxhello", 3)
	})

	t.Run("Future_revision_ends_the_stream", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice := env.open(t, "alice")
		alice.submit(7, Insert(0, "x"))
		alice.CloseSend()
		katatest.WantCode(t, alice.Status(), codes.FailedPrecondition, "submit(base 7) at revision 0")
		env.wantText(t, "hello", 0)
	})

	badOps := []struct {
		name string
		cfg  EditorConfig
		op   *pb.Operation
		code codes.Code
		msg  []string
	}{
		{"Position_out_of_range", EditorConfig{}, Insert(6, "x").toProto(), codes.InvalidArgument, []string{"6", "5"}},
		{"Delete_past_the_end", EditorConfig{}, Delete(3, 5).toProto(), codes.InvalidArgument, []string{"5", "3"}},
		{"Negative_position", EditorConfig{}, Insert(-1, "x").toProto(), codes.InvalidArgument, []string{"-1"}},
		{"Empty_insert", EditorConfig{}, &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: 1}}}, codes.InvalidArgument, []string{"empty"}},
		{"Empty_delete", EditorConfig{}, &pb.Operation{Kind: &pb.Operation_Delete{Delete: &pb.Delete{Position: 1}}}, codes.InvalidArgument, []string{"length"}},
		{"Empty_operation", EditorConfig{}, &pb.Operation{}, codes.InvalidArgument, []string{"empty"}},
		{"Oversized_insert", EditorConfig{MaxInsertRunes: 4}, Insert(0, "12345").toProto(), codes.InvalidArgument, []string{"5", "4"}},
		{"Document_too_long", EditorConfig{MaxDocumentBytes: 8}, Insert(0, "1234").toProto(), codes.ResourceExhausted, []string{"9", "8"}},
	}
	for _, tc := range badOps {
		t.Run(tc.name, func(t *testing.T) {
			env := startEditor(t, tc.cfg, "hello")
			alice, bob := env.open(t, "alice"), env.open(t, "bob")
			alice.Send(&pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{ClientOpId: "bad", Operation: tc.op}}})
			e := alice.wantError("bad", tc.code, tc.name)
			katatest.WantMessage(t, errors.New(e.GetMessage()), "%s", tc.name)(tc.msg...)
			// The stream goes on, nothing changed, and bob's first event is
			// the next good operation.
			good := alice.submit(0, Insert(0, "ok"))
			alice.wantAck(good, 1)
			bob.wantRemote(1, "alice", Insert(0, "ok"))
			env.wantText(t, "okhello", 1)
		})
	}

	t.Run("Limits_the_document_in_encoded_bytes", func(t *testing.T) {
		env := startEditor(t, EditorConfig{MaxDocumentBytes: 9}, "hello")
		alice := env.open(t, "alice")
		full := alice.submit(0, Insert(5, "wör")) // 8 characters, 9 bytes: exactly the limit
		alice.wantAck(full, 1)
		over := alice.submit(1, Insert(0, "!"))
		alice.wantError(over, codes.ResourceExhausted, "a tenth byte with MaxDocumentBytes=9")
		env.wantText(t, "hellowör", 1)

		runes := startEditor(t, EditorConfig{MaxDocumentBytes: 8}, "hello")
		bob := runes.open(t, "bob")
		wide := bob.submit(0, Insert(5, "wör")) // 8 characters, but 9 bytes
		bob.wantError(wide, codes.ResourceExhausted, "8 characters in 9 bytes with MaxDocumentBytes=8: the limit is in bytes, not characters")
	})

	t.Run("Failed_save_changes_nothing_and_notifies_nobody", func(t *testing.T) {
		env := startEditor(t, EditorConfig{}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		env.store.setFailing(true)
		lost := alice.submit(0, Insert(0, "lost "))
		e := alice.wantError(lost, codes.Unavailable, "submit while the store fails")
		katatest.WantMessage(t, errors.New(e.GetMessage()), "the refusal")("disk full")
		env.wantText(t, "hello", 0)
		env.store.setFailing(false)
		kept := alice.submit(0, Insert(5, "!"))
		alice.wantAck(kept, 1)
		// Bob's first event is the operation that was saved.
		bob.wantRemote(1, "alice", Insert(5, "!"))
		env.wantText(t, "hello!", 1)
	})

	t.Run("Editor_that_never_reads_is_evicted", func(t *testing.T) {
		env := startEditor(t, EditorConfig{QueueSize: 4}, "")
		alice := env.open(t, "alice")
		silent := env.open(t, "silent")
		// Each operation is large, so silent's transport window fills
		// after a few and its queue soon after.
		chunk := strings.Repeat("x", 8000)
		for rev := int64(0); ; rev++ {
			if streams, _ := env.srv.editorCounts(); streams == 1 {
				break // silent is gone
			}
			if rev == 200 {
				t.Fatal("after 200 large operations the editor that never reads is still connected, want it evicted")
			}
			alice.wantAck(alice.submit(rev, Insert(0, chunk)), rev+1)
		}
		katatest.WantCode(t, silent.Status(), codes.ResourceExhausted, "the stream of an editor that never reads")
	})

	t.Run("Failed_save_leaves_the_history_as_it_was", func(t *testing.T) {
		// A later operation based on an old revision is transformed
		// against the history: an operation whose save failed must not be
		// in it.
		env := startEditor(t, EditorConfig{MaxHistory: 2}, "hello")
		alice, bob := env.open(t, "alice"), env.open(t, "bob")
		for rev := range int64(2) {
			alice.wantAck(alice.submit(rev, Insert(0, "x")), rev+1)
			bob.wantRemote(rev+1, "alice", Insert(0, "x"))
		}
		env.store.setFailing(true)
		lost := alice.submit(2, Insert(0, "lost "))
		alice.wantError(lost, codes.Unavailable, "submit while the store fails")
		env.store.setFailing(false)
		late := bob.submit(0, Insert(0, "B"))
		bob.wantAck(late, 3)
		env.wantText(t, "xxBhello", 3)
	})
}

func TestEditConverges(t *testing.T) {
	const editors, editsEach = 4, 60
	env := startEditor(t, EditorConfig{}, "the quick brown fox")
	ctx := katatest.Context(t)
	sessions := make([]*EditSession, editors)
	for i, user := range []string{"alice", "bob", "carol", "dave"} {
		client, err := NewEditorClient(katatest.Target, user+"-token", env.DialOptions()...)
		require.NoError(t, err)
		t.Cleanup(func() { client.Close() })
		s, err := client.Open(ctx, "notes", nil)
		katatest.WantCode(t, err, codes.OK, "Open(notes) for %s", user)
		t.Cleanup(s.Cancel)
		sessions[i] = s
	}
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for range editsEach {
				// Ops that do not fit any more (a remote edit shortened the
				// text in between) are simply tried again.
				for {
					if err := s.Edit(randomOp(rng, s.Text())); err == nil || !errors.Is(err, errOutOfRange) {
						if err != nil {
							t.Errorf("Edit() = %v", err)
							return
						}
						break
					}
				}
			}
		})
	}
	wg.Wait()
	for i, s := range sessions {
		if err := s.WaitSynced(ctx, 0); err != nil {
			t.Fatalf("editor %d: waiting for the server to acknowledge every edit: %v", i, err)
		}
	}
	text, revision, _ := env.srv.documentState("notes")
	// Edits that a concurrent delete swallowed before they were sent are
	// never sent, so the revision can be lower than the number of edits.
	if most := int64(editors * editsEach); revision < most/2 || revision > most {
		t.Fatalf("after %d edits the server is at revision %d, want between %d and %d", most, revision, most/2, most)
	}
	for i, s := range sessions {
		if err := s.WaitSynced(ctx, revision); err != nil {
			t.Fatalf("editor %d: waiting for revision %d: %v", i, revision, err)
		}
		if got := s.Text(); got != text {
			t.Fatalf("editor %d ended with %q, the server with %q: the replicas did not converge", i, got, text)
		}
	}
	for _, s := range sessions {
		katatest.WantCode(t, s.Close(), codes.OK, "EditSession.Close()")
	}
}
