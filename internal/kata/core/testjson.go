package core

import (
	"bufio"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
)

// TestEvent is one line of `go test -json` output (go doc test2json).
type TestEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64 // seconds, on pass, fail and skip events
	ImportPath  string  // set on build-output and build-fail events
	FailedBuild string  // set on a package's fail event when it did not build
}

// TestRun is what one `go test -json` run of one package reported.
type TestRun struct {
	results map[string]string  // full test name -> pass, fail or skip ("" while running)
	Fails   map[string]int     // how many runs of a test failed (with -count=N)
	Slowest map[string]float64 // the longest a run of a test took, in seconds
	Order   []string           // test names in the order they started
	Output  []testOutput       // lines printed by tests, in arrival order

	BuildFailed bool
	BuildOutput []string // compiler and vet output
	PkgOutput   []string // lines not belonging to a test (FAIL, a panic outside tests)
	Raw         []string // stdout lines that were not JSON events
}

// testOutput is one line printed while a test ran.
type testOutput struct {
	Test string
	Text string
}

// ParseTestJSON reads a `go test -json` stream.
func ParseTestJSON(r io.Reader) (*TestRun, error) {
	run := &TestRun{results: map[string]string{}, Fails: map[string]int{}, Slowest: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev TestEvent
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil {
			run.Raw = append(run.Raw, line)
			continue
		}
		run.add(ev)
	}
	return run, sc.Err()
}

func (run *TestRun) add(ev TestEvent) {
	text := strings.TrimRight(ev.Output, "\n")
	switch ev.Action {
	case "build-output":
		run.BuildOutput = append(run.BuildOutput, text)
	case "build-fail":
		run.BuildFailed = true
	case "run":
		if ev.Test == "" {
			return
		}
		if _, seen := run.results[ev.Test]; !seen {
			run.Order = append(run.Order, ev.Test)
		}
		run.results[ev.Test] = ""
	case "pass", "fail", "skip":
		if ev.Test == "" {
			if ev.FailedBuild != "" {
				run.BuildFailed = true
			}
			return
		}
		if _, seen := run.results[ev.Test]; !seen {
			run.Order = append(run.Order, ev.Test)
		}
		run.results[ev.Test] = ev.Action
		if ev.Action == "fail" {
			run.Fails[ev.Test]++
		}
		run.Slowest[ev.Test] = max(run.Slowest[ev.Test], ev.Elapsed)
	case "output":
		if ev.Test == "" {
			run.PkgOutput = append(run.PkgOutput, text)
		} else {
			run.Output = append(run.Output, testOutput{ev.Test, text})
		}
	}
}

// Merge adds the runs of other to run's (run may be nil): fail counts
// add up, the slowest run is kept, and output and outcomes follow in
// order, the last outcome winning.
func (run *TestRun) Merge(other *TestRun) *TestRun {
	if run == nil {
		return other
	}
	for _, name := range other.Order {
		if _, seen := run.results[name]; !seen {
			run.Order = append(run.Order, name)
		}
		run.results[name] = other.results[name]
		run.Fails[name] += other.Fails[name]
		run.Slowest[name] = max(run.Slowest[name], other.Slowest[name])
	}
	run.Output = append(run.Output, other.Output...)
	run.BuildFailed = run.BuildFailed || other.BuildFailed
	run.BuildOutput = append(run.BuildOutput, other.BuildOutput...)
	run.PkgOutput = append(run.PkgOutput, other.PkgOutput...)
	run.Raw = append(run.Raw, other.Raw...)
	return run
}

// Ran reports whether the test started at all.
func (run *TestRun) Ran(name string) bool {
	_, ok := run.results[name]
	return ok
}

// Outcome describes how a test ended: "pass", "fail", "skip", "did not
// finish" or "did not run".
func (run *TestRun) Outcome(name string) string {
	action, ok := run.results[name]
	switch {
	case !ok:
		return "did not run"
	case action == "":
		return "did not finish"
	}
	return action
}

// TopLevel returns the distinct top-level tests that ran, in order.
func (run *TestRun) TopLevel() []string {
	var names []string
	for _, name := range run.Order {
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

// FailureMessage returns the first failure reported by a top-level test or
// one of its subtests, as a few lines to show a learner.
func (run *TestRun) FailureMessage(top string) []string {
	var lines []string
	for _, o := range run.Output {
		if topLevelName(o.Test) == top && run.results[o.Test] == "fail" {
			lines = append(lines, o.Text)
		}
	}
	return FirstFailure(lines)
}

// FailureOutput returns everything printed by the failing subtests of a
// top-level test, and by the test itself if it failed: the text hints are
// matched against.
func (run *TestRun) FailureOutput(top string) string {
	var b strings.Builder
	for _, o := range run.Output {
		if topLevelName(o.Test) == top && run.results[o.Test] == "fail" {
			b.WriteString(o.Text)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// FirstFailureOf returns the first failure printed by test or one of
// its subtests that failed, as failureMessage does for a top-level test.
func (run *TestRun) FirstFailureOf(test string) []string {
	var lines []string
	for _, o := range run.Output {
		if (o.Test == test || strings.HasPrefix(o.Test, test+"/")) && run.Fails[o.Test] > 0 {
			lines = append(lines, o.Text)
		}
	}
	return FirstFailure(lines)
}

// CompileErrors returns the first few compiler (or vet) messages of a build
// that failed, without the "# package" headers.
func (run *TestRun) CompileErrors(max int) []string {
	var errs []string
	for _, line := range slices.Concat(run.BuildOutput, run.Raw) {
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

// FirstFailure picks the first failure out of the output of failing tests:
// the first "file.go:NN: message" line, trimmed, and for a testify failure
// (whose message follows on labelled lines) its Error text, with a few
// continuation lines, and its Messages text. Without such a line it falls
// back to the first line that is not test framing, for example a panic.
func FirstFailure(lines []string) []string {
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

// DescribeOutcome phrases an outcome after "it".
func DescribeOutcome(outcome string) string {
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
