package katatest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Peer is the client end of one bidirectional stream as a test drives it.
// Every receive goes through one goroutine that Peer owns, so each wait
// has a deadline and the test's goroutine never blocks in Recv: a stream
// that stops answering fails the test in WaitTimeout with a message naming
// the peer, instead of waiting out go test's own timeout.
//
// By default a Peer receives only when the test asks (Next, Quiet, Status),
// exactly like a client that calls Recv itself; a peer that is never asked
// never reads, which is how tests play a slow consumer. ReadAhead makes it
// receive continuously into a bounded buffer, like a client with its own
// receive goroutine.
//
// Peer's methods call t.Fatalf, so call them from the test's goroutine.
type Peer[Req, Resp any] struct {
	// Label names the peer in failure messages ("alice", "silent").
	Label string

	t         testing.TB
	stream    grpc.BidiStreamingClient[Req, Resp]
	cancel    context.CancelFunc
	readAhead bool
	demand    chan struct{}       // one token per Recv asked for
	done      chan struct{}       // closed when the test ends
	results   chan received[Resp] // what the receive goroutine got
	pending   bool                // a Recv was asked for and not yet taken
	ended     bool                // the stream's end has been taken
	endErr    error               // how it ended, once ended
}

type received[Resp any] struct {
	msg *Resp
	err error
}

// PeerOption changes how OpenPeer drives the stream.
type PeerOption func(*peerConfig)

type peerConfig struct{ readAhead int }

// ReadAhead makes the peer receive continuously, buffering up to n
// messages, as a client with a receive goroutine of its own does.
func ReadAhead(n int) PeerOption { return func(c *peerConfig) { c.readAhead = n } }

// OpenPeer opens a stream with open, under a context that ends with the
// test (or when Cancel is called), and starts its receive goroutine. The
// goroutine ends when the stream does; cleanup cancels the stream.
func OpenPeer[Req, Resp any](t testing.TB, label string, open func(ctx context.Context) (grpc.BidiStreamingClient[Req, Resp], error), opts ...PeerOption) *Peer[Req, Resp] {
	t.Helper()
	var cfg peerConfig
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(Context(t))
	t.Cleanup(cancel)
	stream, err := open(ctx)
	WantCode(t, err, codes.OK, "opening %s's stream", label)
	p := &Peer[Req, Resp]{
		Label:     label,
		t:         t,
		stream:    stream,
		cancel:    cancel,
		readAhead: cfg.readAhead > 0,
		demand:    make(chan struct{}, 1),
		done:      make(chan struct{}),
		results:   make(chan received[Resp], max(cfg.readAhead, 1)),
	}
	done := p.done // the cleanup must not keep p, and so its stream, alive
	t.Cleanup(func() { close(done) })
	go p.receive(ctx)
	return p
}

// receive is the only caller of Recv. Without read-ahead it waits for a
// demand before each Recv, except once the stream is cancelled: then it
// receives the end at once, so that Status can report it and nothing of
// a cancelled stream stays alive. It ends at the stream's end, or when the
// test does (whose cleanup cancels the stream, so a Recv returns).
func (p *Peer[Req, Resp]) receive(ctx context.Context) {
	for {
		if !p.readAhead {
			select {
			case <-p.demand:
			case <-ctx.Done():
			case <-p.done:
				return
			}
		}
		msg, err := p.stream.Recv()
		select {
		case p.results <- received[Resp]{msg, err}:
		case <-p.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// take waits up to d for the next thing received: a message, or the
// stream's end (msg nil). ok is false when nothing came in time.
func (p *Peer[Req, Resp]) take(d time.Duration) (msg *Resp, ok bool) {
	if p.ended {
		return nil, true
	}
	if !p.readAhead && !p.pending {
		// Once the stream's context has ended the receiver no longer
		// waits for demands, so a token may still be in the channel:
		// then it is the demand this take waits on.
		select {
		case p.demand <- struct{}{}:
		default:
		}
		p.pending = true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-p.results:
		p.pending = false
		if r.err != nil {
			p.ended, p.endErr = true, r.err
			return nil, true
		}
		return r.msg, true
	case <-timer.C:
		return nil, false
	}
}

// Next returns the next message, failing the test if the stream ends or
// nothing arrives within WaitTimeout.
func (p *Peer[Req, Resp]) Next() *Resp {
	p.t.Helper()
	msg, ok := p.take(WaitTimeout)
	switch {
	case !ok:
		p.t.Fatalf("%s: no message within %v, want one", p.Label, WaitTimeout)
	case msg == nil:
		p.t.Fatalf("%s: Recv() = %v, want a message", p.Label, describe(p.endErr))
	}
	return msg
}

// NextFor is Next for a message the test expects for a reason: want
// says what it should be, and a failure quotes it.
func (p *Peer[Req, Resp]) NextFor(want string) *Resp {
	p.t.Helper()
	msg, ok := p.take(WaitTimeout)
	switch {
	case !ok:
		p.t.Fatalf("%s: no message within %v, want %s", p.Label, WaitTimeout, want)
	case msg == nil:
		p.t.Fatalf("%s: Recv() = %v, want %s", p.Label, describe(p.endErr), want)
	}
	return msg
}

// NextOrEnd returns the next message, or ended true once the stream has
// ended (Status then says how); it fails the test if neither happens
// within WaitTimeout.
func (p *Peer[Req, Resp]) NextOrEnd() (msg *Resp, ended bool) {
	p.t.Helper()
	msg, ok := p.take(WaitTimeout)
	if !ok {
		p.t.Fatalf("%s: no message and no end of the stream within %v", p.Label, WaitTimeout)
	}
	return msg, msg == nil
}

// Quiet fails the test if a message arrives, or the stream ends, within
// NeverWindow; why says what must not have happened.
func (p *Peer[Req, Resp]) Quiet(why string) {
	p.t.Helper()
	msg, ok := p.take(NeverWindow)
	switch {
	case !ok:
		return
	case msg == nil:
		p.t.Fatalf("%s: the stream ended with %v %s, want it open", p.Label, describe(p.endErr), why)
	default:
		p.t.Fatalf("%s received %v %s, want nothing", p.Label, msg, why)
	}
}

// Status receives, discarding messages, until the stream ends, and
// returns how it ended: nil for OK, else the server's status. It fails
// the test if the stream has not ended within WaitTimeout.
func (p *Peer[Req, Resp]) Status() error {
	p.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !p.ended {
		if _, ok := p.take(time.Until(deadline)); !ok {
			p.t.Fatalf("%s: the stream did not end within %v", p.Label, WaitTimeout)
		}
	}
	if errors.Is(p.endErr, io.EOF) {
		return nil
	}
	return p.endErr
}

// TrySend sends m and returns Send's own error: io.EOF when the server
// has already ended the stream (Status then says how).
func (p *Peer[Req, Resp]) TrySend(m *Req) error { return p.stream.Send(m) }

// Send sends m, failing the test if the stream has ended; the failure
// names the server's status, not Send's io.EOF.
func (p *Peer[Req, Resp]) Send(m *Req) {
	p.t.Helper()
	if err := p.stream.Send(m); err != nil {
		p.t.Fatalf("%s: Send(%v) = %v; the stream ended with %v", p.Label, m, err, describe(p.Status()))
	}
}

// Finish half-closes the stream and returns how the server ended it.
func (p *Peer[Req, Resp]) Finish() error {
	p.t.Helper()
	if err := p.stream.CloseSend(); err != nil {
		p.t.Fatalf("%s: CloseSend() = %v", p.Label, err)
	}
	return p.Status()
}

// CloseSend half-closes the stream without waiting for its end.
func (p *Peer[Req, Resp]) CloseSend() {
	p.t.Helper()
	if err := p.stream.CloseSend(); err != nil {
		p.t.Fatalf("%s: CloseSend() = %v", p.Label, err)
	}
}

// T is the test the peer fails.
func (p *Peer[Req, Resp]) T() testing.TB { return p.t }

// Cancel cancels the stream's context, as a client that goes away does.
func (p *Peer[Req, Resp]) Cancel() { p.cancel() }
