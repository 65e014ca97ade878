package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Time limits for the commands the runner starts. Each is generous for the
// shared 2-core machine; hitting one means something hangs.
const (
	testTimeout  = 10 * time.Minute // one go test run (solutions, stubs, one antipattern, progress)
	vetTimeout   = 10 * time.Minute
	benchTimeout = 30 * time.Minute
	bufTimeout   = 30 * time.Minute // the first build of buf compiles a large module graph
	protoTimeout = 5 * time.Minute  // buf lint or buf generate
)

// errTimeout marks a command that was stopped because it ran too long.
var errTimeout = errors.New("timed out")

// runOpts says how to run one command.
type runOpts struct {
	timeout time.Duration // 0 means none (the interactive demo only)
	stdout  io.Writer     // nil means os.Stdout
	stderr  io.Writer     // nil means os.Stderr
	// interactive connects stdin and keeps the command in the terminal's
	// process group, so Ctrl+C reaches it directly, as with go run.
	interactive bool
	// display, when set, is printed instead of the full command line.
	display string
	// quiet runs the command without printing its command line, for
	// commands run side by side whose caller reports them itself.
	quiet bool
	// env, when not nil, is the command's whole environment.
	env []string
	// stdin, when not nil, is what the command reads.
	stdin io.Reader
}

// run prints a command line and runs the command from the repository root,
// with the runner's environment. When ctx ends or the timeout passes, the
// command and everything it started are interrupted (see ownProcessGroup).
// The error wraps errTimeout on a timeout and *exec.ExitError when the
// command ran and exited non-zero.
func (r *repo) run(ctx context.Context, opts runOpts, name string, args ...string) error {
	if opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = r.root
	cmd.Env = opts.env
	cmd.Stdout, cmd.Stderr = opts.stdout, opts.stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if opts.stdin != nil {
		cmd.Stdin = opts.stdin
	}
	if opts.interactive {
		cmd.Stdin = os.Stdin
	} else {
		ownProcessGroup(cmd)
	}

	line := opts.display
	if line == "" {
		line = commandLine(r.root, name, args)
	}
	if !opts.quiet {
		fmt.Printf("$ %s\n", line)
	}

	err := cmd.Run()
	short := filepath.Base(name)
	if len(args) > 0 {
		short += " " + args[0]
	}
	switch {
	case ctx.Err() != nil:
		killProcessGroup(cmd)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s %w after %v", short, errTimeout, opts.timeout)
		}
		return fmt.Errorf("%s interrupted: %w", short, ctx.Err())
	case err != nil:
		return fmt.Errorf("%s: %w", short, err)
	}
	return nil
}

// exitedNonZero reports whether err says only that the command ran and
// exited with a non-zero status (as go test does when tests fail), rather
// than that it could not start, timed out or was interrupted.
func exitedNonZero(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && !errors.Is(err, errTimeout) && !errors.Is(err, context.Canceled)
}

// commandLine renders a command as it could be typed in a shell at the
// repository root.
func commandLine(root, name string, args []string) string {
	if rel, err := filepath.Rel(root, name); err == nil && filepath.IsAbs(name) && filepath.IsLocal(rel) {
		name = filepath.ToSlash(rel)
	}
	words := []string{shellQuote(name)}
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
