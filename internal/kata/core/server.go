package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Time limits of a server that a check starts, generous for the shared
// 2-core machine.
const (
	// serverReadyTimeout bounds the wait for a README's server to answer
	// its health check; go run compiles the day first.
	serverReadyTimeout = 90 * time.Second
	// serverStopLimit is how long a server may take to exit after SIGINT:
	// the days' servers give running calls 5 s (shutdownTimeout in
	// demo.go) before cutting them off, and none should be running.
	serverStopLimit       = 5 * time.Second
	healthPollInterval    = 250 * time.Millisecond
	healthProbeMaxSeconds = "5" // grpcurl -max-time for one readiness probe
)

// PortFree fails with an explanation when something already listens on
// addr: the commands would talk to it instead of the server under test.
func PortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is already in use, so the README's server cannot listen there "+
			"(is a server from an earlier go run still running? stop it and run the check again): %w", addr, err)
	}
	return l.Close()
}

// Server is a program started in the background with its own process
// group.
type Server struct {
	cmd    *exec.Cmd
	Out    *lockedBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when the program has exited
	err    error         // what Wait returned, once done is closed
}

// startServer starts the go command with args from the repository root.
// Its output is kept for failure reports. Cancelling ctx interrupts its
// process group, as stop does.
func (r *Repo) startServer(ctx context.Context, args []string) (*Server, error) {
	ctx, cancel := context.WithCancel(ctx)
	out := &lockedBuffer{}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = r.Root
	cmd.Stdout, cmd.Stderr = out, out
	OwnProcessGroup(cmd)
	fmt.Printf("$ %s &\n", commandLine(r.Root, "go", args))
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s := &Server{cmd: cmd, Out: out, cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// exited reports whether the program has exited.
func (s *Server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitHealthy polls addr with grpcurl until the standard health check
// answers SERVING, the program exits, or serverReadyTimeout passes.
func (s *Server) waitHealthy(parent context.Context, grpcurl, addr string) error {
	ctx, cancel := context.WithTimeout(parent, serverReadyTimeout)
	defer cancel()
	var last []byte
	for {
		probe, probeCancel := context.WithTimeout(ctx, 10*time.Second)
		last, _ = exec.CommandContext(probe, grpcurl, "-plaintext", "-max-time", healthProbeMaxSeconds,
			addr, "grpc.health.v1.Health/Check").CombinedOutput()
		probeCancel()
		if bytes.Contains(last, []byte(`"SERVING"`)) {
			return nil
		}
		if s.exited() {
			if parent.Err() != nil {
				return parent.Err()
			}
			if strings.Contains(s.Out.String(), "address already in use") {
				return fmt.Errorf("the server could not listen on %s: the address is already in use", addr)
			}
			return fmt.Errorf("the server exited before answering the health check: %v", s.err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the server did not answer the health check on %s within %v; the last attempt said: %s",
					addr, serverReadyTimeout, strings.TrimSpace(string(last)))
			}
			return ctx.Err()
		case <-s.done:
		case <-time.After(healthPollInterval):
		}
	}
}

// stop interrupts the program's process group with SIGINT, as Ctrl+C in a
// terminal would, and requires a clean exit within serverStopLimit. A
// program that overstays is killed. It returns how long the exit took.
func (s *Server) stop() (time.Duration, error) {
	if s.exited() {
		s.cancel()
		return 0, fmt.Errorf("the server had exited before it was stopped: %v", s.err)
	}
	start := time.Now()
	s.cancel()
	t := time.NewTimer(serverStopLimit)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		KillProcessGroup(s.cmd)
		<-s.done
		return 0, fmt.Errorf("the server did not exit within %v of SIGINT, so it was killed", serverStopLimit)
	}
	took := time.Since(start)
	// The go command of go run catches SIGINT too and then exits 1 even
	// when the program exited 0; a program that failed or died of the
	// signal it did not handle, it reports on its last line.
	if st := s.cmd.ProcessState; st == nil || st.ExitCode() > 1 {
		return took, fmt.Errorf("the server did not exit cleanly after SIGINT: %v", s.err)
	}
	if report := goRunReport(s.Out.String()); report != "" {
		return took, fmt.Errorf("the server did not exit cleanly after SIGINT: go run says %q", report)
	}
	return took, nil
}

// goRunFailure matches the line go run prints after its program when the
// program exited non-zero or was killed by a signal.
var goRunFailure = regexp.MustCompile(`^(exit status \d+|signal: .+)$`)

// goRunReport returns the failure go run reported at the end of output, or
// "" when there is none.
func goRunReport(output string) string {
	lines := strings.Split(strings.TrimRight(output, "\n"), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); goRunFailure.MatchString(last) {
		return last
	}
	return ""
}

// ShowOutput prints what the program printed, for a failure report.
func (s *Server) ShowOutput() {
	fmt.Printf("the server printed:\n%s\n", QuoteOutput(s.Out.String()))
}

// lockedBuffer is a bytes.Buffer that a running command may write while
// the runner reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WithReferenceServer starts "go run" with args and the day's reference
// solutions swapped in, waits until addr answers the health check, calls
// use, then stops the server with SIGINT and requires a clean exit.
func (r *Repo) WithReferenceServer(ctx context.Context, d Day, args []string, addr, grpcurl string, use func(*Server) error) (err error) {
	overlay, remove, err := ReferenceOverlay([]Day{d})
	if err != nil {
		return err
	}
	defer remove()
	srv, err := r.startServer(ctx, append([]string{"run", "-overlay=" + overlay}, args...))
	if err != nil {
		return err
	}
	defer func() {
		took, stopErr := srv.stop()
		if ctx.Err() != nil {
			return // interrupted: the server was only to be stopped
		}
		if stopErr == nil {
			fmt.Printf("day%s: the server stopped cleanly %.1fs after SIGINT (limit %v)\n", d.Num, took.Seconds(), serverStopLimit)
			return
		}
		if err == nil {
			err = stopErr
			srv.ShowOutput()
			return
		}
		fmt.Printf("day%s: and stopping the server: %v\n", d.Num, stopErr)
	}()

	fmt.Printf("day%s: waiting up to %v for %s to answer the health check\n", d.Num, serverReadyTimeout, addr)
	start := time.Now()
	if err := srv.waitHealthy(ctx, grpcurl, addr); err != nil {
		if ctx.Err() == nil {
			srv.ShowOutput()
		}
		return err
	}
	fmt.Printf("day%s: the server answers after %.1fs\n", d.Num, time.Since(start).Seconds())
	return use(srv)
}
