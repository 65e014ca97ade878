package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"

	"github.com/stretchr/testify/require"
)

// Every command the runner and the lessons' programs print for a reader
// to run (a suggestion after a failure, a usage line, a next step) must
// work as printed. The servers' banners are run for real by the grpcurl
// stage (runPrintedCommands); the commands in the Go sources are checked
// here against the Makefile's targets and variables and the runner's own
// parser.

var (
	// printedMake matches "make TARGET [VAR=VALUE ...]".
	printedMake = regexp.MustCompile(`\bmake ([a-z]+)((?: [A-Z]+=[^\s\x60'")\]]+)*)`)
	// proseAfterMake are the words that follow "make" in a sentence
	// rather than in a command ("make it longer").
	proseAfterMake = []string{"it", "sure", "the", "a", "them", "that", "this"}
	// printedKata matches "go run ./internal/kata COMMAND [ARGS]" up to
	// the end of the command's line or quote.
	printedKata = regexp.MustCompile(`go run \./internal/kata ([a-z]+)([^\n\x60'")]*)`)
	// formatVerb is a fmt verb standing for a day, a task or a name.
	formatVerb = regexp.MustCompile(`%[-+# 0]*[0-9]*[sdvq]`)
)

// printedStrings returns every string literal in the non-test Go files
// under dirs, by file:line.
func printedStrings(t *testing.T, root string, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		require.NoError(t, err)
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			require.NoError(t, err)
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						pos := fset.Position(lit.Pos())
						rel, _ := filepath.Rel(root, pos.Filename)
						out[fmt.Sprintf("%s:%d", rel, pos.Line)] = s
					}
				}
				return true
			})
		}
	}
	return out
}

// sample puts a day and a task where a format verb or a placeholder
// stands, and drops the optional parts of a synopsis ("[-v]").
func sample(args string) []string {
	args = formatVerb.ReplaceAllString(args, "48")
	args = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(args, "")
	var out []string
	for _, f := range strings.Fields(args) {
		switch {
		case f == "N" || f == "DAY":
			f = "48"
		case f == "NAME" || f == "ID":
			f = "x"
		case strings.HasSuffix(f, "=N"):
			f = strings.TrimSuffix(f, "N") + "48"
		}
		out = append(out, f)
	}
	return out
}

func TestPrintedCommandsWork(t *testing.T) {
	root := filepath.Join("..", "..")
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z]+):`).FindAllSubmatch(makefile, -1) {
		targets[string(m[1])] = true
	}
	variables := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z]+) \?=`).FindAllSubmatch(makefile, -1) {
		variables[string(m[1])] = true
	}
	require.True(t, targets["hint"] && variables["DAY"], "the Makefile's targets and variables were not found")

	dirs := []string{"internal/kata"}
	rooms, err := filepath.Glob(filepath.Join(root, "internal", "kata", "*", "*.go"))
	require.NoError(t, err)
	for _, f := range rooms {
		if rel, _ := filepath.Rel(root, filepath.Dir(f)); !slices.Contains(dirs, rel) {
			dirs = append(dirs, rel)
		}
	}
	days, err := filepath.Glob(filepath.Join(root, "day*_*"))
	require.NoError(t, err)
	for _, d := range days {
		dirs = append(dirs, filepath.Base(d))
	}
	texts := printedStrings(t, root, dirs...)
	texts["Makefile"] = string(makefile)

	var problems []string
	checked := 0
	for where, text := range texts {
		for _, m := range printedMake.FindAllStringSubmatch(text, -1) {
			if slices.Contains(proseAfterMake, m[1]) {
				continue
			}
			checked++
			if !targets[m[1]] {
				problems = append(problems, fmt.Sprintf("%s: %q: the Makefile has no target %q", where, m[0], m[1]))
			}
			for _, assign := range strings.Fields(m[2]) {
				if name, _, _ := strings.Cut(assign, "="); !variables[name] {
					problems = append(problems, fmt.Sprintf("%s: %q: the Makefile reads no variable %s", where, m[0], name))
				}
			}
		}
		for _, m := range printedKata.FindAllStringSubmatch(text, -1) {
			checked++
			cmd, ok := findCommand(m[1])
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: %q: the runner has no command %q", where, m[0], m[1]))
				continue
			}
			if _, err := core.ParseInvocation(cmd, sample(m[2])); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %q: %v", where, m[0], err))
			}
		}
	}
	slices.Sort(problems)
	require.Empty(t, problems, "printed commands that would not work as printed")
	require.Greater(t, checked, 10, "printed commands found, want every make and runner command the sources print")
}
