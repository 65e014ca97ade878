package learner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// The learner's loop: make watch re-runs the current task on every save,
// make hint explains a failure (or, without one, gives the task's hints
// from the gentlest to the most concrete), and make solution shows the
// reference of a task once the learner's own code passes it.

// learnerDay returns the one day a learner command is about: the one
// named, or the only one there is.
func learnerDay(l core.Lang, r *core.Repo, inv core.Invocation) (core.Day, error) {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.Day{}, core.NoDays(err)
	}
	if len(days) > 1 {
		return core.Day{}, errors.New(words.whichDay.In(l))
	}
	return days[0], nil
}

// taskFlag returns the task named by -task, or false when none is.
func taskFlag(l core.Lang, d core.Day, inv core.Invocation) (core.Task, bool, error) {
	value := inv.Flags["task"]
	if value == "" {
		return core.Task{}, false, nil
	}
	id, err := strconv.Atoi(value)
	if err == nil {
		if i := slices.IndexFunc(d.Kata.Tasks, func(t core.Task) bool { return t.ID == id }); i >= 0 {
			return d.Kata.Tasks[i], true, nil
		}
	}
	return core.Task{}, false, errors.New(words.noSuchTask.F(l, d.Num, value, len(d.Kata.Tasks)))
}

// runTask runs one task's tests on the learner's code, as make test does,
// and returns its progress.
func runTask(ctx context.Context, l core.Lang, r *core.Repo, d core.Day, t core.Task, mistakes []core.Antipattern) (taskProgress, error) {
	args := append(r.Race(ctx), "-count=1", learnerTimeout, "-run", t.Tests, d.Pkg())
	run, err := r.GoTestJSONOpts(ctx, true, args...)
	if err != nil {
		return taskProgress{}, err
	}
	p := buildProgress(l, d, run, mistakes)
	if len(p.compileErrors) > 0 {
		return taskProgress{id: t.ID, name: t.Name, summary: t.SummaryIn(l), message: append([]string{words.notCompiling.In(l)}, p.compileErrors...)}, nil
	}
	for _, tp := range p.tasks {
		if tp.id == t.ID {
			return tp, nil
		}
	}
	return taskProgress{}, errors.New(words.notInKata.F(l, t.ID, d.Dir))
}

// namedTask returns the day and task a command that needs both is about;
// usage is how to name them, for the error when the task is missing.
func namedTask(l core.Lang, r *core.Repo, inv core.Invocation, usage string) (core.Day, core.Task, error) {
	d, err := learnerDay(l, r, inv)
	if err != nil {
		return core.Day{}, core.Task{}, err
	}
	t, ok, err := taskFlag(l, d, inv)
	if err == nil && !ok {
		err = errors.New(words.whichTask.F(l, strings.ReplaceAll(usage, "DAY=N", "DAY="+d.Num)))
	}
	return d, t, err
}

// CmdHint runs a task's tests and prints the hints for its failure: the
// ones that match it, or, when none does (or the task has not been
// started), all of the task's hints from the gentlest to the most
// concrete.
func CmdHint(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	l, err := core.LangFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	d, t, err := namedTask(l, r, inv, "make hint DAY=N TASK=N")
	if err != nil {
		return err
	}
	mistakes, err := core.LoadAntipatterns(d)
	if err != nil {
		return err
	}
	tp, err := runTask(ctx, l, r, d, t, mistakes)
	if err != nil {
		return err
	}
	printHint(os.Stdout, l, d, t, tp, mistakes)
	return nil
}

// printHint prints what make hint shows for a task's progress.
func printHint(w io.Writer, l core.Lang, d core.Day, t core.Task, tp taskProgress, mistakes []core.Antipattern) {
	printTaskLine(w, tp)
	switch {
	case tp.done:
		fmt.Fprint(w, words.hintPasses.F(l, t.ID, d.Num, t.ID))
		return
	case len(tp.needs) > 0:
		fmt.Fprint(w, words.hintNeeds.F(l, taskList(l, tp.needs)))
		return
	}
	printMessage(w, tp.message)
	if len(tp.advice) > 0 {
		printAdvice(w, tp.advice)
		return
	}
	printFailureSource(w, l, d, t, tp.message)
	fmt.Fprintln(w, words.noHintMatches.In(l))
	for i, h := range core.TaskHints(l, d.Kata.Hints, mistakes, d.Kata, t) {
		fmt.Fprint(w, core.Wrap(fmt.Sprintf("  %d. ", i+1), "     ", h, 100))
	}
}

// printTaskLine prints a task's line as make progress does.
func printTaskLine(w io.Writer, tp taskProgress) {
	mark := " "
	if tp.done {
		mark = "x"
	}
	fmt.Fprintf(w, "  [%s] %d %s  %s\n", mark, tp.id, tp.name, tp.summary)
}

// CmdSolution prints the reference code of a task once the learner's own
// code passes its tests; until then it names the tests still failing.
func CmdSolution(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	l, err := core.LangFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	d, t, err := namedTask(l, r, inv, "make solution DAY=N TASK=N")
	if err != nil {
		return err
	}
	tp, err := runTask(ctx, l, r, d, t, nil)
	if err != nil {
		return err
	}
	return printSolution(os.Stdout, l, d, t, tp)
}

// notEarnedError is make solution's answer before the task passes.
type notEarnedError struct{ lang core.Lang }

func (e notEarnedError) Error() string { return words.notEarned.In(e.lang) }

// printSolution prints the reference of a passing task, or the failing
// tests of one that does not pass.
func printSolution(w io.Writer, l core.Lang, d core.Day, t core.Task, tp taskProgress) error {
	if !tp.done {
		fmt.Fprint(w, words.notPassing.F(l, t.ID, t.Name))
		if len(tp.failing) > 0 {
			fmt.Fprint(w, words.stillFailing.F(l, strings.Join(tp.failing, ", ")))
		}
		fmt.Fprint(w, words.readFirst.F(l, d.Num, t.ID))
		return notEarnedError{l}
	}
	code, err := core.TaskReference(d, t)
	if err != nil {
		return err
	}
	fmt.Fprint(w, words.reference.F(l, t.ID, t.Name, filepath.Join(d.Dir, ".solution", "main.go"), code))
	return nil
}

// CmdWatch re-runs the current task whenever a .go file of the day is
// saved; see watchLoop.
func CmdWatch(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	l, err := core.LangFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	d := days[0] // without DAY=, the first day
	fixed, ok, err := taskFlag(l, d, inv)
	if err != nil {
		return err
	}
	mistakes, err := core.LoadAntipatterns(d)
	if err != nil {
		return err
	}
	w := &watchLoop{
		lang:     l,
		out:      os.Stdout,
		clear:    true,
		interval: 300 * time.Millisecond,
		quiet:    400 * time.Millisecond,
		files:    func() (string, error) { return goFilesStamp(d.Path) },
		progress: func(ctx context.Context) (dayProgress, error) {
			run, err := r.GoTestJSONOpts(ctx, true, append(r.Race(ctx), "-count=1", learnerTimeout, d.Pkg())...)
			if err != nil {
				return dayProgress{}, err
			}
			return buildProgress(l, d, run, mistakes), nil
		},
		task: func(ctx context.Context, id int) (taskProgress, error) {
			i := slices.IndexFunc(d.Kata.Tasks, func(t core.Task) bool { return t.ID == id })
			return runTask(ctx, l, r, d, d.Kata.Tasks[i], mistakes)
		},
		day: d,
	}
	if ok {
		w.fixed = fixed.ID
	}
	err = w.run(ctx)
	if errors.Is(err, context.Canceled) {
		fmt.Println(words.stopped.In(l))
		return nil
	}
	return err
}

// goFilesStamp fingerprints the .go files directly in dir (the learner's
// day, not .solution/): their names, sizes and modification times.
func goFilesStamp(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed while we looked; the next poll sees it
			}
			return "", err
		}
		fmt.Fprintf(&b, "%s %d %d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String(), nil
}

// watchLoop is make watch. It polls the day's .go files rather than
// subscribing to file-system events: a poll every 300 ms costs nothing
// noticeable for a folder of twenty files, works the same on every
// system and editor (including those that save by renaming a new file
// over the old), and needs no dependency.
type watchLoop struct {
	lang     core.Lang // of the words printed
	out      io.Writer
	clear    bool          // clear the screen before each result
	interval time.Duration // between polls
	quiet    time.Duration // a burst of saves is over once the files have not changed for this long
	files    func() (string, error)
	progress func(ctx context.Context) (dayProgress, error)
	task     func(ctx context.Context, id int) (taskProgress, error)
	day      core.Day
	fixed    int    // the task to watch; 0 means the first unfinished one
	note     string // printed above the next result
}

// run watches until ctx ends. Runs never overlap: a save during a run is
// seen by the first poll after it, and starts the next run.
func (w *watchLoop) run(ctx context.Context) error {
	current := w.fixed
	stamp, err := w.files()
	if err != nil {
		return err
	}
	if current == 0 {
		if current, err = w.nextTask(ctx); err != nil {
			return err
		}
	}
	for {
		if current != 0 {
			tp, err := w.task(ctx, current)
			if err != nil {
				return err
			}
			w.show(tp)
			if tp.done && w.fixed == 0 {
				passed := current
				if current, err = w.nextTask(ctx); err != nil {
					return err
				}
				if current != 0 {
					w.note = words.passedOnTo.F(w.lang, passed, current)
					continue // show where the next task stands
				}
			}
		}
		if stamp, err = w.waitForSave(ctx, stamp); err != nil {
			return err
		}
		if current == 0 {
			// Every task passed: a save may have broken one, so the whole
			// day runs again and the first failing task becomes current.
			if current, err = w.nextTask(ctx); err != nil {
				return err
			}
		}
	}
}

// nextTask runs the whole day and returns its first unfinished task that
// needs no other, or 0 when every task passes.
func (w *watchLoop) nextTask(ctx context.Context) (int, error) {
	p, err := w.progress(ctx)
	if err != nil {
		return 0, err
	}
	for _, t := range p.tasks {
		if !t.done && len(t.needs) == 0 {
			return t.id, nil
		}
	}
	if len(p.compileErrors) > 0 && len(p.tasks) > 0 {
		return p.tasks[0].id, nil
	}
	w.clearScreen()
	fmt.Fprint(w.out, words.allPassWatching.F(w.lang, w.day.Num))
	return 0, nil
}

func (w *watchLoop) clearScreen() {
	if w.clear {
		fmt.Fprint(w.out, "\033[H\033[2J")
	}
}

// show prints one result: the task's line, its first failure and the hint
// for it, or that it passes.
func (w *watchLoop) show(tp taskProgress) {
	w.clearScreen()
	fmt.Fprintf(w.out, "%s  (%s)\n", w.day.Kata.TitleIn(w.lang), time.Now().Format("15:04:05"))
	if w.note != "" {
		fmt.Fprintln(w.out, w.note)
		w.note = ""
	}
	printTaskLine(w.out, tp)
	switch {
	case tp.done:
		fmt.Fprint(w.out, words.watchPasses.F(w.lang, tp.id, w.day.Num, tp.id))
	case len(tp.needs) > 0:
		fmt.Fprint(w.out, words.needsFirst.F(w.lang, taskList(w.lang, tp.needs)))
	default:
		printMessage(w.out, tp.message)
		printAdvice(w.out, tp.advice)
		if len(tp.advice) == 0 {
			if t, ok := w.day.Kata.Task(tp.id); ok {
				printFailureSource(w.out, w.lang, w.day, t, tp.message)
			}
			fmt.Fprint(w.out, words.stuck.F(w.lang, w.day.Num, tp.id))
		}
	}
	fmt.Fprintln(w.out, words.watching.In(w.lang))
}

// waitForSave polls the files until they differ from stamp and have then
// stayed the same for w.quiet, and returns their new stamp.
func (w *watchLoop) waitForSave(ctx context.Context, stamp string) (string, error) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	var changedAt time.Time
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
		now, err := w.files()
		if err != nil {
			return "", err
		}
		switch {
		case now != stamp:
			stamp, changedAt = now, time.Now()
		case !changedAt.IsZero() && time.Since(changedAt) >= w.quiet:
			return stamp, nil
		}
	}
}
