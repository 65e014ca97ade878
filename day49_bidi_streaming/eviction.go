package main

import "sync"

// eviction is how the server ends one stream from outside its handler:
// a slow consumer, a shutdown, a disconnect. Chat connections, editors and
// players embed it; the stream's handler waits on gone and returns goneErr.
type eviction struct {
	once    sync.Once
	gone    chan struct{} // closed when evicted
	goneErr error         // why; written once before gone is closed
}

func newEviction() eviction { return eviction{gone: make(chan struct{})} }

// evict ends the stream for reason err. Only the first call counts.
func (e *eviction) evict(err error) {
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
