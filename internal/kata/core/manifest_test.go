package core

import (
	"strings"
	"testing"
)

const validKata = `{
  "title": "Day 48: client-side streaming", "title_ja": "Day 48: client-side streaming（日本語）",
  "min_tests": 30,
  "tasks": [
    {"id": 1, "name": "validateFileName", "tests": "^TestValidateFileName$", "summary": "reject unsafe upload names", "summary_ja": "reject unsafe upload names（日本語）"},
    {"id": 2, "name": "UploadFile", "tests": "^TestFileUpload", "summary": "chunked upload with checks", "summary_ja": "chunked upload with checks（日本語）"}
  ],
  "stub_passes": [{"test": "TestX/Some_subtest", "reason": "checks the stub's own error"}],
  "demo": {"args": ["-once", "-addr", "127.0.0.1:0"], "timeout_seconds": 120, "stub_output": "not implemented yet"}
}`

func TestParseKata(t *testing.T) {
	m, err := ParseKata([]byte(validKata))
	if err != nil {
		t.Fatalf("parseKata(valid) error = %v", err)
	}
	if m.Title != "Day 48: client-side streaming" || m.MinTests != 30 || len(m.Tasks) != 2 ||
		len(m.StubPasses) != 1 || m.Demo == nil || m.Demo.TimeoutSeconds != 120 || len(m.Demo.Args) != 3 {
		t.Errorf("parseKata(valid) = %+v, want the fields of the document", m)
	}
	for test, want := range map[string]int{
		"TestValidateFileName":     0,
		"TestValidateFileNameMore": -1,
		"TestFileUpload":           1,
		"TestFileUploadResume":     1,
		"TestOther":                -1,
	} {
		if got := m.TaskFor(test); got != want {
			t.Errorf("taskFor(%q) = %d, want %d", test, got, want)
		}
	}
}

func TestParseKataRejects(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{"unknown field", func(s string) string {
			return strings.Replace(s, `"min_tests"`, `"hint": "x", "min_tests"`, 1)
		}, `unknown field "hint"`},
		{"unknown nested field", func(s string) string {
			return strings.Replace(s, `"summary": "reject`, `"summray": "x", "summary": "reject`, 1)
		}, `unknown field "summray"`},
		{"trailing data", func(s string) string { return s + "{}" }, "after the JSON value"},
		{"empty title", func(s string) string {
			return strings.Replace(s, `"Day 48: client-side streaming"`, `""`, 1)
		}, "title is empty"},
		{"no Japanese title", func(s string) string {
			return strings.Replace(s, `"title_ja": "Day 48: client-side streaming（日本語）"`, `"title_ja": " "`, 1)
		}, "title_ja is empty"},
		{"no Japanese summary", func(s string) string {
			return strings.Replace(s, `, "summary_ja": "chunked upload with checks（日本語）"`, ``, 1)
		}, "tasks[1] (UploadFile): summary_ja is empty"},
		{"no Japanese hint", func(s string) string {
			return strings.Replace(s, `"min_tests"`, `"hints": [{"task": 1, "match": [["x"]], "text": "a hint"}], "min_tests"`, 1)
		}, "hints[0]: text_ja is empty"},
		{"zero min_tests", func(s string) string {
			return strings.Replace(s, `"min_tests": 30`, `"min_tests": 0`, 1)
		}, "min_tests must be positive"},
		{"duplicate task id", func(s string) string {
			return strings.Replace(s, `"id": 2`, `"id": 1`, 1)
		}, "duplicate id 1"},
		{"duplicate task name", func(s string) string {
			return strings.Replace(s, `"name": "UploadFile"`, `"name": "validateFileName"`, 1)
		}, `duplicate name "validateFileName"`},
		{"bad regexp", func(s string) string {
			return strings.Replace(s, `"^TestFileUpload"`, `"^(TestFileUpload"`, 1)
		}, "missing closing )"},
		{"empty regexp", func(s string) string {
			return strings.Replace(s, `"^TestFileUpload"`, `""`, 1)
		}, "tests regexp is empty"},
		{"exemption without reason", func(s string) string {
			return strings.Replace(s, `"checks the stub's own error"`, `" "`, 1)
		}, "reason is empty"},
		{"missing demo", func(s string) string {
			return s[:strings.Index(s, `,
  "demo"`)] + "}"
		}, "demo is missing"},
		{"demo without timeout", func(s string) string {
			return strings.Replace(s, `"timeout_seconds": 120`, `"timeout_seconds": 0`, 1)
		}, "timeout_seconds must be positive"},
		{"demo without stub output", func(s string) string {
			return strings.Replace(s, `"not implemented yet"`, `""`, 1)
		}, "stub_output is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.edit(validKata)
			_, err := ParseKata([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseKata(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

const validAntipatterns = `{"antipatterns": [
  {"name": "no_path_check",
   "mistake": "accepts ../ in file names", "mistake_ja": "accepts ../ in file names（日本語）",
   "file": "main.go",
   "edits": [{"find": "if err := validateFileName(name); err != nil {", "replace": "if false {"}],
   "caught_by": ["TestFileUpload/Rejects_path_traversal", "TestValidateFileName"],
   "symptom": "want code InvalidArgument"}
]}`

func TestParseAntipatterns(t *testing.T) {
	list, err := ParseAntipatterns([]byte(validAntipatterns))
	if err != nil {
		t.Fatalf("parseAntipatterns(valid) error = %v", err)
	}
	if len(list) != 1 || list[0].Name != "no_path_check" || len(list[0].Edits) != 1 || len(list[0].CaughtBy) != 2 {
		t.Errorf("parseAntipatterns(valid) = %+v, want the document's one antipattern", list)
	}
}

func TestParseAntipatternsRejects(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"unknown field", strings.Replace(validAntipatterns, `"mistake"`, `"why": "x", "mistake"`, 1), `unknown field "why"`},
		{"empty list", `{"antipatterns": []}`, "antipatterns is empty"},
		{"empty caught_by", strings.Replace(validAntipatterns, `["TestFileUpload/Rejects_path_traversal", "TestValidateFileName"]`, `[]`, 1), "caught_by is empty"},
		{"caught_by twice", strings.Replace(validAntipatterns, `"TestValidateFileName"]`, `"TestValidateFileName", "TestValidateFileName"]`, 1), "lists TestValidateFileName twice"},
		{"bad name", strings.Replace(validAntipatterns, `"no_path_check"`, `"no path check"`, 1), "must be letters"},
		{"duplicate name", `{"antipatterns": [` + strings.Repeat(validAntipatterns[len(`{"antipatterns": [`):len(validAntipatterns)-2]+",", 2) + `{"name":"x","mistake":"m","file":"main.go","edits":[{"find":"a","replace":"b"}],"caught_by":["T"],"symptom":"s"}]}`, "duplicate name"},
		{"file outside .solution", strings.Replace(validAntipatterns, `"main.go"`, `"../main.go"`, 1), "inside .solution/"},
		{"file not .go", strings.Replace(validAntipatterns, `"main.go"`, `"README.md"`, 1), "must be a .go file"},
		{"no edits", strings.Replace(validAntipatterns, `[{"find": "if err := validateFileName(name); err != nil {", "replace": "if false {"}]`, `[]`, 1), "edits is empty"},
		{"empty find", strings.Replace(validAntipatterns, `"find": "if err := validateFileName(name); err != nil {"`, `"find": ""`, 1), "find is empty"},
		{"no-op edit", strings.Replace(validAntipatterns, `"replace": "if false {"`, `"replace": "if err := validateFileName(name); err != nil {"`, 1), "changes nothing"},
		{"no Japanese mistake", strings.Replace(validAntipatterns, `"mistake_ja": "accepts ../ in file names（日本語）",`, ``, 1), "mistake_ja is empty"},
		{"empty mistake", strings.Replace(validAntipatterns, `"accepts ../ in file names"`, `""`, 1), "mistake is empty"},
		{"no symptom", strings.Replace(validAntipatterns, `"want code InvalidArgument"`, `" "`, 1), "symptom is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAntipatterns([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseAntipatterns(%s) error = %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestFileErrorListsProblemsOnLines(t *testing.T) {
	_, err := ParseKata([]byte(`{"title": "", "min_tests": 0, "tasks": [], "demo": {"timeout_seconds": 1, "stub_output": "x"}}`))
	got := fileError("day48/kata.json", err).Error()
	want := "day48/kata.json:\n    title is empty\n    title_ja is empty: every text a learner reads is written in English and in Japanese\n    min_tests must be positive, got 0\n    tasks is empty"
	if got != want {
		t.Errorf("fileError = %q, want %q", got, want)
	}
}
