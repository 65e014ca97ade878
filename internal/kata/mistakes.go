package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// mistakesHeading opens the section of a lesson README whose table names,
// for each common mistake, the tests that catch it.
const mistakesHeading = "## Common mistakes"

// codeSpan matches one `code span` of a Markdown line.
var codeSpan = regexp.MustCompile("`([^`]+)`")

// mistakeTableTests returns the test names in the last column of the
// README's common-mistakes table, in order, without repeats.
func mistakeTableTests(readme string) ([]string, error) {
	_, section, ok := strings.Cut(readme, "\n"+mistakesHeading)
	if !ok {
		return nil, fmt.Errorf("no %q section", mistakesHeading)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next]
	}
	var tests []string
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		last := cells[len(cells)-1]
		rows++
		for _, m := range codeSpan.FindAllStringSubmatch(last, -1) {
			if strings.HasPrefix(m[1], "Test") || strings.HasPrefix(m[1], "Fuzz") {
				if !slices.Contains(tests, m[1]) {
					tests = append(tests, m[1])
				}
			}
		}
	}
	if rows == 0 {
		return nil, fmt.Errorf("the %q section holds no table", mistakesHeading)
	}
	return tests, nil
}

// checkMistakeTable compares the README's table with the planted
// mistakes: every test a mistake names as catching it is in the table,
// and the table names no test that no planted mistake proves.
func checkMistakeTable(readme string, list []antipattern) []string {
	inTable, err := mistakeTableTests(readme)
	if err != nil {
		return []string{err.Error()}
	}
	var proven []string
	for _, ap := range list {
		for _, name := range ap.CaughtBy {
			if !slices.Contains(proven, name) {
				proven = append(proven, name)
			}
		}
	}
	var problems []string
	for _, name := range proven {
		if !slices.Contains(inTable, name) {
			problems = append(problems, fmt.Sprintf("%s catches a planted mistake (antipatterns.json) but is missing from the README's common-mistakes table", name))
		}
	}
	for _, name := range inTable {
		if !slices.Contains(proven, name) {
			problems = append(problems, fmt.Sprintf("the README's common-mistakes table names %s, which no planted mistake in antipatterns.json proves", name))
		}
	}
	return problems
}

// checkDayMistakeTable reads a day's README and runs checkMistakeTable.
func checkDayMistakeTable(d day, list []antipattern) []string {
	readme, err := os.ReadFile(filepath.Join(d.path, "README.md"))
	if err != nil {
		return []string{err.Error()}
	}
	return checkMistakeTable(string(readme), list)
}
