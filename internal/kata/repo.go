package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// repo is the repository the runner works on.
type repo struct {
	root string // absolute path of the directory holding go.mod

	raceOnce  sync.Once
	raceFlags []string
}

// day is one lesson folder.
type day struct {
	dir  string // folder name relative to the root, e.g. day48_client_streaming
	path string // absolute path
	num  string // the number in the folder name, e.g. "48"
	kata *kataManifest
}

// solutionDir is the hidden folder holding the day's reference files.
func (d day) solutionDir() string { return filepath.Join(d.path, ".solution") }

// pkg is the day's package pattern for the go command, relative to the root.
func (d day) pkg() string { return "./" + d.dir }

// findRoot returns the repository root: dir when given, else the directory
// of the go.mod the go command finds from the current directory.
func findRoot(ctx context.Context, dir string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			return "", fmt.Errorf("-root %s: no go.mod there", dir)
		}
		return abs, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the repository or pass -root DIR")
	}
	return filepath.Dir(gomod), nil
}

// dayDirs lists the lesson folders: every day*_* folder with a kata.json,
// sorted by name.
func (r *repo) dayDirs() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(r.root, "day*_*", "kata.json"))
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(matches))
	for _, m := range matches {
		dirs = append(dirs, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(dirs)
	return dirs, nil
}

// days returns the day named by arg ("48", "day48", "day48_client_streaming",
// "./day48_client_streaming/"), or every day when arg is empty, with their
// manifests loaded.
func (r *repo) days(arg string) ([]day, error) {
	dirs, err := r.dayDirs()
	if err != nil {
		return nil, err
	}
	if arg != "" {
		dir, err := selectDay(dirs, arg)
		if err != nil {
			return nil, err
		}
		dirs = []string{dir}
	}
	days := make([]day, 0, len(dirs))
	for _, dir := range dirs {
		d := day{dir: dir, path: filepath.Join(r.root, dir), num: dayNumber(dir)}
		d.kata, err = loadKata(filepath.Join(d.path, "kata.json"))
		if err != nil {
			return nil, err
		}
		days = append(days, d)
	}
	return days, nil
}

// selectDay finds the folder among dirs that arg names.
func selectDay(dirs []string, arg string) (string, error) {
	want := strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(arg), "./"), "/")
	wantNum, numErr := strconv.Atoi(strings.TrimPrefix(want, "day"))
	for _, dir := range dirs {
		if want == dir {
			return dir, nil
		}
		// 48, day48, and 1 for day01.
		if n, err := strconv.Atoi(dayNumber(dir)); err == nil && numErr == nil && n == wantNum {
			return dir, nil
		}
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("no day %q: there are no day*_*/kata.json folders", arg)
	}
	return "", fmt.Errorf("no day %q; the days are %s", arg, strings.Join(dirs, ", "))
}

// dayNumber returns the number in a folder name: "48" for
// day48_client_streaming.
func dayNumber(dir string) string {
	n, _, _ := strings.Cut(strings.TrimPrefix(dir, "day"), "_")
	return n
}

// race returns the flags that turn on the race detector, or none when it
// cannot work here: -race needs cgo, and cgo needs a C compiler, which a
// machine with only Go installed lacks. It says so once rather than fail.
func (r *repo) race(ctx context.Context) []string {
	r.raceOnce.Do(func() {
		cmd := exec.CommandContext(ctx, "go", "env", "CGO_ENABLED")
		cmd.Dir = r.root
		out, err := cmd.Output()
		if err == nil && string(bytes.TrimSpace(out)) == "1" {
			r.raceFlags = []string{"-race"}
			return
		}
		fmt.Println("note: -race needs cgo and a C compiler; `go env CGO_ENABLED` is not 1 here, so tests run without the race detector")
	})
	return r.raceFlags
}
