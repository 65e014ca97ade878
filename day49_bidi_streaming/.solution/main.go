package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// deliver offers m to c's outbound queue. See the task 1 stub.
func (c *connection) deliver(m *sharedMessage, droppable bool) {
	if c.evicted() {
		return
	}
	select {
	case c.out <- m:
	default:
		if droppable {
			return
		}
		c.evict(status.Errorf(codes.ResourceExhausted, "slow consumer: the outbound queue of %d messages is full; disconnected", cap(c.out)))
	}
}

// join adds c to a room. See the task 2 stub.
func (h *hub) join(c *connection, roomID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.evicted() {
		return nil
	}
	if c.rooms[roomID] {
		c.deliver(h.notice(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, c.user, roomID), false)
		return nil
	}
	if len(c.rooms) >= h.cfg.MaxRoomsPerConn {
		return status.Errorf(codes.ResourceExhausted, "cannot join %q: already in %d rooms, limit %d", roomID, len(c.rooms), h.cfg.MaxRoomsPerConn)
	}
	r := h.roomLocked(roomID)
	for _, m := range r.recentHistory(h.cfg.HistoryOnJoin) {
		c.deliver(m, false)
	}
	c.deliver(h.notice(pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, c.user, roomID), false)
	h.toOthersLocked(r, c, h.notice(pb.MessageType_MESSAGE_TYPE_USER_JOINED, c.user, roomID), false)
	r.members[c] = true
	c.rooms[roomID] = true
	return nil
}

// leave removes c from a room. See the task 2 stub.
func (h *hub) leave(c *connection, roomID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !c.rooms[roomID] {
		return status.Errorf(codes.FailedPrecondition, "cannot leave %q: not a member", roomID)
	}
	h.leaveLocked(c, roomID)
	c.deliver(h.notice(pb.MessageType_MESSAGE_TYPE_LEAVE_ROOM, c.user, roomID), false)
	return nil
}

func (h *hub) leaveLocked(c *connection, roomID string) {
	r := h.rooms[roomID]
	delete(r.members, c)
	delete(c.rooms, roomID)
	if len(r.members) == 0 {
		delete(h.rooms, roomID) // an empty room and its history go
		return
	}
	h.toOthersLocked(r, c, h.notice(pb.MessageType_MESSAGE_TYPE_USER_LEFT, c.user, roomID), false)
}

// disconnect removes c from everything. See the task 2 stub.
func (h *hub) disconnect(c *connection) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Marking it gone under the lock stops a request still being handled
	// from joining it to a room again.
	c.evict(status.Error(codes.Canceled, "disconnected"))
	for roomID := range c.rooms {
		h.leaveLocked(c, roomID)
	}
	h.unregisterLocked(c)
}

// publish stores and broadcasts a chat message. See the task 2 stub.
func (h *hub) publish(c *connection, roomID, content string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !c.rooms[roomID] {
		return status.Errorf(codes.PermissionDenied, "cannot chat in %q: join it first", roomID)
	}
	r := h.rooms[roomID]
	r.seq++
	// One shared message for the history and every member: it is
	// marshalled once, however many members receive it.
	m := serving.Share(&pb.ChatMessage{
		MessageId: fmt.Sprintf("%s-%d", roomID, r.seq),
		UserId:    c.user,
		RoomId:    roomID,
		Type:      pb.MessageType_MESSAGE_TYPE_CHAT,
		Content:   content,
		Timestamp: timestamppb.New(h.cfg.Now()),
	})
	r.history = append(r.history, m)
	if over := len(r.history) - h.cfg.MaxHistory; over > 0 {
		r.history = slices.Delete(r.history, 0, over)
	}
	for member := range r.members {
		member.deliver(m, false)
	}
	return nil
}

// typing tells the others in a room that c is typing. See the task 2 stub.
func (h *hub) typing(c *connection, roomID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !c.rooms[roomID] {
		return status.Errorf(codes.PermissionDenied, "cannot type in %q: join it first", roomID)
	}
	h.toOthersLocked(h.rooms[roomID], c, h.notice(pb.MessageType_MESSAGE_TYPE_TYPING, c.user, roomID), true)
	return nil
}

func (h *hub) toOthersLocked(r *room, except *connection, m *sharedMessage, droppable bool) {
	for member := range r.members {
		if member != except {
			member.deliver(m, droppable)
		}
	}
}

// handle acts on one request. See the task 3 stub.
func (s *ChatServer) handle(c *connection, req *pb.ChatMessage) error {
	if !s.hub.allow(c) {
		if c.refusedInARow++; c.refusedInARow >= s.cfg.FloodLimit {
			return status.Errorf(codes.ResourceExhausted, "flood: %d messages in a row over the rate limit of %v a second; disconnected", c.refusedInARow, s.cfg.MessagesPerSecond)
		}
		s.refuse(c, req, status.Errorf(codes.ResourceExhausted, "rate limit: at most %v messages a second (burst %d); message dropped", s.cfg.MessagesPerSecond, s.cfg.Burst))
		return nil
	}
	c.refusedInARow = 0

	var err error
	switch roomID := req.GetRoomId(); req.GetType() {
	case pb.MessageType_MESSAGE_TYPE_JOIN_ROOM:
		if !roomPattern.MatchString(roomID) {
			err = status.Errorf(codes.InvalidArgument, "room %q is invalid: want %s", roomID, roomPattern)
		} else {
			err = s.hub.join(c, roomID)
		}
	case pb.MessageType_MESSAGE_TYPE_LEAVE_ROOM:
		err = s.hub.leave(c, roomID)
	case pb.MessageType_MESSAGE_TYPE_CHAT:
		if err = s.checkContent(req.GetContent()); err == nil {
			err = s.hub.publish(c, roomID, req.GetContent())
		}
	case pb.MessageType_MESSAGE_TYPE_TYPING:
		err = s.hub.typing(c, roomID)
	default:
		err = status.Errorf(codes.InvalidArgument, "message type %v cannot be sent by a client: want CHAT, JOIN_ROOM, LEAVE_ROOM or TYPING", req.GetType())
	}
	if err != nil {
		s.refuse(c, req, err)
	}
	return nil
}

func (s *ChatServer) checkContent(content string) error {
	switch {
	case content == "":
		return status.Error(codes.InvalidArgument, "content is empty")
	case len(content) > s.cfg.MaxContentBytes:
		return status.Errorf(codes.InvalidArgument, "content is %d bytes, limit %d", len(content), s.cfg.MaxContentBytes)
	case !utf8.ValidString(content):
		return status.Error(codes.InvalidArgument, "content is not valid UTF-8")
	}
	return nil
}

// Chat serves one client's stream. See the task 3 stub.
func (s *ChatServer) Chat(stream pb.ChatService_ChatServer) error {
	id, ok := identityFrom(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	c := newConnection(id.User, s.cfg.QueueSize)
	s.hub.register(c)
	defer s.hub.disconnect(c)

	// The reader goroutine receives and handles requests; the writer
	// goroutine is the only one that calls Send. This goroutine waits for
	// the writer, or for an eviction: that must end the stream even while
	// a Send is blocked on a client that does not read. Both goroutines
	// end when the stream does, which happens when this handler returns.
	readDone := make(chan error, 1)
	go func() { readDone <- s.readRequests(stream, c) }()
	writeDone := make(chan error, 1)
	go func() { writeDone <- writeReplies(stream, c, readDone) }()
	select {
	case err := <-writeDone:
		return err
	case <-c.gone:
		return c.goneErr
	}
}

// writeReplies sends what arrives on c.out until c is evicted or the
// reader ends; then it sends the replies already queued and returns the
// reader's error (nil after the client's io.EOF).
func writeReplies(stream pb.ChatService_ChatServer, c *connection, readDone <-chan error) error {
	for {
		select {
		case m := <-c.out:
			if c.evicted() {
				return nil // the handler is returning; the stream is over
			}
			if err := m.SendOn(stream); err != nil {
				return err
			}
		case err := <-readDone:
			for {
				select {
				case m := <-c.out:
					if sendErr := m.SendOn(stream); sendErr != nil {
						return errors.Join(err, sendErr)
					}
				default:
					return err
				}
			}
		case <-c.gone:
			return nil
		}
	}
}

// readRequests handles requests until the client closes its side (nil),
// the stream fails, or handle ends it.
func (s *ChatServer) readRequests(stream pb.ChatService_ChatServer, c *connection) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if serving.IsInvalidUTF8(err) {
			// The codec refused one message, not the stream: answer it
			// in-band and go on, within the user's rate limit.
			if !s.hub.allow(c) {
				return status.Errorf(codes.ResourceExhausted, "%s, over the rate limit; disconnected", status.Convert(err).Message())
			}
			s.refuse(c, &pb.ChatMessage{}, err)
			continue
		}
		if err != nil {
			return err
		}
		if err := s.handle(c, req); err != nil {
			return err
		}
	}
}

// Run joins room and chats in it. See the task 4 stub.
func (c *ChatClient) Run(ctx context.Context, room string, lines <-chan string, onMessage func(*pb.ChatMessage)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.chat.Chat(WithToken(ctx, c.token))
	if err != nil {
		return err
	}
	// The receiver runs until the stream ends; every return below waits
	// for it, so Run leaves no goroutine behind.
	received := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				received <- nil // the server ended the stream with OK
				return
			}
			if err != nil {
				received <- err
				return
			}
			onMessage(m)
		}
	}()
	stop := func(err error) error {
		cancel()
		<-received
		return err
	}

	// This goroutine is the only sender. send reports ended when the
	// stream is over, with Run's result: the server's status, which may
	// be OK (nil), or the error of a failed Send.
	send := func(m *pb.ChatMessage) (ended bool, err error) {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				return true, <-received // the server ended the stream; this is why
			}
			return true, stop(err)
		}
		return false, nil
	}
	if ended, err := send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_JOIN_ROOM, RoomId: room}); ended {
		return err
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				// End of input: half-close and let the server finish.
				if err := stream.CloseSend(); err != nil {
					return stop(err)
				}
				return <-received
			}
			if ended, err := send(&pb.ChatMessage{Type: pb.MessageType_MESSAGE_TYPE_CHAT, RoomId: room, Content: line}); ended {
				return err
			}
		case err := <-received:
			return err
		case <-ctx.Done():
			return stop(status.FromContextError(ctx.Err()).Err())
		}
	}
}

// post puts u in the mailbox. See the task 5 stub.
func (m *snapshotMailbox) post(u *sharedUpdate) {
	m.mu.Lock()
	if u.Message().GetSnapshot() != nil {
		m.snapshot = u // the latest supersedes an unsent older one
	} else if len(m.errors) < m.maxErrors {
		m.errors = append(m.errors, u)
	}
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default: // a signal is already waiting for the writer
	}
}

// take empties the mailbox. See the task 5 stub.
func (m *snapshotMailbox) take() []*sharedUpdate {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.errors
	m.errors = nil
	if m.snapshot != nil {
		out = append(out, m.snapshot)
		m.snapshot = nil
	}
	return out
}

// Tick advances the game by one tick. See the task 6 stub.
func (s *GameServer) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick++
	for _, p := range s.players {
		start := p.pos
		for _, m := range p.queued {
			if err := s.checkMove(start, m); err != nil {
				p.refuse(m.sequence, err)
			} else {
				p.pos = m.target
			}
			p.lastSequence = m.sequence
		}
		p.queued = p.queued[:0]
	}
	snapshot := s.snapshotLocked()
	for _, p := range s.players {
		p.mailbox.post(snapshot)
	}
}

// checkMove applies the world's rules to a move made from start, where
// the player began the tick.
func (s *GameServer) checkMove(start position, m queuedMove) error {
	to, size := m.target, s.cfg.WorldSize
	if to.x < 0 || to.y < 0 || to.x >= size || to.y >= size {
		return status.Errorf(codes.InvalidArgument, "move %d to %v is out of bounds: the world runs from (0, 0) to (%d, %d)", m.sequence, to, size-1, size-1)
	}
	// Compare squares in int64: exact, and no overflow for int32 inputs.
	dx, dy := int64(to.x)-int64(start.x), int64(to.y)-int64(start.y)
	if maxSpeed := int64(s.cfg.MaxSpeed); dx*dx+dy*dy > maxSpeed*maxSpeed {
		return status.Errorf(codes.InvalidArgument, "move %d to %v is %.1f units from %v, where the tick began: over the maximum speed of %d a tick", m.sequence, to, math.Hypot(float64(dx), float64(dy)), start, maxSpeed)
	}
	return nil
}

// handle acts on one input. See the task 7 stub.
func (s *GameServer) handle(p *player, in *pb.PlayerInput) error {
	sequence := in.GetMove().GetSequence()
	if !p.limiter.AllowN(s.cfg.Now(), 1) {
		if p.refusedInARow++; p.refusedInARow >= s.cfg.FloodLimit {
			return status.Errorf(codes.ResourceExhausted, "flood: %d inputs in a row over the rate limit of %v a second; disconnected", p.refusedInARow, s.cfg.MovesPerSecond)
		}
		p.refuse(sequence, status.Errorf(codes.ResourceExhausted, "rate limit: at most %v inputs a second (burst %d); input dropped", s.cfg.MovesPerSecond, s.cfg.Burst))
		return nil
	}
	p.refusedInARow = 0

	var err error
	switch in := in.GetInput().(type) {
	case *pb.PlayerInput_Join:
		err = s.join(p, in.Join.GetName())
	case *pb.PlayerInput_Move:
		err = s.queueMove(p, in.Move)
	default:
		err = status.Error(codes.InvalidArgument, "empty input: want a join or a move")
	}
	if err != nil {
		p.refuse(sequence, err)
	}
	return nil
}

// queueMove keeps a move for the next tick, which checks it against the
// world's rules.
func (s *GameServer) queueMove(p *player, m *pb.PlayerMove) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !p.joined {
		return status.Errorf(codes.FailedPrecondition, "move %d before joining: send a join first", m.GetSequence())
	}
	if m.GetTarget() == nil {
		return status.Errorf(codes.InvalidArgument, "move %d has no target", m.GetSequence())
	}
	last := p.lastSequence
	if n := len(p.queued); n > 0 {
		last = p.queued[n-1].sequence
	}
	if m.GetSequence() <= last {
		return status.Errorf(codes.InvalidArgument, "move sequence %d is not after the last one, %d", m.GetSequence(), last)
	}
	if len(p.queued) >= s.cfg.MaxQueuedMoves {
		return status.Errorf(codes.ResourceExhausted, "move %d refused: %d moves already wait for the next tick, limit %d", m.GetSequence(), len(p.queued), s.cfg.MaxQueuedMoves)
	}
	p.queued = append(p.queued, queuedMove{sequence: m.GetSequence(), target: positionFromProto(m.GetTarget())})
	return nil
}

// Play serves one player's stream. See the task 7 stub.
func (s *GameServer) Play(stream pb.GameService_PlayServer) error {
	id, ok := identityFrom(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	p := newPlayer(id.User, s.cfg)
	s.register(p)
	defer s.unregister(p)

	// The writer is the only goroutine that calls Send. Play does not
	// wait for it: a Send to a player that does not read blocks until the
	// stream ends, which happens when Play returns.
	go writeUpdates(stream, p.mailbox)
	readDone := make(chan error, 1)
	go func() { readDone <- s.readInputs(stream, p) }()
	select {
	case err := <-readDone:
		return err
	case <-p.gone:
		return p.goneErr
	}
}

// writeUpdates sends what the mailbox holds each time it signals, until
// the stream ends or a Send fails.
func writeUpdates(stream pb.GameService_PlayServer, m *snapshotMailbox) {
	for {
		select {
		case <-m.ready:
			for _, u := range m.take() {
				if err := u.SendOn(stream); err != nil {
					return
				}
			}
		case <-stream.Context().Done():
			return
		}
	}
}

// readInputs handles inputs until the player closes its side (nil), the
// stream fails, or handle ends it.
func (s *GameServer) readInputs(stream pb.GameService_PlayServer, p *player) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.handle(p, in); err != nil {
			return err
		}
	}
}

// transform rewrites two concurrent operations. See the task 8 stub.
func transform(a, b Op) (a2, b2 Op) {
	switch {
	case a.isNoop() || b.isNoop():
		return a, b
	case a.isInsert() && b.isInsert():
		if a.Pos <= b.Pos { // a was committed first: its text goes left
			return a, shift(b, a.runes())
		}
		return shift(a, b.runes()), b
	case a.isInsert():
		return insertAndDelete(a, b)
	case b.isInsert():
		b2, a2 = insertAndDelete(b, a)
		return a2, b2
	}
	return deleteAfterDelete(a, b), deleteAfterDelete(b, a)
}

// shift moves o by n code points.
func shift(o Op, n int) Op {
	o.Pos += n
	return o
}

// insertAndDelete transforms a concurrent insert and delete.
func insertAndDelete(ins, del Op) (ins2, del2 Op) {
	switch end := del.Pos + del.Len; {
	case ins.Pos <= del.Pos:
		return ins, shift(del, ins.runes())
	case ins.Pos >= end:
		return shift(ins, -del.Len), del
	}
	// Strictly inside the deleted range: the text goes with the range.
	return Op{}, Delete(del.Pos, del.Len+ins.runes())
}

// deleteAfterDelete rewrites delete a to apply after delete b: a keeps
// only what b did not already delete.
func deleteAfterDelete(a, b Op) Op {
	start, end := afterDelete(a.Pos, b), afterDelete(a.Pos+a.Len, b)
	return Delete(start, end-start) // an empty delete is a no-op
}

// afterDelete maps a position in a text to the same place after del.
func afterDelete(pos int, del Op) int {
	switch {
	case pos <= del.Pos:
		return pos
	case pos >= del.Pos+del.Len:
		return pos - del.Len
	}
	return del.Pos
}

// commit applies an editor's operation. See the task 10 stub.
func (s *EditorServer) commit(ctx context.Context, e *editor, sub *pb.SubmitOperation) error {
	op, err := opFromProto(sub.GetOperation(), s.cfg.MaxInsertRunes)
	if err != nil {
		return err
	}
	d := e.doc
	d.mu.Lock()
	defer d.mu.Unlock()
	base := sub.GetBaseRevision()
	concurrent, ok := d.since(base)
	if !ok {
		return status.Errorf(codes.FailedPrecondition, "base revision %d of %q is outside the kept %s: reopen the document", base, d.id, d.keptRevisions())
	}
	sent := op
	for _, c := range concurrent {
		_, op = transform(c.op, op) // committed first, c wins ties
	}
	text, err := op.apply(d.text)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "%v based on revision %d of %q does not fit the text: %d characters at revision %d", sent, base, d.id, len(d.text), d.revision)
	}
	if size := encodedSize(text); size > s.cfg.MaxDocumentBytes {
		return status.Errorf(codes.ResourceExhausted, "%q would be %d bytes, limit %d", d.id, size, s.cfg.MaxDocumentBytes)
	}
	// Persist first: until Save succeeds nothing has changed and nobody
	// has been told anything.
	revision := d.revision + 1
	if err := s.store.Save(ctx, d.id, revision, string(text)); err != nil {
		return status.Errorf(codes.Unavailable, "saving revision %d of %q failed, nothing changed: %v", revision, d.id, err)
	}
	d.text, d.revision = text, revision
	d.history = append(d.history, committedOp{op: op, author: e.user})
	if over := len(d.history) - s.cfg.MaxHistory; over > 0 {
		d.history = slices.Delete(d.history, 0, over)
	}
	e.deliver(&pb.EditEvent{Event: &pb.EditEvent_Ack{Ack: &pb.OperationAck{ClientOpId: sub.GetClientOpId(), Revision: revision}}})
	remote := &pb.EditEvent{Event: &pb.EditEvent_Remote{Remote: &pb.RemoteOperation{Revision: revision, Author: e.user, Operation: op.toProto()}}}
	for other := range d.editors {
		if other != e {
			other.deliver(remote)
		}
	}
	return nil
}

// Edit serves one editor's stream. See the task 9 stub.
func (s *EditorServer) Edit(stream pb.EditorService_EditServer) error {
	id, ok := identityFrom(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	e := newEditor(id.User, s.cfg.QueueSize)
	s.register(e)
	defer s.unregister(e)

	readDone := make(chan error, 1)
	go func() { readDone <- s.readEdits(stream, e) }()
	writeDone := make(chan error, 1)
	go func() { writeDone <- writeEvents(stream, e, readDone) }()
	select {
	case err := <-writeDone:
		return err
	case <-e.gone:
		return e.goneErr
	}
}

// readEdits handles requests until the client closes its side (nil), the
// stream fails, or a stale base ends it.
func (s *EditorServer) readEdits(stream pb.EditorService_EditServer, e *editor) error {
	for {
		if err := e.awaitRoom(stream.Context()); err != nil {
			return err
		}
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch r := req.GetRequest().(type) {
		case *pb.EditRequest_Open:
			err = s.open(stream.Context(), e, r.Open.GetDocumentId())
		case *pb.EditRequest_Submit:
			if e.doc == nil {
				err = status.Error(codes.FailedPrecondition, "no document is open: send an open first")
				break
			}
			err = s.commit(stream.Context(), e, r.Submit)
			if status.Code(err) == codes.FailedPrecondition {
				return err
			}
		default:
			err = status.Error(codes.InvalidArgument, "empty request: want an open or a submit")
		}
		if err != nil {
			e.refuse(req.GetSubmit().GetClientOpId(), err)
		}
	}
}

// writeEvents is the stream's only sender: see writeReplies.
func writeEvents(stream pb.EditorService_EditServer, e *editor, readDone <-chan error) error {
	for {
		select {
		case ev := <-e.out:
			if err := stream.Send(ev); err != nil {
				return err
			}
			e.markSent()
		case err := <-readDone:
			for {
				select {
				case ev := <-e.out:
					if sendErr := stream.Send(ev); sendErr != nil {
						return errors.Join(err, sendErr)
					}
				default:
					return err
				}
			}
		case <-e.gone:
			return nil
		}
	}
}
