package main

import (
	"bufio"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
)

// testEvent is one line of `go test -json` output (go doc test2json).
type testEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64 // seconds, on pass, fail and skip events
	ImportPath  string  // set on build-output and build-fail events
	FailedBuild string  // set on a package's fail event when it did not build
}

// testRun is what one `go test -json` run of one package reported.
type testRun struct {
	results map[string]string  // full test name -> pass, fail or skip ("" while running)
	fails   map[string]int     // how many runs of a test failed (with -count=N)
	slowest map[string]float64 // the longest a run of a test took, in seconds
	order   []string           // test names in the order they started
	output  []testOutput       // lines printed by tests, in arrival order

	buildFailed bool
	buildOutput []string // compiler and vet output
	pkgOutput   []string // lines not belonging to a test (FAIL, a panic outside tests)
	raw         []string // stdout lines that were not JSON events
}

// testOutput is one line printed while a test ran.
type testOutput struct {
	test string
	text string
}

// parseTestJSON reads a `go test -json` stream.
func parseTestJSON(r io.Reader) (*testRun, error) {
	run := &testRun{results: map[string]string{}, fails: map[string]int{}, slowest: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev testEvent
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil {
			run.raw = append(run.raw, line)
			continue
		}
		run.add(ev)
	}
	return run, sc.Err()
}

func (run *testRun) add(ev testEvent) {
	text := strings.TrimRight(ev.Output, "\n")
	switch ev.Action {
	case "build-output":
		run.buildOutput = append(run.buildOutput, text)
	case "build-fail":
		run.buildFailed = true
	case "run":
		if ev.Test == "" {
			return
		}
		if _, seen := run.results[ev.Test]; !seen {
			run.order = append(run.order, ev.Test)
		}
		run.results[ev.Test] = ""
	case "pass", "fail", "skip":
		if ev.Test == "" {
			if ev.FailedBuild != "" {
				run.buildFailed = true
			}
			return
		}
		if _, seen := run.results[ev.Test]; !seen {
			run.order = append(run.order, ev.Test)
		}
		run.results[ev.Test] = ev.Action
		if ev.Action == "fail" {
			run.fails[ev.Test]++
		}
		run.slowest[ev.Test] = max(run.slowest[ev.Test], ev.Elapsed)
	case "output":
		if ev.Test == "" {
			run.pkgOutput = append(run.pkgOutput, text)
		} else {
			run.output = append(run.output, testOutput{ev.Test, text})
		}
	}
}

// merge adds the runs of other to run's (run may be nil): fail counts
// add up, the slowest run is kept, and output and outcomes follow in
// order, the last outcome winning.
func (run *testRun) merge(other *testRun) *testRun {
	if run == nil {
		return other
	}
	for _, name := range other.order {
		if _, seen := run.results[name]; !seen {
			run.order = append(run.order, name)
		}
		run.results[name] = other.results[name]
		run.fails[name] += other.fails[name]
		run.slowest[name] = max(run.slowest[name], other.slowest[name])
	}
	run.output = append(run.output, other.output...)
	run.buildFailed = run.buildFailed || other.buildFailed
	run.buildOutput = append(run.buildOutput, other.buildOutput...)
	run.pkgOutput = append(run.pkgOutput, other.pkgOutput...)
	run.raw = append(run.raw, other.raw...)
	return run
}

// ran reports whether the test started at all.
func (run *testRun) ran(name string) bool {
	_, ok := run.results[name]
	return ok
}

// outcome describes how a test ended: "pass", "fail", "skip", "did not
// finish" or "did not run".
func (run *testRun) outcome(name string) string {
	action, ok := run.results[name]
	switch {
	case !ok:
		return "did not run"
	case action == "":
		return "did not finish"
	}
	return action
}

// topLevel returns the distinct top-level tests that ran, in order.
func (run *testRun) topLevel() []string {
	var names []string
	for _, name := range run.order {
		if !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	return names
}

// topLevelName returns "TestX" for "TestX/Sub/Case".
func topLevelName(test string) string {
	name, _, _ := strings.Cut(test, "/")
	return name
}

// failureMessage returns the first failure reported by a top-level test or
// one of its subtests, as a few lines to show a learner.
func (run *testRun) failureMessage(top string) []string {
	var lines []string
	for _, o := range run.output {
		if topLevelName(o.test) == top && run.results[o.test] == "fail" {
			lines = append(lines, o.text)
		}
	}
	return firstFailure(lines)
}

// failureOutput returns everything printed by the failing subtests of a
// top-level test, and by the test itself if it failed: the text hints are
// matched against.
func (run *testRun) failureOutput(top string) string {
	var b strings.Builder
	for _, o := range run.output {
		if topLevelName(o.test) == top && run.results[o.test] == "fail" {
			b.WriteString(o.text)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// firstFailureOf returns the first failure printed by test or one of
// its subtests that failed, as failureMessage does for a top-level test.
func (run *testRun) firstFailureOf(test string) []string {
	var lines []string
	for _, o := range run.output {
		if (o.test == test || strings.HasPrefix(o.test, test+"/")) && run.fails[o.test] > 0 {
			lines = append(lines, o.text)
		}
	}
	return firstFailure(lines)
}

// compileErrors returns the first few compiler (or vet) messages of a build
// that failed, without the "# package" headers.
func (run *testRun) compileErrors(max int) []string {
	var errs []string
	for _, line := range slices.Concat(run.buildOutput, run.raw) {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if len(errs) == max {
			errs = append(errs, "...")
			break
		}
		errs = append(errs, line)
	}
	return errs
}

var (
	// fileLine matches what t.Error and t.Log print: "    main_test.go:120: message".
	fileLine = regexp.MustCompile(`^\s*([\w.\-]+\.go:\d+):(?: (.*))?$`)
	// testifyField matches a labelled line of a testify failure:
	// "        \tError:      \tNot equal: ".
	testifyField = regexp.MustCompile(`^\s*\t([A-Z][A-Za-z ]*):\s*\t(.*)$`)
	// testifyMore matches a continuation line of a testify field.
	testifyMore = regexp.MustCompile(`^\s*\t\s+\t(.*)$`)
)

// firstFailure picks the first failure out of the output of failing tests:
// the first "file.go:NN: message" line, trimmed, and for a testify failure
// (whose message follows on labelled lines) its Error text, with a few
// continuation lines, and its Messages text. Without such a line it falls
// back to the first line that is not test framing, for example a panic.
func firstFailure(lines []string) []string {
	for i, line := range lines {
		m := fileLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		msg := []string{strings.TrimSpace(m[1] + ": " + m[2])}
		return append(msg, testifyDetails(lines[i+1:])...)
	}
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed != "" && !strings.HasPrefix(trimmed, "=== ") && !strings.HasPrefix(trimmed, "--- ") {
			return []string{trimmed}
		}
	}
	return nil
}

// testifyDetails extracts "Error: ..." and "Messages: ..." from the
// labelled lines testify prints after "file.go:NN:".
func testifyDetails(lines []string) []string {
	const maxContinuation = 3
	var details []string
	field, more := "", 0
	for _, line := range lines {
		if m := testifyField.FindStringSubmatch(line); m != nil {
			field, more = m[1], 0
			text := strings.TrimSpace(m[2])
			if field == "Error" || field == "Messages" {
				details = append(details, field+": "+text)
			}
			continue
		}
		if m := testifyMore.FindStringSubmatch(line); m != nil {
			text := strings.TrimSpace(m[1])
			if field == "Error" && text != "" && more < maxContinuation {
				details = append(details, "  "+text)
				more++
			}
			continue
		}
		break // the end of this failure
	}
	return details
}
