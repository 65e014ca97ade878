package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/quota"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// EditorConfig holds the editor server's limits. The zero value of a
// field means its default.
type EditorConfig struct {
	// MaxHistory is how many committed operations each document keeps for
	// transforming late operations. An operation based on an older
	// revision is refused with FailedPrecondition. Default 1000.
	MaxHistory int
	// MaxDocumentBytes bounds a document's size, UTF-8 encoded: what a
	// snapshot carries, so that every snapshot fits in one message
	// whatever characters the document holds. Default 1 MiB.
	MaxDocumentBytes int
	// MaxInsertRunes bounds the text of one insert. Default 10000.
	MaxInsertRunes int
	// QueueSize bounds each editor's outbound queue; an editor whose queue
	// is full is evicted, as a slow chat member is. Default 256.
	QueueSize int
	// OpsPerSecond and OpsBurst pace each user's edit requests over all
	// of the user's streams, where the server installs PaceInterceptor.
	// Defaults 200 and 200.
	OpsPerSecond float64
	OpsBurst     int
	// CharsPerSecond and CharsBurst pace each user's work by its cost,
	// where the server installs PaceInterceptor: an open and each
	// operation cost the length, in characters, of the document, since
	// the snapshot and the new text each copy it. So one user's operations on a large
	// document cannot take a core from everybody else, while operations on
	// small ones are held back only by OpsPerSecond. Defaults 16Mi a
	// second (16 operations a second on a document of a million
	// characters) and 2Mi, which holds an operation on the largest
	// document there can be.
	CharsPerSecond float64
	CharsBurst     int
}

func (c EditorConfig) withDefaults() EditorConfig {
	if c.MaxHistory == 0 {
		c.MaxHistory = 1000
	}
	if c.MaxDocumentBytes == 0 {
		c.MaxDocumentBytes = 1 << 20
	}
	if c.MaxInsertRunes == 0 {
		c.MaxInsertRunes = 10000
	}
	if c.QueueSize == 0 {
		c.QueueSize = 256
	}
	if c.OpsPerSecond == 0 {
		c.OpsPerSecond = 200
	}
	if c.OpsBurst == 0 {
		c.OpsBurst = 200
	}
	if c.CharsPerSecond == 0 {
		c.CharsPerSecond = 16 << 20
	}
	if c.CharsBurst == 0 {
		c.CharsBurst = max(2<<20, c.MaxDocumentBytes)
	}
	return c
}

// Op is one operation on a text: an insert of Text at Pos when Text is
// not empty, a delete of Len code points from Pos when Len is positive,
// and otherwise nothing at all. Positions count code points.
type Op struct {
	Pos  int
	Text string
	Len  int
}

// Insert returns the operation that inserts text at pos.
func Insert(pos int, text string) Op { return Op{Pos: pos, Text: text} }

// Delete returns the operation that deletes n code points from pos.
func Delete(pos, n int) Op { return Op{Pos: pos, Len: n} }

func (o Op) isInsert() bool { return o.Text != "" }
func (o Op) isDelete() bool { return o.Text == "" && o.Len > 0 }

// isNoop reports whether o changes nothing.
func (o Op) isNoop() bool { return !o.isInsert() && !o.isDelete() }

// runes is how many code points an insert adds.
func (o Op) runes() int { return utf8.RuneCountInString(o.Text) }

// String renders o for test failures and the demo.
func (o Op) String() string {
	switch {
	case o.isInsert():
		return fmt.Sprintf("insert(%d, %q)", o.Pos, o.Text)
	case o.isDelete():
		return fmt.Sprintf("delete(%d, %d)", o.Pos, o.Len)
	}
	return "noop"
}

// errOutOfRange is what apply returns for an operation that does not fit
// the text.
var errOutOfRange = errors.New("out of range")

// apply returns text with o applied, or an error wrapping errOutOfRange
// when o does not fit. It never changes text.
func (o Op) apply(text []rune) ([]rune, error) {
	switch {
	case o.isInsert():
		if o.Pos < 0 || o.Pos > len(text) {
			return nil, fmt.Errorf("insert at %d: %w of a %d-character text", o.Pos, errOutOfRange, len(text))
		}
		out := make([]rune, 0, len(text)+o.runes())
		out = append(out, text[:o.Pos]...)
		for _, r := range o.Text {
			out = append(out, r)
		}
		return append(out, text[o.Pos:]...), nil
	case o.isDelete():
		if o.Pos < 0 || o.Pos+o.Len > len(text) {
			return nil, fmt.Errorf("delete of %d from %d: %w of a %d-character text", o.Len, o.Pos, errOutOfRange, len(text))
		}
		out := make([]rune, 0, len(text)-o.Len)
		out = append(out, text[:o.Pos]...)
		return append(out, text[o.Pos+o.Len:]...), nil
	}
	return text, nil
}

// encodedSize is the size of text in UTF-8, the encoding of a snapshot's
// content on the wire.
func encodedSize(text []rune) int {
	n := 0
	for _, r := range text {
		n += utf8.RuneLen(r)
	}
	return n
}

// applyString is apply for strings, for tests and clients.
func (o Op) applyString(text string) (string, error) {
	r, err := o.apply([]rune(text))
	return string(r), err
}

// opFromProto checks an operation an editor sent and converts it.
func opFromProto(p *pb.Operation, maxInsertRunes int) (Op, error) {
	switch k := p.GetKind().(type) {
	case *pb.Operation_Insert:
		pos, text := k.Insert.GetPosition(), k.Insert.GetText()
		switch n := utf8.RuneCountInString(text); {
		case pos < 0:
			return Op{}, status.Errorf(codes.InvalidArgument, "insert position %d is negative", pos)
		case n == 0:
			return Op{}, status.Error(codes.InvalidArgument, "insert text is empty")
		case n > maxInsertRunes:
			return Op{}, status.Errorf(codes.InvalidArgument, "insert text is %d characters, limit %d", n, maxInsertRunes)
		}
		return Insert(int(pos), text), nil
	case *pb.Operation_Delete:
		pos, n := k.Delete.GetPosition(), k.Delete.GetLength()
		if pos < 0 || n <= 0 {
			return Op{}, status.Errorf(codes.InvalidArgument, "delete of %d from %d: want a position of at least 0 and a length of at least 1", n, pos)
		}
		return Delete(int(pos), int(n)), nil
	}
	return Op{}, status.Error(codes.InvalidArgument, "operation is empty: want an insert or a delete")
}

// toProto converts o for the wire.
func (o Op) toProto() *pb.Operation {
	switch {
	case o.isInsert():
		return &pb.Operation{Kind: &pb.Operation_Insert{Insert: &pb.Insert{Position: int64(o.Pos), Text: o.Text}}}
	case o.isDelete():
		return &pb.Operation{Kind: &pb.Operation_Delete{Delete: &pb.Delete{Position: int64(o.Pos), Length: int64(o.Len)}}}
	}
	return &pb.Operation{}
}

// ErrDocumentNotFound is what a DocumentStore returns for an unknown
// document.
var ErrDocumentNotFound = errors.New("document not found")

// DocumentStore persists documents. Save is called once per committed
// operation, with the new revision, before anybody hears of it.
type DocumentStore interface {
	Load(ctx context.Context, id string) (content string, revision int64, err error)
	Save(ctx context.Context, id string, revision int64, content string) error
}

// MemoryStore is the embedded default DocumentStore.
type MemoryStore struct {
	mu   sync.Mutex
	docs map[string]storedDocument
}

type storedDocument struct {
	content  string
	revision int64
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{docs: make(map[string]storedDocument)}
}

// Create adds a document at revision 0, replacing any with that id.
func (m *MemoryStore) Create(id, content string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs[id] = storedDocument{content: content}
}

// Load returns a document's content and revision.
func (m *MemoryStore) Load(_ context.Context, id string) (string, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[id]
	if !ok {
		return "", 0, fmt.Errorf("load %q: %w", id, ErrDocumentNotFound)
	}
	return d.content, d.revision, nil
}

// Save stores a document's content as revision.
func (m *MemoryStore) Save(_ context.Context, id string, revision int64, content string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs[id] = storedDocument{content: content, revision: revision}
	return nil
}

// EditorServer implements pb.EditorServiceServer. Edit and commit are in
// main.go; this file holds the state they share.
type EditorServer struct {
	pb.UnimplementedEditorServiceServer

	cfg   EditorConfig
	store DocumentStore

	mu      sync.Mutex
	docs    map[string]*document // loaded documents; they stay loaded
	editors map[*editor]bool     // every open stream, for Shutdown
}

// NewEditorServer returns a server that keeps its documents in store.
func NewEditorServer(cfg EditorConfig, store DocumentStore) *EditorServer {
	return &EditorServer{
		cfg:     cfg.withDefaults(),
		store:   store,
		docs:    make(map[string]*document),
		editors: make(map[*editor]bool),
	}
}

// PaceInterceptor paces the Edit streams of each user with
// cfg.OpsPerSecond and cfg.OpsBurst: each stream waits for the user's pace
// before it receives a request, so a flood waits in its client and in the
// transport's flow control, not in this process, and the pace, which
// outlives the user's streams, cannot be reset by reconnecting. An open
// that succeeds, and every submit after it, also waits for the user's
// cfg.CharsPerSecond: each costs the length of the document the stream
// has open (open copies it into a snapshot, a commit into a new text), so
// the work one user makes the server do is bounded whatever the
// document's size. open learns the stream's pace from the context Edit
// passes it, the stream's own. It needs
// the caller's identity: chain it after AuthInterceptor. The lesson's
// tests run Edit without it; the server and the abuse suite use it.
func (s *EditorServer) PaceInterceptor() grpc.StreamServerInterceptor {
	ops := quota.New(s.cfg.OpsPerSecond, s.cfg.OpsBurst, nil)
	chars := quota.New(s.cfg.CharsPerSecond, s.cfg.CharsBurst, nil)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		caller, ok := identityFrom(ss.Context())
		if info.FullMethod != pb.EditorService_Edit_FullMethodName || !ok {
			return handler(srv, ss)
		}
		p := &pacedStream{ServerStream: ss, server: s, ops: ops, user: caller.User}
		p.pace = &streamPace{charge: func(ctx context.Context, n int) error {
			if err := chars.WaitN(ctx, caller.User, min(n, s.cfg.CharsBurst)); err != nil {
				return p.paceFailed(ctx, err)
			}
			return nil
		}}
		p.ctx = context.WithValue(ss.Context(), streamPaceKey{}, p.pace)
		return handler(srv, p)
	}
}

// streamPace is one paced stream's share of the work pace: the document
// it has open, recorded by open when it succeeds, and the charge for work
// on it.
type streamPace struct {
	doc    atomic.Pointer[document]
	charge func(ctx context.Context, chars int) error
}

type streamPaceKey struct{}

// paceOf returns the pace PaceInterceptor put in a stream's context, or
// nil for a stream it did not wrap.
func paceOf(ctx context.Context) *streamPace {
	p, _ := ctx.Value(streamPaceKey{}).(*streamPace)
	return p
}

// pacedStream waits for its user's pace before each receive, and for the
// cost of each submit after it.
type pacedStream struct {
	grpc.ServerStream
	ctx    context.Context // the stream's, carrying pace
	server *EditorServer
	ops    *quota.Limiters
	user   string
	pace   *streamPace
}

func (p *pacedStream) Context() context.Context { return p.ctx }

func (p *pacedStream) RecvMsg(m any) error {
	if err := p.ops.Wait(p.ctx, p.user); err != nil {
		return p.paceFailed(p.ctx, err)
	}
	if err := p.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if req, _ := m.(*pb.EditRequest); req.GetSubmit() != nil {
		if d := p.pace.doc.Load(); d != nil {
			return p.pace.charge(p.ctx, d.length())
		}
	}
	return nil
}

// paceFailed is the stream's status when a wait for the pace failed: the
// context's own, or DeadlineExceeded when the pace cannot be kept before
// the stream's deadline.
func (p *pacedStream) paceFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.DeadlineExceeded, "the next edit cannot be handled before the stream's deadline at %v edits and %v characters of document a second: %v",
		p.server.cfg.OpsPerSecond, p.server.cfg.CharsPerSecond, err)
}

// document is a loaded document: its text, its revision and the
// operations committed most recently, in revision order.
type document struct {
	id string

	mu       sync.Mutex
	text     []rune
	revision int64
	// history holds the last committed operations, transformed as they
	// were applied: history[i] made revision-len(history)+1+i.
	history []committedOp
	editors map[*editor]bool // the editors that have it open
}

type committedOp struct {
	op     Op
	author string
}

// since returns the operations committed after revision base, or false
// when base is outside the kept history. d.mu must be held.
func (d *document) since(base int64) ([]committedOp, bool) {
	oldest := d.oldestBase()
	if base < oldest || base > d.revision {
		return nil, false
	}
	return d.history[base-oldest:], true
}

// keptRevisions describes which bases d accepts, for error messages.
// d.mu must be held.
func (d *document) keptRevisions() string {
	return fmt.Sprintf("revisions %d to %d", d.oldestBase(), d.revision)
}

// oldestBase is the oldest revision an operation may be based on: the
// one just before the kept history. d.mu must be held.
func (d *document) oldestBase() int64 { return d.revision - int64(len(d.history)) }

// editor is one Edit stream as the server sees it.
type editor struct {
	user string
	out  chan *pb.EditEvent // bounded; only the stream's writer receives
	sent chan struct{}      // signalled by the writer after each Send

	eviction

	doc *document // the open document; only the stream's reader sets it
}

func newEditor(user string, queueSize int) *editor {
	return &editor{user: user, out: make(chan *pb.EditEvent, queueSize), sent: make(chan struct{}, 1), eviction: newEviction()}
}

// markSent tells a reader waiting in awaitRoom that the writer has sent
// an event. It never blocks.
func (e *editor) markSent() {
	select {
	case e.sent <- struct{}{}:
	default: // a signal is already waiting
	}
}

// awaitRoom waits until e's queue is at most half full, so that the next
// request's answer, and the operations of others, fit. It is the reader's
// backpressure: an editor that pipelines a burst of operations and reads
// its acks is slowed down, through flow control, to the pace its writer
// sends at, instead of overflowing its own queue and being evicted. An
// editor that does not read stays full, and the others' operations evict
// it. It returns ctx's status when ctx ends first, and nil once e is
// evicted.
func (e *editor) awaitRoom(ctx context.Context) error {
	for len(e.out) > cap(e.out)/2 {
		select {
		case <-e.sent:
		case <-e.gone:
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}

// deliver queues ev for the editor without ever blocking; an editor whose
// queue is full is evicted, because the operations it misses cannot be
// dropped.
func (e *editor) deliver(ev *pb.EditEvent) {
	if e.evicted() {
		return
	}
	select {
	case e.out <- ev:
	default:
		e.evict(status.Errorf(codes.ResourceExhausted, "slow consumer: the outbound queue of %d events is full; disconnected", cap(e.out)))
	}
}

// refuse answers a request in-band.
func (e *editor) refuse(clientOpID string, err error) {
	st := status.Convert(err)
	e.deliver(&pb.EditEvent{Event: &pb.EditEvent_Error{Error: &pb.EditError{
		Code: int32(st.Code()), Message: st.Message(), ClientOpId: clientOpID,
	}}})
}

// register tracks an open stream for Shutdown.
func (s *EditorServer) register(e *editor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.editors[e] = true
}

// unregister forgets e everywhere. It is called once when e's stream
// ends, however it ends, possibly while e's reader is still in open: e is
// evicted first, and open checks that under the document's lock, so e
// cannot be added to a document after it was removed.
func (s *EditorServer) unregister(e *editor) {
	e.evict(status.Error(codes.Canceled, "disconnected"))
	s.mu.Lock()
	delete(s.editors, e)
	d := e.doc
	s.mu.Unlock()
	if d != nil {
		d.mu.Lock()
		delete(d.editors, e)
		d.mu.Unlock()
	}
}

// Shutdown ends every Edit stream with Unavailable.
func (s *EditorServer) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := range s.editors {
		e.evict(status.Error(codes.Unavailable, "the server is shutting down"))
	}
}

// documentIDPattern is what a document id may look like.
var documentIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// open loads document id for e and sends e its snapshot. Errors are
// in-band: NotFound for an unknown document, FailedPrecondition for a
// second open on one stream.
func (s *EditorServer) open(ctx context.Context, e *editor, id string) error {
	if !documentIDPattern.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "document id %q is invalid: want %s", id, documentIDPattern)
	}
	s.mu.Lock()
	if e.doc != nil {
		s.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "this stream already edits %q: open one document per stream", e.doc.id)
	}
	d, err := s.loadLocked(ctx, id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	e.doc = d
	s.mu.Unlock()

	if pace := paceOf(ctx); pace != nil {
		// The snapshot below copies the document: charge it, outside
		// every lock, and charge each later submit by the same document.
		pace.doc.Store(d)
		if err := pace.charge(ctx, d.length()); err != nil {
			return err
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if e.evicted() {
		return nil // the stream is over; unregister may already have run
	}
	d.editors[e] = true
	e.deliver(&pb.EditEvent{Event: &pb.EditEvent_Snapshot{Snapshot: &pb.DocumentSnapshot{
		DocumentId: id, Content: string(d.text), Revision: d.revision,
	}}})
	return nil
}

// loadLocked returns the loaded document id, loading it from the store
// the first time. s.mu must be held; the store is expected to answer
// quickly.
func (s *EditorServer) loadLocked(ctx context.Context, id string) (*document, error) {
	if d, ok := s.docs[id]; ok {
		return d, nil
	}
	content, revision, err := s.store.Load(ctx, id)
	if errors.Is(err, ErrDocumentNotFound) {
		return nil, status.Errorf(codes.NotFound, "document %q does not exist", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "loading document %q failed: %v", id, err)
	}
	d := &document{id: id, text: []rune(content), revision: revision, editors: make(map[*editor]bool)}
	s.docs[id] = d
	return d, nil
}

// documentState returns a loaded document's text and revision; tests and
// the demo compare replicas with it.
func (s *EditorServer) documentState(id string) (text string, revision int64, ok bool) {
	s.mu.Lock()
	d, ok := s.docs[id]
	s.mu.Unlock()
	if !ok {
		return "", 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return string(d.text), d.revision, true
}

// length returns how many characters d holds.
func (d *document) length() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.text)
}

// editorCounts returns how many streams are open and how many editors the
// documents hold; tests use them to prove cleanup.
func (s *EditorServer) editorCounts() (streams, docEditors int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.docs {
		d.mu.Lock()
		docEditors += len(d.editors)
		d.mu.Unlock()
	}
	return len(s.editors), docEditors
}
