package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// cmdStubs checks each day's untouched stubs: they compile, every test and
// subtest fails unless exempted in kata.json, and enough of them ran.
func cmdStubs(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		run, err := r.goTestJSON(ctx, "-count=1", "-timeout=300s", d.pkg())
		if err != nil {
			fmt.Printf("day%s: stubs check FAILED: %v\n", d.num, err)
			failed = append(failed, d.dir)
			continue
		}
		summary, problems := checkStubs(run, d.kata)
		problems = append(problems, checkTaskFunctions(d)...)
		if len(problems) > 0 {
			fmt.Printf("day%s: stubs check FAILED (%s):\n", d.num, summary)
			for _, p := range problems {
				fmt.Println(bullet(p))
			}
			failed = append(failed, d.dir)
			continue
		}
		fmt.Printf("day%s: %s\n", d.num, summary)
	}
	if len(failed) > 0 {
		return fmt.Errorf("stubs check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkStubs judges a test run of the untouched stubs against the manifest.
// It returns a one-line summary and the problems found.
func checkStubs(run *testRun, m *kataManifest) (string, []string) {
	if run.buildFailed {
		return "does not compile", []string{"the stubs do not compile; they must, so a learner starts from failing tests:\n" +
			strings.Join(run.compileErrors(20), "\n")}
	}
	exempt := map[string]bool{}
	for _, p := range m.StubPasses {
		exempt[p.Test] = true
	}
	var problems []string
	counts := map[string]int{}
	for _, name := range run.order {
		outcome := run.outcome(name)
		counts[outcome]++
		if outcome == "pass" && !exempt[name] {
			problems = append(problems, fmt.Sprintf("%s passed on the stubs; it must fail until the learner implements the task (or list it in kata.json stub_passes with a reason)", name))
		}
	}
	for _, p := range m.StubPasses {
		if outcome := run.outcome(p.Test); outcome != "pass" {
			problems = append(problems, fmt.Sprintf("kata.json stub_passes lists %s, but on the stubs it %s; remove the stale exemption or fix the name", p.Test, describeOutcome(outcome)))
		}
	}
	if len(run.order) < m.MinTests {
		problems = append(problems, fmt.Sprintf("only %d tests and subtests ran on the stubs; kata.json min_tests is %d (did a test crash the run, or were tests removed?)", len(run.order), m.MinTests))
	}
	top := run.topLevel()
	for _, t := range m.Tasks {
		if !slices.ContainsFunc(top, t.re.MatchString) {
			problems = append(problems, fmt.Sprintf("task %d (%s): its tests regexp %s matches no test that ran", t.ID, t.Name, t.Tests))
		}
	}

	summary := fmt.Sprintf("%d tests ran, all failed on the stubs", len(run.order))
	if counts["fail"] != len(run.order) {
		var parts []string
		for _, o := range []struct{ outcome, said string }{
			{"fail", "failed"}, {"pass", "passed"}, {"skip", "skipped"}, {"did not finish", "did not finish"},
		} {
			if n := counts[o.outcome]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, o.said))
			}
		}
		summary = fmt.Sprintf("%d tests ran on the stubs: %s", len(run.order), strings.Join(parts, ", "))
		if len(problems) == 0 && counts["pass"] == len(m.StubPasses) {
			summary += " (the passes are exempted in kata.json)"
		}
	}
	return summary, problems
}

// describeOutcome phrases an outcome after "it".
func describeOutcome(outcome string) string {
	switch outcome {
	case "pass":
		return "passed"
	case "fail":
		return "failed"
	case "skip":
		return "was skipped"
	}
	return outcome
}
