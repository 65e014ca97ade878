package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// runGameDemo has two players walk across the world with the server
// ticking in real time, then shows a teleport refused and a flooding
// player cut off.
func runGameDemo(ctx context.Context, target string) error {
	conn, err := serving.NewClient(target)
	if err != nil {
		return fmt.Errorf("new game client for %q: %w", target, err)
	}
	defer conn.Close()
	game := pb.NewGameServiceClient(conn)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	alice, err := joinGame(ctx, game, "alice", "Alice")
	if err != nil {
		return err
	}
	bob, err := joinGame(ctx, game, "bob", "Bob")
	if err != nil {
		return err
	}
	fmt.Println("Two players walk, one move a tick; the server ticks 20 times a second (as alice sees it):")
	// Each player sends its next move when a snapshot shows the last one
	// processed: the server, not the client, decides where everybody is.
	var seq int64
	for shown := 0; shown < 5; {
		seq++
		if err := move(alice, seq, 500+int32(seq)*5, 500); err != nil {
			return explain("alice", err)
		}
		if err := move(bob, seq, 500, 500-int32(seq)*5); err != nil {
			return explain("bob", err)
		}
		for {
			snap, gameErr, err := nextUpdate(alice)
			if err != nil {
				return explain("alice", err)
			}
			if gameErr != nil {
				return fmt.Errorf("alice: move refused: %s", gameErr.GetMessage())
			}
			if min(processed(snap, "alice"), processed(snap, "bob")) == seq {
				fmt.Printf("  tick %-4d %s\n", snap.GetTick(), formatPlayers(snap))
				shown++
				break
			}
		}
		if err := skipTo(bob, "bob", seq); err != nil {
			return explain("bob", err)
		}
	}

	fmt.Println("\nalice tries to teleport 200 units in one tick:")
	seq++
	if err := move(alice, seq, 500+int32(seq-1)*5+200, 500); err != nil {
		return explain("alice", err)
	}
	for {
		snap, gameErr, err := nextUpdate(alice)
		if err != nil {
			return explain("alice", err)
		}
		if gameErr != nil {
			fmt.Printf("  refused in-band: %s: %s\n", codes.Code(gameErr.GetCode()), gameErr.GetMessage())
			continue
		}
		if processed(snap, "alice") >= seq {
			fmt.Printf("  tick %-4d %s\n", snap.GetTick(), formatPlayers(snap))
			break
		}
	}

	fmt.Println("\nmallory joins and sends 20 moves at once, then 200 more:")
	mallory, err := joinGame(ctx, game, "mallory", "Mallory")
	if err != nil {
		return err
	}
	flood := func(from, n int) {
		for i := range n {
			if move(mallory, int64(from+i), 500, 500) != nil {
				return // the server ended the stream; Recv has its status
			}
		}
	}
	flood(1, 20)
	for {
		_, gameErr, err := nextUpdate(mallory)
		if err != nil {
			return explain("mallory", err)
		}
		if gameErr != nil {
			fmt.Printf("  refused in-band, the stream goes on: %s: %s\n", codes.Code(gameErr.GetCode()), gameErr.GetMessage())
			break
		}
	}
	flood(21, 200)
	for {
		if _, _, err = nextUpdate(mallory); err != nil {
			break
		}
	}
	if status.Code(err) == codes.Unimplemented {
		return explain("mallory", err)
	}
	fmt.Printf("  then the stream ended: %s: %s\n", status.Code(err), status.Convert(err).Message())

	for who, s := range map[string]pb.GameService_PlayClient{"alice": alice, "bob": bob} {
		if err := s.CloseSend(); err != nil {
			return fmt.Errorf("%s: %w", who, err)
		}
	}
	for who, s := range map[string]pb.GameService_PlayClient{"alice": alice, "bob": bob} {
		for {
			if _, _, err := nextUpdate(s); err != nil {
				if !errors.Is(err, io.EOF) {
					return explain(who, err)
				}
				break
			}
		}
	}
	fmt.Println("  alice and bob leave; their streams end with OK.")
	return nil
}

// joinGame opens user's Play stream and joins as name.
func joinGame(ctx context.Context, game pb.GameServiceClient, user, name string) (pb.GameService_PlayClient, error) {
	stream, err := game.Play(WithToken(ctx, demoToken(user)))
	if err != nil {
		return nil, explain(user, err)
	}
	if err := stream.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Join{Join: &pb.JoinGame{Name: name}}}); err != nil {
		_, err = stream.Recv() // the server ended the stream; its status says why
		return nil, explain(user, err)
	}
	return stream, nil
}

// move sends a move; an io.EOF means the server ended the stream, and the
// status comes from Recv.
func move(s pb.GameService_PlayClient, sequence int64, x, y int32) error {
	err := s.Send(&pb.PlayerInput{Input: &pb.PlayerInput_Move{Move: &pb.PlayerMove{Sequence: sequence, Target: &pb.Position{X: x, Y: y}}}})
	if errors.Is(err, io.EOF) {
		_, err = s.Recv()
	}
	return err
}

// nextUpdate receives one update: a snapshot or an in-band error.
func nextUpdate(s pb.GameService_PlayClient) (*pb.GameSnapshot, *pb.GameError, error) {
	u, err := s.Recv()
	if err != nil {
		return nil, nil, err
	}
	return u.GetSnapshot(), u.GetError(), nil
}

// skipTo receives until a snapshot shows user's move seq processed, so
// the player does not fall behind.
func skipTo(s pb.GameService_PlayClient, user string, seq int64) error {
	for {
		snap, _, err := nextUpdate(s)
		if err != nil {
			return err
		}
		if processed(snap, user) >= seq {
			return nil
		}
	}
}

// processed returns the last sequence of user's moves that snap shows
// processed, or -1 when snap is not a snapshot with user in it.
func processed(snap *pb.GameSnapshot, user string) int64 {
	for _, p := range snap.GetPlayers() {
		if p.GetPlayerId() == user {
			return p.GetLastSequence()
		}
	}
	return -1
}

// formatPlayers renders a snapshot's players for a terminal.
func formatPlayers(snap *pb.GameSnapshot) string {
	var parts []string
	for _, p := range snap.GetPlayers() {
		parts = append(parts, fmt.Sprintf("%s at (%d, %d) #%d", p.GetName(), p.GetPosition().GetX(), p.GetPosition().GetY(), p.GetLastSequence()))
	}
	return strings.Join(parts, ", ")
}
