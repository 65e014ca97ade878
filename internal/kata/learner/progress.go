package learner

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// learnerTimeout bounds a run of the learner's own code (make test uses
// the same figure).
const learnerTimeout = "-timeout=60s"

// CmdProgress runs the learner's own code and shows, per day, which tasks
// pass and the first failure of each one that does not. Failing tasks are the normal
// state of a kata, so only a runner error makes it fail.
func CmdProgress(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	l, err := core.LangFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	for i, d := range days {
		// A learner's code can hang where no test expected it: go test's
		// own timeout then names the test that hung, in a minute rather
		// than ten.
		args := append(r.Race(ctx), "-count=1", learnerTimeout, d.Pkg())
		run, err := r.GoTestJSON(ctx, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Dir, err)
		}
		mistakes, err := core.LoadAntipatterns(d)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Println()
		}
		printProgress(os.Stdout, buildProgress(l, d, run, mistakes))
	}
	return nil
}

// dayProgress is the state of one day's tasks.
type dayProgress struct {
	lang          core.Lang // of the words printed
	title         string
	num           string
	tasks         []taskProgress
	other         *taskProgress // tests that belong to no task, if any
	compileErrors []string
	allTests      []string // every top-level test that ran
}

// taskProgress is the state of one task.
type taskProgress struct {
	id      int
	name    string
	summary string
	pattern string   // the task's tests regexp
	tests   []string // its top-level tests that ran
	failing []string // those that did not pass
	done    bool
	message []string // the first failure, when not done
	output  string   // everything its failing tests printed
	needs   []int    // unfinished earlier tasks whose stubs its tests reached
	advice  []string // hints that match its failure
}

// buildProgress buckets a run's top-level tests into the day's tasks: a
// test belongs to the first task whose regexp matches its name.
//
// A failing task whose tests reached the stub of another unfinished task
// needs that task first; any other failure gets the hints it matches.
func buildProgress(l core.Lang, d core.Day, run *core.TestRun, mistakes []core.Antipattern) dayProgress {
	p := dayProgress{lang: l, title: d.Kata.TitleIn(l), num: d.Num, allTests: run.TopLevel()}
	if run.BuildFailed {
		p.compileErrors = run.CompileErrors(10)
	}
	for _, t := range d.Kata.Tasks {
		p.tasks = append(p.tasks, taskProgress{id: t.ID, name: t.Name, summary: t.SummaryIn(l), pattern: t.Tests})
	}
	other := &taskProgress{name: words.otherName.In(l), summary: words.otherSummary.In(l)}
	for _, test := range p.allTests {
		tp := other
		if i := d.Kata.TaskFor(test); i >= 0 {
			tp = &p.tasks[i]
		}
		tp.tests = append(tp.tests, test)
		if run.Outcome(test) != "pass" {
			tp.failing = append(tp.failing, test)
			if tp.message == nil {
				tp.message = run.FailureMessage(test)
			}
			tp.output += run.FailureOutput(test)
		}
	}
	finish := func(tp *taskProgress) {
		tp.done = len(tp.tests) > 0 && len(tp.failing) == 0
		if !tp.done && len(tp.tests) == 0 && !run.BuildFailed {
			tp.message = []string{words.noTestRan.In(l)}
		}
	}
	for i := range p.tasks {
		finish(&p.tasks[i])
	}
	for i := range p.tasks {
		tp := &p.tasks[i]
		if tp.done {
			continue
		}
		quoted := core.StubsQuoted(tp.output)
		for _, id := range quoted {
			if id == tp.id {
				continue
			}
			// Only an earlier task: two tasks whose tests reach each
			// other's stubs would otherwise each be told to wait for the
			// other.
			if j := slices.IndexFunc(p.tasks, func(t taskProgress) bool { return t.id == id }); j >= 0 && j < i && !p.tasks[j].done {
				tp.needs = append(tp.needs, id)
			}
		}
		// A task whose own stub still answers has not been started: no
		// hint is about it yet.
		if len(tp.needs) == 0 && !slices.Contains(quoted, tp.id) {
			tp.advice = core.Advice(l, d.Kata.Hints, mistakes, d.Kata, tp.id, tp.output)
		}
	}
	if len(other.tests) > 0 {
		finish(other)
		p.other = other
	}
	return p
}

// printProgress prints a day's progress, rustlings-style:
//
//	Day 48: client-side streaming
//	  [x] 1 validateFileName   reject unsafe upload names
//	  [ ] 2 UploadFile         chunked upload with checks
//	      main_test.go:120: UploadFile(name="a.txt") = ..., want code OK
//	1/2 tasks done. Next: task 2 (make test DAY=48 RUN=TestFileUpload)
func printProgress(w io.Writer, p dayProgress) {
	l := p.lang
	fmt.Fprintln(w, p.title)
	if len(p.compileErrors) > 0 {
		fmt.Fprintln(w, "  "+words.notCompilingLine.In(l))
		for _, line := range p.compileErrors {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
	nameWidth, idWidth := core.Width(words.otherName.In(l)), 1
	for _, t := range p.tasks {
		nameWidth = max(nameWidth, core.Width(t.name))
		idWidth = max(idWidth, len(fmt.Sprint(t.id)))
	}
	row := func(t *taskProgress, id string) {
		mark := " "
		if t.done {
			mark = "x"
		}
		fmt.Fprintf(w, "  [%s] %*s %s  %s\n", mark, idWidth, id, padRight(t.name, nameWidth), t.summary)
	}

	var next *taskProgress
	done := 0
	for i := range p.tasks {
		t := &p.tasks[i]
		row(t, fmt.Sprint(t.id))
		if t.done {
			done++
			continue
		}
		if len(t.needs) > 0 {
			fmt.Fprint(w, words.needsFirst.F(l, taskList(l, t.needs)))
			continue
		}
		if next == nil {
			next = t
		}
		if len(p.compileErrors) == 0 {
			printMessage(w, t.message)
			printAdvice(w, t.advice)
		}
	}
	if p.other != nil {
		row(p.other, "-")
		if !p.other.done {
			if next == nil {
				next = p.other
			}
			printMessage(w, p.other.message)
		}
	}

	fmt.Fprint(w, words.tasksDone.F(l, done, len(p.tasks)))
	switch {
	case len(p.compileErrors) > 0:
		fmt.Fprint(w, words.nextCompile.F(l, p.num))
	case next == nil:
		fmt.Fprint(w, words.allPass.In(l))
	case next == p.other:
		fmt.Fprint(w, words.nextRemaining.F(l, p.num, runArg(next, p.allTests)))
	default:
		fmt.Fprint(w, words.nextTask.F(l, next.id, p.num, runArg(next, p.allTests)))
	}
}

// printAdvice prints the hints that match a failure under its message,
// wrapped.
func printAdvice(w io.Writer, lines []string) {
	for _, line := range lines {
		fmt.Fprint(w, core.Wrap("      ", "        ", line, 100))
	}
}

// printMessage prints a failure message under its task, lined up with
// the task number.
func printMessage(w io.Writer, message []string) {
	for i, line := range message {
		if i > 0 {
			line = "  " + line
		}
		fmt.Fprintf(w, "      %s\n", line)
	}
}

// runArg is the RUN= value of make test that runs a task's failing tests:
// the bare name when, as a -run pattern, it matches no other test of
// allTests; else an anchored pattern.
func runArg(t *taskProgress, allTests []string) string {
	tests := t.failing
	if len(tests) == 0 {
		return core.ShellQuote(t.pattern)
	}
	if len(tests) == 1 {
		ambiguous := false
		for _, other := range allTests {
			ambiguous = ambiguous || (other != tests[0] && strings.Contains(other, tests[0]))
		}
		if !ambiguous && regexp.QuoteMeta(tests[0]) == tests[0] {
			return tests[0]
		}
	}
	quoted := make([]string, len(tests))
	for i, name := range tests {
		quoted[i] = regexp.QuoteMeta(name)
	}
	return core.ShellQuote("^(" + strings.Join(quoted, "|") + ")$")
}
