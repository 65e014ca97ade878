package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/bearer"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

const (
	defaultAddr     = "127.0.0.1:8081"
	shutdownTimeout = 5 * time.Second
)

// demoUsers may connect to the demo server; each one's token is
// "<user>-demo-token".
var demoUsers = []string{"alice", "bob", "carol", "dave", "mallory"}

func demoToken(user string) string { return user + "-demo-token" }

// serverLimits size the transport for this lesson's messages, which are
// small: the largest received is an insert of at most 10,000 characters
// (40,000 bytes of UTF-8). What the server sends can be larger (a snapshot
// of a 1 MiB document) and keeps the default send limit. So one stream
// can make the server hold at most 64 KiB while messages arrive, and one
// connection 16 times that; see RELIABILITY.md for the whole bound.
var serverLimits = serving.Limits{
	MaxRecvBytes:         64 << 10,
	MaxConcurrentStreams: 16,
	StreamWindowBytes:    64 << 10,
	ConnWindowBytes:      1 << 20,
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "chat" {
		if err := runChat(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "chat:", err)
			os.Exit(1)
		}
		return
	}
	addr := flag.String("addr", defaultAddr, "address to serve on (port 0 picks a free port)")
	once := flag.Bool("once", false, "run the demo, then exit instead of serving")
	serveOnly := flag.Bool("serve", false, "skip the demo and only serve")
	verbose := flag.Bool("v", false, "log every finished call: method, peer, status code, duration (never tokens or payloads)")
	debugAddr := flag.String("debug-addr", "", "also serve /debug/state (goroutines, live heap) and /debug/pprof/ on this loopback address")
	flag.Parse()
	if *once && *serveOnly {
		fmt.Fprintln(os.Stderr, "-once and -serve exclude each other")
		os.Exit(2)
	}
	if err := run(options{addr: *addr, once: *once, serveOnly: *serveOnly, verbose: *verbose, debugAddr: *debugAddr}); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// options are the command line's settings.
type options struct {
	addr, debugAddr          string
	once, serveOnly, verbose bool
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	tokens := NewTokenStore()
	for _, u := range demoUsers {
		tokens.Add(demoToken(u), Identity{User: u, Expires: time.Now().Add(24 * time.Hour)})
	}
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	lis = serving.LimitListener(lis, serving.ConnLimits{}, slog.Default())
	stopDebug, err := serving.StartDebug(o.debugAddr) // "" serves nothing
	if err != nil {
		return err
	}
	defer stopDebug()
	logUnary, logStream := serving.LogCalls(slog.Default())
	documents := NewMemoryStore()
	documents.Create(demoDocument, demoDocumentText)
	editor := NewEditorServer(EditorConfig{}, documents)
	srv := grpc.NewServer(append(serving.ServerOptions(serverLimits),
		grpc.ChainUnaryInterceptor(logUnary),
		grpc.ChainStreamInterceptor(logStream, AuthInterceptor(tokens, time.Now), serving.StreamLimits{}.Interceptor(bearer.User), editor.PaceInterceptor()))...)
	chat := NewChatServer(Config{})
	pb.RegisterChatServiceServer(srv, chat)
	pb.RegisterEditorServiceServer(srv, editor)
	game := NewGameServer(GameConfig{})
	pb.RegisterGameServiceServer(srv, game)
	go game.Run(ctx)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		healthSrv.Shutdown()
		serving.GracefulStop(srv, func() {
			chat.Shutdown()
			editor.Shutdown()
			game.Shutdown()
		}, shutdownTimeout)
	}()

	fmt.Println("=== Day 49: gRPC bidirectional streaming ===")
	fmt.Printf("Serving ChatService, EditorService and GameService on %s\n\n", lis.Addr())
	if !o.serveOnly {
		if err := runDemo(ctx, lis.Addr().String()); err != nil {
			return err
		}
		if o.once {
			return nil
		}
	}
	fmt.Printf("\nServing until Ctrl+C. Chat from two terminals with:\n  %s\n", chatCommand(lis.Addr().String(), "alice"))
	select {
	case <-ctx.Done():
		fmt.Println("\nShutting down ...")
		return nil
	case err := <-served:
		return err
	}
}

// runDemo has two bots chat in #lobby, then lets a flooder get cut off.
func runDemo(ctx context.Context, target string) error {
	alice, err := NewChatClient(target, demoToken("alice"))
	if err != nil {
		return err
	}
	defer alice.Close()
	bob, err := NewChatClient(target, demoToken("bob"))
	if err != nil {
		return err
	}
	defer bob.Close()

	fmt.Println("Two bots chat in #lobby (as bob sees it):")
	bobLines := make(chan string, 1)
	bobJoined := make(chan struct{})
	fromAlice := make(chan struct{}, 2)
	var joinOnce sync.Once
	bobDone := make(chan error, 1)
	go func() {
		bobDone <- bob.Run(ctx, "lobby", bobLines, func(m *pb.ChatMessage) {
			fmt.Println("  " + formatMessage(m))
			switch {
			case m.GetType() == pb.MessageType_MESSAGE_TYPE_JOIN_ROOM:
				joinOnce.Do(func() { close(bobJoined) })
			case m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == "alice":
				fromAlice <- struct{}{}
			}
		})
	}()
	select {
	case <-bobJoined:
	case err := <-bobDone:
		return explain("bob", err)
	}
	aliceLines := make(chan string, 2)
	aliceLines <- "hi bob!"
	aliceLines <- "how is the kata going?"
	close(aliceLines)
	if err := alice.Run(ctx, "lobby", aliceLines, func(*pb.ChatMessage) {}); err != nil {
		return explain("alice", err)
	}
	for range 2 {
		select {
		case <-fromAlice:
		case err := <-bobDone:
			return explain("bob", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	bobLines <- "going well, the hub never blocks now"
	close(bobLines)
	if err := <-bobDone; err != nil {
		return explain("bob", err)
	}

	fmt.Println("\nmallory floods #lobby with 60 messages at once:")
	flooder, err := NewChatClient(target, demoToken("mallory"))
	if err != nil {
		return err
	}
	defer flooder.Close()
	lines := make(chan string, 60)
	for i := range 60 {
		lines <- fmt.Sprintf("spam %d", i)
	}
	close(lines)
	var accepted, refused int
	err = flooder.Run(ctx, "lobby", lines, func(m *pb.ChatMessage) {
		switch m.GetType() {
		case pb.MessageType_MESSAGE_TYPE_CHAT:
			accepted++
		case pb.MessageType_MESSAGE_TYPE_ERROR:
			refused++
		}
	})
	if status.Code(err) == codes.Unimplemented {
		return explain("mallory", err)
	}
	fmt.Printf("  %d messages delivered, %d refused in-band, then the stream ended: %s: %s\n", accepted, refused, status.Code(err), status.Convert(err).Message())

	fmt.Println()
	if err := runEditorDemo(ctx, target); err != nil {
		return err
	}
	fmt.Println()
	if err := runGameDemo(ctx, target); err != nil {
		return err
	}
	fmt.Println("\nDemo completed.")
	return nil
}

// runChat is the terminal chat client: lines typed become messages.
// chatCommand is the command line that chats as user with the server at
// addr, as the banner prints it.
func chatCommand(addr, user string) string {
	return fmt.Sprintf("go run ./day49_bidi_streaming chat -addr %s -user %s -room lobby", addr, user)
}

func runChat(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	addr := fs.String("addr", defaultAddr, "chat server address")
	user := fs.String("user", "", "who you are: one of "+strings.Join(demoUsers, ", "))
	room := fs.String("room", "lobby", "the room to join")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("-user is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := NewChatClient(*addr, demoToken(*user))
	if err != nil {
		return err
	}
	defer client.Close()

	lines := make(chan string)
	go func() {
		// Closing lines on end of input (Ctrl+D) half-closes the stream.
		// The scanner cannot be interrupted, so on Ctrl+C this goroutine
		// ends with the process.
		defer close(lines)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if text := strings.TrimSpace(in.Text()); text != "" {
				select {
				case lines <- text:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	fmt.Printf("Connected to %s as %s. Type a message and press Enter; Ctrl+D leaves.\n", *addr, *user)
	// The server closes every connection after a while (see
	// serving.ServerKeepalive) and may restart: then the stream ends with
	// Unavailable, and the client reconnects and joins again, a few times
	// in a row at most. The room's recent history, sent on every join,
	// shows what was said meanwhile.
	for failures := 0; ; {
		heard := false
		err = client.Run(ctx, *room, lines, func(m *pb.ChatMessage) {
			heard = true
			// The terminal already shows what this user typed; the
			// server's echo of it would print the line a second time.
			if m.GetType() == pb.MessageType_MESSAGE_TYPE_CHAT && m.GetUserId() == *user {
				return
			}
			fmt.Println(formatMessage(m))
		})
		if heard {
			failures = 0
		}
		if status.Code(err) == codes.Canceled {
			return nil // Ctrl+C
		}
		if failures++; status.Code(err) != codes.Unavailable || ctx.Err() != nil || failures > chatReconnects {
			return err
		}
		fmt.Printf("* the connection ended (%s); reconnecting ...\n", status.Convert(err).Message())
		select {
		case <-time.After(time.Duration(failures) * time.Second):
		case <-ctx.Done():
			return nil
		}
	}
}

// chatReconnects is how many times in a row the terminal chat reconnects
// without hearing from the server before it gives up.
const chatReconnects = 5

// formatMessage renders a message for a terminal.
func formatMessage(m *pb.ChatMessage) string {
	switch m.GetType() {
	case pb.MessageType_MESSAGE_TYPE_CHAT:
		return fmt.Sprintf("[#%s] %s: %s", m.GetRoomId(), m.GetUserId(), m.GetContent())
	case pb.MessageType_MESSAGE_TYPE_JOIN_ROOM:
		return fmt.Sprintf("* you joined #%s", m.GetRoomId())
	case pb.MessageType_MESSAGE_TYPE_LEAVE_ROOM:
		return fmt.Sprintf("* you left #%s", m.GetRoomId())
	case pb.MessageType_MESSAGE_TYPE_USER_JOINED:
		return fmt.Sprintf("* %s joined #%s", m.GetUserId(), m.GetRoomId())
	case pb.MessageType_MESSAGE_TYPE_USER_LEFT:
		return fmt.Sprintf("* %s left #%s", m.GetUserId(), m.GetRoomId())
	case pb.MessageType_MESSAGE_TYPE_TYPING:
		return fmt.Sprintf("* %s is typing in #%s", m.GetUserId(), m.GetRoomId())
	case pb.MessageType_MESSAGE_TYPE_ERROR:
		return fmt.Sprintf("! %s: %s", codes.Code(m.GetErrorCode()), m.GetContent())
	}
	return m.String()
}

// explain turns an unfinished task into a hint instead of a crash.
func explain(who string, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %s\nThis part of the kata is not written yet. Run `make progress` to see what is left", who, status.Convert(err).Message())
	}
	return fmt.Errorf("%s: %w", who, err)
}
