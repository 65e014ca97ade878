package serving

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// StreamLimits bound what one client can hold open, and for how little.
// The transport bounds streams per connection (Limits.MaxConcurrentStreams)
// and keepalive ends connections whose peer has gone; neither stops a
// client that opens many connections, or one that stays connected and
// sends a byte now and then to keep an upload, a file handle and a
// goroutine held for ever. The zero value of a field means its default.
type StreamLimits struct {
	// PerUser bounds the streams one user has open at once, across all of
	// the user's connections. A stream past it is refused with
	// ResourceExhausted before its handler runs. Default 32. Streams of
	// calls that need no token have no user and are not counted; the idle
	// and rate limits below are what bound them.
	PerUser int
	// Idle is the longest the handler of a client-streaming call (an
	// upload, a batch, a collection) waits in one Recv for its client's
	// next message. Default 30 s.
	// Bidirectional streams are exempt: a chat member who only listens is
	// idle on purpose, and keepalive ends the ones whose client has gone.
	Idle time.Duration
	// MinRate is the slowest a client-streaming call may send, in encoded
	// message bytes per second, averaged over the time its handler has
	// waited in Recv; the first Idle of waiting is free. So a call that has
	// sent n bytes may have kept its handler waiting Idle + n/MinRate in
	// all. Time the handler spends on its own work (writing to disk,
	// pacing itself) is never charged to the client. Default 1 KiB/s.
	MinRate int
}

func (l StreamLimits) withDefaults() StreamLimits {
	if l.PerUser == 0 {
		l.PerUser = 32
	}
	if l.Idle == 0 {
		l.Idle = 30 * time.Second
	}
	if l.MinRate == 0 {
		l.MinRate = 1 << 10
	}
	return l
}

// Interceptor enforces l. user names the caller of a stream, from the
// identity an authentication interceptor earlier in the chain put in its
// context; ok false means the call has no user.
//
// A client-streaming call too idle or too slow gets DeadlineExceeded from
// its next Recv, naming the limit, exactly as if its client's deadline had
// passed: the handler ends the call the way it ends one whose client gave
// up (an upload is paused, and can be resumed by a faster client).
func (l StreamLimits) Interceptor(user func(context.Context) (name string, ok bool)) grpc.StreamServerInterceptor {
	l = l.withDefaults()
	open := &openStreams{limit: l.PerUser, count: make(map[string]int)}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if name, ok := user(ss.Context()); ok {
			if err := open.acquire(name); err != nil {
				return err
			}
			defer open.release(name)
		}
		if !info.IsClientStream || info.IsServerStream {
			return handler(srv, ss)
		}
		paced := &pacedStream{ServerStream: ss, limits: l}
		defer paced.stop()
		return handler(srv, paced)
	}
}

// openStreams counts each user's open streams.
type openStreams struct {
	limit int
	mu    sync.Mutex
	count map[string]int
}

func (o *openStreams) acquire(user string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.count[user] >= o.limit {
		return status.Errorf(codes.ResourceExhausted, "user %q already has %d streams open, the limit per user", user, o.limit)
	}
	o.count[user]++
	return nil
}

func (o *openStreams) release(user string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.count[user]--; o.count[user] == 0 {
		delete(o.count, user) // a user's entry lives only while it has streams
	}
}

// pacedStream is a client-streaming call's stream whose RecvMsg gives up
// at the call's next deadline. grpc-go's RecvMsg cannot be interrupted
// except by ending the call, and a handler cannot end its call while it
// is blocked in RecvMsg; so one goroutine per call does the receiving,
// and RecvMsg waits for it or for the deadline, whichever comes first.
// After a deadline the handler returns, the call ends, and the pending
// receive fails and ends the goroutine.
type pacedStream struct {
	grpc.ServerStream
	limits   StreamLimits
	waited   time.Duration // in RecvMsg, in all
	received int64         // encoded bytes received

	requests chan any    // a message to receive into; nil until the first RecvMsg
	results  chan error  // its outcome; buffered, so the receiver never waits
	timer    *time.Timer // the current RecvMsg's deadline, reused
	failed   error       // the limit that ended the call
}

func (s *pacedStream) RecvMsg(m any) error {
	if s.failed != nil {
		return s.failed
	}
	if s.requests == nil {
		s.requests = make(chan any)
		s.results = make(chan error, 1)
		go s.receive()
	}
	s.requests <- m
	start := time.Now()
	wait, late := s.allowance()
	if s.timer == nil {
		s.timer = time.NewTimer(wait)
	} else {
		s.timer.Reset(wait) // since Go 1.23, a stopped timer's channel is empty
	}
	defer s.timer.Stop()
	select {
	case err := <-s.results:
		s.waited += time.Since(start)
		if err == nil {
			if pm, ok := m.(proto.Message); ok {
				s.received += int64(proto.Size(pm))
			}
		}
		return err
	case <-s.timer.C:
		// The message m is the receiver's until its RecvMsg returns; the
		// handler, told the call failed, does not look at it again.
		s.failed = late()
		return s.failed
	}
}

// receive runs the call's receives, one at a time, until stop.
func (s *pacedStream) receive() {
	for m := range s.requests {
		s.results <- s.ServerStream.RecvMsg(m)
	}
}

// stop ends the receiving goroutine once its receive, if any, returns.
func (s *pacedStream) stop() {
	if s.requests != nil {
		close(s.requests)
	}
}

// allowance is how long this RecvMsg may wait, and the error the call
// fails with if it has to: Idle, or what is left of the waiting the bytes
// received so far have earned at MinRate, whichever is shorter.
func (s *pacedStream) allowance() (time.Duration, func() error) {
	earned := s.limits.Idle + time.Duration(float64(s.received)/float64(s.limits.MinRate)*float64(time.Second))
	if left := earned - s.waited; left < s.limits.Idle {
		return left, func() error {
			return status.Errorf(codes.DeadlineExceeded,
				"received %s in %v of waiting: a client stream must send at least %d bytes/s once its first %v have passed",
				byteCount(s.received), earned, s.limits.MinRate, s.limits.Idle)
		}
	}
	return s.limits.Idle, func() error {
		return status.Errorf(codes.DeadlineExceeded,
			"no message for %v: a client stream may be idle for at most %v", s.limits.Idle, s.limits.Idle)
	}
}

func byteCount(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
