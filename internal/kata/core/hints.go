package core

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Hints have one source, kata.json's "hints": each names its task, the
// failure text it answers (match), and its text in each language. The
// "Hints, by symptom" section of README.md, and its Japanese twin in
// README.ja.md, are written from them (`go run ./internal/kata tables`),
// and the check fails when either is not exactly that; progress, watch
// and hint print a hint under a failure it matches, in the learner's
// language. The planted mistakes of antipatterns.json are matched the
// same way, by their symptom, and answered with their mistake.

// hint is one entry of kata.json's "hints".
type hint struct {
	// Task is the task whose failures the hint answers; 0 means any.
	Task int `json:"task,omitempty"`
	// Match lists the failures the hint answers: it matches when, for one
	// of them, every fragment appears in a failure's output, in order.
	// A hint without any is shown by `make hint` but never matched.
	Match [][]string `json:"match"`
	// Text is the hint in Markdown, as the README shows it.
	Text string `json:"text"`
	// TextJa is Text in Japanese, as README.ja.md shows it. The failure
	// text it quotes stays as go test prints it.
	TextJa string `json:"text_ja"`
}

// Matches reports whether one of h's failures appears in output.
func (h hint) Matches(output string) bool {
	for _, fragments := range h.Match {
		if inOrder(output, fragments) {
			return true
		}
	}
	return false
}

// inOrder reports whether every fragment appears in s, each after the
// one before.
func inOrder(s string, fragments []string) bool {
	for _, f := range fragments {
		i := strings.Index(s, f)
		if i < 0 {
			return false
		}
		s = s[i+len(f):]
	}
	return len(fragments) > 0
}

func (h hint) validate(i int, tasks map[int]bool) []error {
	var errs []error
	if strings.TrimSpace(h.Text) == "" {
		errs = append(errs, fmt.Errorf("hints[%d]: text is empty", i))
	}
	if strings.TrimSpace(h.TextJa) == "" {
		errs = append(errs, fmt.Errorf("hints[%d]: text_ja is empty: every text a learner reads is written in English and in Japanese", i))
	}
	if h.Task != 0 && !tasks[h.Task] {
		errs = append(errs, fmt.Errorf("hints[%d]: task %d does not exist", i, h.Task))
	}
	for j, fragments := range h.Match {
		if len(fragments) == 0 || slices.Contains(fragments, "") {
			errs = append(errs, fmt.Errorf("hints[%d].match[%d]: want non-empty fragments", i, j))
		}
	}
	return errs
}

// TextIn is the hint's Markdown in l.
func (h hint) TextIn(l Lang) string { return Text{h.Text, h.TextJa}.In(l) }

// plainHint is a hint's Markdown in l as a terminal shows it: without
// the bold markers, the code spans kept.
func plainHint(h hint, l Lang) string { return strings.ReplaceAll(h.TextIn(l), "**", "") }

// The words of the hints the learner's tools print.
var (
	usuallyMeans  = Text{"this usually means: ", "よくある原因: "}
	taskIntro     = Text{"Task %d, %s: %s. Its section in %s (\"Task %d\") says what each test expects.", "課題 %d、%s: %s。%s の「課題 %d」の節に、各テストが何を求めるかが書いてあります。"}
	commonMistake = Text{"A common mistake: %s. It shows as: %s", "よくある間違い: %s。表示される内容: %s"}
)

// Advice is what to print under a failure of task taskID whose output is
// output: each planted mistake of that task whose symptom appears, then
// each hint that matches, as "this usually means: ..." lines.
func Advice(l Lang, hints []hint, mistakes []Antipattern, m *KataManifest, taskID int, output string) []string {
	var out []string
	for _, ap := range mistakes {
		if ap.Symptom == "" || !strings.Contains(output, ap.Symptom) || !caughtInTask(m, ap, taskID) {
			continue
		}
		out = append(out, usuallyMeans.In(l)+ap.MistakeIn(l))
	}
	for _, h := range hints {
		if (h.Task == 0 || h.Task == taskID) && h.Matches(output) {
			out = append(out, usuallyMeans.In(l)+plainHint(h, l))
		}
	}
	return out
}

// caughtInTask reports whether one of ap's tests belongs to task taskID.
func caughtInTask(m *KataManifest, ap Antipattern, taskID int) bool {
	for _, test := range ap.CaughtBy {
		if i := m.TaskFor(topLevelName(test)); i >= 0 && m.Tasks[i].ID == taskID {
			return true
		}
	}
	return false
}

// TaskHints returns what `make hint` shows for a task with no matching
// failure, from the gentlest to the most concrete: where the task is
// explained, the hints that start from a symptom, then the mistakes
// learners make in it.
func TaskHints(l Lang, hints []hint, mistakes []Antipattern, m *KataManifest, t Task) []string {
	out := []string{taskIntro.F(l, t.ID, t.Name, t.SummaryIn(l), l.Readme(), t.ID)}
	for _, h := range hints {
		if h.Task == t.ID {
			out = append(out, plainHint(h, l))
		}
	}
	for _, ap := range mistakes {
		if caughtInTask(m, ap, t.ID) {
			out = append(out, commonMistake.F(l, ap.MistakeIn(l), ap.Symptom))
		}
	}
	for _, h := range hints {
		if h.Task == 0 {
			out = append(out, plainHint(h, l))
		}
	}
	return out
}

// RenderHints renders the hints as the list of the README in l: one
// bullet each, wrapped at 78 columns in English. A Japanese bullet is
// one line, since a line break inside Japanese text shows as a space.
func RenderHints(hints []hint, l Lang) string {
	var b strings.Builder
	for _, h := range hints {
		if l == Japanese {
			b.WriteString("- " + strings.Join(strings.Fields(h.TextJa), " ") + "\n")
			continue
		}
		b.WriteString(Wrap("- ", "  ", h.Text, 78))
	}
	return b.String()
}

// Wrap fills text into lines of at most width columns (a longer word
// gets a line of its own), the first starting with first and the rest
// with rest. Columns are counted as a terminal shows them (Width).
func Wrap(first, rest, text string, width int) string {
	var b strings.Builder
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && Width(line)+1+Width(word) > width {
			b.WriteString(line + "\n")
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

// hintListSpan finds the list of the hints section of a README in l:
// the byte offsets of its first line and of the end of its last.
func hintListSpan(readme string, l Lang) (start, end int, err error) {
	heading := HintsHeading(l)
	at := strings.Index(readme, "\n"+heading+"\n")
	if at < 0 {
		return 0, 0, fmt.Errorf("no %q section", heading)
	}
	body := at + len("\n"+heading+"\n")
	next := strings.Index(readme[body:], "\n## ")
	if next < 0 {
		return 0, 0, fmt.Errorf("the %q section is the last one; the hints must be followed by another section", heading)
	}
	start = body
	for start < body+next && readme[start] == '\n' {
		start++
	}
	end = body + next + 1 // keep the newline that ends the last line
	for end > start && readme[end-1] == '\n' && readme[end-2] == '\n' {
		end--
	}
	return start, end, nil
}

// CheckHintList reports whether the hints of a README in l are the ones
// kata.json makes.
func CheckHintList(readme string, hints []hint, l Lang) []string {
	start, end, err := hintListSpan(readme, l)
	if err != nil {
		return []string{err.Error()}
	}
	if readme[start:end] != RenderHints(hints, l) {
		return []string{"the hints are not the ones kata.json makes: run `go run ./internal/kata tables` to write them"}
	}
	return nil
}

// CheckDayHints runs CheckHintList on each of a day's READMEs, naming
// the file of each problem.
func CheckDayHints(d Day) []string {
	return d.ReadmeProblems(func(readme string, l Lang) []string { return CheckHintList(readme, d.Kata.Hints, l) })
}

// ReadmeProblems runs check on each of the day's READMEs, one per
// language, and returns its problems prefixed with the file's path.
func (d Day) ReadmeProblems(check func(readme string, l Lang) []string) []string {
	var problems []string
	for _, l := range Langs {
		readme, err := os.ReadFile(filepath.Join(d.Path, l.Readme()))
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, p := range check(string(readme), l) {
			problems = append(problems, d.Dir+"/"+l.Readme()+": "+p)
		}
	}
	return problems
}

// WriteDayHints writes a day's hints into each of its READMEs, reporting
// whether anything changed.
func WriteDayHints(d Day) (bool, error) {
	changed := false
	for _, l := range Langs {
		path := filepath.Join(d.Path, l.Readme())
		data, err := os.ReadFile(path)
		if err != nil {
			return changed, err
		}
		readme := string(data)
		start, end, err := hintListSpan(readme, l)
		if err != nil {
			return changed, fmt.Errorf("%s: %w", path, err)
		}
		updated := readme[:start] + RenderHints(d.Kata.Hints, l) + readme[end:]
		if updated == readme {
			continue
		}
		if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// stubMarker is what a stub's error says: "not implemented yet (see
// README, task N)". A failure that quotes it names the task whose code
// the test needs.
var stubMarker = regexp.MustCompile(`not implemented yet \(see README, task (\d+)\)`)

// StubsQuoted returns the tasks whose stubs output quotes, in the order it
// first quotes them.
func StubsQuoted(output string) []int {
	var ids []int
	for _, m := range stubMarker.FindAllStringSubmatch(output, -1) {
		id, err := strconv.Atoi(m[1])
		if err == nil && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}
