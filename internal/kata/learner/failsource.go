package learner

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// failurePlace matches the file:line a failing test's first message
// starts with, as go test prints it: "upload_test.go:285: ...".
var failurePlace = regexp.MustCompile(`^\s*([\w.-]+_test\.go):(\d+):`)

// assertionSource returns the lines of the day's test file around the
// place the failure message names: the assertion that failed, with the
// lines before it that set it up. ok is false when the message names no
// test file of the day.
func assertionSource(d core.Day, message []string) (file string, line int, src []string, ok bool) {
	for _, m := range message {
		match := failurePlace.FindStringSubmatch(m)
		if match == nil {
			continue
		}
		n, err := strconv.Atoi(match[2])
		if err != nil {
			return "", 0, nil, false
		}
		lines, err := readLines(filepath.Join(d.Path, match[1]))
		if err != nil || n < 1 || n > len(lines) {
			return "", 0, nil, false
		}
		from := max(1, n-4)
		for i := from; i <= min(len(lines), n+1); i++ {
			mark := "  "
			if i == n {
				mark = "> "
			}
			src = append(src, fmt.Sprintf("%s%4d  %s", mark, i, strings.ReplaceAll(lines[i-1], "\t", "    ")))
		}
		return match[1], n, src, true
	}
	return "", 0, nil, false
}

// contractPlaces says where a task's contract is written: the doc
// comment of each of its functions in main.go, and its README section.
func contractPlaces(l core.Lang, d core.Day, t core.Task) []string {
	lines, _ := readLines(filepath.Join(d.Path, "main.go"))
	var places []string
	for _, fn := range t.Functions {
		// F is declared as "func F(", T.M as "func (r *T) M(".
		decl := `^func ` + regexp.QuoteMeta(fn) + `\(`
		if typ, method, ok := strings.Cut(fn, "."); ok {
			decl = `^func \(\w+ \*?` + regexp.QuoteMeta(typ) + `\) ` + regexp.QuoteMeta(method) + `\(`
		}
		declRE := regexp.MustCompile(decl)
		place := words.docComment.F(l, fn, filepath.Join(d.Dir, "main.go"))
		for i, line := range lines {
			if declRE.MatchString(line) {
				place = words.docCommentAbove.F(l, fn, filepath.Join(d.Dir, "main.go"), i+1)
				break
			}
		}
		places = append(places, place)
	}
	return append(places, words.readmeSection.F(l, filepath.Join(d.Dir, l.Readme()), t.ID))
}

// printFailureSource prints, for a failure no hint names, the assertion
// that failed and where the task's contract is.
func printFailureSource(w io.Writer, l core.Lang, d core.Day, t core.Task, message []string) {
	if file, line, src, ok := assertionSource(d, message); ok {
		fmt.Fprint(w, words.failedAt.F(l, filepath.Join(d.Dir, file), line))
		for _, s := range src {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	fmt.Fprintln(w, words.contractAt.In(l))
	for _, p := range contractPlaces(l, d, t) {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}
