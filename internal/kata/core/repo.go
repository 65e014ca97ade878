package core

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

// Repo is the repository the runner works on.
type Repo struct {
	Root string // absolute path of the directory holding go.mod

	raceOnce  sync.Once
	raceFlags []string
}

// Day is one lesson folder.
type Day struct {
	Dir  string // folder name relative to the root, e.g. day48_client_streaming
	Path string // absolute path
	Num  string // the number in the folder name, e.g. "48"
	Kata *KataManifest
}

// SolutionDir is the hidden folder holding the day's reference files.
func (d Day) SolutionDir() string { return filepath.Join(d.Path, ".solution") }

// Pkg is the day's package pattern for the go command, relative to the root.
func (d Day) Pkg() string { return "./" + d.Dir }

// FindRoot returns the repository root: dir when given, else the directory
// of the go.mod the go command finds from the current directory.
func FindRoot(ctx context.Context, dir string) (string, error) {
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

// DayDirs lists the lesson folders: every day*_* folder with a kata.json,
// sorted by name.
func (r *Repo) DayDirs() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(r.Root, "day*_*", "kata.json"))
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

// Days returns the day named by arg ("48", "day48", "day48_client_streaming",
// "./day48_client_streaming/"), or every day when arg is empty, with their
// manifests loaded.
func (r *Repo) Days(arg string) ([]Day, error) {
	dirs, err := r.DayDirs()
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
	days := make([]Day, 0, len(dirs))
	for _, dir := range dirs {
		d := Day{Dir: dir, Path: filepath.Join(r.Root, dir), Num: dayNumber(dir)}
		d.Kata, err = LoadKata(filepath.Join(d.Path, "kata.json"))
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

// Race returns the flags that turn on the race detector, or none when it
// cannot work here: -race needs cgo, and cgo needs a C compiler, which a
// machine with only Go installed lacks. It says so once rather than fail.
func (r *Repo) Race(ctx context.Context) []string {
	r.raceOnce.Do(func() {
		cmd := exec.CommandContext(ctx, "go", "env", "CGO_ENABLED")
		cmd.Dir = r.Root
		out, err := cmd.Output()
		if err == nil && string(bytes.TrimSpace(out)) == "1" {
			r.raceFlags = []string{"-race"}
			return
		}
		fmt.Println("note: -race needs cgo and a C compiler; `go env CGO_ENABLED` is not 1 here, so tests run without the race detector")
	})
	return r.raceFlags
}
