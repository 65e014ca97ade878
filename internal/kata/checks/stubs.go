package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// CmdStubs checks each day's untouched stubs: they compile, every test and
// subtest fails unless exempted in kata.json, and enough of them ran.
func CmdStubs(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		run, err := r.GoTestJSON(ctx, "-count=1", "-timeout=300s", d.Pkg())
		if err != nil {
			fmt.Printf("day%s: stubs check FAILED: %v\n", d.Num, err)
			failed = append(failed, d.Dir)
			continue
		}
		summary, problems := checkStubs(run, d.Kata)
		problems = append(problems, core.CheckTaskFunctions(d)...)
		if len(problems) > 0 {
			fmt.Printf("day%s: stubs check FAILED (%s):\n", d.Num, summary)
			for _, p := range problems {
				fmt.Println(core.Bullet(p))
			}
			failed = append(failed, d.Dir)
			continue
		}
		fmt.Printf("day%s: %s\n", d.Num, summary)
	}
	if len(failed) > 0 {
		return fmt.Errorf("stubs check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkStubs judges a test run of the untouched stubs against the manifest.
// It returns a one-line summary and the problems found.
func checkStubs(run *core.TestRun, m *core.KataManifest) (string, []string) {
	if run.BuildFailed {
		return "does not compile", []string{"the stubs do not compile; they must, so a learner starts from failing tests:\n" +
			strings.Join(run.CompileErrors(20), "\n")}
	}
	exempt := map[string]bool{}
	for _, p := range m.StubPasses {
		exempt[p.Test] = true
	}
	var problems []string
	counts := map[string]int{}
	for _, name := range run.Order {
		outcome := run.Outcome(name)
		counts[outcome]++
		if outcome == "pass" && !exempt[name] {
			problems = append(problems, fmt.Sprintf("%s passed on the stubs; it must fail until the learner implements the task (or list it in kata.json stub_passes with a reason)", name))
		}
	}
	for _, p := range m.StubPasses {
		if outcome := run.Outcome(p.Test); outcome != "pass" {
			problems = append(problems, fmt.Sprintf("kata.json stub_passes lists %s, but on the stubs it %s; remove the stale exemption or fix the name", p.Test, core.DescribeOutcome(outcome)))
		}
	}
	if len(run.Order) < m.MinTests {
		problems = append(problems, fmt.Sprintf("only %d tests and subtests ran on the stubs; kata.json min_tests is %d (did a test crash the run, or were tests removed?)", len(run.Order), m.MinTests))
	}
	top := run.TopLevel()
	for _, t := range m.Tasks {
		if !slices.ContainsFunc(top, t.Re.MatchString) {
			problems = append(problems, fmt.Sprintf("task %d (%s): its tests regexp %s matches no test that ran", t.ID, t.Name, t.Tests))
		}
	}

	summary := fmt.Sprintf("%d tests ran, all failed on the stubs", len(run.Order))
	if counts["fail"] != len(run.Order) {
		var parts []string
		for _, o := range []struct{ outcome, said string }{
			{"fail", "failed"}, {"pass", "passed"}, {"skip", "skipped"}, {"did not finish", "did not finish"},
		} {
			if n := counts[o.outcome]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, o.said))
			}
		}
		summary = fmt.Sprintf("%d tests ran on the stubs: %s", len(run.Order), strings.Join(parts, ", "))
		if len(problems) == 0 && counts["pass"] == len(m.StubPasses) {
			summary += " (the passes are exempted in kata.json)"
		}
	}
	return summary, problems
}
