package main

import (
	"strconv"
	"strings"
	"testing"
)

// stubManifest is a kata.json for the checks below: two tasks, one exempted
// subtest.
func stubManifest(t *testing.T, minTests int) *kataManifest {
	t.Helper()
	m, err := parseKata([]byte(`{
	  "title": "Day 48: test",
	  "min_tests": ` + strconv.Itoa(minTests) + `,
	  "tasks": [
	    {"id": 1, "name": "validate", "tests": "^TestValidate$", "summary": "s"},
	    {"id": 2, "name": "upload", "tests": "^TestUpload$", "summary": "s"}
	  ],
	  "stub_passes": [{"test": "TestUpload/Stub_says_unimplemented", "reason": "checks the stub"}],
	  "demo": {"args": [], "timeout_seconds": 10, "stub_output": "not implemented"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheckStubs(t *testing.T) {
	allFail := concat(
		testEvents("TestValidate", "fail", "    main_test.go:1: x"),
		[]testEvent{{Action: "run", Test: "TestUpload"}},
		testEvents("TestUpload/Stub_says_unimplemented", "pass"),
		testEvents("TestUpload/Small", "fail", "    main_test.go:2: y"),
		[]testEvent{{Action: "fail", Test: "TestUpload"}},
	)
	tests := []struct {
		name        string
		events      []testEvent
		minTests    int
		wantSummary string
		wantProblem []string // substrings, one per expected problem
	}{
		{
			name:        "everything fails but the exemption",
			events:      allFail,
			minTests:    4,
			wantSummary: "4 tests ran on the stubs: 3 failed, 1 passed (the passes are exempted in kata.json)",
		},
		{
			name:        "too few tests ran",
			events:      allFail,
			minTests:    5,
			wantProblem: []string{"only 4 tests and subtests ran on the stubs; kata.json min_tests is 5"},
		},
		{
			name: "a pass that is not exempted, and a stale exemption",
			events: concat(
				testEvents("TestValidate", "pass"),
				[]testEvent{{Action: "run", Test: "TestUpload"}},
				testEvents("TestUpload/Stub_says_unimplemented", "fail"),
				[]testEvent{{Action: "fail", Test: "TestUpload"}},
			),
			minTests: 3,
			wantProblem: []string{
				"TestValidate passed on the stubs",
				"stub_passes lists TestUpload/Stub_says_unimplemented, but on the stubs it failed",
			},
		},
		{
			name: "an exempted test that did not run is stale too",
			events: concat(
				testEvents("TestValidate", "fail"),
				testEvents("TestUpload", "fail"),
			),
			minTests:    2,
			wantProblem: []string{"stub_passes lists TestUpload/Stub_says_unimplemented, but on the stubs it did not run"},
		},
		{
			name:        "a task whose regexp matches nothing",
			events:      concat(testEvents("TestValidate", "fail"), testEvents("TestUpload/Stub_says_unimplemented", "pass")),
			minTests:    1,
			wantProblem: []string{"task 2 (upload): its tests regexp ^TestUpload$ matches no test that ran"},
		},
		{
			name: "the stubs do not compile",
			events: []testEvent{
				{ImportPath: "m/day48", Action: "build-output", Output: "./main.go:3:1: syntax error\n"},
				{ImportPath: "m/day48", Action: "build-fail"},
			},
			minTests:    1,
			wantSummary: "does not compile",
			wantProblem: []string{"the stubs do not compile; they must, so a learner starts from failing tests:\n./main.go:3:1: syntax error"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			summary, problems := checkStubs(parse(t, tc.events...), stubManifest(t, tc.minTests))
			if tc.wantSummary != "" && summary != tc.wantSummary {
				t.Errorf("summary = %q, want %q", summary, tc.wantSummary)
			}
			if len(problems) != len(tc.wantProblem) {
				t.Fatalf("problems = %q, want %d containing %q", problems, len(tc.wantProblem), tc.wantProblem)
			}
			for i, want := range tc.wantProblem {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problems[%d] = %q, want it to contain %q", i, problems[i], want)
				}
			}
		})
	}
}

func TestCheckStubsSummaryAllFailed(t *testing.T) {
	m := stubManifest(t, 3)
	m.StubPasses = nil
	run := parse(t, concat(
		testEvents("TestValidate", "fail"),
		[]testEvent{{Action: "run", Test: "TestUpload"}},
		testEvents("TestUpload/Small", "fail"),
		[]testEvent{{Action: "fail", Test: "TestUpload"}},
	)...)
	summary, problems := checkStubs(run, m)
	if want := "3 tests ran, all failed on the stubs"; summary != want || len(problems) != 0 {
		t.Errorf("checkStubs = %q, %q; want %q, no problems", summary, problems, want)
	}
}

func TestCheckCaught(t *testing.T) {
	run := parse(t, concat(
		[]testEvent{{Action: "run", Test: "TestUpload"}},
		testEvents("TestUpload/Rejects_path_traversal", "fail"),
		testEvents("TestUpload/Small", "pass"),
		[]testEvent{{Action: "fail", Test: "TestUpload"}},
		testEvents("TestValidate", "pass"),
		testEvents("TestSkipped", "skip"),
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

	broken := parse(t,
		testEvent{ImportPath: "m/day48", Action: "build-output", Output: "../kata-antipattern-1/main.go:9:2: undefined: x\n"},
		testEvent{Action: "fail", FailedBuild: "m/day48"},
	)
	problems = checkCaught(broken, []string{"TestUpload"}, 1)
	if len(problems) != 1 || !strings.Contains(problems[0], "the antipattern is broken") || !strings.Contains(problems[0], "undefined: x") {
		t.Errorf("checkCaught(build failure) = %q, want one problem saying it is broken, with the compiler output", problems)
	}
}

func TestCheckCaughtEveryRunInTime(t *testing.T) {
	run := parse(t, concat(
		testEvents("TestFlaky", "fail"), testEvents("TestFlaky", "pass"), testEvents("TestFlaky", "fail"),
		testEvents("TestSteady", "fail"), testEvents("TestSteady", "fail"), testEvents("TestSteady", "fail"),
		testEvents("TestSlow", "fail"), testEvents("TestSlow", "fail"), testEvents("TestSlow", "fail"),
	)...)
	run.slowest["TestSlow"] = 16.2
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
	a := parse(t, concat(testEvents("TestA", "fail"), testEvents("TestB", "pass"))...)
	b := parse(t, concat(testEvents("TestA", "fail"), testEvents("TestC", "fail"))...)
	run := (*testRun)(nil).merge(a).merge(b)
	if run.fails["TestA"] != 2 || run.fails["TestC"] != 1 || run.outcome("TestB") != "pass" || len(run.order) != 3 {
		t.Errorf("merge = fails %v, order %v; want TestA failed twice, TestC once, TestB passed", run.fails, run.order)
	}
}

func TestCheckSymptom(t *testing.T) {
	run := parse(t, testEvents("TestUpload/Rejects", "fail",
		"    upload_test.go:12: UploadFile(name=\"../x.txt\") = <nil> (code OK), want code InvalidArgument")...)
	ap := antipattern{Name: "no_path_check", CaughtBy: []string{"TestUpload/Rejects"}, Symptom: "= <nil> (code OK), want code InvalidArgument"}
	if problem := checkSymptom(run, ap); problem != "" {
		t.Errorf("checkSymptom(shown) = %q, want none", problem)
	}
	ap.Symptom = "cardinality violation"
	if problem := checkSymptom(run, ap); !strings.Contains(problem, "symptom not shown") || !strings.Contains(problem, "want code InvalidArgument") {
		t.Errorf("checkSymptom(not shown) = %q, want it to say so and quote the real first failure", problem)
	}
}

func TestParseKeepsRunsAndElapsed(t *testing.T) {
	run := parse(t,
		testEvent{Action: "run", Test: "TestA"}, testEvent{Action: "fail", Test: "TestA", Elapsed: 1.5},
		testEvent{Action: "run", Test: "TestA"}, testEvent{Action: "fail", Test: "TestA", Elapsed: 0.5},
	)
	if run.fails["TestA"] != 2 || run.slowest["TestA"] != 1.5 {
		t.Errorf("parse(2 failing runs of 1.5s and 0.5s) = %d fails, slowest %v; want 2 and 1.5", run.fails["TestA"], run.slowest["TestA"])
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

func TestCheckStubDemoOutput(t *testing.T) {
	tests := []struct {
		name   string
		output string
		want   int
	}{
		{"says what is missing", "UploadFile: not implemented yet (see README, task 2)\nexit status 1\n", 0},
		{"silent", "listening on 127.0.0.1:8080\n", 1},
		{"panics", "not implemented yet\npanic: boom\n\ngoroutine 1 [running]:\nmain.main()\n", 2},
		{"a goroutine mentioned in prose is fine", "not implemented yet: one goroutine per stream\n", 0},
	}
	for _, tc := range tests {
		if got := checkStubDemoOutput(tc.output, "not implemented yet"); len(got) != tc.want {
			t.Errorf("%s: checkStubDemoOutput = %q, want %d problems", tc.name, got, tc.want)
		}
	}
}

func TestBullet(t *testing.T) {
	if got, want := bullet("first\nsecond"), "  - first\n    second"; got != want {
		t.Errorf("bullet = %q, want %q", got, want)
	}
}
