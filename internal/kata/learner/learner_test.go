package learner

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/coretest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fake day of these tests has two tasks: task 1, parse, and task 2,
// Server.Serve, whose tests call parse.
const fakeKata = `{
  "title": "Day 90: a fake day", "title_ja": "Day 90: a fake day（日本語）",
  "min_tests": 1,
  "tasks": [
    {"id": 1, "name": "parse", "tests": "^TestParse$", "summary": "read a line", "summary_ja": "read a line（日本語）", "functions": ["parse"]},
    {"id": 2, "name": "Serve", "tests": "^TestServe$", "summary": "answer each line", "summary_ja": "answer each line（日本語）", "functions": ["Server.Serve"]}
  ],
  "demo": {"args": [], "timeout_seconds": 10, "stub_output": "x"},
  "hints": [
    {"task": 1, "match": [["parse(", ") = nil error, want"]], "text": "**` + "`parse(...) = nil error, want ...`" + `**: an empty line is an error.", "text_ja": "**` + "`parse(...) = nil error, want ...`" + `**: 空行はエラーです。"},
    {"task": 2, "match": [["Serve answered", "twice"], ["wrote after close"]], "text": "**` + "`Serve answered ... twice`" + `** or **` + "`wrote after close`" + `**: answer once, then stop.", "text_ja": "**` + "`Serve answered ... twice`" + `** または **` + "`wrote after close`" + `**: 一度答えたら止めてください。"},
    {"match": [["found unexpected goroutines"]], "text": "**` + "`found unexpected goroutines`" + `**: a goroutine outlived its test.", "text_ja": "**` + "`found unexpected goroutines`" + `**: ゴルーチンがテストより長生きしました。"},
    {"task": 2, "match": [], "text": "Read the Serve section first.", "text_ja": "まず Serve の節を読んでください。"}
  ]
}`

const fakeStub = `package main

// parse reads a line (task 1).
func parse(line string) (string, error) {
	// TODO(task 1): reject an empty line.
	return "", errNotImplemented("parse: not implemented yet (see README, task 1)")
}

// Serve answers each line (task 2).
func (s *Server) Serve(lines []string) error {
	// TODO(task 2)
	return errNotImplemented("Serve: not implemented yet (see README, task 2)")
}

func scaffolding() {}
`

const fakeSolution = `package main

// parse reads a line.
func parse(line string) (string, error) {
	if line == "" {
		return "", errEmpty
	}
	return trim(line), nil
}

// trim is the reference's own helper.
func trim(s string) string { return s }

// Serve answers each line.
func (s *Server) Serve(lines []string) error {
	for _, l := range lines {
		if _, err := parse(l); err != nil {
			return err
		}
		s.answer(l)
	}
	return nil
}

// answer is another helper, used only by Serve.
func (s *Server) answer(l string) { s.out = append(s.out, l) }

// unused is declared but used by no task.
func unused() {}
`

const fakeMistakes = `{"antipatterns": [
  {"name": "no_empty_check", "mistake": "an empty line is accepted", "mistake_ja": "an empty line is accepted（日本語）", "file": "main.go",
   "edits": [{"find": "if line == \"\"", "replace": "if false"}],
   "caught_by": ["TestParse/Empty"], "symptom": "parse(\"\") = nil error"}
]}`

// fakeDay writes the fake day into a temporary folder.
func fakeDay(t *testing.T) core.Day {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "day90_fake")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".solution"), 0o755))
	for name, content := range map[string]string{
		"kata.json":                   fakeKata,
		"main.go":                     fakeStub,
		".solution/main.go":           fakeSolution,
		".solution/antipatterns.json": fakeMistakes,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	m, err := core.LoadKata(filepath.Join(dir, "kata.json"))
	require.NoError(t, err)
	return core.Day{Dir: "day90_fake", Path: dir, Num: "90", Kata: m}
}

func fakeMistakeList(t *testing.T, d core.Day) []core.Antipattern {
	t.Helper()
	list, err := core.LoadAntipatterns(d)
	require.NoError(t, err)
	return list
}

func TestHintMatching(t *testing.T) {
	d := fakeDay(t)
	mistakes := fakeMistakeList(t, d)

	t.Run("Fragments_must_appear_in_order", func(t *testing.T) {
		h := d.Kata.Hints[0]
		assert.True(t, h.Matches(`x_test.go:9: parse("") = nil error, want an error`))
		assert.False(t, h.Matches(`want an error: parse("") = nil error`), "fragments out of order")
		assert.False(t, h.Matches(`parse("") = "x"`), "a fragment missing")
	})

	t.Run("Any_alternative_matches", func(t *testing.T) {
		h := d.Kata.Hints[1]
		assert.True(t, h.Matches("Serve answered line 1 twice"))
		assert.True(t, h.Matches("Serve wrote after close"))
		assert.False(t, h.Matches("Serve answered line 1"))
	})

	t.Run("A_hint_without_failures_never_matches", func(t *testing.T) {
		assert.False(t, d.Kata.Hints[3].Matches("Read the Serve section first."))
	})

	t.Run("Advice_is_the_tasks_and_the_planted_mistakes", func(t *testing.T) {
		output := "x_test.go:9: parse(\"\") = nil error, want an error\nfound unexpected goroutines"
		got := core.Advice(core.English, d.Kata.Hints, mistakes, d.Kata, 1, output)
		assert.Equal(t, []string{
			"this usually means: an empty line is accepted",
			"this usually means: `parse(...) = nil error, want ...`: an empty line is an error.",
			"this usually means: `found unexpected goroutines`: a goroutine outlived its test.",
		}, got)
		assert.Equal(t, []string{"this usually means: `found unexpected goroutines`: a goroutine outlived its test."},
			core.Advice(core.English, d.Kata.Hints, mistakes, d.Kata, 2, output), "task 2's advice: not task 1's hint, nor its planted mistake")
	})

	t.Run("Task_hints_go_from_gentlest_to_most_concrete", func(t *testing.T) {
		got := core.TaskHints(core.English, d.Kata.Hints, mistakes, d.Kata, d.Kata.Tasks[0])
		require.Len(t, got, 4)
		assert.Contains(t, got[0], `Task 1, parse: read a line. Its section in README.md ("Task 1")`)
		assert.Equal(t, "`parse(...) = nil error, want ...`: an empty line is an error.", got[1])
		assert.Equal(t, `A common mistake: an empty line is accepted. It shows as: parse("") = nil error`, got[2])
		assert.Contains(t, got[3], "found unexpected goroutines", "hints for any task come last")
	})
}

func TestHintList(t *testing.T) {
	d := fakeDay(t)
	rendered := core.RenderHints(d.Kata.Hints, core.English)
	assert.Equal(t, "- **`parse(...) = nil error, want ...`**: an empty line is an error.\n", strings.SplitAfter(rendered, "\n")[0])
	for _, line := range strings.Split(strings.TrimSuffix(rendered, "\n"), "\n") {
		assert.LessOrEqual(t, len(line), 78, "a line of the rendered hints")
	}
	readme := "# Day 90\n\n" + core.HintsHeading(core.English) + "\n\n" + rendered + "\n## Next\n"
	assert.Empty(t, core.CheckHintList(readme, d.Kata.Hints, core.English), "a README written from the hints")

	edited := strings.Replace(readme, "an empty line is an error", "an empty line is fine", 1)
	assert.NotEmpty(t, core.CheckHintList(edited, d.Kata.Hints, core.English), "a README whose hint was edited by hand")
	assert.NotEmpty(t, core.CheckHintList("# Day 90\n", d.Kata.Hints, core.English), "a README without the section")

	renderedJa := core.RenderHints(d.Kata.Hints, core.Japanese)
	assert.Equal(t, "- **`parse(...) = nil error, want ...`**: 空行はエラーです。\n", strings.SplitAfter(renderedJa, "\n")[0], "a Japanese hint, one line")
	readmeJa := "# Day 90\n\n" + core.HintsHeading(core.Japanese) + "\n\n" + renderedJa + "\n## 次\n"
	assert.Empty(t, core.CheckHintList(readmeJa, d.Kata.Hints, core.Japanese), "a Japanese README written from the hints")
	assert.NotEmpty(t, core.CheckHintList(strings.Replace(readmeJa, renderedJa, rendered, 1), d.Kata.Hints, core.Japanese), "README.ja.md with the English hints")

	require.NoError(t, os.WriteFile(filepath.Join(d.Path, "README.md"), []byte(readme), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(d.Path, "README.ja.md"), []byte(readmeJa), 0o644))
	assert.Empty(t, core.CheckDayHints(d), "a day whose READMEs were written from the hints")
	for _, f := range []struct {
		name, readme, rendered string
	}{{"README.md", readme, rendered}, {"README.ja.md", readmeJa, renderedJa}} {
		path := filepath.Join(d.Path, f.name)
		require.NoError(t, os.WriteFile(path, []byte(strings.Replace(f.readme, f.rendered, "- an old hint\n", 1)), 0o644))
		assert.Equal(t, []string{"day90_fake/" + f.name + ": the hints are not the ones kata.json makes: run `go run ./internal/kata tables` to write them"},
			core.CheckDayHints(d), "a day whose %s is stale and the other one is not", f.name)
		changed, err := core.WriteDayHints(d)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Empty(t, core.CheckDayHints(d), "the READMEs after writing the hints")
		changed, err = core.WriteDayHints(d)
		require.NoError(t, err)
		assert.False(t, changed, "writing them again")
	}
}

func TestHintValidation(t *testing.T) {
	_, err := core.ParseKata([]byte(strings.Replace(fakeKata, `{"task": 1, "match"`, `{"task": 7, "match"`, 1)))
	assert.ErrorContains(t, err, "hints[0]: task 7 does not exist")
	_, err = core.ParseKata([]byte(strings.Replace(fakeKata, `[["parse(", ") = nil error, want"]]`, `[["parse(", ""]]`, 1)))
	assert.ErrorContains(t, err, "hints[0].match[0]: want non-empty fragments")
}

func TestNeedsEarlierTask(t *testing.T) {
	d := fakeDay(t)
	serveFails := coretest.Concat(
		[]core.TestEvent{{Action: "run", Test: "TestServe"}},
		coretest.TestEvents("TestServe/Echo", "fail", "    x_test.go:20: Serve() = parse: not implemented yet (see README, task 1), want nil"),
		[]core.TestEvent{{Action: "fail", Test: "TestServe"}},
	)

	t.Run("A_task_whose_tests_reach_an_unfinished_task_needs_it", func(t *testing.T) {
		events := coretest.Concat(coretest.TestEvents("TestParse", "fail", "    x_test.go:9: parse(\"a\") = parse: not implemented yet (see README, task 1)"), serveFails)
		p := buildProgress(core.English, d, coretest.Parse(t, events...), nil)
		assert.Equal(t, []int{1}, p.tasks[1].needs)
		var b strings.Builder
		printProgress(&b, p)
		assert.Contains(t, b.String(), "  [ ] 2 Serve  answer each line\n      needs task 1 first: its tests call that code\n")
		assert.NotContains(t, b.String(), "Serve() = parse", "task 1's failure shown as task 2's")
		assert.Contains(t, b.String(), "Next: task 1")
	})

	t.Run("Once_that_task_passes_the_failure_is_this_tasks", func(t *testing.T) {
		events := coretest.Concat(coretest.TestEvents("TestParse", "pass"), serveFails)
		p := buildProgress(core.English, d, coretest.Parse(t, events...), nil)
		assert.Empty(t, p.tasks[1].needs)
		assert.Equal(t, []string{"x_test.go:20: Serve() = parse: not implemented yet (see README, task 1), want nil"}, p.tasks[1].message)
	})

	t.Run("A_task_not_yet_started_gets_no_hint", func(t *testing.T) {
		events := coretest.TestEvents("TestParse", "fail", "    x_test.go:9: parse(\"\") = nil error, want parse: not implemented yet (see README, task 1)")
		p := buildProgress(core.English, d, coretest.Parse(t, events...), fakeMistakeList(t, d))
		assert.Empty(t, p.tasks[0].advice, "advice for the untouched stub")
		events = coretest.TestEvents("TestParse", "fail", "    x_test.go:9: parse(\"\") = nil error, want an error")
		p = buildProgress(core.English, d, coretest.Parse(t, events...), fakeMistakeList(t, d))
		assert.Len(t, p.tasks[0].advice, 2, "advice once the learner's code answers")
	})
}

func TestSolution(t *testing.T) {
	d := fakeDay(t)

	t.Run("Shows_the_tasks_functions_and_their_own_helpers", func(t *testing.T) {
		code, err := core.TaskReference(d, d.Kata.Tasks[1])
		require.NoError(t, err)
		assert.Contains(t, code, "// Serve answers each line.\nfunc (s *Server) Serve(lines []string) error {")
		assert.Contains(t, code, "func (s *Server) answer(l string)", "the helper Serve uses")
		assert.NotContains(t, code, "func parse(", "task 1's function, which Serve calls")
		assert.NotContains(t, code, "func trim(", "a helper of task 1's")
		assert.NotContains(t, code, "func unused(")

		code, err = core.TaskReference(d, d.Kata.Tasks[0])
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(code, "// parse reads a line.\nfunc parse(line string) (string, error) {"), "task 1's reference:\n%s", code)
		assert.Contains(t, code, "func trim(s string) string { return s }")
	})

	t.Run("Refuses_until_the_task_passes", func(t *testing.T) {
		var b strings.Builder
		err := printSolution(&b, core.English, d, d.Kata.Tasks[1], taskProgress{id: 2, failing: []string{"TestServe"}})
		require.Equal(t, notEarnedError{core.English}, err)
		assert.Contains(t, b.String(), "Task 2 (Serve) does not pass yet. Still failing: TestServe.")
		assert.NotContains(t, b.String(), "func ")

		b.Reset()
		require.NoError(t, printSolution(&b, core.English, d, d.Kata.Tasks[1], taskProgress{id: 2, done: true}))
		assert.Contains(t, b.String(), "func (s *Server) Serve(lines []string) error {")
	})

	t.Run("The_manifests_functions_are_the_stubs_markers", func(t *testing.T) {
		assert.Empty(t, core.CheckTaskFunctions(d))
		d.Kata.Tasks[1].Functions = []string{"Server.Run"}
		assert.Equal(t, []string{`task 2 lists functions ["Server.Run"] in kata.json, but the stubs carrying TODO(task 2) are ["Server.Serve"]`}, core.CheckTaskFunctions(d))
	})
}

// fakeRunner is the watch loop's view of the day: a task passes once
// its files say so, and it records how many runs overlap.
type fakeRunner struct {
	mu       sync.Mutex
	files    string // what the day's files hold now
	running  int
	overlap  bool
	runs     []int // the tasks run, in order
	runTakes time.Duration
}

func (f *fakeRunner) stamp() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files, nil
}

func (f *fakeRunner) save(content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files = content
}

// taskDone says whether task id passes with the files as they are.
func (f *fakeRunner) taskDone(id int) bool {
	return strings.Contains(f.files, "task1 fixed") && (id == 1 || strings.Contains(f.files, "task2 fixed"))
}

func (f *fakeRunner) task(_ context.Context, id int) (taskProgress, error) {
	f.mu.Lock()
	f.running++
	f.overlap = f.overlap || f.running > 1
	f.runs = append(f.runs, id)
	done := f.taskDone(id)
	f.mu.Unlock()
	time.Sleep(f.runTakes)
	f.mu.Lock()
	f.running--
	f.mu.Unlock()
	tp := taskProgress{id: id, name: map[int]string{1: "parse", 2: "Serve"}[id], done: done}
	if !done {
		tp.message = []string{"x_test.go:9: task failing"}
		tp.advice = []string{"this usually means: a hint"}
	}
	return tp, nil
}

func (f *fakeRunner) progress(ctx context.Context) (dayProgress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p dayProgress
	for _, id := range []int{1, 2} {
		p.tasks = append(p.tasks, taskProgress{id: id, done: f.taskDone(id)})
	}
	return p, nil
}

func startWatch(t *testing.T, d core.Day, f *fakeRunner, fixed int) (out *syncBuffer, stop func() error) {
	out = &syncBuffer{}
	w := &watchLoop{out: out, interval: 100 * time.Millisecond, quiet: 300 * time.Millisecond,
		files: f.stamp, progress: f.progress, task: f.task, day: d, fixed: fixed}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	return out, func() error {
		cancel()
		return <-done
	}
}

// syncBuffer is a strings.Builder safe for the loop and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatch(t *testing.T) {
	d := fakeDay(t)

	t.Run("Runs_the_first_unfinished_task_and_moves_on_when_it_passes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "v1"}
			out, stop := startWatch(t, d, f, 0)
			synctest.Wait()
			assert.Contains(t, out.String(), "  [ ] 1 parse  \n      x_test.go:9: task failing\n      this usually means: a hint\n")
			f.save("v2 task1 fixed")
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Contains(t, out.String(), "Task 1 passes! On to task 2.\n  [ ] 2 Serve")
			f.save("v3 task1 fixed task2 fixed")
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Contains(t, out.String(), "every task passes")
			require.ErrorIs(t, stop(), context.Canceled)
			assert.Equal(t, []int{1, 1, 2, 2}, f.runs, "the tasks run: 1 at the start and after the save, then 2 twice")
		})
	})

	t.Run("After_every_task_passes_a_save_runs_the_day_again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "task1 fixed task2 fixed"}
			out, stop := startWatch(t, d, f, 0)
			synctest.Wait()
			assert.Contains(t, out.String(), "every task passes")
			f.save("task2 fixed, task 1 broken again")
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Contains(t, out.String(), "  [ ] 1 parse  \n      x_test.go:9: task failing\n", "a save after every task passed, breaking task 1")
			require.ErrorIs(t, stop(), context.Canceled)
		})
	})

	t.Run("A_burst_of_saves_runs_once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "v0"}
			_, stop := startWatch(t, d, f, 1)
			synctest.Wait()
			for i := range 5 { // a save every 150 ms, each within the quiet time of the last
				f.save(strings.Repeat("x", i+1))
				time.Sleep(150 * time.Millisecond)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			require.ErrorIs(t, stop(), context.Canceled)
			assert.Equal(t, []int{1, 1}, f.runs, "runs: the first, then one for the burst")
		})
	})

	t.Run("A_save_during_a_run_waits_for_it_and_then_runs_again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "v0", runTakes: 5 * time.Second}
			_, stop := startWatch(t, d, f, 1)
			time.Sleep(time.Second) // the first run is under way
			f.save("v1")
			time.Sleep(time.Second)
			f.save("v2")
			time.Sleep(20 * time.Second)
			synctest.Wait()
			require.ErrorIs(t, stop(), context.Canceled)
			assert.False(t, f.overlap, "two runs at once")
			assert.Equal(t, []int{1, 1}, f.runs, "runs: the first, then one for the saves made during it")
		})
	})

	t.Run("A_fixed_task_stays_fixed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "task1 fixed"}
			out, stop := startWatch(t, d, f, 1)
			synctest.Wait()
			require.ErrorIs(t, stop(), context.Canceled)
			assert.Contains(t, out.String(), "Task 1 passes! Compare with the reference: make solution DAY=90 TASK=1")
			assert.Equal(t, []int{1}, f.runs, "with TASK=1, task 2 is not run")
		})
	})

	t.Run("Stops_at_once_when_cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRunner{files: "v0"}
			_, stop := startWatch(t, d, f, 0)
			synctest.Wait()
			start := time.Now()
			require.ErrorIs(t, stop(), context.Canceled)
			assert.Less(t, time.Since(start), 200*time.Millisecond, "time to stop after cancel")
		})
	})
}

func TestPrintFailureSourceShowsTheAssertionAndTheContract(t *testing.T) {
	dir := t.TempDir()
	test := "package main\n\nfunc TestX(t *testing.T) {\n\tgot := f()\n\tif got != 2 {\n\t\tt.Fatalf(\"f() = %d, want 2\", got)\n\t}\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x_test.go"), []byte(test), 0o644))
	stub := "package main\n\n// f returns 2 (task 1).\nfunc f() int {\n\treturn 0\n}\n\n// g is a method.\nfunc (s *S) g() {}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(stub), 0o644))
	d := core.Day{Dir: "day99_x", Path: dir, Num: "99"}
	var b strings.Builder
	printFailureSource(&b, core.English, d, core.Task{ID: 1, Functions: []string{"f", "S.g"}}, []string{"x_test.go:6: f() = 0, want 2"})
	got := b.String()
	for _, want := range []string{
		"The assertion that failed, day99_x/x_test.go:6:",
		">    6          t.Fatalf(\"f() = %d, want 2\", got)",
		"     4      got := f()",
		"the doc comment of f, above day99_x/main.go:4",
		"the doc comment of S.g, above day99_x/main.go:9",
		"day99_x/README.md, section \"Task 1\"",
	} {
		assert.Contains(t, got, want)
	}
}

func TestWordsInEveryLanguage(t *testing.T) {
	v := reflect.ValueOf(words)
	require.Greater(t, v.NumField(), 30, "the learner's words")
	for i := range v.NumField() {
		f := v.Field(i) // unexported: read through its fields
		assert.Empty(t, core.TextProblems(v.Type().Field(i).Name, core.NewText(f.FieldByName("En").String(), f.FieldByName("Ja").String())))
	}
}

func TestJapanese(t *testing.T) {
	d := fakeDay(t)
	mistakes := fakeMistakeList(t, d)
	failure := "    x_test.go:9: parse(\"\") = nil error, want an error"
	events := coretest.Concat(coretest.TestEvents("TestParse", "fail", failure), coretest.TestEvents("TestServe", "pass"))

	t.Run("Progress", func(t *testing.T) {
		var b strings.Builder
		printProgress(&b, buildProgress(core.Japanese, d, coretest.Parse(t, events...), mistakes))
		assert.Equal(t, "Day 90: a fake day（日本語）\n"+
			"  [ ] 1 parse   read a line（日本語）\n"+
			"      x_test.go:9: parse(\"\") = nil error, want an error\n"+
			"      よくある原因: an empty line is accepted（日本語）\n"+
			"      よくある原因: `parse(...) = nil error, want ...`: 空行はエラーです。\n"+
			"  [x] 2 Serve   answer each line（日本語）\n"+
			"1/2 課題完了。次: 課題 1 (make test DAY=90 RUN=TestParse)\n", b.String(),
			"the tools' words, the title, summaries and hints in Japanese; the failure as go test printed it; the names padded to the widest, その他 (6 columns)")
	})

	t.Run("Hint_with_no_match", func(t *testing.T) {
		p := buildProgress(core.Japanese, d, coretest.Parse(t, coretest.TestEvents("TestServe", "fail", "    x_test.go:20: Serve() = 1, want 2")...), mistakes)
		var b strings.Builder
		printHint(&b, core.Japanese, d, d.Kata.Tasks[1], p.tasks[1], mistakes)
		out := b.String()
		assert.Contains(t, out, "x_test.go:20: Serve() = 1, want 2\n")
		assert.Contains(t, out, "この失敗に合うヒントはありません。")
		assert.Contains(t, out, "day90_fake/README.ja.md の「課題 2」の節")
		assert.Contains(t, out, "まず Serve の節を読んでください。")
		assert.NotContains(t, out, "No hint matches")
	})

	t.Run("Solution_refused", func(t *testing.T) {
		var b strings.Builder
		err := printSolution(&b, core.Japanese, d, d.Kata.Tasks[1], taskProgress{id: 2, failing: []string{"TestServe"}})
		require.Equal(t, notEarnedError{core.Japanese}, err)
		assert.Equal(t, "参考実装は、あなたのコードがこの課題を通ってから表示されます", err.Error())
		assert.Contains(t, b.String(), "課題 2 (Serve) はまだ通っていません。失敗しているテスト: TestServe。")
	})

	t.Run("Watch", func(t *testing.T) {
		var b strings.Builder
		w := &watchLoop{lang: core.Japanese, out: &b, day: d}
		w.show(taskProgress{id: 2, name: "Serve", summary: "answer each line（日本語）", needs: []int{1}})
		assert.Contains(t, b.String(), "Day 90: a fake day（日本語）")
		assert.Contains(t, b.String(), "      先に 課題 1 が必要です")
		assert.Contains(t, b.String(), "変更を監視しています (Ctrl+C で終了)。")
	})
}
