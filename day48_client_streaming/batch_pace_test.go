package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/katatest"
)

// pacingProbe stands in for the rate limiter of every stream of one test
// server and watches the handler's receives. Each Wait takes one permit,
// or passes once open is closed, so a test decides how many items may be
// received; and every RecvMsg is checked to come after a Wait of its own.
type pacingProbe struct {
	permits chan struct{}
	open    chan struct{}

	mu       sync.Mutex
	waits    int      // Wait calls begun
	received int      // RecvMsg calls begun
	early    []string // receives that no Wait of their own preceded
	changed  chan struct{}
}

// newPacingProbe returns a probe that lets the first permits Waits pass.
func newPacingProbe(permits int) *pacingProbe {
	p := &pacingProbe{permits: make(chan struct{}, permits), open: make(chan struct{}), changed: make(chan struct{})}
	for range permits {
		p.permits <- struct{}{}
	}
	return p
}

// Wait counts the call, then passes on a permit or once open is closed;
// it gives up when ctx ends, as a rate.Limiter does.
func (p *pacingProbe) Wait(ctx context.Context) error {
	p.update(func() { p.waits++ })
	select {
	case <-p.permits:
		return nil
	case <-p.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// update changes the probe's counts under its lock and wakes waitForWaits.
func (p *pacingProbe) update(change func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change()
	close(p.changed)
	p.changed = make(chan struct{})
}

// counts returns how many Waits and receives have begun, and the receives
// that came before their Wait.
func (p *pacingProbe) counts() (waits, received int, early []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waits, p.received, append([]string(nil), p.early...)
}

// waitForWaits waits until n Waits have begun; false when stop is closed
// first, because the handler finished without getting there.
func (p *pacingProbe) waitForWaits(t *testing.T, n int, stop <-chan struct{}) bool {
	t.Helper()
	deadline := time.NewTimer(katatest.WaitTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		waits, changed := p.waits, p.changed
		p.mu.Unlock()
		if waits >= n {
			return true
		}
		select {
		case <-changed:
		case <-stop:
			return false
		case <-deadline.C:
			t.Fatalf("waited %v for the handler to wait on its pacer %d times, it did %d times", katatest.WaitTimeout, n, waits)
		}
	}
}

// intercept wraps every ProcessBatch stream so the probe sees its receives.
func (p *pacingProbe) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != batchMethod {
		return handler(srv, ss)
	}
	return handler(srv, &probedStream{ServerStream: ss, probe: p})
}

// probedStream reports each RecvMsg to its probe.
type probedStream struct {
	grpc.ServerStream
	probe *pacingProbe
}

// RecvMsg records the receive, noting it as early when the handler has
// not waited on the pacer for it, then receives.
func (s *probedStream) RecvMsg(m any) error {
	p := s.probe
	p.update(func() {
		p.received++
		if p.waits < p.received {
			p.early = append(p.early, fmt.Sprintf("receive %d after %d waits", p.received, p.waits))
		}
	})
	return s.ServerStream.RecvMsg(m)
}
