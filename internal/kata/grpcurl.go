package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Time limits of the grpcurl check, generous for the shared 2-core machine.
const (
	grpcurlBuildTimeout = 30 * time.Minute // the first build compiles grpcurl and its module graph
	// serverReadyTimeout bounds the wait for a README's server to answer
	// its health check; go run compiles the day first.
	serverReadyTimeout = 90 * time.Second
	// serverStopLimit is how long a server may take to exit after SIGINT:
	// the days' servers give running calls 5 s (shutdownTimeout in
	// demo.go) before cutting them off, and none should be running.
	serverStopLimit       = 5 * time.Second
	readmeCommandTimeout  = time.Minute
	healthPollInterval    = 250 * time.Millisecond
	healthProbeMaxSeconds = "5" // grpcurl -max-time for one readiness probe
)

// grpcurlPackage is the main package of grpcurl in tools/clients/go.mod.
const grpcurlPackage = "github.com/fullstorydev/grpcurl/cmd/grpcurl"

// cmdGrpcurl runs the grpcurl commands that each day's README marks as
// checked (see readmeblocks.go) against the day's server running the
// reference solutions, and checks their exit status and output. With
// -build it only builds .bin/grpcurl.
func cmdGrpcurl(ctx context.Context, r *repo, inv invocation) error {
	if inv.flag("build") {
		_, err := r.buildGrpcurl(ctx)
		return err
	}
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	type dayBlocks struct {
		day    day
		blocks []checkedBlock
	}
	var todo []dayBlocks
	for _, d := range days {
		data, err := os.ReadFile(filepath.Join(d.path, "README.md"))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Printf("day%s: no README.md, no grpcurl commands to check\n", d.num)
			continue
		}
		if err != nil {
			return err
		}
		blocks, err := parseCheckedBlocks(string(data))
		if err != nil {
			return fmt.Errorf("%s/README.md: %w", d.dir, err)
		}
		if len(blocks) == 0 {
			fmt.Printf("day%s: the README marks no grpcurl commands as checked\n", d.num)
			continue
		}
		todo = append(todo, dayBlocks{d, blocks})
	}
	if len(todo) == 0 {
		return nil
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return fmt.Errorf("the README commands run with bash, which is not installed: %w", err)
	}
	grpcurl, err := r.buildGrpcurl(ctx)
	if err != nil {
		return err
	}
	var failed []string
	for _, t := range todo {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := r.checkReadmeCommands(ctx, t.day, t.blocks, grpcurl); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("day%s grpcurl: FAILED: %v\n", t.day.num, err)
			failed = append(failed, t.day.dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("grpcurl commands failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// buildGrpcurl builds the grpcurl version pinned in tools/clients/go.mod
// into .bin/grpcurl and returns its path. The go command skips the build
// when .bin/grpcurl is already up to date.
func (r *repo) buildGrpcurl(ctx context.Context) (string, error) {
	if _, err := os.Stat(filepath.Join(r.root, "tools", "clients", "go.mod")); err != nil {
		return "", fmt.Errorf("tools/clients/go.mod, which pins grpcurl, is missing: %w", err)
	}
	bin := filepath.Join(r.root, ".bin", "grpcurl")
	fmt.Println("building grpcurl from tools/clients/go.mod into .bin/grpcurl (the first build downloads and compiles grpcurl and takes a few minutes; later ones take seconds)")
	err := r.run(ctx, runOpts{timeout: grpcurlBuildTimeout}, "go", "build", "-C", "tools/clients", "-o", bin, grpcurlPackage)
	if err != nil {
		return "", fmt.Errorf("building grpcurl: %w", err)
	}
	return bin, nil
}

// checkReadmeCommands starts the day's server as its README says, with the
// reference solutions, runs every checked command against it and stops it.
func (r *repo) checkReadmeCommands(ctx context.Context, d day, blocks []checkedBlock, grpcurl string) error {
	readme := d.dir + "/README.md"
	var serverCmd *readmeCommand
	var commands []readmeCommand
	for _, b := range blocks {
		switch b.kind {
		case blockServer:
			if serverCmd != nil {
				return fmt.Errorf("%s:%d: a second server block (the first is at line %d)", readme, b.line, serverCmd.line)
			}
			if len(b.commands) != 1 {
				return fmt.Errorf("%s:%d: a server block holds one command, this one %d", readme, b.line, len(b.commands))
			}
			serverCmd = &b.commands[0]
		case blockGrpcurl:
			commands = append(commands, b.commands...)
		}
	}
	if serverCmd == nil {
		return fmt.Errorf("%s has checked grpcurl commands but no <!-- checked: %s --> block to start the server", readme, blockServer)
	}
	if len(commands) == 0 {
		return fmt.Errorf("%s has a server block but no <!-- checked: %s --> commands", readme, blockGrpcurl)
	}
	serverArgs, err := goRunArgs(*serverCmd)
	if err != nil {
		return fmt.Errorf("%s:%d: %w", readme, serverCmd.line, err)
	}
	addr, err := commandsAddress(commands)
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	if err := portFree(addr); err != nil {
		return err
	}

	fmt.Printf("day%s: %d grpcurl commands in %s\n", d.num, len(commands), readme)
	fmt.Printf("day%s: starting the server as %s:%d says, with the reference solutions: %s\n", d.num, readme, serverCmd.line, serverCmd.text)
	return r.withReferenceServer(ctx, d, serverArgs, addr, grpcurl, func(srv *server) error {
		if err := r.runCommands(ctx, d, readme, commands, srv); err != nil {
			return err
		}
		return r.runPrintedCommands(ctx, d, srv)
	})
}

// printedInput is what a command the server prints reads from its
// standard input when the check runs it: one line, then the end.
const printedInput = "hello from the check of printed commands\n"

// runPrintedCommands runs, as printed, every "go run ./..." line the
// running server has printed for its reader (the chat command of the
// day 49 banner), with the reference solutions swapped in and one line on
// standard input. Each must exit 0.
func (r *repo) runPrintedCommands(ctx context.Context, d day, srv *server) error {
	var printed []string
	for line := range strings.Lines(srv.out.String()) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "go run ./") {
			printed = append(printed, line)
		}
	}
	if len(printed) == 0 {
		fmt.Printf("day%s: the server printed no commands to run\n", d.num)
		return nil
	}
	overlay, remove, err := referenceOverlay([]day{d})
	if err != nil {
		return err
	}
	defer remove()
	env := append(os.Environ(), "GOFLAGS=-overlay="+overlay)
	for _, c := range printed {
		var out bytes.Buffer
		err := r.run(ctx, runOpts{timeout: readmeCommandTimeout, stdout: &out, stderr: &out, env: env, stdin: strings.NewReader(printedInput),
			display: c + "   # printed by the server; one line on stdin, the reference swapped in"}, "bash", "-c", c)
		if err != nil {
			srv.showOutput()
			return fmt.Errorf("the server printed %q for its reader to run, and run as printed it failed: %w\n%s", c, err, quoteOutput(out.String()))
		}
		fmt.Printf("ok   printed by the server: %s\n", c)
	}
	return nil
}

// runCommands runs the checked commands against the running server.
func (r *repo) runCommands(ctx context.Context, d day, readme string, commands []readmeCommand, srv *server) error {
	var failed []string
	for _, c := range commands {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		where := fmt.Sprintf("%s:%d", readme, c.line)
		if problem := r.runReadmeCommand(ctx, c); problem != "" {
			fmt.Printf("FAIL %s: %s\n", where, problem)
			failed = append(failed, where)
			continue
		}
		fmt.Printf("ok   %s: exit status %d, %d shown output lines found\n", where, c.exit, len(c.expect))
	}
	if len(failed) > 0 {
		srv.showOutput()
		return fmt.Errorf("%d of %d commands did not do what the README shows: %s", len(failed), len(commands), strings.Join(failed, ", "))
	}
	fmt.Printf("day%s: all %d grpcurl commands work as printed\n", d.num, len(commands))
	return nil
}

// runReadmeCommand runs one command through bash from the repository root
// and describes how it differs from what the README shows, or returns "".
func (r *repo) runReadmeCommand(ctx context.Context, c readmeCommand) string {
	var out bytes.Buffer
	err := r.run(ctx, runOpts{timeout: readmeCommandTimeout, stdout: &out, stderr: &out, display: c.summary()}, "bash", "-c", c.text)
	code := 0
	if err != nil {
		if !exitedNonZero(err) {
			return fmt.Sprintf("%v\n%s", err, quoteOutput(out.String()))
		}
		var exit *exec.ExitError
		errors.As(err, &exit)
		code = exit.ExitCode()
	}
	var problems []string
	if code != c.exit {
		problems = append(problems, fmt.Sprintf("exit status %d, want %d", code, c.exit))
	}
	for _, m := range missingOutput(out.String(), c.expect) {
		problems = append(problems, "no output line matches #> "+m)
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("%s; it printed:\n%s", strings.Join(problems, "; "), quoteOutput(out.String()))
}

// quoteOutput indents what a command printed, for a failure report.
func quoteOutput(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (nothing)"
	}
	return indent(s, "    ")
}

// goRunArgs checks that a server block's command is a plain "go run ..."
// and returns its arguments after "run". The runner starts it without a
// shell, so quoting and other shell syntax are refused.
func goRunArgs(c readmeCommand) ([]string, error) {
	if strings.ContainsAny(c.text, "\\\n'\"`$|&;<>(){}*?~") || len(c.expect) > 0 || c.exit != 0 {
		return nil, fmt.Errorf("the server block must hold one plain command, go run PACKAGE [FLAGS], without shell syntax or shown output; it holds %q", c.text)
	}
	words := strings.Fields(c.text)
	if len(words) < 3 || words[0] != "go" || words[1] != "run" {
		return nil, fmt.Errorf("the server command must be go run PACKAGE [FLAGS], not %q", c.text)
	}
	return words[2:], nil
}

// localAddress matches a loopback host:port in a command.
var localAddress = regexp.MustCompile(`\b(?:127\.0\.0\.1|localhost):\d+\b`)

// commandsAddress returns the one loopback address the commands talk to.
func commandsAddress(commands []readmeCommand) (string, error) {
	var addrs []string
	for _, c := range commands {
		for _, a := range localAddress.FindAllString(c.text, -1) {
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	switch len(addrs) {
	case 1:
		return addrs[0], nil
	case 0:
		return "", errors.New("the checked commands name no 127.0.0.1:PORT or localhost:PORT to talk to")
	default:
		return "", fmt.Errorf("the checked commands talk to several addresses (%s); the server serves one", strings.Join(addrs, ", "))
	}
}
