package mistakes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// CmdPlant turns an edited copy of a day's reference into a planted
// mistake: it writes the smallest find/replace edits that make the
// reference into the copy, runs the named tests against it, takes the
// first failure a learner would see as the symptom (unless -symptom
// gives one), adds the mistake to .solution/antipatterns.json, checks it
// as `antipatterns -only` would, and rewrites the README's tables.
//
//	go run ./internal/kata plant 48 -name NAME -from EDITED.go -mistake "..." -mistake-ja "..." -caught-by TestX/Sub[,TestY]
func CmdPlant(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) != 1 {
		return errors.New("name one day: plant 48 -name ... (the day whose reference was edited)")
	}
	d := days[0]
	file := inv.Flags["file"]
	if file == "" {
		file = "main.go"
	}
	ap := core.Antipattern{Name: inv.Flags["name"], Mistake: inv.Flags["mistake"], MistakeJa: inv.Flags["mistake-ja"], File: file, Symptom: inv.Flags["symptom"], SeparateRuns: inv.Flag("separate-runs")}
	for _, name := range strings.Split(inv.Flags["caught-by"], ",") {
		if name = strings.TrimSpace(name); name != "" {
			ap.CaughtBy = append(ap.CaughtBy, name)
		}
	}
	switch {
	case !filepath.IsLocal(file) || !strings.HasSuffix(file, ".go"):
		return fmt.Errorf("-file %q: want a .go file inside .solution/", file)
	case !core.AntipatternName.MatchString(ap.Name):
		return fmt.Errorf("-name %q: want letters, digits, _ or -", ap.Name)
	case strings.TrimSpace(ap.Mistake) == "":
		return errors.New("-mistake is empty: say, in a sentence a learner understands, what the planted code gets wrong")
	case strings.TrimSpace(ap.MistakeJa) == "":
		return errors.New("-mistake-ja is empty: say the same in Japanese, for README.ja.md and the Japanese hints")
	case len(ap.CaughtBy) == 0:
		return errors.New("-caught-by is empty: name the tests that must fail, as go test prints them (TestX/Sub_test)")
	case inv.Flags["from"] == "":
		return errors.New("-from is empty: give the edited copy of " + filepath.Join(d.Dir, ".solution", file))
	}
	list, err := core.LoadAntipatterns(d)
	if err != nil {
		return err
	}
	for _, other := range list {
		if other.Name == ap.Name {
			return fmt.Errorf("day %s already has a planted mistake named %q", d.Num, ap.Name)
		}
	}
	reference, err := os.ReadFile(filepath.Join(d.SolutionDir(), file))
	if err != nil {
		return err
	}
	edited, err := os.ReadFile(inv.Flags["from"])
	if err != nil {
		return err
	}
	if ap.Edits, err = minimalEdits(string(reference), string(edited)); err != nil {
		return err
	}
	fmt.Printf("%d edits make %s into %s\n", len(ap.Edits), filepath.Join(d.Dir, ".solution", file), inv.Flags["from"])

	run, err := runPlanted(ctx, r, d, ap)
	if err != nil {
		return err
	}
	if problems := checkCaught(run, ap.CaughtBy, AntipatternRuns); len(problems) > 0 {
		return fmt.Errorf("not planted:\n%s", core.Bullet(strings.Join(problems, "\n")))
	}
	shown := run.FirstFailureOf(ap.CaughtBy[0])
	fmt.Printf("the first failure of %s:\n%s\n", ap.CaughtBy[0], core.Indent(strings.Join(shown, "\n"), "    "))
	if ap.Symptom == "" {
		if proposeSymptom(shown) == "" {
			return errors.New("no line of the failure says what went wrong in the test's own words: give -symptom, a fragment a learner's code would print too")
		}
		ap.Symptom = proposeSymptom(shown)
		fmt.Printf("symptom (its message; shorten it with -symptom if part of it changes from run to run): %q\n", ap.Symptom)
	}
	if problem := checkSymptom(run, ap); problem != "" {
		return errors.New(problem)
	}
	if err := writeAntipatterns(d, append(list, ap)); err != nil {
		return err
	}
	fmt.Printf("added %s to %s\n", ap.Name, filepath.Join(d.Dir, ".solution", "antipatterns.json"))
	if err := CmdTables(ctx, r, core.Invocation{Day: d.Num}); err != nil {
		return err
	}
	fmt.Printf("next, the check make check runs, with the day's shared build: go run ./internal/kata antipatterns %s -only %s\n", d.Num, ap.Name)
	return nil
}

// testLinePrefix is how go test starts a failure line: "x_test.go:12: ".
var testLinePrefix = regexp.MustCompile(`^\s*[\w.-]+_test\.go:\d+:\s*`)

// failureMessage is a failure line without its file and line, which move
// whenever the test file changes.
func failureMessage(line string) string {
	return strings.TrimSpace(testLinePrefix.ReplaceAllString(line, ""))
}

// proposeSymptom picks the line of a failure to quote: its first line
// with a message, without file and line. For testify's report it is the
// test's own words, its "Messages:" line; its "Error:" line is one of a
// few labels ("Not equal:", "Received unexpected error:") that every
// failure of the kind shares, so without a message it proposes nothing.
func proposeSymptom(lines []string) string {
	first, testify := "", false
	for _, line := range lines {
		msg := failureMessage(line)
		switch {
		case msg == "" || strings.HasPrefix(msg, "/"):
			continue
		case strings.HasPrefix(msg, "Error Trace:"), strings.HasPrefix(msg, "Error:"), strings.HasPrefix(msg, "Test:"):
			testify = true
			continue
		case strings.HasPrefix(msg, "Messages:"):
			return strings.TrimSpace(strings.TrimPrefix(msg, "Messages:"))
		}
		if first == "" {
			first = msg
		}
	}
	if testify {
		return ""
	}
	return first
}

// writeAntipatterns writes a day's antipatterns.json as the runner reads
// it: two-space indents, HTML characters as they are.
func writeAntipatterns(d core.Day, list []core.Antipattern) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(core.AntipatternList{Antipatterns: list}); err != nil {
		return err
	}
	if _, err := core.ParseAntipatterns(b.Bytes()); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.SolutionDir(), "antipatterns.json"), b.Bytes(), 0o644)
}

// minimalEdits returns find/replace edits, applied in order as the runner
// applies them, that turn reference into edited: one per changed run of
// lines, each with as few lines of context as make its find text occur
// exactly once where it is applied.
func minimalEdits(reference, edited string) ([]core.Edit, error) {
	if reference == edited {
		return nil, errors.New("the edited copy is the reference: nothing to plant")
	}
	a, b := strings.SplitAfter(reference, "\n"), strings.SplitAfter(edited, "\n")
	cur := append([]string{}, a...)
	delta := 0
	var edits []core.Edit
	for _, h := range diffLines(a, b) {
		cs, ce := h.aStart+delta, h.aEnd+delta
		e, ok := uniqueEdit(cur, cs, ce, b[h.bStart:h.bEnd])
		if !ok {
			return nil, errors.New("a change cannot be told apart from the rest of the file, even with the whole file as context")
		}
		edits = append(edits, e)
		cur = append(append(append([]string{}, cur[:cs]...), b[h.bStart:h.bEnd]...), cur[ce:]...)
		delta += (h.bEnd - h.bStart) - (h.aEnd - h.aStart)
	}
	if got, err := core.ApplyEdits(reference, edits); err != nil || got != edited {
		return nil, fmt.Errorf("the edits do not reproduce the edited copy (%v): please report this", err)
	}
	return edits, nil
}

// uniqueEdit returns the edit that replaces cur[cs:ce] with lines, with
// the fewest lines of context around it that make its find text occur
// exactly once in cur.
func uniqueEdit(cur []string, cs, ce int, lines []string) (core.Edit, bool) {
	text := strings.Join(cur, "")
	for k := 0; k <= len(cur); k++ {
		for down := 0; down <= k; down++ {
			up := k - down
			if cs-up < 0 || ce+down > len(cur) {
				continue
			}
			find := strings.Join(cur[cs-up:ce+down], "")
			if find != "" && core.Occurrences(text, find) == 1 {
				replace := strings.Join(cur[cs-up:cs], "") + strings.Join(lines, "") + strings.Join(cur[ce:ce+down], "")
				return core.Edit{Find: find, Replace: replace}, true
			}
		}
	}
	return core.Edit{}, false
}

// hunk is a run of lines a[aStart:aEnd] that becomes b[bStart:bEnd].
type hunk struct{ aStart, aEnd, bStart, bEnd int }

// diffLines returns the hunks of a longest-common-subsequence diff of a
// and b, in order.
func diffLines(a, b []string) []hunk {
	// lcs[i][j] is the length of the LCS of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var hunks []hunk
	open := false
	var h hunk
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if i < len(a) && j < len(b) && a[i] == b[j] {
			if open {
				h.aEnd, h.bEnd = i, j
				hunks = append(hunks, h)
				open = false
			}
			i++
			j++
			continue
		}
		if !open {
			h = hunk{aStart: i, bStart: j}
			open = true
		}
		if j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]) {
			j++
		} else {
			i++
		}
	}
	if open {
		h.aEnd, h.bEnd = i, j
		hunks = append(hunks, h)
	}
	return hunks
}
