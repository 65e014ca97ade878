// Package quota keeps a rate limit per identity rather than per stream,
// so that opening another stream, or reconnecting, gives a client nothing
// back: the limiter outlives the streams that spent it.
//
// A limiter is forgotten only once it has refilled completely. A new one
// starts full too, so forgetting it then changes nothing, and memory stays
// bounded by the identities active within one refill time.
package quota

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiters hands out one token bucket per identity. It is safe for
// concurrent use.
type Limiters struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu     sync.Mutex
	byID   map[string]*rate.Limiter
	sweeps int // calls since the last sweep
}

// New returns limiters of perSecond events a second with bursts of burst,
// read against the clock now (time.Now when nil).
func New(perSecond float64, burst int, now func() time.Time) *Limiters {
	if now == nil {
		now = time.Now
	}
	return &Limiters{limit: rate.Limit(perSecond), burst: burst, now: now, byID: make(map[string]*rate.Limiter)}
}

// Allow reports whether id may have one more event now, and spends it.
func (l *Limiters) Allow(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweepLocked(now)
	return l.limiterLocked(id).AllowN(now, 1)
}

// Bucket is one identity's share of the limiters, for code that holds a
// limiter per stream: every Bucket of one id spends from the same bucket.
type Bucket struct {
	l  *Limiters
	id string
}

// Bucket returns id's share of the limiters.
func (l *Limiters) Bucket(id string) Bucket { return Bucket{l: l, id: id} }

// AllowN reports whether n events may happen at now, and spends them, as
// rate.Limiter.AllowN does.
func (b Bucket) AllowN(now time.Time, n int) bool {
	b.l.mu.Lock()
	defer b.l.mu.Unlock()
	b.l.maybeSweepLocked(now)
	return b.l.limiterLocked(b.id).AllowN(now, n)
}

// Wait blocks until id may have one more event, spends it, and returns
// nil; or returns an error at once when ctx's deadline comes before that
// moment, or when ctx ends while waiting (the event is then not spent).
// Waiters of one id share its bucket, so parallel streams get no more than
// one stream would.
func (l *Limiters) Wait(ctx context.Context, id string) error {
	return l.WaitN(ctx, id, 1)
}

// WaitN is Wait for n events at once, as for work that costs n; n above
// the burst is an error at once, since the bucket never holds that many.
func (l *Limiters) WaitN(ctx context.Context, id string, n int) error {
	l.mu.Lock()
	now := l.now()
	l.maybeSweepLocked(now)
	// A reservation spends the tokens now, so the bucket is not full, and
	// not forgotten, while this caller waits for them.
	r := l.limiterLocked(id).ReserveN(now, n)
	l.mu.Unlock()
	if !r.OK() {
		return fmt.Errorf("quota: a burst of %d cannot hold %d events", l.burst, n)
	}
	delay := r.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(now.Add(delay)) {
		r.CancelAt(now)
		return fmt.Errorf("quota: the next event for %q is %v away, past the context's deadline", id, delay.Round(time.Millisecond))
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.CancelAt(l.now())
		return ctx.Err()
	}
}

// Len reports how many identities have a limiter that is not full again.
func (l *Limiters) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(l.now())
	return len(l.byID)
}

func (l *Limiters) limiterLocked(id string) *rate.Limiter {
	lim, ok := l.byID[id]
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byID[id] = lim
	}
	return lim
}

// maybeSweepLocked sweeps once every so many calls, so that a sweep's cost,
// linear in the identities, is shared out.
func (l *Limiters) maybeSweepLocked(now time.Time) {
	if l.sweeps++; l.sweeps >= 64 || l.sweeps >= len(l.byID) {
		l.sweepLocked(now)
	}
}

// sweepLocked forgets the limiters that have refilled completely: a new
// one would be the same.
func (l *Limiters) sweepLocked(now time.Time) {
	l.sweeps = 0
	for id, lim := range l.byID {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.byID, id)
		}
	}
}
