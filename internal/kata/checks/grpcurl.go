package checks

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

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// Time limits of the grpcurl check, generous for the shared 2-core machine.
const (
	grpcurlBuildTimeout  = 30 * time.Minute // the first build compiles grpcurl and its module graph
	readmeCommandTimeout = time.Minute
)

// grpcurlPackage is the main package of grpcurl in tools/clients/go.mod.
const grpcurlPackage = "github.com/fullstorydev/grpcurl/cmd/grpcurl"

// CmdGrpcurl runs the grpcurl commands that each day's READMEs, in every
// language, mark as checked (see readmeblocks.go) against the day's
// server running the reference solutions, and checks their exit status
// and output. With -build it only builds .bin/grpcurl.
func CmdGrpcurl(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	if inv.Flag("build") {
		_, err := buildGrpcurl(ctx, r)
		return err
	}
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	type dayBlocks struct {
		day    core.Day
		readme string // the README's path from the root
		blocks []core.CheckedBlock
	}
	var todo []dayBlocks
	for _, d := range days {
		for _, l := range core.Langs {
			readme := d.Dir + "/" + l.Readme()
			data, err := os.ReadFile(filepath.Join(d.Path, l.Readme()))
			if errors.Is(err, os.ErrNotExist) {
				fmt.Printf("no %s, no grpcurl commands to check\n", readme)
				continue
			}
			if err != nil {
				return err
			}
			blocks, err := core.ParseCheckedBlocks(string(data))
			if err != nil {
				return fmt.Errorf("%s: %w", readme, err)
			}
			if len(blocks) == 0 {
				fmt.Printf("%s marks no grpcurl commands as checked\n", readme)
				continue
			}
			todo = append(todo, dayBlocks{d, readme, blocks})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return fmt.Errorf("the README commands run with bash, which is not installed: %w", err)
	}
	grpcurl, err := buildGrpcurl(ctx, r)
	if err != nil {
		return err
	}
	var failed []string
	for _, t := range todo {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := checkReadmeCommands(ctx, r, t.day, t.readme, t.blocks, grpcurl); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("%s grpcurl: FAILED: %v\n", t.readme, err)
			failed = append(failed, t.readme)
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
func buildGrpcurl(ctx context.Context, r *core.Repo) (string, error) {
	if _, err := os.Stat(filepath.Join(r.Root, "tools", "clients", "go.mod")); err != nil {
		return "", fmt.Errorf("tools/clients/go.mod, which pins grpcurl, is missing: %w", err)
	}
	bin := filepath.Join(r.Root, ".bin", "grpcurl")
	fmt.Println("building grpcurl from tools/clients/go.mod into .bin/grpcurl (the first build downloads and compiles grpcurl and takes a few minutes; later ones take seconds)")
	err := r.Run(ctx, core.RunOpts{Timeout: grpcurlBuildTimeout}, "go", "build", "-C", "tools/clients", "-o", bin, grpcurlPackage)
	if err != nil {
		return "", fmt.Errorf("building grpcurl: %w", err)
	}
	return bin, nil
}

// checkReadmeCommands starts the day's server as its README (readme, the
// path from the root) says, with the reference solutions, runs every
// checked command against it and stops it.
func checkReadmeCommands(ctx context.Context, r *core.Repo, d core.Day, readme string, blocks []core.CheckedBlock, grpcurl string) error {
	var serverCmd *core.ReadmeCommand
	var commands []core.ReadmeCommand
	for _, b := range blocks {
		switch b.Kind {
		case core.BlockServer:
			if serverCmd != nil {
				return fmt.Errorf("%s:%d: a second server block (the first is at line %d)", readme, b.Line, serverCmd.Line)
			}
			if len(b.Commands) != 1 {
				return fmt.Errorf("%s:%d: a server block holds one command, this one %d", readme, b.Line, len(b.Commands))
			}
			serverCmd = &b.Commands[0]
		case core.BlockGrpcurl:
			commands = append(commands, b.Commands...)
		}
	}
	if serverCmd == nil {
		return fmt.Errorf("%s has checked grpcurl commands but no <!-- checked: %s --> block to start the server", readme, core.BlockServer)
	}
	if len(commands) == 0 {
		return fmt.Errorf("%s has a server block but no <!-- checked: %s --> commands", readme, core.BlockGrpcurl)
	}
	serverArgs, err := goRunArgs(*serverCmd)
	if err != nil {
		return fmt.Errorf("%s:%d: %w", readme, serverCmd.Line, err)
	}
	addr, err := commandsAddress(commands)
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	if err := core.PortFree(addr); err != nil {
		return err
	}

	fmt.Printf("day%s: %d grpcurl commands in %s\n", d.Num, len(commands), readme)
	fmt.Printf("day%s: starting the server as %s:%d says, with the reference solutions: %s\n", d.Num, readme, serverCmd.Line, serverCmd.Text)
	return r.WithReferenceServer(ctx, d, serverArgs, addr, grpcurl, func(srv *core.Server) error {
		if err := runCommands(ctx, r, d, readme, commands, srv); err != nil {
			return err
		}
		return runPrintedCommands(ctx, r, d, srv)
	})
}

// printedInput is what a command the server prints reads from its
// standard input when the check runs it: one line, then the end.
const printedInput = "hello from the check of printed commands\n"

// runPrintedCommands runs, as printed, every "go run ./..." line the
// running server has printed for its reader (the chat command of the
// day 49 banner), with the reference solutions swapped in and one line on
// standard input. Each must exit 0.
func runPrintedCommands(ctx context.Context, r *core.Repo, d core.Day, srv *core.Server) error {
	var printed []string
	for line := range strings.Lines(srv.Out.String()) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "go run ./") {
			printed = append(printed, line)
		}
	}
	if len(printed) == 0 {
		fmt.Printf("day%s: the server printed no commands to run\n", d.Num)
		return nil
	}
	overlay, remove, err := core.ReferenceOverlay([]core.Day{d})
	if err != nil {
		return err
	}
	defer remove()
	env := append(os.Environ(), "GOFLAGS=-overlay="+overlay)
	for _, c := range printed {
		var out bytes.Buffer
		err := r.Run(ctx, core.RunOpts{Timeout: readmeCommandTimeout, Stdout: &out, Stderr: &out, Env: env, Stdin: strings.NewReader(printedInput),
			Display: c + "   # printed by the server; one line on stdin, the reference swapped in"}, "bash", "-c", c)
		if err != nil {
			srv.ShowOutput()
			return fmt.Errorf("the server printed %q for its reader to run, and run as printed it failed: %w\n%s", c, err, core.QuoteOutput(out.String()))
		}
		fmt.Printf("ok   printed by the server: %s\n", c)
	}
	return nil
}

// runCommands runs the checked commands against the running server.
func runCommands(ctx context.Context, r *core.Repo, d core.Day, readme string, commands []core.ReadmeCommand, srv *core.Server) error {
	var failed []string
	for _, c := range commands {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		where := fmt.Sprintf("%s:%d", readme, c.Line)
		if problem := runReadmeCommand(ctx, r, c); problem != "" {
			fmt.Printf("FAIL %s: %s\n", where, problem)
			failed = append(failed, where)
			continue
		}
		fmt.Printf("ok   %s: exit status %d, %d shown output lines found\n", where, c.Exit, len(c.Expect))
	}
	if len(failed) > 0 {
		srv.ShowOutput()
		return fmt.Errorf("%d of %d commands did not do what the README shows: %s", len(failed), len(commands), strings.Join(failed, ", "))
	}
	fmt.Printf("day%s: all %d grpcurl commands work as printed\n", d.Num, len(commands))
	return nil
}

// runReadmeCommand runs one command through bash from the repository root
// and describes how it differs from what the README shows, or returns "".
func runReadmeCommand(ctx context.Context, r *core.Repo, c core.ReadmeCommand) string {
	var out bytes.Buffer
	err := r.Run(ctx, core.RunOpts{Timeout: readmeCommandTimeout, Stdout: &out, Stderr: &out, Display: c.Summary()}, "bash", "-c", c.Text)
	code := 0
	if err != nil {
		if !core.ExitedNonZero(err) {
			return fmt.Sprintf("%v\n%s", err, core.QuoteOutput(out.String()))
		}
		var exit *exec.ExitError
		errors.As(err, &exit)
		code = exit.ExitCode()
	}
	var problems []string
	if code != c.Exit {
		problems = append(problems, fmt.Sprintf("exit status %d, want %d", code, c.Exit))
	}
	for _, m := range core.MissingOutput(out.String(), c.Expect) {
		problems = append(problems, "no output line matches #> "+m)
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("%s; it printed:\n%s", strings.Join(problems, "; "), core.QuoteOutput(out.String()))
}

// goRunArgs checks that a server block's command is a plain "go run ..."
// and returns its arguments after "run". The runner starts it without a
// shell, so quoting and other shell syntax are refused.
func goRunArgs(c core.ReadmeCommand) ([]string, error) {
	if strings.ContainsAny(c.Text, "\\\n'\"`$|&;<>(){}*?~") || len(c.Expect) > 0 || c.Exit != 0 {
		return nil, fmt.Errorf("the server block must hold one plain command, go run PACKAGE [FLAGS], without shell syntax or shown output; it holds %q", c.Text)
	}
	words := strings.Fields(c.Text)
	if len(words) < 3 || words[0] != "go" || words[1] != "run" {
		return nil, fmt.Errorf("the server command must be go run PACKAGE [FLAGS], not %q", c.Text)
	}
	return words[2:], nil
}

// localAddress matches a loopback host:port in a command.
var localAddress = regexp.MustCompile(`\b(?:127\.0\.0\.1|localhost):\d+\b`)

// commandsAddress returns the one loopback address the commands talk to.
func commandsAddress(commands []core.ReadmeCommand) (string, error) {
	var addrs []string
	for _, c := range commands {
		for _, a := range localAddress.FindAllString(c.Text, -1) {
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
