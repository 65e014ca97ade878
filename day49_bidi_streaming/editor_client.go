package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// EditorClient is one user's connection to an editor server.
type EditorClient struct {
	conn   *grpc.ClientConn
	editor pb.EditorServiceClient
	token  string
}

// NewEditorClient creates a client for target that authenticates with
// token; like NewChatClient it defaults to plaintext, for loopback only.
func NewEditorClient(target, token string, opts ...grpc.DialOption) (*EditorClient, error) {
	conn, err := serving.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("new editor client for %q: %w", target, err)
	}
	return &EditorClient{conn: conn, editor: pb.NewEditorServiceClient(conn), token: token}, nil
}

// Close closes the connection.
func (c *EditorClient) Close() error { return c.conn.Close() }

// maxUnacked bounds the local operations a session holds before the
// server has acknowledged them.
const maxUnacked = 1000

// EditSession is a local replica of one document, kept in sync with the
// server. Local edits apply at once and go to the server one at a time:
// the oldest unacknowledged operation is in flight, the rest wait (the
// pending and buffer states of the usual three-state client; with none,
// the replica is in sync). A remote operation is transformed against
// every waiting local one, and they against it, the same way the server
// transforms: the operation committed first wins an insert tie.
type EditSession struct {
	cancel  context.CancelFunc
	toSend  chan *pb.EditRequest // read by the one sending goroutine
	closing bool                 // toSend is closed; guarded by mu
	done    chan struct{}        // closed when both goroutines ended

	mu       sync.Mutex
	text     []rune
	revision int64
	unacked  []localOp // unacked[0] is in flight
	nextID   int
	err      error         // why the session ended, once it has
	changed  chan struct{} // closed and replaced on every change
	onRemote func(author string, op Op)
}

type localOp struct {
	id string
	op Op
}

// Open opens document id. onRemote, when not nil, is called for every
// remote operation as it is applied; it runs with the session locked, so
// it must not call the session's methods.
func (c *EditorClient) Open(ctx context.Context, id string, onRemote func(author string, op Op)) (*EditSession, error) {
	ctx, cancel := context.WithCancel(WithToken(ctx, c.token))
	stream, err := c.editor.Edit(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&pb.EditRequest{Request: &pb.EditRequest_Open{Open: &pb.OpenDocument{DocumentId: id}}}); err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, err
	}
	ev, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	snap := ev.GetSnapshot()
	if snap == nil {
		cancel()
		if e := ev.GetError(); e != nil {
			return nil, status.Error(codes.Code(e.GetCode()), e.GetMessage())
		}
		return nil, fmt.Errorf("open %q: want a snapshot first, got %v", id, ev)
	}
	s := &EditSession{
		cancel:   cancel,
		toSend:   make(chan *pb.EditRequest, 1), // one operation in flight
		done:     make(chan struct{}),
		text:     []rune(snap.GetContent()),
		revision: snap.GetRevision(),
		changed:  make(chan struct{}),
		onRemote: onRemote,
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendLoop(ctx, stream, s.toSend)
	}()
	go func() {
		defer close(s.done)
		err := s.receiveLoop(stream)
		cancel() // stops the sender if it is still waiting
		<-sent
		s.finish(err)
	}()
	return s, nil
}

// sendLoop is the only goroutine that sends; it half-closes the stream
// when toSend is closed.
func sendLoop(ctx context.Context, stream pb.EditorService_EditClient, toSend <-chan *pb.EditRequest) {
	for {
		select {
		case req, ok := <-toSend:
			if !ok {
				_ = stream.CloseSend()
				return
			}
			if err := stream.Send(req); err != nil {
				return // the receiver sees why
			}
		case <-ctx.Done():
			return
		}
	}
}

// receiveLoop applies what the server sends until the stream ends, and
// returns the server's status (nil when it ended with OK).
func (s *EditSession) receiveLoop(stream pb.EditorService_EditClient) error {
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.apply(ev); err != nil {
			return err
		}
	}
}

// apply handles one event from the server.
func (s *EditSession) apply(ev *pb.EditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notifyLocked()
	switch e := ev.GetEvent().(type) {
	case *pb.EditEvent_Ack:
		if len(s.unacked) == 0 || e.Ack.GetClientOpId() != s.unacked[0].id {
			return fmt.Errorf("ack for %q, but the operation in flight is %v", e.Ack.GetClientOpId(), s.unacked)
		}
		if err := s.advanceLocked(e.Ack.GetRevision()); err != nil {
			return err
		}
		s.unacked = s.unacked[1:]
		s.sendNextLocked()
		return nil
	case *pb.EditEvent_Remote:
		r := e.Remote
		op, err := opFromWire(r.GetOperation())
		if err != nil {
			return err
		}
		if err := s.advanceLocked(r.GetRevision()); err != nil {
			return err
		}
		// Committed first, the remote operation wins ties against every
		// local one, exactly as on the server.
		for i := range s.unacked {
			op, s.unacked[i].op = transform(op, s.unacked[i].op)
		}
		text, err := op.apply(s.text)
		if err != nil {
			return fmt.Errorf("remote operation %v at revision %d: %w", op, r.GetRevision(), err)
		}
		s.text = text
		if s.onRemote != nil {
			s.onRemote(r.GetAuthor(), op)
		}
		return nil
	case *pb.EditEvent_Error:
		// The replica already shows a refused operation: it cannot go on.
		return status.Errorf(codes.Code(e.Error.GetCode()), "operation %q refused: %s", e.Error.GetClientOpId(), e.Error.GetMessage())
	}
	return fmt.Errorf("unexpected event %v", ev)
}

// advanceLocked moves the replica to revision, which must be the next.
func (s *EditSession) advanceLocked(revision int64) error {
	if revision != s.revision+1 {
		return fmt.Errorf("revision %d arrived after revision %d: events out of order", revision, s.revision)
	}
	s.revision = revision
	return nil
}

// sendNextLocked puts the oldest unacknowledged operation in flight.
// toSend has room: only one operation is in flight at a time.
func (s *EditSession) sendNextLocked() {
	// A waiting operation that a remote one made a no-op has nothing left
	// to say; the server would refuse it as empty.
	for len(s.unacked) > 0 && s.unacked[0].op.isNoop() {
		s.unacked = s.unacked[1:]
	}
	if len(s.unacked) == 0 || s.closing {
		return
	}
	next := s.unacked[0]
	s.toSend <- &pb.EditRequest{Request: &pb.EditRequest_Submit{Submit: &pb.SubmitOperation{
		BaseRevision: s.revision, ClientOpId: next.id, Operation: next.op.toProto(),
	}}}
}

// Edit applies op to the replica at once and sends it to the server. A
// no-op changes nothing and is not sent.
func (s *EditSession) Edit(op Op) error {
	if op.isNoop() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.closing {
		return fmt.Errorf("edit %v: the session has ended: %w", op, s.endedErrLocked())
	}
	if len(s.unacked) >= maxUnacked {
		return fmt.Errorf("edit %v: %d operations are waiting for the server, limit %d", op, len(s.unacked), maxUnacked)
	}
	text, err := op.apply(s.text)
	if err != nil {
		return fmt.Errorf("edit %v: %w", op, err)
	}
	s.text = text
	s.nextID++
	s.unacked = append(s.unacked, localOp{id: strconv.Itoa(s.nextID), op: op})
	if len(s.unacked) == 1 {
		s.sendNextLocked()
	}
	s.notifyLocked()
	return nil
}

// Text returns the replica's text.
func (s *EditSession) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.text)
}

// Revision returns the last server revision the replica has applied.
func (s *EditSession) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision
}

// WaitSynced waits until every local operation is acknowledged and the
// replica has applied revision at least, the session ends, or ctx ends.
func (s *EditSession) WaitSynced(ctx context.Context, revision int64) error {
	for {
		s.mu.Lock()
		synced, err, changed := len(s.unacked) == 0 && s.revision >= revision, s.err, s.changed
		s.mu.Unlock()
		switch {
		case err != nil:
			return err
		case synced:
			return nil
		}
		select {
		case <-changed:
		case <-s.done:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// Close half-closes the stream, waits for the server to end it and
// returns the server's status (nil for OK).
func (s *EditSession) Close() error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.toSend)
	}
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, errSessionClosed) {
		return nil
	}
	return s.err
}

// Cancel ends the session at once and waits for its goroutines.
func (s *EditSession) Cancel() {
	s.cancel()
	<-s.done
}

var errSessionClosed = errors.New("session closed")

func (s *EditSession) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		err = errSessionClosed
	}
	s.err = err
	s.notifyLocked()
}

func (s *EditSession) endedErrLocked() error {
	if s.err != nil {
		return s.err
	}
	return errSessionClosed
}

func (s *EditSession) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// opFromWire converts an operation the server sent; unlike opFromProto it
// accepts the no-op a transform can produce.
func opFromWire(p *pb.Operation) (Op, error) {
	if p.GetKind() == nil {
		return Op{}, nil
	}
	return opFromProto(p, math.MaxInt)
}
