package core

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
	TestTimeout  = 10 * time.Minute // one go test run (solutions, stubs, one antipattern, progress)
	VetTimeout   = 10 * time.Minute
	BenchTimeout = 30 * time.Minute
	BufTimeout   = 30 * time.Minute // the first build of buf compiles a large module graph
	ProtoTimeout = 5 * time.Minute  // buf lint or buf generate
)

// errTimeout marks a command that was stopped because it ran too long.
var errTimeout = errors.New("timed out")

// RunOpts says how to run one command.
type RunOpts struct {
	Timeout time.Duration // 0 means none (the interactive demo only)
	Stdout  io.Writer     // nil means os.Stdout
	Stderr  io.Writer     // nil means os.Stderr
	// interactive connects stdin and keeps the command in the terminal's
	// process group, so Ctrl+C reaches it directly, as with go run.
	Interactive bool
	// display, when set, is printed instead of the full command line.
	Display string
	// quiet runs the command without printing its command line, for
	// commands run side by side whose caller reports them itself.
	Quiet bool
	// env, when not nil, is the command's whole environment.
	Env []string
	// stdin, when not nil, is what the command reads.
	Stdin io.Reader
}

// Run prints a command line and runs the command from the repository root,
// with the runner's environment. When ctx ends or the timeout passes, the
// command and everything it started are interrupted (see ownProcessGroup).
// The error wraps errTimeout on a timeout and *exec.ExitError when the
// command ran and exited non-zero.
func (r *Repo) Run(ctx context.Context, opts RunOpts, name string, args ...string) error {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = r.Root
	cmd.Env = opts.Env
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	}
	if opts.Interactive {
		cmd.Stdin = os.Stdin
	} else {
		OwnProcessGroup(cmd)
	}

	line := opts.Display
	if line == "" {
		line = commandLine(r.Root, name, args)
	}
	if !opts.Quiet {
		fmt.Printf("$ %s\n", line)
	}

	err := cmd.Run()
	short := filepath.Base(name)
	if len(args) > 0 {
		short += " " + args[0]
	}
	switch {
	case ctx.Err() != nil:
		KillProcessGroup(cmd)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s %w after %v", short, errTimeout, opts.Timeout)
		}
		return fmt.Errorf("%s interrupted: %w", short, ctx.Err())
	case err != nil:
		return fmt.Errorf("%s: %w", short, err)
	}
	return nil
}

// ExitedNonZero reports whether err says only that the command ran and
// exited with a non-zero status (as go test does when tests fail), rather
// than that it could not start, timed out or was interrupted.
func ExitedNonZero(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && !errors.Is(err, errTimeout) && !errors.Is(err, context.Canceled)
}

// commandLine renders a command as it could be typed in a shell at the
// repository root.
func commandLine(root, name string, args []string) string {
	if rel, err := filepath.Rel(root, name); err == nil && filepath.IsAbs(name) && filepath.IsLocal(rel) {
		name = filepath.ToSlash(rel)
	}
	words := []string{ShellQuote(name)}
	for _, a := range args {
		words = append(words, ShellQuote(a))
	}
	return strings.Join(words, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote quotes s for a POSIX shell when it needs it.
func ShellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
