package core

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// An overlay tells the go command to read some files from elsewhere
// (go help build, -overlay). The reference solutions live in each day's
// hidden .solution/ folder and are swapped in this way, so the learner's
// files are never touched.
//
// Every path in it must be absolute: the go command resolves relative ones
// against its own working directory and silently ignores entries that then
// match nothing, which would quietly test the stubs instead.

// SolutionFiles lists the .go files of a day's .solution/ folder.
func SolutionFiles(d Day) ([]string, error) {
	entries, err := os.ReadDir(d.SolutionDir())
	if err != nil {
		return nil, fmt.Errorf("%s has no reference solution: %w", d.Dir, err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".go") {
			files = append(files, e.Name())
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .go files in .solution/", d.Dir)
	}
	sort.Strings(files)
	return files, nil
}

// OverlayFor maps each dayPath/<f> to dayPath/.solution/<f>.
func OverlayFor(dayPath string, files []string) map[string]string {
	replace := make(map[string]string, len(files))
	for _, f := range files {
		replace[filepath.Join(dayPath, f)] = filepath.Join(dayPath, ".solution", f)
	}
	return replace
}

// SolutionOverlay swaps in the reference solutions of every given day.
func SolutionOverlay(days []Day) (map[string]string, error) {
	replace := map[string]string{}
	for _, d := range days {
		files, err := SolutionFiles(d)
		if err != nil {
			return nil, err
		}
		maps.Copy(replace, OverlayFor(d.Path, files))
	}
	return replace, nil
}

// OverlayJSON renders the file the go command's -overlay flag reads.
func OverlayJSON(replace map[string]string) ([]byte, error) {
	for from, to := range replace {
		if !filepath.IsAbs(from) || !filepath.IsAbs(to) {
			return nil, fmt.Errorf("overlay paths must be absolute: %s -> %s", from, to)
		}
	}
	data, err := json.MarshalIndent(struct {
		Replace map[string]string
	}{replace}, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// WriteTempOverlay writes an overlay to a new temporary file and returns its
// path and a function that removes it.
func WriteTempOverlay(replace map[string]string) (string, func(), error) {
	data, err := OverlayJSON(replace)
	if err != nil {
		return "", nil, err
	}
	f, err := os.CreateTemp("", "kata-overlay-*.json")
	if err != nil {
		return "", nil, err
	}
	remove := func() { os.Remove(f.Name()) }
	if _, err := f.Write(data); err != nil {
		f.Close()
		remove()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		remove()
		return "", nil, err
	}
	return f.Name(), remove, nil
}

// ApplyEdits applies an antipattern's edits in order. Each find text must
// occur exactly once in the content as it is at that point: if a refactor
// of the reference removed or duplicated it, the antipattern would
// otherwise silently plant nothing, or plant it in the wrong place.
func ApplyEdits(content string, edits []Edit) (string, error) {
	for i, e := range edits {
		if e.Find == "" {
			return "", fmt.Errorf("edits[%d]: find is empty", i)
		}
		switch n := Occurrences(content, e.Find); n {
		case 1:
			content = strings.Replace(content, e.Find, e.Replace, 1)
		case 0:
			return "", fmt.Errorf("edits[%d]: find text %s does not occur; has the reference changed?", i, preview(e.Find))
		default:
			return "", fmt.Errorf("edits[%d]: find text %s occurs %d times, want exactly once; make it longer", i, preview(e.Find), n)
		}
	}
	return content, nil
}

// Occurrences counts the places where sub starts in s, overlapping ones
// included: "aa" occurs twice in "aaa", which is ambiguous for an edit.
func Occurrences(s, sub string) int {
	n := 0
	for i := 0; ; {
		j := strings.Index(s[i:], sub)
		if j < 0 {
			return n
		}
		n++
		i += j + 1
	}
}

// preview quotes the start of a find text for an error message.
func preview(s string) string {
	const max = 60
	first, _, more := strings.Cut(s, "\n")
	if len(first) > max {
		first, more = first[:max], true
	}
	if more {
		return fmt.Sprintf("%q...", first)
	}
	return fmt.Sprintf("%q", first)
}

// ReferenceOverlay writes a temporary overlay that swaps in the days'
// reference solutions and returns its path and a function that removes it.
func ReferenceOverlay(days []Day) (path string, remove func(), err error) {
	replace, err := SolutionOverlay(days)
	if err != nil {
		return "", nil, err
	}
	return WriteTempOverlay(replace)
}
