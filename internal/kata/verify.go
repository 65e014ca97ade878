package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// cmdSolutions runs every test of each day against its reference solution.
func cmdSolutions(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	overlay, remove, err := referenceOverlay(days)
	if err != nil {
		return err
	}
	defer remove()

	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		args := []string{"test"}
		args = append(args, r.race(ctx)...)
		args = append(args, "-count=1", "-shuffle=on", "-overlay="+overlay)
		args = append(args, inv.extra...)
		args = append(args, d.pkg()+"/...")
		if err := r.run(ctx, runOpts{timeout: testTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: the reference solution FAILED (%v)\n", d.dir, err)
			fmt.Printf("  to reproduce: go test -overlay=\"$(go run ./internal/kata overlay %s)\" %s/...\n", d.num, d.pkg())
			failed = append(failed, d.dir)
			continue
		}
		fmt.Printf("%s: the reference solution passes\n", d.dir)
	}
	if len(failed) > 0 {
		return fmt.Errorf("reference solutions failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// cmdOverlay writes the solution overlay to .bin/overlay.json and prints its
// path, for go commands typed by hand:
//
//	go test -overlay="$(go run ./internal/kata overlay)" ./day48_client_streaming
func cmdOverlay(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil {
		return err
	}
	replace, err := solutionOverlay(days)
	if err != nil {
		return err
	}
	data, err := overlayJSON(replace)
	if err != nil {
		return err
	}
	path := filepath.Join(r.root, ".bin", "overlay.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

// cmdBench runs each day's benchmarks against its reference solution.
func cmdBench(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	overlay, remove, err := referenceOverlay(days)
	if err != nil {
		return err
	}
	defer remove()
	var failed []string
	for _, d := range days {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		args := []string{"test", "-run=^$", "-bench=.", "-benchmem", "-overlay=" + overlay}
		args = append(args, inv.extra...)
		args = append(args, d.pkg()+"/...")
		if err := r.run(ctx, runOpts{timeout: benchTimeout}, "go", args...); err != nil {
			fmt.Printf("%s: benchmarks FAILED (%v)\n", d.dir, err)
			failed = append(failed, d.dir)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("benchmarks failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// noDays turns "there are no days" into a note rather than an error, and
// passes any other error on.
func noDays(err error) error {
	if err == nil {
		fmt.Println("no days found (no day*_*/kata.json): nothing to do")
	}
	return err
}

// goTestJSON runs `go test -json` with the given arguments and parses what
// it reports. Failing tests are not an error here; a command that could not
// run, timed out, or printed nothing a test run would print is.
func (r *repo) goTestJSON(ctx context.Context, args ...string) (*testRun, error) {
	return r.goTestJSONOpts(ctx, false, args...)
}

// goTestJSONOpts is goTestJSON that can leave out printing the command.
func (r *repo) goTestJSONOpts(ctx context.Context, quiet bool, args ...string) (*testRun, error) {
	var stdout, stderr bytes.Buffer
	err := r.run(ctx, runOpts{timeout: testTimeout, stdout: &stdout, stderr: &stderr, quiet: quiet},
		"go", append([]string{"test", "-json"}, args...)...)
	run, perr := parseTestJSON(&stdout)
	if perr != nil {
		return nil, fmt.Errorf("reading go test -json output: %w", perr)
	}
	if err != nil && !exitedNonZero(err) {
		return nil, withStderr(err, stderr.String())
	}
	if err != nil && !run.buildFailed && len(run.order) == 0 {
		// It failed before any test started: the go command said why
		// on stderr (a bad flag, a broken go.mod), or the test binary
		// on stdout (a panic in init or TestMain).
		return nil, withStderr(err, strings.Join(append(run.pkgOutput, stderr.String()), "\n"))
	}
	return run, nil
}

func withStderr(err error, stderr string) error {
	if s := strings.TrimSpace(stderr); s != "" {
		return fmt.Errorf("%w\n%s", err, indent(s, "    "))
	}
	return err
}

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

// antipatternWorkers is how many planted mistakes are checked at once.
// Most of a check is a test waiting for something a mistake never does,
// so a few run side by side even on two cores.
var antipatternWorkers = 3 * runtime.NumCPU()

// cmdAntipatterns plants each known mistake in a copy of the reference and
// checks that the tests named for it fail. The checks run side by side;
// their reports come out in the manifest's order.
func cmdAntipatterns(ctx context.Context, r *repo, inv invocation) error {
	days, err := r.days(inv.day)
	if err != nil || len(days) == 0 {
		return noDays(err)
	}
	only := inv.flags["only"]
	type job struct {
		d       day
		ap      antipattern
		caught  []string
		slowest float64
		err     error
		done    chan struct{}
	}
	var jobs []*job
	var failed []string
	for _, d := range days {
		list, err := loadAntipatterns(d)
		if err != nil {
			fmt.Printf("day%s antipatterns: FAILED: %v\n", d.num, err)
			failed = append(failed, d.dir+" antipatterns.json")
			continue
		}
		// The tables are checked even for one mistake (-only): they are
		// quick, and a new mistake is not done until its row is written.
		if problems := checkDayMistakeTable(d, list); len(problems) > 0 {
			fmt.Printf("day%s README common-mistakes table: FAILED, it disagrees with antipatterns.json (to rewrite it: go run ./internal/kata tables %s):\n", d.num, d.num)
			for _, p := range problems {
				fmt.Println(bullet(p))
			}
			failed = append(failed, d.dir+" README table")
		}
		if problems := checkDayHints(d); len(problems) > 0 {
			fmt.Printf("day%s README hints: FAILED, they disagree with kata.json (to rewrite them: go run ./internal/kata tables %s):\n", d.num, d.num)
			for _, p := range problems {
				fmt.Println(bullet(p))
			}
			failed = append(failed, d.dir+" README hints")
		}
		for _, ap := range list {
			if only == "" || ap.Name == only {
				jobs = append(jobs, &job{d: d, ap: ap, done: make(chan struct{})})
			}
		}
	}
	if only != "" && len(jobs) == 0 {
		return fmt.Errorf("no antipattern named %q", only)
	}
	// A whole day's mistakes share a build where they can (see
	// mistakes_shared.go); one mistake alone is quicker built alone.
	shared := map[string]*sharedMistakes{}
	if only == "" {
		for _, d := range days {
			var list []antipattern
			for _, j := range jobs {
				if j.d.dir == d.dir {
					list = append(list, j.ap)
				}
			}
			s, remove := r.buildSharedMistakes(ctx, d, list)
			defer remove()
			shared[d.dir] = s
		}
	}
	fmt.Printf("checking %d planted mistakes, %d at a time, each named test run %d times\n", len(jobs), antipatternWorkers, antipatternRuns)
	// Jobs start in order, so reports come out as they finish.
	go func() {
		slots := make(chan struct{}, antipatternWorkers)
		for _, j := range jobs {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				j.err = ctx.Err()
				close(j.done)
				continue
			}
			go func() {
				defer func() { <-slots }()
				defer close(j.done)
				j.caught, j.slowest, j.err = r.checkAntipattern(ctx, j.d, j.ap, shared[j.d.dir])
			}()
		}
	}()
	start := time.Now()
	caught := 0
	for _, j := range jobs {
		<-j.done
		if j.err != nil {
			fmt.Printf("day%s antipattern %s: FAILED: %v\n", j.d.num, j.ap.Name, j.err)
			fmt.Printf("  (the mistake it plants: %s)\n", j.ap.Mistake)
			fmt.Printf("  to rerun: go run ./internal/kata antipatterns %s -only %s\n", j.d.num, j.ap.Name)
			failed = append(failed, j.d.dir+" "+j.ap.Name)
			continue
		}
		fmt.Printf("day%s antipattern %s: caught by %s (%d of %d runs, slowest %.1fs)\n", j.d.num, j.ap.Name, strings.Join(j.caught, ", "), antipatternRuns, antipatternRuns, j.slowest)
		caught++
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("planted mistakes: %d of %d caught, %d failed their check, in %s\n", caught, len(jobs), len(jobs)-caught, time.Since(start).Round(time.Second))
	if len(failed) > 0 {
		return fmt.Errorf("antipatterns check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkAntipattern builds the day with one antipattern planted in its
// reference and runs the tests named in caught_by. It returns those tests
// when all of them failed.
func (r *repo) checkAntipattern(ctx context.Context, d day, ap antipattern, shared *sharedMistakes) (caught []string, slowest float64, err error) {
	var run *testRun
	if shared != nil && shared.ids[ap.Name] > 0 {
		run, err = r.runShared(ctx, d, shared, ap)
	} else {
		run, err = r.runPlanted(ctx, d, ap)
	}
	if err != nil {
		return nil, 0, err
	}
	if problems := checkCaught(run, ap.CaughtBy, antipatternRuns); len(problems) > 0 {
		return nil, 0, errors.New(strings.Join(problems, "; "))
	}
	if problem := checkSymptom(run, ap); problem != "" {
		return nil, 0, errors.New(problem)
	}
	for _, name := range ap.CaughtBy {
		slowest = max(slowest, run.slowest[name])
	}
	return ap.CaughtBy, slowest, nil
}

// runPlanted builds the day with ap planted in its reference, alone, and
// runs the tests named in its caught_by.
func (r *repo) runPlanted(ctx context.Context, d day, ap antipattern) (*testRun, error) {
	original, err := os.ReadFile(filepath.Join(d.solutionDir(), ap.File))
	if err != nil {
		return nil, err
	}
	planted, err := applyEdits(string(original), ap.Edits)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "kata-antipattern-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	plantedPath := filepath.Join(tmp, filepath.Base(ap.File))
	if err := os.WriteFile(plantedPath, []byte(planted), 0o644); err != nil {
		return nil, err
	}

	files, err := solutionFiles(d)
	if err != nil {
		return nil, err
	}
	replace := maps.Clone(overlayFor(d.path, files))
	replace[filepath.Join(d.path, ap.File)] = plantedPath
	overlay, remove, err := writeTempOverlay(replace)
	if err != nil {
		return nil, err
	}
	defer remove()

	processes, count := ap.runs()
	args := append([]string{}, r.race(ctx)...)
	args = append(args, fmt.Sprintf("-count=%d", count), "-timeout=300s", "-run", runPattern(ap.CaughtBy), "-overlay="+overlay, d.pkg())
	var run *testRun
	for range processes {
		one, err := r.goTestJSONOpts(ctx, true, args...)
		if err != nil {
			return nil, err
		}
		run = run.merge(one)
	}
	// Compiler messages name the edited temporary copy; name the
	// reference file instead (the line numbers are the edited copy's).
	edited := filepath.ToSlash(filepath.Join(d.dir, ".solution", ap.File)) + " (edited)"
	if rel, err := filepath.Rel(r.root, plantedPath); err == nil {
		for i, line := range run.buildOutput {
			line = strings.ReplaceAll(line, filepath.ToSlash(rel), edited)
			run.buildOutput[i] = strings.ReplaceAll(line, plantedPath, edited)
		}
	}
	return run, nil
}

// runs says how ap's antipatternRuns runs are made: in how many test
// processes, each running the tests how many times. They share one
// process, unless the mistake is one only the race detector sees: it
// reports each race once per process.
func (ap antipattern) runs() (processes, count int) {
	if ap.SeparateRuns {
		return antipatternRuns, 1
	}
	return 1, antipatternRuns
}

// runPattern is a -run pattern selecting the tests of names: their
// top-level tests, ^(TestA|TestB)$ for TestA/Sub and TestB, and, when
// every name is a subtest, only those subtests, ^(TestA)$/^(Sub|Other)$,
// so that a planted mistake's runs do not also run the siblings of the
// tests that catch it.
func runPattern(names []string) string {
	var tops, subs []string
	add := func(list *[]string, name string) {
		if q := regexp.QuoteMeta(name); !slices.Contains(*list, q) {
			*list = append(*list, q)
		}
	}
	allSubtests := true
	for _, name := range names {
		top, rest, isSub := strings.Cut(name, "/")
		add(&tops, top)
		if !isSub {
			allSubtests = false
			continue
		}
		sub, _, _ := strings.Cut(rest, "/")
		add(&subs, sub)
	}
	pattern := "^(" + strings.Join(tops, "|") + ")$"
	if allSubtests {
		pattern += "/^(" + strings.Join(subs, "|") + ")$"
	}
	return pattern
}

// A planted mistake must fail its named tests on every one of
// antipatternRuns runs (a verdict that depends on who wins a race is no
// verdict), and each failing run must take at most caughtWithin seconds
// of test time: a learner who makes the mistake hears of it in seconds,
// not when a context runs out.
const (
	antipatternRuns = 3
	caughtWithin    = 15.0
)

// checkCaught reports why a run with an antipattern planted did not prove
// it caught: the code did not build, or a named test did not fail on
// every run, or took too long to fail.
func checkCaught(run *testRun, caughtBy []string, runs int) []string {
	if run.buildFailed {
		return []string{"the antipattern is broken: with its edits the package does not compile, so it proves nothing; fix its edits in antipatterns.json:\n" +
			indent(strings.Join(run.compileErrors(20), "\n"), "    ")}
	}
	var problems []string
	for _, name := range caughtBy {
		switch outcome := run.outcome(name); {
		case run.fails[name] == 0:
			problems = append(problems, fmt.Sprintf("NOT caught: %s %s (want it to fail)", name, describeOutcome(outcome)))
		case run.fails[name] < runs:
			problems = append(problems, fmt.Sprintf("caught only sometimes: %s failed in %d of %d runs (want every run: a verdict must not depend on timing)", name, run.fails[name], runs))
		case run.slowest[name] > caughtWithin:
			problems = append(problems, fmt.Sprintf("caught too slowly: %s took %.1fs to fail (want at most %.0fs: no test may wait out its context)", name, run.slowest[name], caughtWithin))
		}
	}
	return problems
}

// checkSymptom reports, when the first failure of the first test that
// catches ap does not show ap's symptom, what it shows instead.
func checkSymptom(run *testRun, ap antipattern) string {
	first := ap.CaughtBy[0]
	shown := strings.Join(run.firstFailureOf(first), "\n")
	if ap.SeparateRuns {
		// The race detector's report and the wrong result it causes come
		// in either order, so any of the test's failure lines will do.
		var all []string
		for _, o := range run.output {
			if o.test == first || strings.HasPrefix(o.test, first+"/") {
				all = append(all, o.text)
			}
		}
		shown = strings.Join(all, "\n")
	}
	if strings.Contains(shown, ap.Symptom) {
		return ""
	}
	return fmt.Sprintf("symptom not shown: the first failure of %s is %q, want it to contain the manifest's symptom %q (hints quote it)", first, shown, ap.Symptom)
}

// bullet formats a possibly multi-line problem as a list item.
func bullet(s string) string {
	return "  - " + strings.ReplaceAll(s, "\n", "\n    ")
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
