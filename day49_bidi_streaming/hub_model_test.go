package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// hubModel is the hub as a plain sequential model: who is in which room,
// each room's history and numbering, and what each connection must have
// received since the last check.
type hubModel struct {
	maxRooms, maxHistory, historyOnJoin int

	rooms    map[string]*modelRoom
	joined   map[string]map[string]bool // user -> rooms
	gone     map[string]bool            // disconnected users
	expected map[string][]string        // user -> messages not yet checked
}

type modelRoom struct {
	members []string // in join order; delivery order does not matter across members
	history []string // CHAT messages, as described
	seq     int
}

func (m *hubModel) deliver(user, msg string) { m.expected[user] = append(m.expected[user], msg) }

func (m *hubModel) others(r *modelRoom, except string, msg string) {
	for _, u := range r.members {
		if u != except {
			m.deliver(u, msg)
		}
	}
}

func (m *hubModel) join(user, room string) codes.Code {
	switch {
	case m.gone[user]:
		return codes.OK
	case m.joined[user][room]:
		m.deliver(user, "JOIN_ROOM "+room+" "+user)
		return codes.OK
	case len(m.joined[user]) >= m.maxRooms:
		return codes.ResourceExhausted
	}
	r := m.rooms[room]
	if r == nil {
		r = &modelRoom{}
		m.rooms[room] = r
	}
	for _, h := range r.history[max(0, len(r.history)-m.historyOnJoin):] {
		m.deliver(user, h)
	}
	m.deliver(user, "JOIN_ROOM "+room+" "+user)
	m.others(r, user, "USER_JOINED "+room+" "+user)
	r.members = append(r.members, user)
	m.joined[user][room] = true
	return codes.OK
}

func (m *hubModel) leaveRoom(user, room string) {
	r := m.rooms[room]
	r.members = slices.DeleteFunc(r.members, func(u string) bool { return u == user })
	delete(m.joined[user], room)
	if len(r.members) == 0 {
		delete(m.rooms, room)
		return
	}
	m.others(r, user, "USER_LEFT "+room+" "+user)
}

func (m *hubModel) leave(user, room string) codes.Code {
	if !m.joined[user][room] {
		return codes.FailedPrecondition
	}
	m.leaveRoom(user, room)
	m.deliver(user, "LEAVE_ROOM "+room+" "+user)
	return codes.OK
}

func (m *hubModel) publish(user, room, content string) codes.Code {
	if !m.joined[user][room] {
		return codes.PermissionDenied
	}
	r := m.rooms[room]
	r.seq++
	msg := fmt.Sprintf("CHAT %s %s %s-%d: %s", room, user, room, r.seq, content)
	r.history = append(r.history, msg)
	if over := len(r.history) - m.maxHistory; over > 0 {
		r.history = r.history[over:]
	}
	m.others(r, "", msg)
	return codes.OK
}

func (m *hubModel) typing(user, room string) codes.Code {
	if !m.joined[user][room] {
		return codes.PermissionDenied
	}
	m.others(m.rooms[room], user, "TYPING "+room+" "+user)
	return codes.OK
}

func (m *hubModel) disconnect(user string) {
	m.gone[user] = true
	rooms := make([]string, 0, len(m.joined[user]))
	for room := range m.joined[user] {
		rooms = append(rooms, room)
	}
	slices.Sort(rooms)
	for _, room := range rooms {
		m.leaveRoom(user, room)
	}
}

func (m *hubModel) counts() (rooms, memberships int) {
	for _, r := range m.rooms {
		memberships += len(r.members)
	}
	return len(m.rooms), memberships
}

// byRoom orders messages by room, keeping each room's own order.
func byRoom(msgs []string) []string {
	out := slices.Clone(msgs)
	slices.SortStableFunc(out, func(a, b string) int {
		return strings.Compare(strings.Fields(a)[1], strings.Fields(b)[1])
	})
	return out
}

// describeInRoom describes a queued message with its room and, for a
// chat message, its id.
func describeInRoom(msg *pb.ChatMessage) string {
	kind := strings.TrimPrefix(msg.GetType().String(), "MESSAGE_TYPE_")
	if msg.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT {
		return fmt.Sprintf("%s %s %s %s: %s", kind, msg.GetRoomId(), msg.GetUserId(), msg.GetMessageId(), msg.GetContent())
	}
	return fmt.Sprintf("%s %s %s", kind, msg.GetRoomId(), msg.GetUserId())
}

// testHubMatchesItsModel drives the hub and the model with the same random
// operations and compares them after every step: the codes returned, the
// rooms and memberships held, and every message each member received, in
// order. A failing sequence is shrunk to the shortest that still fails.
func testHubMatchesItsModel(t *testing.T) {
	users := []string{"alice", "bob", "carol"}
	rooms := []string{"lobby", "games", "news"}
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{QueueSize: 10000, MaxRoomsPerConn: 2, MaxHistory: 3, HistoryOnJoin: 4}
		s := newTestHub(cfg)
		model := &hubModel{maxRooms: 2, maxHistory: 3, historyOnJoin: 4, rooms: map[string]*modelRoom{}, joined: map[string]map[string]bool{}, gone: map[string]bool{}, expected: map[string][]string{}}
		conns := map[string]*connection{}
		for _, u := range users {
			c := newConnection(u, cfg.QueueSize)
			s.hub.register(c)
			conns[u] = c
			model.joined[u] = map[string]bool{}
		}
		for step := range rapid.IntRange(1, 60).Draw(rt, "steps") {
			user := rapid.SampledFrom(users).Draw(rt, "user")
			room := rapid.SampledFrom(rooms).Draw(rt, "room")
			c := conns[user]
			var got, want codes.Code
			op := rapid.SampledFrom([]string{"join", "join", "leave", "publish", "publish", "typing", "disconnect"}).Draw(rt, "op")
			switch op {
			case "join":
				got, want = status.Code(s.hub.join(c, room)), model.join(user, room)
			case "leave":
				if model.gone[user] {
					continue // a disconnected stream sends nothing more
				}
				got, want = status.Code(s.hub.leave(c, room)), model.leave(user, room)
			case "publish":
				if model.gone[user] {
					continue
				}
				content := fmt.Sprint("m", step)
				got, want = status.Code(s.hub.publish(c, room, content)), model.publish(user, room, content)
			case "typing":
				if model.gone[user] {
					continue
				}
				got, want = status.Code(s.hub.typing(c, room)), model.typing(user, room)
			case "disconnect":
				if model.gone[user] {
					continue // Chat disconnects a connection once
				}
				s.hub.disconnect(c)
				model.disconnect(user)
			}
			what := fmt.Sprintf("step %d: %s(%s, %q)", step, op, user, room)
			if got != want {
				rt.Fatalf("%s = code %v, want %v", what, got, want)
			}
			gotRooms, gotMemberships, _ := s.hub.counts()
			if wantRooms, wantMemberships := model.counts(); gotRooms != wantRooms || gotMemberships != wantMemberships {
				rt.Fatalf("after %s the hub holds %d rooms and %d memberships, want %d and %d", what, gotRooms, gotMemberships, wantRooms, wantMemberships)
			}
			for _, u := range users {
				var received []string
				for _, m := range drain(conns[u]) {
					received = append(received, describeInRoom(m))
				}
				// Within a room the order is the room's; across rooms, as
				// when a disconnect leaves them all, there is none.
				if !slices.Equal(byRoom(received), byRoom(model.expected[u])) {
					rt.Fatalf("after %s %s received %q, want %q", what, u, received, model.expected[u])
				}
				model.expected[u] = nil
			}
		}
	})
}
