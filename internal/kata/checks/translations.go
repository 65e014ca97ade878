package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// The lessons are taught in English and in Japanese: every README.md has
// a README.ja.md beside it, written for its readers rather than glossed
// sentence by sentence, so the check cannot compare the prose. It
// compares what both must share, section by section: the headings'
// levels and code, the command and code blocks (their comments may be
// translated), the markers of checked blocks, and the tables' sizes. The
// generated sections (hints, common mistakes) are checked exactly by the
// antipatterns check, in both languages.

// mdSection is one heading of a README and what follows it up to the next.
type mdSection struct {
	heading string   // the heading line
	level   int      // its number of #
	code    []string // the code spans of the heading
	blocks  []string // its fenced blocks, comments stripped
	markers []string // its HTML comment lines
	rows    []int    // the row count of each of its tables
}

var (
	headingLine = regexp.MustCompile(`^(#{1,6}) `)
	codeSpan    = regexp.MustCompile("`+[^`]+`+")
	// A shell comment: a line that starts with "# " (never "#>", the
	// expected output) or a " # " after a command; a Go or proto comment.
	shellComment = regexp.MustCompile(`(^# .*$|\s+# .*$)`)
	slashComment = regexp.MustCompile(`\s*//.*$`)
)

// parseSections splits a README into its sections; the text before the
// first heading is not one.
func parseSections(readme string) []mdSection {
	var sections []mdSection
	var fence, info string
	var block []string
	tableRows := 0
	endTable := func() {
		if tableRows > 0 && len(sections) > 0 {
			s := &sections[len(sections)-1]
			s.rows = append(s.rows, tableRows)
		}
		tableRows = 0
	}
	for _, line := range strings.Split(readme, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if trimmed == fence {
				if len(sections) > 0 {
					s := &sections[len(sections)-1]
					s.blocks = append(s.blocks, info+"\n"+strings.Join(block, "\n"))
				}
				fence, block = "", nil
				continue
			}
			block = append(block, stripComment(info, line))
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			endTable()
			fence = trimmed[:strings.LastIndex(trimmed, "`")+1]
			info = strings.TrimPrefix(trimmed, fence)
			continue
		}
		if strings.HasPrefix(trimmed, "|") {
			tableRows++
			continue
		}
		endTable()
		if m := headingLine.FindStringSubmatch(line); m != nil {
			sections = append(sections, mdSection{heading: line, level: len(m[1]), code: codeSpan.FindAllString(line, -1)})
			continue
		}
		if strings.HasPrefix(trimmed, "<!--") && len(sections) > 0 {
			s := &sections[len(sections)-1]
			s.markers = append(s.markers, trimmed)
		}
	}
	endTable()
	return sections
}

// stripComment removes the comment of one line of a fenced block whose
// info string is info, and the spaces before it.
func stripComment(info, line string) string {
	switch info {
	case "go", "proto":
		return slashComment.ReplaceAllString(line, "")
	case "sh", "bash", "console", "":
		if strings.HasPrefix(strings.TrimSpace(line), "#>") {
			return line
		}
		if m := core.ExitDirective.FindString(line); m != "" {
			return m // what the check reads; its explanation may be translated
		}
		return shellComment.ReplaceAllString(line, "")
	}
	return line
}

// compareTranslation lists how translated (README.ja.md) fails to keep in
// step with original (README.md), naming the section of each difference.
func compareTranslation(original, translated string, names [2]string) []string {
	en, ja := parseSections(original), parseSections(translated)
	var problems []string
	if len(en) != len(ja) {
		problems = append(problems, fmt.Sprintf("%s has %d sections, %s %d: the first difference below is where one is missing", names[0], len(en), names[1], len(ja)))
	}
	for i := range max(len(en), len(ja)) {
		if i >= len(en) {
			problems = append(problems, fmt.Sprintf("%s has a section that %s lacks: %q", names[1], names[0], ja[i].heading))
			break
		}
		if i >= len(ja) {
			problems = append(problems, fmt.Sprintf("%s lacks the section %q", names[1], en[i].heading))
			break
		}
		e, j := en[i], ja[i]
		where := fmt.Sprintf("section %q (%s: %q)", e.heading, names[1], j.heading)
		if e.level != j.level || !slices.Equal(e.code, j.code) {
			problems = append(problems, fmt.Sprintf("%s: the headings differ in level or code; the sections are not in the same order", where))
			break // the rest would only repeat the shift
		}
		if !slices.Equal(e.blocks, j.blocks) {
			problems = append(problems, fmt.Sprintf("%s: the code and command blocks differ (%d in %s, %d in %s; compared without comments)%s",
				where, len(e.blocks), names[0], len(j.blocks), names[1], firstBlockDiff(e.blocks, j.blocks)))
		}
		if !slices.Equal(e.markers, j.markers) {
			problems = append(problems, fmt.Sprintf("%s: the <!-- --> markers differ: %q in %s, %q in %s", where, e.markers, names[0], j.markers, names[1]))
		}
		if !slices.Equal(e.rows, j.rows) {
			problems = append(problems, fmt.Sprintf("%s: the tables differ: rows %v in %s, %v in %s", where, e.rows, names[0], j.rows, names[1]))
		}
	}
	return problems
}

// firstBlockDiff quotes the first line that differs between two lists of
// blocks.
func firstBlockDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		al, bl := strings.Split(a[i], "\n"), strings.Split(b[i], "\n")
		for k := range max(len(al), len(bl)) {
			var x, y string
			if k < len(al) {
				x = al[k]
			}
			if k < len(bl) {
				y = bl[k]
			}
			if x != y {
				return fmt.Sprintf(": block %d, line %d: %q against %q", i+1, k, x, y)
			}
		}
	}
	return ""
}

// readmePairs lists the READMEs that must exist in both languages: the
// root one and each day's.
func readmePairs(r *core.Repo, days []core.Day) []string {
	dirs := []string{r.Root}
	for _, d := range days {
		dirs = append(dirs, d.Path)
	}
	return dirs
}

// checkTranslations runs compareTranslation on every README and its
// Japanese twin.
func checkTranslations(ctx context.Context, r *core.Repo) error {
	days, err := r.Days("")
	if err != nil {
		return err
	}
	dirs := readmePairs(r, days)
	var problems []string
	for _, dir := range dirs {
		rel, _ := filepath.Rel(r.Root, dir)
		en, errEn := os.ReadFile(filepath.Join(dir, core.English.Readme()))
		ja, errJa := os.ReadFile(filepath.Join(dir, core.Japanese.Readme()))
		if err := errors.Join(errEn, errJa); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		names := [2]string{filepath.Join(rel, core.English.Readme()), filepath.Join(rel, core.Japanese.Readme())}
		problems = append(problems, compareTranslation(string(en), string(ja), names)...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the two languages are not in step:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Printf("%d READMEs are in step with their Japanese twins\n", len(dirs))
	return nil
}
