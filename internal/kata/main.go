// Command kata runs the repository's lessons: it proves that every day is
// sound (the hidden reference passes, the stubs fail, each known mistake is
// caught by a named test, the demo runs) and shows a learner how far they
// got.
//
// Usage:
//
//	go run ./internal/kata [-root DIR] <command> [DAY] [flags] [-- args]
//
// DAY is a day number (48) or a folder name (day48_client_streaming); without
// it a command covers every day. The Makefile at the repository root wraps
// the commands; run `go run ./internal/kata help` for the list.
//
// This package only parses the command line and dispatches. The work is
// in its rooms: learner (the learner's loop), checks and mistakes and
// mutants (the instructor's checks), all over core, which imports none of
// them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/checks"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/learner"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/mistakes"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/mutants"
)

// commands lists the subcommands in the order the usage text shows them.
var commands = []core.Command{
	{Name: "solutions", Args: "[DAY] [-- go test flags]", Summary: "run every test against the hidden reference solutions (-race)", TakesDay: true, TakesExtra: true, Run: checks.CmdSolutions},
	{Name: "overlay", Args: "[DAY]", Summary: "write .bin/overlay.json (reference solutions) and print its path", TakesDay: true, Run: checks.CmdOverlay},
	{Name: "stubs", Args: "[DAY]", Summary: "check that the untouched stubs compile and every test fails", TakesDay: true, Run: checks.CmdStubs},
	{Name: "antipatterns", Args: "[DAY] [-only NAME]", Summary: "check that each known mistake is caught by its named tests", TakesDay: true, ValueFlags: []string{"only"}, Run: mistakes.CmdAntipatterns},
	{Name: "mutants", Args: "[DAY] [-sample N] [-list] [-only N [-v]]", Summary: "run the tests against systematic mutants of the reference; fails below 90% killed", TakesDay: true, BoolFlags: []string{"list", "v"}, ValueFlags: []string{"sample", "only"}, Run: mutants.CmdMutants},
	{Name: "plant", Args: "DAY -name N -from FILE -mistake TEXT -mistake-ja TEXT -caught-by TESTS [-symptom TEXT] [-file F] [-separate-runs]", Summary: "add a planted mistake from an edited copy of the reference: its edits, its check, its symptom, the tables", TakesDay: true, BoolFlags: []string{"separate-runs"}, ValueFlags: []string{"name", "from", "mistake", "mistake-ja", "caught-by", "symptom", "file"}, Run: mistakes.CmdPlant},
	{Name: "tables", Args: "[DAY]", Summary: "write the common-mistakes table (antipatterns.json) and hints (kata.json) of each README, in both languages", TakesDay: true, Run: mistakes.CmdTables},
	{Name: "demo", Args: "[DAY] [-check] [-- demo args]", Summary: "run the reference demo (-check: bounded run of reference and stub demos)", TakesDay: true, BoolFlags: []string{"check"}, TakesExtra: true, Run: checks.CmdDemo},
	{Name: "grpcurl", Args: "[DAY] [-build]", Summary: "run the READMEs' grpcurl commands on the reference server (-build: only build .bin/grpcurl)", TakesDay: true, BoolFlags: []string{"build"}, Run: checks.CmdGrpcurl},
	{Name: "abuse", Args: "[DAY]", Summary: "attack each day's reference server over TCP (127.0.0.1); RELIABILITY.md holds the table", TakesDay: true, Run: checks.CmdAbuse},
	{Name: "load", Args: "[DAY]", Summary: "a short ghz load on each day's reference server; fails on any call not OK", TakesDay: true, Run: checks.CmdLoad},
	{Name: "bench", Args: "[DAY] [-- go test flags]", Summary: "run the benchmarks against the reference solutions", TakesDay: true, TakesExtra: true, Run: checks.CmdBench},
	{Name: "progress", Args: "[DAY]", Summary: "show which tasks your own code passes", TakesDay: true, Run: learner.CmdProgress},
	{Name: "watch", Args: "[DAY] [-task N]", Summary: "re-run your current task (or task N) whenever a .go file of the day is saved", TakesDay: true, ValueFlags: []string{"task"}, Run: learner.CmdWatch},
	{Name: "hint", Args: "DAY -task N", Summary: "run task N and print the hints for its failure", TakesDay: true, ValueFlags: []string{"task"}, Run: learner.CmdHint},
	{Name: "solution", Args: "DAY -task N", Summary: "print the reference code of task N, once your code passes it", TakesDay: true, ValueFlags: []string{"task"}, Run: learner.CmdSolution},
	{Name: "lint", Summary: "gofmt, go vet (with and without the solutions), buf lint and pb/ freshness", Run: checks.CmdLint},
	{Name: "proto", Summary: "buf lint, then regenerate pb/ from proto/", Run: checks.CmdProto},
	{Name: "check", Args: "[DAY]", Summary: "every check above; prints a summary table", TakesDay: true, Run: checks.CmdCheck},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line, runs one command and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("kata", flag.ContinueOnError)
	global.SetOutput(stderr)
	rootDir := global.String("root", "", "repository root (default: the directory of `go env GOMOD`)")
	global.Usage = func() { printUsage(stderr) }
	if err := global.Parse(args); err != nil {
		return 2
	}
	if global.NArg() == 0 {
		printUsage(stderr)
		return 2
	}
	name := global.Arg(0)
	if name == "help" || name == "-h" || name == "--help" {
		printUsage(stdout)
		return 0
	}
	cmd, ok := findCommand(name)
	if !ok {
		fmt.Fprintf(stderr, "kata: unknown command %q\n\n", name)
		printUsage(stderr)
		return 2
	}
	inv, err := core.ParseInvocation(cmd, global.Args()[1:])
	if err != nil {
		fmt.Fprintf(stderr, "kata %s: %v\nusage: %s\n", cmd.Name, err, strings.TrimSpace("go run ./internal/kata "+cmd.Name+" "+cmd.Args))
		return 2
	}

	// Ctrl+C cancels ctx, which interrupts the running go command and
	// everything it started (see exec.go); the runner then reports and
	// exits instead of dying with children still running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := core.FindRoot(ctx, *rootDir)
	if err != nil {
		fmt.Fprintf(stderr, "kata: %v\n", err)
		return 1
	}
	r := &core.Repo{Root: root}
	if err := cmd.Run(ctx, r, inv); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "kata %s: interrupted\n", cmd.Name)
			return 130
		}
		fmt.Fprintf(stderr, "kata %s: %v\n", cmd.Name, err)
		return 1
	}
	return 0
}

func findCommand(name string) (core.Command, bool) {
	for _, c := range commands {
		if c.Name == name {
			return c, true
		}
	}
	return core.Command{}, false
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: go run ./internal/kata [-root DIR] <command> [DAY] [flags] [-- args]")
	fmt.Fprintln(w, "\nDAY is a day number (48) or folder name; without it, every day.")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %-29s %s\n", c.Name, c.Args, c.Summary)
	}
}
