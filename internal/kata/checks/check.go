package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/mistakes"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/mutants"
)

// checkMutantSample is how many mutants of each day check runs, evenly
// spread over the reference, to stay within its time; `make mutants` (and
// CI after check) runs them all.
const checkMutantSample = 60

// stageResult is the outcome of one stage of check.
type stageResult struct {
	name    string
	err     error
	elapsed time.Duration
	skipped bool // not run, because the check was interrupted
}

// CmdCheck is the whole integrity check, what CI runs. Every stage runs even
// when an earlier one failed, so one run shows every problem; a summary
// table follows.
func CmdCheck(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	dayInv := core.Invocation{Day: inv.Day, Flags: map[string]string{}}
	dirs, err := r.DayDirs()
	if err != nil {
		return err
	}
	if len(dirs) == 0 {
		fmt.Println("no days found (no day*_*/kata.json): the day stages have nothing to check")
	}

	stages := []struct {
		name string
		run  func() error
	}{
		{"lint", func() error { return CmdLint(ctx, r, core.Invocation{}) }},
		{"internal tests", func() error { return internalTests(ctx, r) }},
		{"solutions", func() error { return CmdSolutions(ctx, r, dayInv) }},
		{"stubs", func() error { return CmdStubs(ctx, r, dayInv) }},
		{"antipatterns", func() error { return mistakes.CmdAntipatterns(ctx, r, dayInv) }},
		{"mutants", func() error {
			return mutants.CmdMutants(ctx, r, core.Invocation{Day: inv.Day, Flags: map[string]string{"sample": strconv.Itoa(checkMutantSample)}})
		}},
		{"demo", func() error {
			return CmdDemo(ctx, r, core.Invocation{Day: inv.Day, Flags: map[string]string{"check": "true"}})
		}},
		{"grpcurl", func() error { return CmdGrpcurl(ctx, r, dayInv) }},
		{"load", func() error { return CmdLoad(ctx, r, dayInv) }},
		{"abuse", func() error { return CmdAbuse(ctx, r, dayInv) }},
	}
	var results []stageResult
	for _, s := range stages {
		if ctx.Err() != nil {
			results = append(results, stageResult{name: s.name, skipped: true})
			continue
		}
		fmt.Printf("\n==> %s\n", s.name)
		start := time.Now()
		err := s.run()
		results = append(results, stageResult{name: s.name, err: err, elapsed: time.Since(start)})
		if err != nil {
			fmt.Printf("==> %s FAILED: %v\n", s.name, err)
		}
	}

	fmt.Println()
	fmt.Print(summaryTable(results))
	var failed []string
	for _, res := range results {
		if res.err != nil || res.skipped {
			failed = append(failed, res.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("check failed: %s", strings.Join(failed, ", "))
	}
	fmt.Println("check passed")
	return nil
}

// summaryTable renders the stage results:
//
//	stage            result        time
//	lint             ok           12.3s
//	solutions        FAILED       40.1s
func summaryTable(results []stageResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-8s %8s\n", "stage", "result", "time")
	for _, res := range results {
		result, elapsed := "ok", fmt.Sprintf("%.1fs", res.elapsed.Seconds())
		switch {
		case res.skipped:
			result, elapsed = "skipped", "-"
		case res.err != nil:
			result = "FAILED"
		}
		fmt.Fprintf(&b, "%-16s %-8s %8s\n", res.name, result, elapsed)
	}
	return b.String()
}

// internalTests runs the tests of the shared packages under internal/,
// this runner's included.
func internalTests(ctx context.Context, r *core.Repo) error {
	if _, err := os.Stat(filepath.Join(r.Root, "internal")); err != nil {
		fmt.Println("no internal/ folder: nothing to test")
		return nil
	}
	args := append([]string{"test"}, r.Race(ctx)...)
	args = append(args, "-count=1", "./internal/...")
	return r.Run(ctx, core.RunOpts{Timeout: core.TestTimeout}, "go", args...)
}
