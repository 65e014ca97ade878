package learner

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/coretest"
)

func progressDay(t *testing.T) core.Day {
	t.Helper()
	m, err := core.ParseKata([]byte(`{
	  "title": "Day 48: client-side streaming", "title_ja": "Day 48: client-side streaming（日本語）",
	  "min_tests": 1,
	  "tasks": [
	    {"id": 1, "name": "validateFileName", "tests": "^TestValidateFileName$", "summary": "reject unsafe upload names", "summary_ja": "reject unsafe upload names（日本語）"},
	    {"id": 2, "name": "UploadFile", "tests": "^TestFileUpload", "summary": "chunked upload with checks", "summary_ja": "chunked upload with checks（日本語）"},
	    {"id": 3, "name": "DataCollection", "tests": "^TestDataCollection$", "summary": "collect metrics", "summary_ja": "collect metrics（日本語）"}
	  ],
	  "demo": {"args": [], "timeout_seconds": 10, "stub_output": "x"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return core.Day{Dir: "day48_client_streaming", Num: "48", Kata: m}
}

func renderProgress(t *testing.T, d core.Day, events ...core.TestEvent) string {
	t.Helper()
	var b strings.Builder
	printProgress(&b, buildProgress(core.English, d, coretest.Parse(t, events...), nil))
	return b.String()
}

func TestProgress(t *testing.T) {
	got := renderProgress(t, progressDay(t), coretest.Concat(
		coretest.TestEvents("TestValidateFileName", "pass"),
		[]core.TestEvent{{Action: "run", Test: "TestFileUpload"}},
		coretest.TestEvents("TestFileUpload/Small_file_upload", "fail",
			`    main_test.go:120: UploadFile(name="a.txt") = rpc error: code = Unimplemented desc = UploadFile: not implemented yet (see README, task 2), want code OK`),
		[]core.TestEvent{{Action: "fail", Test: "TestFileUpload"}},
		coretest.TestEvents("TestFileUploadResume", "pass"),
		coretest.TestEvents("TestDataCollection", "fail", "    main_test.go:300: CollectDataPoints() = nil, want a result"),
		coretest.TestEvents("TestHelperThing", "pass"),
	)...)
	want := `Day 48: client-side streaming
  [x] 1 validateFileName  reject unsafe upload names
  [ ] 2 UploadFile        chunked upload with checks
      main_test.go:120: UploadFile(name="a.txt") = rpc error: code = Unimplemented desc = UploadFile: not implemented yet (see README, task 2), want code OK
  [ ] 3 DataCollection    collect metrics
      main_test.go:300: CollectDataPoints() = nil, want a result
  [x] - other             tests that belong to no task
1/3 tasks done. Next: task 2 (make test DAY=48 RUN='^(TestFileUpload)$')
`
	if got != want {
		t.Errorf("progress:\n%s\nwant:\n%s", got, want)
	}
}

func TestProgressTaskWithoutTestsIsNotDone(t *testing.T) {
	got := renderProgress(t, progressDay(t), coretest.Concat(
		coretest.TestEvents("TestValidateFileName", "pass"),
		coretest.TestEvents("TestFileUpload", "pass"),
	)...)
	if !strings.Contains(got, "  [ ] 3 DataCollection") ||
		!strings.Contains(got, "no test of this task ran") ||
		!strings.Contains(got, "2/3 tasks done. Next: task 3 (make test DAY=48 RUN='^TestDataCollection$')") {
		t.Errorf("progress:\n%s\nwant task 3 open, with a note that none of its tests ran", got)
	}
}

func TestProgressAllDone(t *testing.T) {
	got := renderProgress(t, progressDay(t), coretest.Concat(
		coretest.TestEvents("TestValidateFileName", "pass"),
		coretest.TestEvents("TestFileUpload", "pass"),
		coretest.TestEvents("TestDataCollection", "pass"),
	)...)
	if !strings.HasSuffix(got, "3/3 tasks done. All tests pass: well done!\n") || strings.Contains(got, "other") {
		t.Errorf("progress:\n%s\nwant every task done and no other row", got)
	}
}

func TestProgressCompileError(t *testing.T) {
	got := renderProgress(t, progressDay(t),
		core.TestEvent{ImportPath: "m/day48", Action: "build-output", Output: "# m/day48\n"},
		core.TestEvent{ImportPath: "m/day48", Action: "build-output", Output: "day48_client_streaming/main.go:12:2: undefined: x\n"},
		core.TestEvent{ImportPath: "m/day48", Action: "build-fail"},
	)
	want := `Day 48: client-side streaming
  The code does not compile yet:
      day48_client_streaming/main.go:12:2: undefined: x
  [ ] 1 validateFileName  reject unsafe upload names
  [ ] 2 UploadFile        chunked upload with checks
  [ ] 3 DataCollection    collect metrics
0/3 tasks done. Next: make it compile (make test DAY=48)
`
	if got != want {
		t.Errorf("progress:\n%s\nwant:\n%s", got, want)
	}
}

func TestRunArg(t *testing.T) {
	all := []string{"TestUpload", "TestUploadResume", "TestValidate"}
	tests := []struct {
		name string
		task taskProgress
		want string
	}{
		{"unique name", taskProgress{failing: []string{"TestValidate"}}, "TestValidate"},
		{"name inside another", taskProgress{failing: []string{"TestUpload"}}, "'^(TestUpload)$'"},
		{"several", taskProgress{failing: []string{"TestUpload", "TestUploadResume"}}, "'^(TestUpload|TestUploadResume)$'"},
		{"none ran", taskProgress{pattern: "^TestX$"}, "'^TestX$'"},
	}
	for _, tc := range tests {
		if got := runArg(&tc.task, all); got != tc.want {
			t.Errorf("%s: runArg = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestProgressNeedsPointOnlyToEarlierTasks(t *testing.T) {
	// Tasks 2 and 3 reach each other's stubs: only the later one is told
	// to wait for the earlier one, never both for each other.
	d := progressDay(t)
	got := buildProgress(core.English, d, coretest.Parse(t, coretest.Concat(
		coretest.TestEvents("TestValidateFileName", "pass"),
		coretest.TestEvents("TestFileUpload", "fail",
			`    main_test.go:120: got rpc error: code = Unimplemented desc = CollectDataPoints: not implemented yet (see README, task 3)`),
		coretest.TestEvents("TestDataCollection", "fail",
			`    main_test.go:300: got rpc error: code = Unimplemented desc = UploadFile: not implemented yet (see README, task 2)`),
	)...), nil)
	if needs := got.tasks[1].needs; len(needs) != 0 {
		t.Errorf("task 2 needs %v, want nothing: task 3 comes after it", needs)
	}
	if needs := got.tasks[2].needs; len(needs) != 1 || needs[0] != 2 {
		t.Errorf("task 3 needs %v, want [2]", needs)
	}
}
