package mistakes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// The table is generated from antipatterns.json, the one source of the
// planted mistakes: its mistake, its symptom (text that the first
// failure the check proves the learner sees contains) and its caught_by tests.
// `go run ./internal/kata tables` writes it; the antipattern check fails
// when the README's table is not what it would write.

// renderMistakeTable renders the common-mistakes table of list for the
// README in l: the mistake in l, the symptom and the tests as they are.
func renderMistakeTable(list []core.Antipattern, l core.Lang) string {
	var b strings.Builder
	b.WriteString(core.MistakesHeader(l) + "\n|---|---|---|\n")
	for _, ap := range list {
		var tests []string
		for _, name := range ap.CaughtBy {
			tests = append(tests, "`"+name+"`")
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", tableCell(ap.MistakeIn(l)), codeCell(ap.Symptom), strings.Join(tests, ", "))
	}
	return b.String()
}

// tableCell escapes text for a Markdown table cell.
func tableCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// codeCell renders s as code in a table cell, with a fence of backticks
// longer than any run inside it.
func codeCell(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + tableCell(s) + pad + fence
}

// mistakeTableSpan finds the table of the common-mistakes section of a
// README in l: the byte offsets of its first line and of the end of its
// last.
func mistakeTableSpan(readme string, l core.Lang) (start, end int, err error) {
	mistakesHeading := core.MistakesHeading(l)
	heading := strings.Index(readme, "\n"+mistakesHeading)
	if heading < 0 {
		return 0, 0, fmt.Errorf("no %q section", mistakesHeading)
	}
	sectionEnd := len(readme)
	if next := strings.Index(readme[heading+1:], "\n## "); next >= 0 {
		sectionEnd = heading + 1 + next + 1
	}
	start = -1
	for pos := heading + 1; pos < sectionEnd; {
		lineEnd := strings.IndexByte(readme[pos:sectionEnd], '\n')
		if lineEnd < 0 {
			lineEnd = sectionEnd - pos
		} else {
			lineEnd++
		}
		isRow := strings.HasPrefix(readme[pos:], "|")
		switch {
		case isRow && start < 0:
			start = pos
		case !isRow && start >= 0:
			return start, pos, nil
		}
		pos += lineEnd
	}
	if start < 0 {
		return 0, 0, fmt.Errorf("the %q section holds no table", mistakesHeading)
	}
	return start, sectionEnd, nil
}

// checkMistakeTable reports whether the common-mistakes table of a
// README in l is the one antipatterns.json makes.
func checkMistakeTable(readme string, list []core.Antipattern, l core.Lang) []string {
	start, end, err := mistakeTableSpan(readme, l)
	if err != nil {
		return []string{err.Error()}
	}
	if readme[start:end] != renderMistakeTable(list, l) {
		return []string{"the common-mistakes table is not the one antipatterns.json makes: run `go run ./internal/kata tables` to write it"}
	}
	return nil
}

// checkDayMistakeTable runs checkMistakeTable on each of a day's
// READMEs, naming the file of each problem.
func checkDayMistakeTable(d core.Day, list []core.Antipattern) []string {
	return d.ReadmeProblems(func(readme string, l core.Lang) []string { return checkMistakeTable(readme, list, l) })
}

// CmdTables writes the common-mistakes table of each day's READMEs from
// its antipatterns.json, and their hints from its kata.json.
func CmdTables(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	days, err := r.Days(inv.Day)
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	for _, d := range days {
		list, err := core.LoadAntipatterns(d)
		if err != nil {
			return err
		}
		for _, l := range core.Langs {
			if err := writeMistakeTable(d, list, l); err != nil {
				return err
			}
		}
		changed, err := core.WriteDayHints(d)
		switch {
		case err != nil:
			return err
		case changed:
			fmt.Printf("%s: wrote the hints (%d)\n", d.Dir, len(d.Kata.Hints))
		default:
			fmt.Printf("%s: the hints are up to date\n", d.Dir)
		}
	}
	return nil
}

// writeMistakeTable writes the common-mistakes table of a day's README in l.
func writeMistakeTable(d core.Day, list []core.Antipattern, l core.Lang) error {
	path := filepath.Join(d.Path, l.Readme())
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	readme := string(data)
	start, end, err := mistakeTableSpan(readme, l)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	updated := readme[:start] + renderMistakeTable(list, l) + readme[end:]
	if updated == readme {
		fmt.Printf("%s/%s: the common-mistakes table is up to date\n", d.Dir, l.Readme())
		return nil
	}
	if err := os.WriteFile(path, []byte(updated), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s/%s: wrote the common-mistakes table (%d mistakes)\n", d.Dir, l.Readme(), len(list))
	return nil
}
