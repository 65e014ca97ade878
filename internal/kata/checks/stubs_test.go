package checks

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/coretest"
)

func TestCheckStubs(t *testing.T) {
	allFail := coretest.Concat(
		coretest.TestEvents("TestValidate", "fail", "    main_test.go:1: x"),
		[]core.TestEvent{{Action: "run", Test: "TestUpload"}},
		coretest.TestEvents("TestUpload/Stub_says_unimplemented", "pass"),
		coretest.TestEvents("TestUpload/Small", "fail", "    main_test.go:2: y"),
		[]core.TestEvent{{Action: "fail", Test: "TestUpload"}},
	)
	tests := []struct {
		name        string
		events      []core.TestEvent
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
			events: coretest.Concat(
				coretest.TestEvents("TestValidate", "pass"),
				[]core.TestEvent{{Action: "run", Test: "TestUpload"}},
				coretest.TestEvents("TestUpload/Stub_says_unimplemented", "fail"),
				[]core.TestEvent{{Action: "fail", Test: "TestUpload"}},
			),
			minTests: 3,
			wantProblem: []string{
				"TestValidate passed on the stubs",
				"stub_passes lists TestUpload/Stub_says_unimplemented, but on the stubs it failed",
			},
		},
		{
			name: "an exempted test that did not run is stale too",
			events: coretest.Concat(
				coretest.TestEvents("TestValidate", "fail"),
				coretest.TestEvents("TestUpload", "fail"),
			),
			minTests:    2,
			wantProblem: []string{"stub_passes lists TestUpload/Stub_says_unimplemented, but on the stubs it did not run"},
		},
		{
			name:        "a task whose regexp matches nothing",
			events:      coretest.Concat(coretest.TestEvents("TestValidate", "fail"), coretest.TestEvents("TestUpload/Stub_says_unimplemented", "pass")),
			minTests:    1,
			wantProblem: []string{"task 2 (upload): its tests regexp ^TestUpload$ matches no test that ran"},
		},
		{
			name: "the stubs do not compile",
			events: []core.TestEvent{
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
			summary, problems := checkStubs(coretest.Parse(t, tc.events...), coretest.StubManifest(t, tc.minTests))
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
	m := coretest.StubManifest(t, 3)
	m.StubPasses = nil
	run := coretest.Parse(t, coretest.Concat(
		coretest.TestEvents("TestValidate", "fail"),
		[]core.TestEvent{{Action: "run", Test: "TestUpload"}},
		coretest.TestEvents("TestUpload/Small", "fail"),
		[]core.TestEvent{{Action: "fail", Test: "TestUpload"}},
	)...)
	summary, problems := checkStubs(run, m)
	if want := "3 tests ran, all failed on the stubs"; summary != want || len(problems) != 0 {
		t.Errorf("checkStubs = %q, %q; want %q, no problems", summary, problems, want)
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
