package coretest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

func TestParseTestJSON(t *testing.T) {
	events := Concat(
		[]core.TestEvent{{Action: "start"}},
		TestEvents("TestA", "pass"),
		[]core.TestEvent{{Action: "run", Test: "TestB"}},
		TestEvents("TestB/Sub_one", "fail", "    main_test.go:20: Sub() = 1, want 2"),
		TestEvents("TestB/Sub_two", "skip"),
		[]core.TestEvent{{Action: "fail", Test: "TestB"}},
		[]core.TestEvent{{Action: "run", Test: "TestC"}},
		[]core.TestEvent{{Action: "output", Output: "FAIL\n"}, {Action: "fail"}},
	)
	stream := jsonStream(t, events...) + "a line that is not JSON\n"
	run, err := core.ParseTestJSON(strings.NewReader(stream))
	if err != nil {
		t.Fatalf("parseTestJSON error = %v", err)
	}
	if want := []string{"TestA", "TestB", "TestB/Sub_one", "TestB/Sub_two", "TestC"}; !reflect.DeepEqual(run.Order, want) {
		t.Errorf("order = %q, want %q", run.Order, want)
	}
	for name, want := range map[string]string{
		"TestA": "pass", "TestB": "fail", "TestB/Sub_one": "fail", "TestB/Sub_two": "skip",
		"TestC": "did not finish", "TestD": "did not run",
	} {
		if got := run.Outcome(name); got != want {
			t.Errorf("outcome(%q) = %q, want %q", name, got, want)
		}
	}
	if !run.Ran("TestC") || run.Ran("TestD") {
		t.Errorf("ran(TestC) = %v, ran(TestD) = %v, want true, false", run.Ran("TestC"), run.Ran("TestD"))
	}
	if want := []string{"TestA", "TestB", "TestC"}; !reflect.DeepEqual(run.TopLevel(), want) {
		t.Errorf("topLevel() = %q, want %q", run.TopLevel(), want)
	}
	if run.BuildFailed {
		t.Error("buildFailed = true, want false")
	}
	if want := []string{"FAIL"}; !reflect.DeepEqual(run.PkgOutput, want) {
		t.Errorf("pkgOutput = %q, want %q", run.PkgOutput, want)
	}
	if want := []string{"a line that is not JSON"}; !reflect.DeepEqual(run.Raw, want) {
		t.Errorf("raw = %q, want %q", run.Raw, want)
	}
	if got, want := run.FailureMessage("TestB"), []string{"main_test.go:20: Sub() = 1, want 2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("failureMessage(TestB) = %q, want %q", got, want)
	}
}

func TestParseTestJSONBuildFailure(t *testing.T) {
	const importPath = "example.com/m/day48_x [example.com/m/day48_x.test]"
	run := Parse(t,
		core.TestEvent{ImportPath: importPath, Action: "build-output", Output: "# example.com/m/day48_x [example.com/m/day48_x.test]\n"},
		core.TestEvent{ImportPath: importPath, Action: "build-output", Output: "./main.go:12:2: undefined: x\n"},
		core.TestEvent{ImportPath: importPath, Action: "build-output", Output: "./main.go:13:2: undefined: y\n"},
		core.TestEvent{ImportPath: importPath, Action: "build-fail"},
		core.TestEvent{Action: "start"},
		core.TestEvent{Action: "output", Output: "FAIL\texample.com/m/day48_x [build failed]\n"},
		core.TestEvent{Action: "fail", FailedBuild: importPath},
	)
	if !run.BuildFailed {
		t.Fatal("buildFailed = false, want true")
	}
	if got, want := run.CompileErrors(10), []string{"./main.go:12:2: undefined: x", "./main.go:13:2: undefined: y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("compileErrors(10) = %q, want %q", got, want)
	}
	if got, want := run.CompileErrors(1), []string{"./main.go:12:2: undefined: x", "..."}; !reflect.DeepEqual(got, want) {
		t.Errorf("compileErrors(1) = %q, want %q", got, want)
	}

	// A fail event naming a failed build is enough on its own.
	run = Parse(t, core.TestEvent{Action: "fail", FailedBuild: importPath})
	if !run.BuildFailed {
		t.Error("buildFailed = false after a fail event with FailedBuild, want true")
	}
}

func TestFailureMessageSkipsPassingSubtests(t *testing.T) {
	run := Parse(t, Concat(
		[]core.TestEvent{{Action: "run", Test: "TestUpload"}},
		TestEvents("TestUpload/Logs_only", "pass", "    main_test.go:10: uploaded 3 chunks"),
		TestEvents("TestUpload/Rejects_path_traversal", "fail",
			`    main_test.go:42: UploadFile(name="../x.txt") = <nil>, want code InvalidArgument`),
		[]core.TestEvent{{Action: "fail", Test: "TestUpload"}},
		TestEvents("TestUploadOther", "fail", "    other_test.go:5: not this one"),
	)...)
	want := []string{`main_test.go:42: UploadFile(name="../x.txt") = <nil>, want code InvalidArgument`}
	if got := run.FailureMessage("TestUpload"); !reflect.DeepEqual(got, want) {
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
			if got := core.FirstFailure(tc.lines); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("firstFailure = %q, want %q", got, tc.want)
			}
		})
	}
}
