// Package abuse attacks the lessons' reference servers over real TCP, the
// way a hostile or broken client would, and checks that each attack gets
// the status the lesson promises, leaves nothing behind that a client can
// see, and that a well-behaved client is served during and after it.
//
// The servers are started by `go run ./internal/kata abuse`, which passes
// their addresses in ABUSE_ADDR_48 and ABUSE_ADDR_49, and their debug
// addresses (goroutines, live heap) in ABUSE_DEBUG_48 and ABUSE_DEBUG_49;
// without them the tests skip. Every attack is bounded in count and time,
// on 127.0.0.1.
package abuse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/serving"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// attackTimeout bounds every attack, its checks included.
const attackTimeout = 30 * time.Second

// dial connects to the server whose address is in env, skipping the test
// when it is not set.
func dial(t *testing.T, env string) *grpc.ClientConn {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		t.Skipf("%s is not set: run the abuse suite with `go run ./internal/kata abuse`", env)
	}
	conn, err := serving.NewClient(addr)
	require.NoError(t, err, "NewClient(%s)", addr)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func attackContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), attackTimeout)
	t.Cleanup(cancel)
	return ctx
}

// report checks what the attack left behind in the server (see
// before.leftBehind) and logs one row of RELIABILITY.md's table; call it
// once the attack's own streams and connections are closed.
func report(t *testing.T, b *before, expected, got, leftBehind string) {
	t.Helper()
	leftBehind += "; " + b.leftBehind(t)
	t.Logf("RESULT | %s | %s | %s | %s |", t.Name(), expected, got, leftBehind)
}

// Left behind: once an attack's streams and connections are closed, the
// server's goroutines are back to their count before it, within
// goroutineSlack, and its live heap (after a collection) has grown by at
// most heapSlack.
const (
	goroutineSlack = 2
	heapSlack      = 16 << 20
	settleTimeout  = 10 * time.Second
)

// before is a server's state before an attack.
type before struct {
	day   string
	state serving.State
	// partial counts the unfinished uploads' files in Day 48's upload
	// folder; -1 for a server without one.
	partial int
	// mayKeep is how many more partial files the attack may leave: paused
	// uploads that their owner can still resume.
	mayKeep int
}

// partialFiles counts the files of unfinished uploads in the folder that
// Day 48's server stores into (its ".incoming" folder), or returns -1 for
// a server that stores nothing.
func partialFiles(t *testing.T, day string) int {
	t.Helper()
	dir := os.Getenv("ABUSE_DIR_" + day)
	if day != "48" || dir == "" {
		return -1
	}
	entries, err := os.ReadDir(filepath.Join(dir, ".incoming"))
	require.NoError(t, err, "the upload folder's unfinished uploads")
	return len(entries)
}

// debugClient closes its connection after each request, so that no
// connection of its outlives a test.
var debugClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// serverState reads a server's goroutines and live heap from its debug
// endpoint.
func serverState(t *testing.T, day string) serving.State {
	t.Helper()
	addr := os.Getenv("ABUSE_DEBUG_" + day)
	if addr == "" {
		t.Skipf("ABUSE_DEBUG_%s is not set: run the abuse suite with `go run ./internal/kata abuse`", day)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/state", nil)
	require.NoError(t, err)
	res, err := debugClient.Do(req)
	require.NoError(t, err, "reading the server's state")
	defer res.Body.Close()
	var st serving.State
	require.NoError(t, json.NewDecoder(res.Body).Decode(&st), "the server's state")
	io.Copy(io.Discard, res.Body)
	return st
}

// attack connects to day's server, makes a first call (which also brings
// the server's limits to the client) and records the server's state
// before the attack, with the connection's own goroutines in the count.
func attack(t *testing.T, day string) (*grpc.ClientConn, *before) {
	t.Helper()
	conn := dial(t, "ABUSE_ADDR_"+day)
	healthy(t, conn)
	return conn, measure(t, day)
}

// measure records day's server state before an attack.
func measure(t *testing.T, day string) *before {
	return &before{day: day, state: serverState(t, day), partial: partialFiles(t, day)}
}

// leftBehind waits until the server's goroutines are back to their count
// before the attack and its live heap within heapSlack of its size before
// it, failing after settleTimeout, and describes both for the report.
func (b *before) leftBehind(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// A closed connection's buffers go back to grpc-go's pools and leave
	// them over the next collections: the heap, like the goroutines, gets
	// until the deadline to settle.
	after := serverState(t, b.day)
	settled := func() bool {
		return after.Goroutines <= b.state.Goroutines+goroutineSlack && int64(after.HeapLiveBytes)-int64(b.state.HeapLiveBytes) <= heapSlack
	}
	for !settled() && time.Now().Before(deadline) {
		<-tick.C
		after = serverState(t, b.day)
	}
	require.LessOrEqual(t, after.Goroutines, b.state.Goroutines+goroutineSlack,
		"the server's goroutines %v after the attack; %d before it", settleTimeout, b.state.Goroutines)
	grew := int64(after.HeapLiveBytes) - int64(b.state.HeapLiveBytes)
	require.LessOrEqual(t, grew, int64(heapSlack), "the server's live heap grew by %d bytes over the attack", grew)
	summary := fmt.Sprintf("goroutines %d before, %d after; live heap %+.1f MiB", b.state.Goroutines, after.Goroutines, float64(grew)/(1<<20))
	if b.partial >= 0 {
		partial := partialFiles(t, b.day)
		require.LessOrEqual(t, partial, b.partial+b.mayKeep, "files of unfinished uploads after the attack; %d before it, and it may keep %d", b.partial, b.mayKeep)
		summary += fmt.Sprintf("; partial files %d before, %d after", b.partial, partial)
	}
	return summary
}

// healthy fails the test unless the server answers a health check: the
// well-behaved client that must be served after every attack.
func healthy(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "health check after the attack")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, res.GetStatus(), "health after the attack")
}
