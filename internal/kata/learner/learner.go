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
func learnerDay(r *core.Repo, inv core.Invocation) (core.Day, error) {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.Day{}, core.NoDays(err)
	}
	if len(days) > 1 {
		return core.Day{}, errors.New("which day? name it: make hint DAY=48 TASK=2")
	}
	return days[0], nil
}

// taskFlag returns the task named by -task, or false when none is.
func taskFlag(d core.Day, inv core.Invocation) (core.Task, bool, error) {
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
	return core.Task{}, false, fmt.Errorf("day %s has no task %q: its tasks are 1 to %d", d.Num, value, len(d.Kata.Tasks))
}

// runTask runs one task's tests on the learner's code, as make test does,
// and returns its progress.
func runTask(ctx context.Context, r *core.Repo, d core.Day, t core.Task, mistakes []core.Antipattern) (taskProgress, error) {
	args := append(r.Race(ctx), "-count=1", learnerTimeout, "-run", t.Tests, d.Pkg())
	run, err := r.GoTestJSONOpts(ctx, true, args...)
	if err != nil {
		return taskProgress{}, err
	}
	p := buildProgress(d, run, mistakes)
	if len(p.compileErrors) > 0 {
		return taskProgress{id: t.ID, name: t.Name, summary: t.Summary, message: append([]string{"the code does not compile yet:"}, p.compileErrors...)}, nil
	}
	for _, tp := range p.tasks {
		if tp.id == t.ID {
			return tp, nil
		}
	}
	return taskProgress{}, fmt.Errorf("task %d is not in %s/kata.json", t.ID, d.Dir)
}

// namedTask returns the day and task a command that needs both is about;
// usage is how to name them, for the error when the task is missing.
func namedTask(r *core.Repo, inv core.Invocation, usage string) (core.Day, core.Task, error) {
	d, err := learnerDay(r, inv)
	if err != nil {
		return core.Day{}, core.Task{}, err
	}
	t, ok, err := taskFlag(d, inv)
	if err == nil && !ok {
		err = fmt.Errorf("which task? %s (make progress shows them)", strings.ReplaceAll(usage, "DAY=N", "DAY="+d.Num))
	}
	return d, t, err
}

// CmdHint runs a task's tests and prints the hints for its failure: the
// ones that match it, or, when none does (or the task has not been
// started), all of the task's hints from the gentlest to the most
// concrete.
func CmdHint(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	d, t, err := namedTask(r, inv, "make hint DAY=N TASK=N")
	if err != nil {
		return err
	}
	mistakes, err := core.LoadAntipatterns(d)
	if err != nil {
		return err
	}
	tp, err := runTask(ctx, r, d, t, mistakes)
	if err != nil {
		return err
	}
	printHint(os.Stdout, d, t, tp, mistakes)
	return nil
}

// printHint prints what make hint shows for a task's progress.
func printHint(w io.Writer, d core.Day, t core.Task, tp taskProgress, mistakes []core.Antipattern) {
	printTaskLine(w, tp)
	switch {
	case tp.done:
		fmt.Fprintf(w, "Task %d passes. Compare with the reference: make solution DAY=%s TASK=%d\n", t.ID, d.Num, t.ID)
		return
	case len(tp.needs) > 0:
		fmt.Fprintf(w, "Its tests call the code of %s, which does not pass yet: start there.\n", taskList(tp.needs))
		return
	}
	printMessage(w, tp.message)
	if len(tp.advice) > 0 {
		printAdvice(w, tp.advice)
		return
	}
	printFailureSource(w, d, t, tp.message)
	fmt.Fprintln(w, "No hint matches this failure; the task's hints, from the gentlest to the most concrete:")
	for i, h := range core.TaskHints(d.Kata.Hints, mistakes, d.Kata, t) {
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
	d, t, err := namedTask(r, inv, "make solution DAY=N TASK=N")
	if err != nil {
		return err
	}
	tp, err := runTask(ctx, r, d, t, nil)
	if err != nil {
		return err
	}
	return printSolution(os.Stdout, d, t, tp)
}

// errNotEarned is make solution's answer before the task passes.
var errNotEarned = errors.New("the reference is shown once your code passes the task")

// printSolution prints the reference of a passing task, or the failing
// tests of one that does not pass.
func printSolution(w io.Writer, d core.Day, t core.Task, tp taskProgress) error {
	if !tp.done {
		fmt.Fprintf(w, "Task %d (%s) does not pass yet.", t.ID, t.Name)
		if len(tp.failing) > 0 {
			fmt.Fprintf(w, " Still failing: %s.", strings.Join(tp.failing, ", "))
		}
		fmt.Fprintf(w, "\nThe reference is for comparing once your own code works: reading it first skips the part that teaches.\nmake hint DAY=%s TASK=%d helps with the failure.\n", d.Num, t.ID)
		return errNotEarned
	}
	code, err := core.TaskReference(d, t)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "// Task %d (%s) passes: the reference, from %s, to compare with yours.\n\n%s",
		t.ID, t.Name, filepath.Join(d.Dir, ".solution", "main.go"), code)
	return nil
}

// CmdWatch re-runs the current task whenever a .go file of the day is
// saved; see watchLoop.
func CmdWatch(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	d := days[0] // without DAY=, the first day
	fixed, ok, err := taskFlag(d, inv)
	if err != nil {
		return err
	}
	mistakes, err := core.LoadAntipatterns(d)
	if err != nil {
		return err
	}
	w := &watchLoop{
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
			return buildProgress(d, run, mistakes), nil
		},
		task: func(ctx context.Context, id int) (taskProgress, error) {
			i := slices.IndexFunc(d.Kata.Tasks, func(t core.Task) bool { return t.ID == id })
			return runTask(ctx, r, d, d.Kata.Tasks[i], mistakes)
		},
		day: d,
	}
	if ok {
		w.fixed = fixed.ID
	}
	err = w.run(ctx)
	if errors.Is(err, context.Canceled) {
		fmt.Println("\nStopped watching.")
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
					w.note = fmt.Sprintf("Task %d passes! On to task %d.", passed, current)
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
	fmt.Fprintf(w.out, "Day %s: every task passes. Well done!\nWatching for changes (Ctrl+C to stop).\n", w.day.Num)
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
	fmt.Fprintf(w.out, "%s  (%s)\n", w.day.Kata.Title, time.Now().Format("15:04:05"))
	if w.note != "" {
		fmt.Fprintln(w.out, w.note)
		w.note = ""
	}
	printTaskLine(w.out, tp)
	switch {
	case tp.done:
		fmt.Fprintf(w.out, "Task %d passes! Compare with the reference: make solution DAY=%s TASK=%d\n", tp.id, w.day.Num, tp.id)
	case len(tp.needs) > 0:
		fmt.Fprintf(w.out, "      needs %s first: its tests call that code\n", taskList(tp.needs))
	default:
		printMessage(w.out, tp.message)
		printAdvice(w.out, tp.advice)
		if len(tp.advice) == 0 {
			if t, ok := w.day.Kata.Task(tp.id); ok {
				printFailureSource(w.out, w.day, t, tp.message)
			}
			fmt.Fprintf(w.out, "      stuck? make hint DAY=%s TASK=%d\n", w.day.Num, tp.id)
		}
	}
	fmt.Fprintln(w.out, "Watching for changes (Ctrl+C to stop).")
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
