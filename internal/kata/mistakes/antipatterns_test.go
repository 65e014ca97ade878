package mistakes

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/coretest"
)

func TestCheckCaught(t *testing.T) {
	run := coretest.Parse(t, coretest.Concat(
		[]core.TestEvent{{Action: "run", Test: "TestUpload"}},
		coretest.TestEvents("TestUpload/Rejects_path_traversal", "fail"),
		coretest.TestEvents("TestUpload/Small", "pass"),
		[]core.TestEvent{{Action: "fail", Test: "TestUpload"}},
		coretest.TestEvents("TestValidate", "pass"),
		coretest.TestEvents("TestSkipped", "skip"),
	)...)
	if problems := checkCaught(run, []string{"TestUpload/Rejects_path_traversal", "TestUpload"}, 1); len(problems) != 0 {
		t.Errorf("checkCaught(failing tests) = %q, want no problems", problems)
	}
	problems := checkCaught(run, []string{"TestUpload/Small", "TestValidate", "TestSkipped", "TestMissing", "TestUpload"}, 1)
	want := []string{
		"NOT caught: TestUpload/Small passed (want it to fail)",
		"NOT caught: TestValidate passed (want it to fail)",
		"NOT caught: TestSkipped was skipped (want it to fail)",
		"NOT caught: TestMissing did not run (want it to fail)",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("checkCaught = %q, want %q", problems, want)
	}

	broken := coretest.Parse(t,
		core.TestEvent{ImportPath: "m/day48", Action: "build-output", Output: "../kata-antipattern-1/main.go:9:2: undefined: x\n"},
		core.TestEvent{Action: "fail", FailedBuild: "m/day48"},
	)
	problems = checkCaught(broken, []string{"TestUpload"}, 1)
	if len(problems) != 1 || !strings.Contains(problems[0], "the antipattern is broken") || !strings.Contains(problems[0], "undefined: x") {
		t.Errorf("checkCaught(build failure) = %q, want one problem saying it is broken, with the compiler output", problems)
	}
}

func TestCheckCaughtEveryRunInTime(t *testing.T) {
	run := coretest.Parse(t, coretest.Concat(
		coretest.TestEvents("TestFlaky", "fail"), coretest.TestEvents("TestFlaky", "pass"), coretest.TestEvents("TestFlaky", "fail"),
		coretest.TestEvents("TestSteady", "fail"), coretest.TestEvents("TestSteady", "fail"), coretest.TestEvents("TestSteady", "fail"),
		coretest.TestEvents("TestSlow", "fail"), coretest.TestEvents("TestSlow", "fail"), coretest.TestEvents("TestSlow", "fail"),
	)...)
	run.Slowest["TestSlow"] = 16.2
	problems := checkCaught(run, []string{"TestFlaky", "TestSteady", "TestSlow"}, 3)
	want := []string{
		"caught only sometimes: TestFlaky failed in 2 of 3 runs (want every run: a verdict must not depend on timing)",
		"caught too slowly: TestSlow took 16.2s to fail (want at most 15s: no test may wait out its context)",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("checkCaught = %q, want %q", problems, want)
	}
}

func TestMergeRuns(t *testing.T) {
	a := coretest.Parse(t, coretest.Concat(coretest.TestEvents("TestA", "fail"), coretest.TestEvents("TestB", "pass"))...)
	b := coretest.Parse(t, coretest.Concat(coretest.TestEvents("TestA", "fail"), coretest.TestEvents("TestC", "fail"))...)
	run := (*core.TestRun)(nil).Merge(a).Merge(b)
	if run.Fails["TestA"] != 2 || run.Fails["TestC"] != 1 || run.Outcome("TestB") != "pass" || len(run.Order) != 3 {
		t.Errorf("merge = fails %v, order %v; want TestA failed twice, TestC once, TestB passed", run.Fails, run.Order)
	}
}

func TestCheckSymptom(t *testing.T) {
	run := coretest.Parse(t, coretest.TestEvents("TestUpload/Rejects", "fail",
		"    upload_test.go:12: UploadFile(name=\"../x.txt\") = <nil> (code OK), want code InvalidArgument")...)
	ap := core.Antipattern{Name: "no_path_check", CaughtBy: []string{"TestUpload/Rejects"}, Symptom: "= <nil> (code OK), want code InvalidArgument"}
	if problem := checkSymptom(run, ap); problem != "" {
		t.Errorf("checkSymptom(shown) = %q, want none", problem)
	}
	ap.Symptom = "cardinality violation"
	if problem := checkSymptom(run, ap); !strings.Contains(problem, "symptom not shown") || !strings.Contains(problem, "want code InvalidArgument") {
		t.Errorf("checkSymptom(not shown) = %q, want it to say so and quote the real first failure", problem)
	}
}

func TestParseKeepsRunsAndElapsed(t *testing.T) {
	run := coretest.Parse(t,
		core.TestEvent{Action: "run", Test: "TestA"}, core.TestEvent{Action: "fail", Test: "TestA", Elapsed: 1.5},
		core.TestEvent{Action: "run", Test: "TestA"}, core.TestEvent{Action: "fail", Test: "TestA", Elapsed: 0.5},
	)
	if run.Fails["TestA"] != 2 || run.Slowest["TestA"] != 1.5 {
		t.Errorf("parse(2 failing runs of 1.5s and 0.5s) = %d fails, slowest %v; want 2 and 1.5", run.Fails["TestA"], run.Slowest["TestA"])
	}
}

func TestRunPattern(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{[]string{"TestValidate"}, "^(TestValidate)$"},
		{[]string{"TestUpload/Rejects_path_traversal", "TestValidate", "TestUpload/Small"}, "^(TestUpload|TestValidate)$"},
		{[]string{"TestA.B"}, `^(TestA\.B)$`},
		{[]string{"TestUpload/Rejects_path_traversal", "TestChat/Small/Deeper", "TestUpload/Small"}, "^(TestUpload|TestChat)$/^(Rejects_path_traversal|Small)$"},
	}
	for _, tc := range tests {
		if got := runPattern(tc.names); got != tc.want {
			t.Errorf("runPattern(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestBullet(t *testing.T) {
	if got, want := core.Bullet("first\nsecond"), "  - first\n    second"; got != want {
		t.Errorf("bullet = %q, want %q", got, want)
	}
}
