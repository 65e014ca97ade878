package core

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestOverlayFor(t *testing.T) {
	got := OverlayFor("/repo/day48_x", []string{"main.go", "server.go"})
	want := map[string]string{
		"/repo/day48_x/main.go":   "/repo/day48_x/.solution/main.go",
		"/repo/day48_x/server.go": "/repo/day48_x/.solution/server.go",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overlayFor = %v, want %v", got, want)
	}
}

func TestOverlayJSON(t *testing.T) {
	data, err := OverlayJSON(map[string]string{"/repo/d/main.go": "/repo/d/.solution/main.go"})
	if err != nil {
		t.Fatalf("overlayJSON error = %v", err)
	}
	var decoded struct{ Replace map[string]string }
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatalf("overlayJSON wrote invalid JSON %q: %v", data, err)
	}
	if decoded.Replace["/repo/d/main.go"] != "/repo/d/.solution/main.go" || len(decoded.Replace) != 1 {
		t.Errorf("overlayJSON = %s, want the one replacement under Replace", data)
	}

	// The go command silently ignores relative paths when run from
	// elsewhere, which would test the stubs instead of the reference.
	if _, err := OverlayJSON(map[string]string{"d/main.go": "/repo/d/.solution/main.go"}); err == nil {
		t.Error("overlayJSON with a relative path: want an error")
	}
}

func TestSolutionOverlay(t *testing.T) {
	root := t.TempDir()
	d := Day{Dir: "day48_x", Path: filepath.Join(root, "day48_x")}
	for _, f := range []string{".solution/main.go", ".solution/extra.go", ".solution/antipatterns.json", ".solution/sub/x.go", "main.go"} {
		path := filepath.Join(d.Path, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("package main\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := SolutionOverlay([]Day{d})
	if err != nil {
		t.Fatalf("solutionOverlay error = %v", err)
	}
	want := map[string]string{
		filepath.Join(d.Path, "extra.go"): filepath.Join(d.Path, ".solution", "extra.go"),
		filepath.Join(d.Path, "main.go"):  filepath.Join(d.Path, ".solution", "main.go"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("solutionOverlay = %v, want %v", got, want)
	}

	empty := Day{Dir: "day49_y", Path: filepath.Join(root, "day49_y")}
	if _, err := SolutionOverlay([]Day{empty}); err == nil {
		t.Error("solutionOverlay for a day without .solution/: want an error")
	}
}

func TestWriteTempOverlay(t *testing.T) {
	path, remove, err := WriteTempOverlay(map[string]string{"/a/b.go": "/a/.solution/b.go"})
	if err != nil {
		t.Fatalf("writeTempOverlay error = %v", err)
	}
	if !filepath.IsAbs(path) {
		t.Errorf("writeTempOverlay path = %q, want an absolute path", path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("overlay file: %v", err)
	}
	remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after remove, stat %s = %v, want not exist", path, err)
	}
}

func TestApplyEdits(t *testing.T) {
	const src = "func f() {\n\tif bad {\n\t\treturn err\n\t}\n\treturn nil\n}\n"
	tests := []struct {
		name    string
		edits   []Edit
		want    string
		wantErr string
	}{
		{
			name:  "one edit",
			edits: []Edit{{Find: "if bad {", Replace: "if false {"}},
			want:  "func f() {\n\tif false {\n\t\treturn err\n\t}\n\treturn nil\n}\n",
		},
		{
			name: "edits apply in order, each to the result of the one before",
			edits: []Edit{
				{Find: "if bad {", Replace: "if ok {"},
				{Find: "if ok {", Replace: "if !ok {"},
			},
			want: "func f() {\n\tif !ok {\n\t\treturn err\n\t}\n\treturn nil\n}\n",
		},
		{
			name:    "find text missing",
			edits:   []Edit{{Find: "if good {", Replace: "x"}},
			wantErr: `edits[0]: find text "if good {" does not occur`,
		},
		{
			name:    "find text twice",
			edits:   []Edit{{Find: "return", Replace: "panic"}},
			wantErr: "edits[0]: find text \"return\" occurs 2 times, want exactly once",
		},
		{
			name: "later edit sees a duplicate an earlier one made",
			edits: []Edit{
				{Find: "return nil", Replace: "return err"},
				{Find: "return err", Replace: "return nil"},
			},
			wantErr: "edits[1]: find text \"return err\" occurs 2 times",
		},
		{
			name:    "empty find",
			edits:   []Edit{{Find: "", Replace: "x"}},
			wantErr: "edits[0]: find is empty",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ApplyEdits(src, tc.edits)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("applyEdits error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("applyEdits error = %v", err)
			}
			if got != tc.want {
				t.Errorf("applyEdits = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOccurrences(t *testing.T) {
	tests := []struct {
		s, sub string
		want   int
	}{
		{"abc", "x", 0},
		{"abc", "b", 1},
		{"abab", "ab", 2},
		{"aaa", "aa", 2}, // overlapping matches are ambiguous too
	}
	for _, tc := range tests {
		if got := Occurrences(tc.s, tc.sub); got != tc.want {
			t.Errorf("occurrences(%q, %q) = %d, want %d", tc.s, tc.sub, got, tc.want)
		}
	}
}

func TestPreview(t *testing.T) {
	tests := map[string]string{
		"short":                   `"short"`,
		"first line\nsecond line": `"first line"...`,
		strings.Repeat("x", 70):   `"` + strings.Repeat("x", 60) + `"...`,
	}
	for in, want := range tests {
		if got := preview(in); got != want {
			t.Errorf("preview(%q) = %s, want %s", in, got, want)
		}
	}
}
