package mistakes

import (
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

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// antipatternWorkers is how many planted mistakes are checked at once.
// Most of a check is a test waiting for something a mistake never does,
// so a few run side by side even on two cores.
var antipatternWorkers = 3 * runtime.NumCPU()

// CmdAntipatterns plants each known mistake in a copy of the reference and
// checks that the tests named for it fail. The checks run side by side;
// their reports come out in the manifest's order.
func CmdAntipatterns(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	only := inv.Flags["only"]
	type job struct {
		d       core.Day
		ap      core.Antipattern
		caught  []string
		slowest float64
		err     error
		done    chan struct{}
	}
	var jobs []*job
	var failed []string
	for _, d := range days {
		list, err := core.LoadAntipatterns(d)
		if err != nil {
			fmt.Printf("day%s antipatterns: FAILED: %v\n", d.Num, err)
			failed = append(failed, d.Dir+" antipatterns.json")
			continue
		}
		// The tables are checked even for one mistake (-only): they are
		// quick, and a new mistake is not done until its row is written.
		if problems := checkDayMistakeTable(d, list); len(problems) > 0 {
			fmt.Printf("day%s README common-mistakes table: FAILED, it disagrees with antipatterns.json (to rewrite it: go run ./internal/kata tables %s):\n", d.Num, d.Num)
			for _, p := range problems {
				fmt.Println(core.Bullet(p))
			}
			failed = append(failed, d.Dir+" README table")
		}
		if problems := core.CheckDayHints(d); len(problems) > 0 {
			fmt.Printf("day%s README hints: FAILED, they disagree with kata.json (to rewrite them: go run ./internal/kata tables %s):\n", d.Num, d.Num)
			for _, p := range problems {
				fmt.Println(core.Bullet(p))
			}
			failed = append(failed, d.Dir+" README hints")
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
	// antipatterns_shared.go); one mistake alone is quicker built alone.
	shared := map[string]*sharedMistakes{}
	if only == "" {
		for _, d := range days {
			var list []core.Antipattern
			for _, j := range jobs {
				if j.d.Dir == d.Dir {
					list = append(list, j.ap)
				}
			}
			s, remove := buildSharedMistakes(ctx, r, d, list)
			defer remove()
			shared[d.Dir] = s
		}
	}
	fmt.Printf("checking %d planted mistakes, %d at a time, each named test run %d times\n", len(jobs), antipatternWorkers, AntipatternRuns)
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
				j.caught, j.slowest, j.err = checkAntipattern(ctx, r, j.d, j.ap, shared[j.d.Dir])
			}()
		}
	}()
	start := time.Now()
	caught := 0
	for _, j := range jobs {
		<-j.done
		if j.err != nil {
			fmt.Printf("day%s antipattern %s: FAILED: %v\n", j.d.Num, j.ap.Name, j.err)
			fmt.Printf("  (the mistake it plants: %s)\n", j.ap.Mistake)
			fmt.Printf("  to rerun: go run ./internal/kata antipatterns %s -only %s\n", j.d.Num, j.ap.Name)
			failed = append(failed, j.d.Dir+" "+j.ap.Name)
			continue
		}
		fmt.Printf("day%s antipattern %s: caught by %s (%d of %d runs, slowest %.1fs)\n", j.d.Num, j.ap.Name, strings.Join(j.caught, ", "), AntipatternRuns, AntipatternRuns, j.slowest)
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
func checkAntipattern(ctx context.Context, r *core.Repo, d core.Day, ap core.Antipattern, shared *sharedMistakes) (caught []string, slowest float64, err error) {
	var run *core.TestRun
	if shared != nil && shared.ids[ap.Name] > 0 {
		run, err = runShared(ctx, r, d, shared, ap)
	} else {
		run, err = runPlanted(ctx, r, d, ap)
	}
	if err != nil {
		return nil, 0, err
	}
	if problems := checkCaught(run, ap.CaughtBy, AntipatternRuns); len(problems) > 0 {
		return nil, 0, errors.New(strings.Join(problems, "; "))
	}
	if problem := checkSymptom(run, ap); problem != "" {
		return nil, 0, errors.New(problem)
	}
	for _, name := range ap.CaughtBy {
		slowest = max(slowest, run.Slowest[name])
	}
	return ap.CaughtBy, slowest, nil
}

// runPlanted builds the day with ap planted in its reference, alone, and
// runs the tests named in its caught_by.
func runPlanted(ctx context.Context, r *core.Repo, d core.Day, ap core.Antipattern) (*core.TestRun, error) {
	original, err := os.ReadFile(filepath.Join(d.SolutionDir(), ap.File))
	if err != nil {
		return nil, err
	}
	planted, err := core.ApplyEdits(string(original), ap.Edits)
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

	files, err := core.SolutionFiles(d)
	if err != nil {
		return nil, err
	}
	replace := maps.Clone(core.OverlayFor(d.Path, files))
	replace[filepath.Join(d.Path, ap.File)] = plantedPath
	overlay, remove, err := core.WriteTempOverlay(replace)
	if err != nil {
		return nil, err
	}
	defer remove()

	processes, count := runs(ap)
	args := append([]string{}, r.Race(ctx)...)
	args = append(args, fmt.Sprintf("-count=%d", count), "-timeout=300s", "-run", runPattern(ap.CaughtBy), "-overlay="+overlay, d.Pkg())
	var run *core.TestRun
	for range processes {
		one, err := r.GoTestJSONOpts(ctx, true, args...)
		if err != nil {
			return nil, err
		}
		run = run.Merge(one)
	}
	// Compiler messages name the edited temporary copy; name the
	// reference file instead (the line numbers are the edited copy's).
	edited := filepath.ToSlash(filepath.Join(d.Dir, ".solution", ap.File)) + " (edited)"
	if rel, err := filepath.Rel(r.Root, plantedPath); err == nil {
		for i, line := range run.BuildOutput {
			line = strings.ReplaceAll(line, filepath.ToSlash(rel), edited)
			run.BuildOutput[i] = strings.ReplaceAll(line, plantedPath, edited)
		}
	}
	return run, nil
}

// runs says how ap's antipatternRuns runs are made: in how many test
// processes, each running the tests how many times. They share one
// process, unless the mistake is one only the race detector sees: it
// reports each race once per process.
func runs(ap core.Antipattern) (processes, count int) {
	if ap.SeparateRuns {
		return AntipatternRuns, 1
	}
	return 1, AntipatternRuns
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
	AntipatternRuns = 3
	caughtWithin    = 15.0
)

// checkCaught reports why a run with an antipattern planted did not prove
// it caught: the code did not build, or a named test did not fail on
// every run, or took too long to fail.
func checkCaught(run *core.TestRun, caughtBy []string, runs int) []string {
	if run.BuildFailed {
		return []string{"the antipattern is broken: with its edits the package does not compile, so it proves nothing; fix its edits in antipatterns.json:\n" +
			core.Indent(strings.Join(run.CompileErrors(20), "\n"), "    ")}
	}
	var problems []string
	for _, name := range caughtBy {
		switch outcome := run.Outcome(name); {
		case run.Fails[name] == 0:
			problems = append(problems, fmt.Sprintf("NOT caught: %s %s (want it to fail)", name, core.DescribeOutcome(outcome)))
		case run.Fails[name] < runs:
			problems = append(problems, fmt.Sprintf("caught only sometimes: %s failed in %d of %d runs (want every run: a verdict must not depend on timing)", name, run.Fails[name], runs))
		case run.Slowest[name] > caughtWithin:
			problems = append(problems, fmt.Sprintf("caught too slowly: %s took %.1fs to fail (want at most %.0fs: no test may wait out its context)", name, run.Slowest[name], caughtWithin))
		}
	}
	return problems
}

// checkSymptom reports, when the first failure of the first test that
// catches ap does not show ap's symptom, what it shows instead.
func checkSymptom(run *core.TestRun, ap core.Antipattern) string {
	first := ap.CaughtBy[0]
	shown := strings.Join(run.FirstFailureOf(first), "\n")
	if ap.SeparateRuns {
		// The race detector's report and the wrong result it causes come
		// in either order, so any of the test's failure lines will do.
		var all []string
		for _, o := range run.Output {
			if o.Test == first || strings.HasPrefix(o.Test, first+"/") {
				all = append(all, o.Text)
			}
		}
		shown = strings.Join(all, "\n")
	}
	if strings.Contains(shown, ap.Symptom) {
		return ""
	}
	return fmt.Sprintf("symptom not shown: the first failure of %s is %q, want it to contain the manifest's symptom %q (hints quote it)", first, shown, ap.Symptom)
}
