package coretest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// jsonStream renders events as `go test -json` would print them.
func jsonStream(t *testing.T, events ...core.TestEvent) string {
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

// TestEvents returns the events of one test: run, its output lines, and
// its final action.
func TestEvents(test, action string, output ...string) []core.TestEvent {
	events := []core.TestEvent{{Action: "run", Test: test}, {Action: "output", Test: test, Output: "=== RUN   " + test + "\n"}}
	for _, line := range output {
		events = append(events, core.TestEvent{Action: "output", Test: test, Output: line + "\n"})
	}
	return append(events, core.TestEvent{Action: action, Test: test})
}

// Parse renders events as `go test -json` would print them and parses
// them as the runner does, failing t if that fails.
func Parse(t *testing.T, events ...core.TestEvent) *core.TestRun {
	t.Helper()
	run, err := core.ParseTestJSON(strings.NewReader(jsonStream(t, events...)))
	if err != nil {
		t.Fatalf("parseTestJSON error = %v", err)
	}
	return run
}

// Concat joins groups of events into one stream.
func Concat(groups ...[]core.TestEvent) []core.TestEvent {
	var all []core.TestEvent
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

// StubManifest is a kata.json for the runner's tests: two tasks, one
// exempted subtest.
func StubManifest(t *testing.T, minTests int) *core.KataManifest {
	t.Helper()
	m, err := core.ParseKata([]byte(`{
	  "title": "Day 48: test", "title_ja": "Day 48: test（日本語）",
	  "min_tests": ` + strconv.Itoa(minTests) + `,
	  "tasks": [
	    {"id": 1, "name": "validate", "tests": "^TestValidate$", "summary": "s", "summary_ja": "s（日本語）"},
	    {"id": 2, "name": "upload", "tests": "^TestUpload$", "summary": "s", "summary_ja": "s（日本語）"}
	  ],
	  "stub_passes": [{"test": "TestUpload/Stub_says_unimplemented", "reason": "checks the stub"}],
	  "demo": {"args": [], "timeout_seconds": 10, "stub_output": "not implemented"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
