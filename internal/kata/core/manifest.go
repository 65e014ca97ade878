package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// KataManifest is a day's kata.json, the lesson's visible table of contents.
type KataManifest struct {
	Title      string     `json:"title"`
	TitleJa    string     `json:"title_ja"`
	MinTests   int        `json:"min_tests"` // tests and subtests that must at least run on the stubs
	Tasks      []Task     `json:"tasks"`
	StubPasses []stubPass `json:"stub_passes"`
	Demo       *demoSpec  `json:"demo"`
	Load       *LoadSpec  `json:"load,omitempty"`  // optional: see load.go
	Abuse      *abuseSpec `json:"abuse,omitempty"` // optional: see abuse.go
	Hints      []hint     `json:"hints"`           // see hints.go
}

// Task is one numbered exercise; its tests are the top-level tests whose
// names match the Tests regexp.
type Task struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Tests   string `json:"tests"`
	Summary string `json:"summary"`
	// SummaryJa is Summary in Japanese: every text a learner reads
	// exists in both languages (see lang.go).
	SummaryJa string `json:"summary_ja"`
	// Functions are the task's functions in main.go, methods as
	// "Type.Method"; make solution shows their reference.
	Functions []string `json:"functions"`

	Re *regexp.Regexp
}

// stubPass exempts one test or subtest from "every test fails on the
// stubs", for example a check that the stub answers Unimplemented.
type stubPass struct {
	Test   string `json:"test"`
	Reason string `json:"reason"`
}

// demoSpec says how "demo -check" runs the day's program.
type demoSpec struct {
	Args           []string `json:"args"`
	TimeoutSeconds int      `json:"timeout_seconds"`
	// StubOutput is text the learner's untouched demo must print, so it
	// says what is missing instead of crashing.
	StubOutput string `json:"stub_output"`
}

// AntipatternList is a day's hidden .solution/antipatterns.json.
type AntipatternList struct {
	Antipatterns []Antipattern `json:"antipatterns"`
}

// Antipattern is a known-bad variant of the reference: a few exact edits to
// one solution file that plant one common mistake, and the tests that must
// fail because of it.
type Antipattern struct {
	Name    string `json:"name"`
	Mistake string `json:"mistake"`
	// MistakeJa is Mistake in Japanese.
	MistakeJa string   `json:"mistake_ja"`
	File      string   `json:"file"` // relative to .solution/
	Edits     []Edit   `json:"edits"`
	CaughtBy  []string `json:"caught_by"`
	// Symptom is a fragment of the first failure a learner who makes the
	// mistake sees: the first failing line of CaughtBy[0]. The check
	// proves it, so a hint that quotes it quotes what is really printed.
	Symptom string `json:"symptom"`
	// SeparateRuns runs each of the repeated runs in a process of its
	// own, for a mistake only the race detector sees: it reports a race
	// once per process, so a second run in the same one would pass.
	SeparateRuns bool `json:"separate_runs,omitempty"`
}

// Edit replaces the one occurrence of Find with Replace.
type Edit struct {
	Find    string `json:"find"`
	Replace string `json:"replace"`
}

// AntipatternName is what a name may look like: it is typed on the command
// line (-only) and used in file names.
var AntipatternName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// decodeStrict decodes exactly one JSON value into v, rejecting fields v
// does not have, so a typo in a manifest is an error rather than a silently
// ignored setting.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// LoadKata reads and validates a kata.json.
func LoadKata(path string) (*KataManifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseKata(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	return m, nil
}

// fileError names the manifest an error is about, putting each of several
// problems on a line of its own.
func fileError(path string, err error) error {
	if msg := err.Error(); strings.Contains(msg, "\n") {
		return fmt.Errorf("%s:\n    %s", path, strings.ReplaceAll(msg, "\n", "\n    "))
	}
	return fmt.Errorf("%s: %w", path, err)
}

// ParseKata decodes and validates the contents of a kata.json.
func ParseKata(data []byte) (*KataManifest, error) {
	var m KataManifest
	if err := decodeStrict(data, &m); err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *KataManifest) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(strings.TrimSpace(m.Title) != "", "title is empty")
	check(strings.TrimSpace(m.TitleJa) != "", "title_ja is empty: every text a learner reads is written in English and in Japanese")
	check(m.MinTests > 0, "min_tests must be positive, got %d", m.MinTests)
	check(len(m.Tasks) > 0, "tasks is empty")
	ids := map[int]bool{}
	names := map[string]bool{}
	for i := range m.Tasks {
		t := &m.Tasks[i]
		check(t.ID > 0, "tasks[%d]: id must be positive, got %d", i, t.ID)
		check(!ids[t.ID], "tasks[%d]: duplicate id %d", i, t.ID)
		ids[t.ID] = true
		check(t.Name != "", "tasks[%d]: name is empty", i)
		check(!names[t.Name], "tasks[%d]: duplicate name %q", i, t.Name)
		names[t.Name] = true
		check(t.Summary != "", "tasks[%d] (%s): summary is empty", i, t.Name)
		check(t.SummaryJa != "", "tasks[%d] (%s): summary_ja is empty", i, t.Name)
		if t.Tests == "" {
			check(false, "tasks[%d] (%s): tests regexp is empty", i, t.Name)
			continue
		}
		re, err := regexp.Compile(t.Tests)
		check(err == nil, "tasks[%d] (%s): tests: %v", i, t.Name, err)
		t.Re = re
	}
	exempt := map[string]bool{}
	for i, p := range m.StubPasses {
		check(p.Test != "", "stub_passes[%d]: test is empty", i)
		check(!exempt[p.Test], "stub_passes[%d]: %s is listed twice", i, p.Test)
		exempt[p.Test] = true
		check(strings.TrimSpace(p.Reason) != "", "stub_passes[%d] (%s): reason is empty: say why it may pass on the stubs", i, p.Test)
	}
	if m.Demo == nil {
		check(false, "demo is missing")
	} else {
		check(m.Demo.TimeoutSeconds > 0, "demo.timeout_seconds must be positive, got %d", m.Demo.TimeoutSeconds)
		check(m.Demo.StubOutput != "", "demo.stub_output is empty")
	}
	if m.Load != nil {
		if err := m.Load.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, h := range m.Hints {
		errs = append(errs, h.validate(i, ids)...)
	}
	return errors.Join(errs...)
}

// TaskFor returns the index of the first task whose regexp matches the
// top-level test name, or -1 when none does.
func (m *KataManifest) TaskFor(test string) int {
	for i, t := range m.Tasks {
		if t.Re != nil && t.Re.MatchString(test) {
			return i
		}
	}
	return -1
}

// LoadAntipatterns reads and validates a day's .solution/antipatterns.json.
func LoadAntipatterns(d Day) ([]Antipattern, error) {
	path := filepath.Join(d.SolutionDir(), "antipatterns.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	list, err := ParseAntipatterns(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	return list, nil
}

// ParseAntipatterns decodes and validates an antipatterns.json.
func ParseAntipatterns(data []byte) ([]Antipattern, error) {
	var list AntipatternList
	if err := decodeStrict(data, &list); err != nil {
		return nil, err
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(list.Antipatterns) > 0, "antipatterns is empty")
	names := map[string]bool{}
	for i, ap := range list.Antipatterns {
		where := fmt.Sprintf("antipatterns[%d] (%s)", i, ap.Name)
		check(AntipatternName.MatchString(ap.Name), "antipatterns[%d]: name %q must be letters, digits, _ or -", i, ap.Name)
		check(!names[ap.Name], "%s: duplicate name", where)
		names[ap.Name] = true
		check(strings.TrimSpace(ap.Mistake) != "", "%s: mistake is empty", where)
		check(strings.TrimSpace(ap.MistakeJa) != "", "%s: mistake_ja is empty", where)
		check(filepath.IsLocal(ap.File) && strings.HasSuffix(ap.File, ".go"),
			"%s: file must be a .go file inside .solution/, got %q", where, ap.File)
		check(len(ap.Edits) > 0, "%s: edits is empty", where)
		for j, e := range ap.Edits {
			check(e.Find != "", "%s: edits[%d]: find is empty", where, j)
			check(e.Find != e.Replace, "%s: edits[%d]: replace equals find, so the edit changes nothing", where, j)
		}
		check(len(ap.CaughtBy) > 0, "%s: caught_by is empty: name the tests that must fail", where)
		check(strings.TrimSpace(ap.Symptom) != "", "%s: symptom is empty: quote a fragment of the first failure a learner sees", where)
		seen := map[string]bool{}
		for j, name := range ap.CaughtBy {
			check(name != "" && !strings.ContainsAny(name, " \t\n"), "%s: caught_by[%d]: %q is not a test name", where, j, name)
			check(!seen[name], "%s: caught_by lists %s twice", where, name)
			seen[name] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return list.Antipatterns, nil
}

// EquivalentMutant names a mutant that no test can kill because it does
// not change what the code does, with the reason. The mutants check does
// not count it, and fails when an entry matches no mutant any more.
type EquivalentMutant struct {
	Function string `json:"function"` // as the mutants check prints it: hub.publish
	Mutant   string `json:"mutant"`   // the change as printed: `over > 0` -> `over >= 0`
	// Occurrence picks one of several mutants of the function that read
	// the same, counting from 1 in source order; 0 when there is one.
	Occurrence int    `json:"occurrence,omitempty"`
	Reason     string `json:"reason"`
}

// LoadEquivalentMutants reads a day's .solution/mutants.json; a day
// without one has no equivalent mutants.
func LoadEquivalentMutants(d Day) ([]EquivalentMutant, error) {
	path := filepath.Join(d.SolutionDir(), "mutants.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list struct {
		Equivalent []EquivalentMutant `json:"equivalent"`
	}
	if err := decodeStrict(data, &list); err != nil {
		return nil, fileError(path, err)
	}
	var errs []error
	for i, e := range list.Equivalent {
		if e.Function == "" || e.Mutant == "" || strings.TrimSpace(e.Reason) == "" {
			errs = append(errs, fmt.Errorf("equivalent[%d]: function, mutant and reason are all required", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fileError(path, err)
	}
	return list.Equivalent, nil
}

// Task returns the task with the given id.
func (m *KataManifest) Task(id int) (Task, bool) {
	for _, t := range m.Tasks {
		if t.ID == id {
			return t, true
		}
	}
	return Task{}, false
}

// TitleIn is the day's title in l.
func (m *KataManifest) TitleIn(l Lang) string { return Text{m.Title, m.TitleJa}.In(l) }

// SummaryIn is the task's summary in l.
func (t Task) SummaryIn(l Lang) string { return Text{t.Summary, t.SummaryJa}.In(l) }

// MistakeIn is the planted mistake's explanation in l.
func (ap Antipattern) MistakeIn(l Lang) string { return Text{ap.Mistake, ap.MistakeJa}.In(l) }
