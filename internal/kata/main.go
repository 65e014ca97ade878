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
)

// commands lists the subcommands in the order the usage text shows them.
var commands = []command{
	{name: "solutions", args: "[DAY] [-- go test flags]", summary: "run every test against the hidden reference solutions (-race)", takesDay: true, takesExtra: true, run: cmdSolutions},
	{name: "overlay", args: "[DAY]", summary: "write .bin/overlay.json (reference solutions) and print its path", takesDay: true, run: cmdOverlay},
	{name: "stubs", args: "[DAY]", summary: "check that the untouched stubs compile and every test fails", takesDay: true, run: cmdStubs},
	{name: "antipatterns", args: "[DAY] [-only NAME]", summary: "check that each known mistake is caught by its named tests", takesDay: true, valueFlags: []string{"only"}, run: cmdAntipatterns},
	{name: "mutants", args: "[DAY] [-sample N] [-list] [-only N [-v]]", summary: "run the tests against systematic mutants of the reference; fails below 90% killed", takesDay: true, boolFlags: []string{"list", "v"}, valueFlags: []string{"sample", "only"}, run: cmdMutants},
	{name: "plant", args: "DAY -name N -from FILE -mistake TEXT -caught-by TESTS [-symptom TEXT] [-file F] [-separate-runs]", summary: "add a planted mistake from an edited copy of the reference: its edits, its check, its symptom, the tables", takesDay: true, boolFlags: []string{"separate-runs"}, valueFlags: []string{"name", "from", "mistake", "caught-by", "symptom", "file"}, run: cmdPlant},
	{name: "tables", args: "[DAY]", summary: "write each README's common-mistakes table (antipatterns.json) and hints (kata.json)", takesDay: true, run: cmdTables},
	{name: "demo", args: "[DAY] [-check] [-- demo args]", summary: "run the reference demo (-check: bounded run of reference and stub demos)", takesDay: true, boolFlags: []string{"check"}, takesExtra: true, run: cmdDemo},
	{name: "grpcurl", args: "[DAY] [-build]", summary: "run the READMEs' grpcurl commands on the reference server (-build: only build .bin/grpcurl)", takesDay: true, boolFlags: []string{"build"}, run: cmdGrpcurl},
	{name: "abuse", args: "[DAY]", summary: "attack each day's reference server over TCP (127.0.0.1); RELIABILITY.md holds the table", takesDay: true, run: cmdAbuse},
	{name: "load", args: "[DAY]", summary: "a short ghz load on each day's reference server; fails on any call not OK", takesDay: true, run: cmdLoad},
	{name: "bench", args: "[DAY] [-- go test flags]", summary: "run the benchmarks against the reference solutions", takesDay: true, takesExtra: true, run: cmdBench},
	{name: "progress", args: "[DAY]", summary: "show which tasks your own code passes", takesDay: true, run: cmdProgress},
	{name: "watch", args: "[DAY] [-task N]", summary: "re-run your current task (or task N) whenever a .go file of the day is saved", takesDay: true, valueFlags: []string{"task"}, run: cmdWatch},
	{name: "hint", args: "DAY -task N", summary: "run task N and print the hints for its failure", takesDay: true, valueFlags: []string{"task"}, run: cmdHint},
	{name: "solution", args: "DAY -task N", summary: "print the reference code of task N, once your code passes it", takesDay: true, valueFlags: []string{"task"}, run: cmdSolution},
	{name: "lint", summary: "gofmt, go vet (with and without the solutions), buf lint and pb/ freshness", run: cmdLint},
	{name: "proto", summary: "buf lint, then regenerate pb/ from proto/", run: cmdProto},
	{name: "check", args: "[DAY]", summary: "every check above; prints a summary table", takesDay: true, run: cmdCheck},
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
	inv, err := parseInvocation(cmd, global.Args()[1:])
	if err != nil {
		fmt.Fprintf(stderr, "kata %s: %v\nusage: %s\n", cmd.name, err, strings.TrimSpace("go run ./internal/kata "+cmd.name+" "+cmd.args))
		return 2
	}

	// Ctrl+C cancels ctx, which interrupts the running go command and
	// everything it started (see exec.go); the runner then reports and
	// exits instead of dying with children still running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := findRoot(ctx, *rootDir)
	if err != nil {
		fmt.Fprintf(stderr, "kata: %v\n", err)
		return 1
	}
	r := &repo{root: root}
	if err := cmd.run(ctx, r, inv); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "kata %s: interrupted\n", cmd.name)
			return 130
		}
		fmt.Fprintf(stderr, "kata %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: go run ./internal/kata [-root DIR] <command> [DAY] [flags] [-- args]")
	fmt.Fprintln(w, "\nDAY is a day number (48) or folder name; without it, every day.")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %-29s %s\n", c.name, c.args, c.summary)
	}
}
