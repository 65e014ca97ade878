package main

import (
	"regexp"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/quota"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// Config holds the chat server's limits. The zero value of a field means
// its default; tests shrink the limits to reach them quickly.
type Config struct {
	// QueueSize bounds each connection's outbound queue. A member whose
	// queue is full when a message must reach it is evicted. Default 64.
	QueueSize int
	// MaxHistory bounds each room's stored messages. Default 100.
	MaxHistory int
	// HistoryOnJoin is how many recent messages a joiner receives.
	// Default 20.
	HistoryOnJoin int
	// MaxContentBytes bounds a message's content. Default 2000.
	MaxContentBytes int
	// MaxRoomsPerConn bounds the rooms one connection joins. Default 10.
	MaxRoomsPerConn int
	// MessagesPerSecond and Burst rate-limit each user, across all of the
	// user's connections. Defaults 5 and 10.
	MessagesPerSecond float64
	Burst             int
	// FloodLimit ends a stream after this many messages in a row refused
	// by the rate limit (a message refused for anything else does not
	// count).
	// Default 20.
	FloodLimit int
	// Now is the clock, for timestamps and the rate limiter. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = 64
	}
	if c.MaxHistory == 0 {
		c.MaxHistory = 100
	}
	if c.HistoryOnJoin == 0 {
		c.HistoryOnJoin = 20
	}
	if c.MaxContentBytes == 0 {
		c.MaxContentBytes = 2000
	}
	if c.MaxRoomsPerConn == 0 {
		c.MaxRoomsPerConn = 10
	}
	if c.MessagesPerSecond == 0 {
		c.MessagesPerSecond = 5
	}
	if c.Burst == 0 {
		c.Burst = 10
	}
	if c.FloodLimit == 0 {
		c.FloodLimit = 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// roomPattern is what a room name may look like.
var roomPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ChatServer implements pb.ChatServiceServer. Chat and its helpers are in
// main.go; this file holds the state they share.
type ChatServer struct {
	pb.UnimplementedChatServiceServer

	cfg Config
	hub *hub
}

// NewChatServer returns a server with cfg's limits.
func NewChatServer(cfg Config) *ChatServer {
	cfg = cfg.withDefaults()
	return &ChatServer{cfg: cfg, hub: &hub{
		cfg:    cfg,
		rooms:  make(map[string]*room),
		limits: quota.New(cfg.MessagesPerSecond, cfg.Burst, cfg.Now),
		conns:  make(map[*connection]bool),
	}}
}

// sharedMessage is a chat message on its way to every connection it is
// delivered to. A message published to a room of 1,000 members is one
// sharedMessage in 1,000 queues: the first writer to send it marshals it
// (SendOn), the other 999 send the same bytes. Never change the message
// once it is shared (see serving.Shared).
type sharedMessage = serving.Shared[*pb.ChatMessage]

// connection is one client's chat stream as the hub sees it: who it is,
// its outbound queue, and whether it has been evicted.
type connection struct {
	user string
	// out is the bounded outbound queue. Only the stream's writer receives
	// from it; anyone may offer to it, never blocking (see deliver).
	out chan *sharedMessage

	// eviction ends the stream from outside: a full queue, a shutdown.
	// The hub stops delivering to an evicted connection at once.
	eviction

	rooms map[string]bool // joined rooms; guarded by hub.mu

	// refusedInARow counts rate-limited requests since the last accepted
	// one; only the stream's reader touches it.
	refusedInARow int
}

func newConnection(user string, queueSize int) *connection {
	return &connection{
		user:     user,
		out:      make(chan *sharedMessage, queueSize),
		eviction: newEviction(),
		rooms:    make(map[string]bool),
	}
}

// hub holds the rooms, their members and histories. One mutex guards them:
// fan-out happens under it, and since delivering never blocks, holding it
// stays short, and every member of a room sees that room's messages in one
// order. The per-user rate limits live beside it, per user rather than per
// connection, and outlive the connections: a user who reconnects finds
// the bucket as it was left.
type hub struct {
	cfg    Config
	limits *quota.Limiters

	mu    sync.Mutex
	rooms map[string]*room
	conns map[*connection]bool // every registered connection
}

// room is one chat room.
type room struct {
	members map[*connection]bool
	history []*sharedMessage // oldest first, at most cfg.MaxHistory
	seq     int64            // the last CHAT sequence number given out
}

// roomLocked returns the room, creating it. h.mu must be held.
func (h *hub) roomLocked(id string) *room {
	r, ok := h.rooms[id]
	if !ok {
		r = &room{members: make(map[*connection]bool)}
		h.rooms[id] = r
	}
	return r
}

// recentHistory returns up to n of the room's latest messages, oldest
// first. h.mu must be held.
func (r *room) recentHistory(n int) []*sharedMessage {
	return r.history[max(0, len(r.history)-n):]
}

// register adds a connection to the hub.
func (h *hub) register(c *connection) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns[c] = true
}

// unregisterLocked undoes register. h.mu must be held.
func (h *hub) unregisterLocked(c *connection) {
	delete(h.conns, c)
}

// Shutdown ends every chat stream with Unavailable, so that a graceful
// stop of the server does not wait for sessions that would never end by
// themselves. Each stream's handler then cleans up as usual.
func (s *ChatServer) Shutdown() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.evict(status.Error(codes.Unavailable, "the server is shutting down"))
	}
}

// allow reports whether the user may send another message now. A request
// can still be in the reader's hands after its connection was
// disconnected; it is refused.
func (h *hub) allow(c *connection) bool {
	h.mu.Lock()
	registered := h.conns[c]
	h.mu.Unlock()
	return registered && !c.evicted() && h.limits.Allow(c.user)
}

// notice builds a server-originated message of type t about user in a
// room (a join confirmation, presence, typing), stamped with the hub's
// clock, ready to be delivered to as many members as need it.
func (h *hub) notice(t pb.MessageType, user, roomID string) *sharedMessage {
	return serving.Share(&pb.ChatMessage{Type: t, UserId: user, RoomId: roomID, Timestamp: timestamppb.New(h.cfg.Now())})
}

// counts returns how many rooms, memberships and connections the hub
// holds; tests use them to prove cleanup. The rate limits are not among
// them: they are kept, on purpose, until they have refilled.
func (h *hub) counts() (rooms, memberships, conns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		memberships += len(r.members)
	}
	return len(h.rooms), memberships, len(h.conns)
}

// refuse answers req in-band with an ERROR message carrying err's status.
func (s *ChatServer) refuse(c *connection, req *pb.ChatMessage, err error) {
	st := status.Convert(err)
	c.deliver(serving.Share(&pb.ChatMessage{
		Type:      pb.MessageType_MESSAGE_TYPE_ERROR,
		UserId:    c.user,
		RoomId:    req.GetRoomId(),
		ErrorCode: int32(st.Code()),
		Content:   st.Message(),
		Timestamp: timestamppb.New(s.cfg.Now()),
	}), false)
}
