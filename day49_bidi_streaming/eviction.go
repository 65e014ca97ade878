package main

import (
	"sync"
	"sync/atomic"
)

// eviction is how the server ends one stream from outside its handler:
// a slow consumer, a shutdown, a disconnect. Chat connections, editors and
// players embed it; the stream's handler waits on gone and returns goneErr.
type eviction struct {
	once    sync.Once
	gone    chan struct{} // closed when evicted
	goneErr error         // why; written once before gone is closed
}

func newEviction() eviction { return eviction{gone: make(chan struct{})} }

// beforeEvict, when a test sets it, runs at the start of every evict,
// before the eviction is marked: the last moment at which a concurrent
// call still sees the stream as live. The server never sets it.
var beforeEvict atomic.Pointer[func(*eviction)]

// evict ends the stream for reason err. Only the first call counts.
func (e *eviction) evict(err error) {
	if hook := beforeEvict.Load(); hook != nil {
		(*hook)(e)
	}
	e.once.Do(func() {
		e.goneErr = err
		close(e.gone)
	})
}

// evicted reports whether evict was called.
func (e *eviction) evicted() bool {
	select {
	case <-e.gone:
		return true
	default:
		return false
	}
}
