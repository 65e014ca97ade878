package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// jsonStream renders events as `go test -json` would print them.
func jsonStream(t *testing.T, events ...testEvent) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range events {
		if ev.Package == "" && ev.ImportPath == "" {
			ev.Package = "example.com/m/day48_x"
		}
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

// testEvents returns the events of one test: run, its output lines, and
// its final action.
func testEvents(test, action string, output ...string) []testEvent {
	events := []testEvent{{Action: "run", Test: test}, {Action: "output", Test: test, Output: "=== RUN   " + test + "\n"}}
	for _, line := range output {
		events = append(events, testEvent{Action: "output", Test: test, Output: line + "\n"})
	}
	return append(events, testEvent{Action: action, Test: test})
}

func parse(t *testing.T, events ...testEvent) *testRun {
	t.Helper()
	run, err := parseTestJSON(strings.NewReader(jsonStream(t, events...)))
	if err != nil {
		t.Fatalf("parseTestJSON error = %v", err)
	}
	return run
}

func concat(groups ...[]testEvent) []testEvent {
	var all []testEvent
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

func TestParseTestJSON(t *testing.T) {
	events := concat(
		[]testEvent{{Action: "start"}},
		testEvents("TestA", "pass"),
		[]testEvent{{Action: "run", Test: "TestB"}},
		testEvents("TestB/Sub_one", "fail", "    main_test.go:20: Sub() = 1, want 2"),
		testEvents("TestB/Sub_two", "skip"),
		[]testEvent{{Action: "fail", Test: "TestB"}},
		[]testEvent{{Action: "run", Test: "TestC"}},
		[]testEvent{{Action: "output", Output: "FAIL\n"}, {Action: "fail"}},
	)
	stream := jsonStream(t, events...) + "a line that is not JSON\n"
	run, err := parseTestJSON(strings.NewReader(stream))
	if err != nil {
		t.Fatalf("parseTestJSON error = %v", err)
	}
	if want := []string{"TestA", "TestB", "TestB/Sub_one", "TestB/Sub_two", "TestC"}; !reflect.DeepEqual(run.order, want) {
		t.Errorf("order = %q, want %q", run.order, want)
	}
	for name, want := range map[string]string{
		"TestA": "pass", "TestB": "fail", "TestB/Sub_one": "fail", "TestB/Sub_two": "skip",
		"TestC": "did not finish", "TestD": "did not run",
	} {
		if got := run.outcome(name); got != want {
			t.Errorf("outcome(%q) = %q, want %q", name, got, want)
		}
	}
	if !run.ran("TestC") || run.ran("TestD") {
		t.Errorf("ran(TestC) = %v, ran(TestD) = %v, want true, false", run.ran("TestC"), run.ran("TestD"))
	}
	if want := []string{"TestA", "TestB", "TestC"}; !reflect.DeepEqual(run.topLevel(), want) {
		t.Errorf("topLevel() = %q, want %q", run.topLevel(), want)
	}
	if run.buildFailed {
		t.Error("buildFailed = true, want false")
	}
	if want := []string{"FAIL"}; !reflect.DeepEqual(run.pkgOutput, want) {
		t.Errorf("pkgOutput = %q, want %q", run.pkgOutput, want)
	}
	if want := []string{"a line that is not JSON"}; !reflect.DeepEqual(run.raw, want) {
		t.Errorf("raw = %q, want %q", run.raw, want)
	}
	if got, want := run.failureMessage("TestB"), []string{"main_test.go:20: Sub() = 1, want 2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("failureMessage(TestB) = %q, want %q", got, want)
	}
}

func TestParseTestJSONBuildFailure(t *testing.T) {
	const importPath = "example.com/m/day48_x [example.com/m/day48_x.test]"
	run := parse(t,
		testEvent{ImportPath: importPath, Action: "build-output", Output: "# example.com/m/day48_x [example.com/m/day48_x.test]\n"},
		testEvent{ImportPath: importPath, Action: "build-output", Output: "./main.go:12:2: undefined: x\n"},
		testEvent{ImportPath: importPath, Action: "build-output", Output: "./main.go:13:2: undefined: y\n"},
		testEvent{ImportPath: importPath, Action: "build-fail"},
		testEvent{Action: "start"},
		testEvent{Action: "output", Output: "FAIL\texample.com/m/day48_x [build failed]\n"},
		testEvent{Action: "fail", FailedBuild: importPath},
	)
	if !run.buildFailed {
		t.Fatal("buildFailed = false, want true")
	}
	if got, want := run.compileErrors(10), []string{"./main.go:12:2: undefined: x", "./main.go:13:2: undefined: y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("compileErrors(10) = %q, want %q", got, want)
	}
	if got, want := run.compileErrors(1), []string{"./main.go:12:2: undefined: x", "..."}; !reflect.DeepEqual(got, want) {
		t.Errorf("compileErrors(1) = %q, want %q", got, want)
	}

	// A fail event naming a failed build is enough on its own.
	run = parse(t, testEvent{Action: "fail", FailedBuild: importPath})
	if !run.buildFailed {
		t.Error("buildFailed = false after a fail event with FailedBuild, want true")
	}
}

func TestFailureMessageSkipsPassingSubtests(t *testing.T) {
	run := parse(t, concat(
		[]testEvent{{Action: "run", Test: "TestUpload"}},
		testEvents("TestUpload/Logs_only", "pass", "    main_test.go:10: uploaded 3 chunks"),
		testEvents("TestUpload/Rejects_path_traversal", "fail",
			`    main_test.go:42: UploadFile(name="../x.txt") = <nil>, want code InvalidArgument`),
		[]testEvent{{Action: "fail", Test: "TestUpload"}},
		testEvents("TestUploadOther", "fail", "    other_test.go:5: not this one"),
	)...)
	want := []string{`main_test.go:42: UploadFile(name="../x.txt") = <nil>, want code InvalidArgument`}
	if got := run.failureMessage("TestUpload"); !reflect.DeepEqual(got, want) {
		t.Errorf("failureMessage(TestUpload) = %q, want %q", got, want)
	}
}

func TestFirstFailure(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{
			name: "t.Errorf",
			lines: []string{
				"=== RUN   TestX",
				"    main_test.go:120: UploadFile(name=\"a.txt\") = rpc error: code = Unimplemented desc = UploadFile: not implemented yet (see README, task 2), want code OK",
				"    main_test.go:121: a second failure",
				"--- FAIL: TestX (0.00s)",
			},
			want: []string{`main_test.go:120: UploadFile(name="a.txt") = rpc error: code = Unimplemented desc = UploadFile: not implemented yet (see README, task 2), want code OK`},
		},
		{
			name: "testify require.NoError",
			lines: []string{
				"=== RUN   TestX/Small_file_upload",
				"    main_test.go:88: ",
				"        \tError Trace:\t/repo/day48/main_test.go:88",
				"        \tError:      \tReceived unexpected error:",
				"        \t            \trpc error: code = Unimplemented desc = UploadFile: not implemented yet",
				"        \tTest:       \tTestX/Small_file_upload",
				"        \tMessages:   \tUploadFile(name=\"small.txt\")",
				"--- FAIL: TestX/Small_file_upload (0.00s)",
			},
			want: []string{
				"main_test.go:88:",
				"Error: Received unexpected error:",
				"  rpc error: code = Unimplemented desc = UploadFile: not implemented yet",
				`Messages: UploadFile(name="small.txt")`,
			},
		},
		{
			name: "testify assert.Equal keeps a few lines of the diff",
			lines: []string{
				"    main_test.go:90: ",
				"        \tError Trace:\t/repo/day48/main_test.go:90",
				"        \tError:      \tNot equal: ",
				"        \t            \texpected: 10",
				"        \t            \tactual  : 0",
				"        \t            \t",
				"        \t            \tDiff:",
				"        \t            \t--- Expected",
				"        \tTest:       \tTestX",
				"    main_test.go:91: the next failure",
			},
			want: []string{
				"main_test.go:90:",
				"Error: Not equal:",
				"  expected: 10",
				"  actual  : 0",
				"  Diff:",
			},
		},
		{
			name: "a panic has no file:line",
			lines: []string{
				"=== RUN   TestX",
				"panic: runtime error: invalid memory address or nil pointer dereference [recovered]",
				"goroutine 7 [running]:",
			},
			want: []string{"panic: runtime error: invalid memory address or nil pointer dereference [recovered]"},
		},
		{
			name:  "only framing",
			lines: []string{"=== RUN   TestX", "--- FAIL: TestX (0.00s)"},
			want:  nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := firstFailure(tc.lines); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("firstFailure = %q, want %q", got, tc.want)
			}
		})
	}
}
