package serving

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// State is what a server's debug endpoint reports at /debug/state: enough
// to tell, from outside the process, whether an attack left goroutines or
// memory behind.
type State struct {
	Goroutines int `json:"goroutines"`
	// HeapLiveBytes is the heap in use after a garbage collection, so it
	// counts what is still reachable, not garbage not yet collected.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
}

// StartDebug listens on addr and serves the debug endpoint there (see
// ServeDebug); stop closes it. An empty addr serves nothing, and stop
// does nothing.
func StartDebug(addr string) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug endpoint on %s: %w", addr, err)
	}
	return ServeDebug(lis), nil
}

// ServeDebug serves, on lis, /debug/state (State, as JSON) and the
// runtime profiles at /debug/pprof/. It is for operators and the abuse
// suite, never for clients: listen on a loopback address. Each request
// to /debug/state runs two garbage collections. stop closes lis and
// waits for the server to end.
func ServeDebug(lis net.Listener) (stop func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, _ *http.Request) {
		// Two collections: the first moves what sync.Pools hold (grpc-go's
		// buffers among them) to their victim caches, the second frees it.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(State{Goroutines: runtime.NumGoroutine(), HeapLiveBytes: m.HeapAlloc})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("debug endpoint stopped", "err", err)
		}
	}()
	return func() {
		srv.Close()
		<-done
	}
}
