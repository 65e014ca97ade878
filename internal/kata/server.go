package main

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

// portFree fails with an explanation when something already listens on
// addr: the commands would talk to it instead of the server under test.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is already in use, so the README's server cannot listen there "+
			"(is a server from an earlier go run still running? stop it and run the check again): %w", addr, err)
	}
	return l.Close()
}

// server is a program started in the background with its own process
// group.
type server struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when the program has exited
	err    error         // what Wait returned, once done is closed
}

// startServer starts the go command with args from the repository root.
// Its output is kept for failure reports. Cancelling ctx interrupts its
// process group, as stop does.
func (r *repo) startServer(ctx context.Context, args []string) (*server, error) {
	ctx, cancel := context.WithCancel(ctx)
	out := &lockedBuffer{}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = r.root
	cmd.Stdout, cmd.Stderr = out, out
	ownProcessGroup(cmd)
	fmt.Printf("$ %s &\n", commandLine(r.root, "go", args))
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s := &server{cmd: cmd, out: out, cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// exited reports whether the program has exited.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitHealthy polls addr with grpcurl until the standard health check
// answers SERVING, the program exits, or serverReadyTimeout passes.
func (s *server) waitHealthy(parent context.Context, grpcurl, addr string) error {
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
			if strings.Contains(s.out.String(), "address already in use") {
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
func (s *server) stop() (time.Duration, error) {
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
		killProcessGroup(s.cmd)
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
	if report := goRunReport(s.out.String()); report != "" {
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

// showOutput prints what the program printed, for a failure report.
func (s *server) showOutput() {
	fmt.Printf("the server printed:\n%s\n", quoteOutput(s.out.String()))
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

// withReferenceServer starts "go run" with args and the day's reference
// solutions swapped in, waits until addr answers the health check, calls
// use, then stops the server with SIGINT and requires a clean exit.
func (r *repo) withReferenceServer(ctx context.Context, d day, args []string, addr, grpcurl string, use func(*server) error) (err error) {
	overlay, remove, err := referenceOverlay([]day{d})
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
			fmt.Printf("day%s: the server stopped cleanly %.1fs after SIGINT (limit %v)\n", d.num, took.Seconds(), serverStopLimit)
			return
		}
		if err == nil {
			err = stopErr
			srv.showOutput()
			return
		}
		fmt.Printf("day%s: and stopping the server: %v\n", d.num, stopErr)
	}()

	fmt.Printf("day%s: waiting up to %v for %s to answer the health check\n", d.num, serverReadyTimeout, addr)
	start := time.Now()
	if err := srv.waitHealthy(ctx, grpcurl, addr); err != nil {
		if ctx.Err() == nil {
			srv.showOutput()
		}
		return err
	}
	fmt.Printf("day%s: the server answers after %.1fs\n", d.num, time.Since(start).Seconds())
	return use(srv)
}
