// Command day49_bidi_streaming is the Day 49 kata: gRPC bidirectional
// streaming. This file holds the parts you write; README.md walks through
// them task by task, and `make progress` shows which are done.
package main

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// deliver offers m to c's outbound queue without ever blocking (task 1).
//
// Do nothing if c was evicted. If the queue (c.out) has room, put m in
// it. If it is full: drop m when droppable (typing indicators), otherwise
// evict c with a ResourceExhausted status whose message says "slow
// consumer" and names the queue size. The publisher must never wait for a
// slow member. Several goroutines may deliver to one connection at once:
// try the send in a select with a default case, never check the queue's
// length and then send (two callers can both see the last free slot).
func (c *connection) deliver(m *sharedMessage, droppable bool) {
	// TODO(task 1): a select with a default case.
}

// join adds c to the room roomID (task 2). Hold h.mu throughout.
//
// Evicted connections are ignored (nil). Joining a room c is already in
// only sends the JOIN_ROOM confirmation again. Past cfg.MaxRoomsPerConn
// rooms, return ResourceExhausted naming the limit. Otherwise deliver to
// c the room's recent history (room.recentHistory(cfg.HistoryOnJoin)),
// then a JOIN_ROOM confirmation (h.notice); deliver USER_JOINED to the
// other members; then record the membership in both room.members and
// c.rooms.
func (h *hub) join(c *connection, roomID string) error {
	// TODO(task 2)
	return status.Errorf(codes.Unimplemented, "join: not implemented yet (see README, task 2)")
}

// leave removes c from roomID and confirms with LEAVE_ROOM (task 2). A
// room c is not in is FailedPrecondition. The others get USER_LEFT; a room
// left empty is deleted with its history.
func (h *hub) leave(c *connection, roomID string) error {
	// TODO(task 2)
	return status.Errorf(codes.Unimplemented, "leave: not implemented yet (see README, task 2)")
}

// disconnect is called once when c's stream ends, however it ends (task
// 2). First evict c (so a request still in flight cannot join it to a
// room again: evicting after the rooms are left, once h.mu is released,
// leaves a moment in which it can), then under h.mu leave every room it
// is in (the others get USER_LEFT) and h.unregisterLocked(c). Afterwards nothing in the hub refers to c.
func (h *hub) disconnect(c *connection) {
	// TODO(task 2)
}

// publish stores a CHAT message from c in roomID and delivers it to every
// member, c included (task 2).
//
// A room c has not joined is PermissionDenied. The message gets its id
// ("<room>-<sequence>", from room.seq), c's user as user_id and the
// server's time. Wrap it once with serving.Share, append that one
// sharedMessage to the room's history, keeping at most cfg.MaxHistory,
// then deliver it to each member: their writers marshal it once between
// them, not once each. Do all of it under h.mu, so every member sees the
// room's messages in one order.
func (h *hub) publish(c *connection, roomID, content string) error {
	// TODO(task 2)
	return status.Errorf(codes.Unimplemented, "publish: not implemented yet (see README, task 2)")
}

// typing tells the other members of roomID that c is typing (task 2): a
// TYPING message, never stored, not sent back to c, and droppable. A room
// c has not joined is PermissionDenied.
func (h *hub) typing(c *connection, roomID string) error {
	// TODO(task 2)
	return status.Errorf(codes.Unimplemented, "typing: not implemented yet (see README, task 2)")
}

// handle acts on one request from c (task 3).
//
// First the rate limit (s.hub.allow), before any other check, so an
// invalid request uses the limit and counts toward a flood like any
// other: over it, count the refusal in
// c.refusedInARow and answer in-band with ResourceExhausted; at
// cfg.FloodLimit refusals in a row return ResourceExhausted instead, which
// ends the stream (that last refusal is not answered in-band: the stream's
// status says why). An accepted request resets the count. Then by type:
// JOIN_ROOM (room must match roomPattern, else InvalidArgument), LEAVE_ROOM,
// CHAT (content non-empty, at most cfg.MaxContentBytes, valid UTF-8, else
// InvalidArgument) and TYPING go to the hub; any other type is
// InvalidArgument. A refused request is answered in-band with
// s.refuse(c, req, err) (in chat.go: an ERROR message carrying the status
// code and message, queued for c); the stream goes on, so return nil. Never read the user from the request: it is c.user.
func (s *ChatServer) handle(c *connection, req *pb.ChatMessage) error {
	// TODO(task 3)
	return status.Errorf(codes.Unimplemented, "handle: not implemented yet (see README, task 3)")
}

// Chat serves one client's stream (task 3, with handle).
//
// The caller is identityFrom(stream.Context()) (Unauthenticated when
// missing). Create the connection, register it with the hub, and make sure
// s.hub.disconnect runs however Chat returns. Run a reader goroutine that
// Recv()s and handles requests until io.EOF, an error, or handle ends the
// stream (a Recv error for which serving.IsInvalidUTF8 is true refused one
// message, not the stream: if s.hub.allow(c), answer it in-band with
// s.refuse and go on; if not, end the stream with ResourceExhausted), and
// a writer goroutine, the only one that sends: it sends what arrives on
// c.out with m.SendOn(stream); when the reader ends it sends what is still
// queued and returns the reader's error (nil after the client's io.EOF).
// Chat itself returns the writer's result, or c.goneErr as soon as c is
// evicted, even while the writer is stuck in a Send to a client that does
// not read.
func (s *ChatServer) Chat(stream pb.ChatService_ChatServer) error {
	// TODO(task 3)
	return status.Errorf(codes.Unimplemented, "Chat: not implemented yet (see README, task 3)")
}

// Run joins room and chats in it until lines is closed or ctx ends
// (task 4).
//
// Open the stream with WithToken(ctx, c.token) and a context you cancel
// on return. One goroutine receives and calls onMessage for each message
// (never with nil); the calling goroutine is the only sender: first a
// JOIN_ROOM, then a CHAT
// for each line. When lines is closed, CloseSend and wait for the server
// to end the stream. Return the server's status (nil when it ended with
// OK; an io.EOF from Send means the status comes from Recv). When ctx
// ends, return its status promptly. Never return before the receiving
// goroutine has finished, its last onMessage call included.
func (c *ChatClient) Run(ctx context.Context, room string, lines <-chan string, onMessage func(*pb.ChatMessage)) error {
	// TODO(task 4)
	return status.Errorf(codes.Unimplemented, "ChatClient.Run: not implemented yet (see README, task 4)")
}

// post puts u in the mailbox without ever blocking (task 5).
//
// A snapshot (u.Message().GetSnapshot() != nil) replaces the one already
// waiting, if any: only the latest matters. An error is appended to
// m.errors, unless m.maxErrors are already waiting, then it is dropped.
// Hold m.mu while changing the mailbox, then, only after the update is
// stored, signal m.ready without waiting: if a signal is already there,
// the writer has not taken it yet and will see this update too. A signal
// sent before the store can wake the writer to an empty mailbox, and the
// update then waits for the next post.
func (m *snapshotMailbox) post(u *sharedUpdate) {
	// TODO(task 5): a select with a default case for the signal.
}

// take empties the mailbox and returns what it held (task 5): the waiting
// errors, oldest first, then the snapshot, if any. The stream's writer
// calls it each time m.ready signals, and sends the result in order. The
// slice returned is the caller's from then on: the mailbox starts a new
// one, so a later post never writes into what the writer is sending.
func (m *snapshotMailbox) take() []*sharedUpdate {
	// TODO(task 5)
	return nil
}

// Tick advances the game by one tick (task 6). Hold s.mu throughout.
//
// Count the tick (s.tick). For each joined player (s.players), apply its
// queued moves in order: a target outside the world (0 to
// cfg.WorldSize-1 on each axis) or farther than cfg.MaxSpeed, in a
// straight line, from where the player began this tick (compare squared
// distances as int64: exact at the limit, where a float square root is
// not, and no overflow for int32 coordinates) is refused with
// p.refuse(sequence, InvalidArgument naming the limit: the world's last
// coordinate, cfg.WorldSize-1, for a target outside it, cfg.MaxSpeed for
// one too far) and the player stays; otherwise the player moves there. Either way the move is
// processed: record its sequence in p.lastSequence. Empty the queue. Then
// post one snapshot (s.snapshotLocked) to the mailbox of every joined
// player (s.players; a stream that has not joined gets none): the same
// sharedUpdate to all, so it is marshalled once a tick. Never wait for a
// player: posting does not block.
func (s *GameServer) Tick() {
	// TODO(task 6)
}

// handle acts on one input from p (task 7).
//
// First the rate limit (p.limiter with the time cfg.Now): over it, count
// the refusal in p.refusedInARow and answer in-band with
// ResourceExhausted (p.refuse with the move's sequence, or 0); at cfg.FloodLimit refusals in a row return
// ResourceExhausted instead, which ends the stream (that last refusal is
// not answered in-band). An accepted input resets the
// count. A join goes to s.join. A move, under s.mu, is checked in this
// order, the first check that fails deciding: before joining is
// FailedPrecondition; without a target, or with a sequence not greater
// than the last one queued or processed, InvalidArgument; with
// cfg.MaxQueuedMoves already queued, ResourceExhausted naming the limit;
// otherwise append it to p.queued for the next tick. Anything else is
// InvalidArgument. A refused input is answered in-band with p.refuse (the
// move's sequence, or 0) and the stream goes on: return nil. Never read
// the player from the input: it is p.id, from the token.
func (s *GameServer) handle(p *player, in *pb.PlayerInput) error {
	// TODO(task 7)
	return status.Errorf(codes.Unimplemented, "handle: not implemented yet (see README, task 7)")
}

// Play serves one player's stream (task 7, with handle).
//
// The player is identityFrom(stream.Context()) (Unauthenticated when
// missing). Create it with newPlayer, s.register it, and make sure
// s.unregister runs however Play returns. Run a writer goroutine, the only
// one that sends: each time p.mailbox.ready signals it sends what
// p.mailbox.take returns (u.SendOn(stream)), until the stream's context ends or a Send
// fails. Run a reader goroutine that Recv()s and handles inputs until
// io.EOF (then Play returns nil), an error, or handle ends the stream.
// Play returns the reader's result, or p.goneErr as soon as p is evicted
// (Shutdown). Do not wait for the writer: it may be stuck in a Send to a
// player that does not read, and it ends with the stream.
func (s *GameServer) Play(stream pb.GameService_PlayServer) error {
	// TODO(task 7)
	return status.Errorf(codes.Unimplemented, "Play: not implemented yet (see README, task 7)")
}

// transform rewrites two concurrent operations, a and b, made on the same
// text, so that each applies after the other (task 8): a2 is a rewritten
// to apply after b, b2 is b rewritten to apply after a, and applying a
// then b2 gives the same text as applying b then a2.
//
// Treat a as the operation committed first. Two inserts at one position:
// a's text goes first (left), so b2 moves right. An insert before a
// delete's range, or at its start, moves the delete right; one at or after
// its end moves left by the deleted length. An insert strictly inside a
// deleted range is deleted with it: the insert becomes a no-op (Op{}) and
// the delete grows to cover the inserted text. Overlapping deletes each
// lose the part the other already deleted; a delete left empty is a
// no-op. A no-op transforms nothing and is not changed.
func transform(a, b Op) (a2, b2 Op) {
	// TODO(task 8)
	return a, b
}

// Edit serves one editor's stream (task 9), in the shape of Chat.
//
// The caller is identityFrom(stream.Context()) (Unauthenticated when
// missing). Create the editor (newEditor with cfg.QueueSize), s.register
// it, and defer s.unregister. A reader goroutine Recv()s requests until
// io.EOF or an error: an open goes to s.open; a submit before any open is
// an in-band FailedPrecondition; otherwise s.commit; a request with
// neither is an in-band InvalidArgument. Pass both the stream's context:
// the store must not work for a stream that has ended. Errors are answered
// in-band with e.refuse(clientOpID, err), except a FailedPrecondition from
// commit, which ends the stream (the editor must reopen). A writer
// goroutine, the only one that calls Send, sends what arrives on e.out and
// finally what is still queued when the reader ends. The reader calls
// e.awaitRoom before each Recv, and the writer e.markSent after each Send:
// an editor that pipelines a burst and reads its acks is slowed down, not
// evicted. Return the writer's result, or e.goneErr as soon as e is
// evicted.
func (s *EditorServer) Edit(stream pb.EditorService_EditServer) error {
	// TODO(task 9)
	return status.Errorf(codes.Unimplemented, "Edit: not implemented yet (see README, task 9)")
}

// commit applies an editor's operation to its open document, e.doc
// (task 10). The caller has checked that a document is open.
//
// Convert the operation with opFromProto(sub.Operation,
// cfg.MaxInsertRunes) (its error is the answer). Then, under d.mu:
// d.since(sub.BaseRevision) gives the operations committed after the
// base; a base outside the kept history is FailedPrecondition naming the
// kept revisions (d.keptRevisions). Transform the operation against each
// of them, oldest first, the committed one first: _, op = transform(c.op,
// op). Apply it (op.apply): an error is InvalidArgument naming the
// operation as sent, its base and the text's length; a text whose
// encodedSize is over cfg.MaxDocumentBytes is ResourceExhausted. Persist the new text as
// revision d.revision+1 with s.store.Save: if that fails, return
// Unavailable and change nothing. Only then update d.text, d.revision and
// d.history (at most cfg.MaxHistory, oldest dropped), deliver an ack to e
// and a remote operation (revision, e.user, op.toProto()) to every other
// editor of d.
func (s *EditorServer) commit(ctx context.Context, e *editor, sub *pb.SubmitOperation) error {
	// TODO(task 10)
	return status.Errorf(codes.Unimplemented, "commit: not implemented yet (see README, task 10)")
}
