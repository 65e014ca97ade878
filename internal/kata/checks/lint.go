package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// CmdLint runs every static check: gofmt, go vet on the stubs and on the
// solutions, the protos (buf lint, pb/ up to date), and the READMEs in
// both languages (translations.go). It runs them all and then reports
// the ones that failed.
func CmdLint(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	checks := []struct {
		name string
		run  func(context.Context, *core.Repo) error
	}{
		{"gofmt", gofmt},
		{"go vet", vet},
		{"go vet with the solutions", vetSolutions},
		{"proto", protoCheck},
		{"README translations", checkTranslations},
	}
	var failed []string
	for _, c := range checks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Printf("--- %s\n", c.name)
		if err := c.run(ctx, r); err != nil {
			fmt.Printf("%s: FAILED: %v\n", c.name, err)
			failed = append(failed, c.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("lint failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// gofmt lists the .go files that gofmt would change, the hidden solutions
// included.
func gofmt(ctx context.Context, r *core.Repo) error {
	files, described, err := goFiles(ctx, r)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Println("no .go files")
		return nil
	}
	var out bytes.Buffer
	err = r.Run(ctx, core.RunOpts{Timeout: core.VetTimeout, Stdout: &out, Display: "gofmt -l " + described},
		gofmtPath(ctx), append([]string{"-l"}, files...)...)
	if err != nil {
		return err
	}
	if unformatted := strings.Fields(out.String()); len(unformatted) > 0 {
		return fmt.Errorf("not gofmt-formatted (run gofmt -w on them):\n  %s", strings.Join(unformatted, "\n  "))
	}
	return nil
}

// goFiles lists the .go files under the root, relative to it: those git
// tracks or could track (not ignored), or, without git, every one outside
// .git and .bin. It also describes the list for a printed command line.
func goFiles(ctx context.Context, r *core.Repo) (files []string, described string, err error) {
	if _, err := exec.LookPath("git"); err == nil {
		var out, stderr bytes.Buffer
		err := r.Run(ctx, core.RunOpts{Timeout: core.VetTimeout, Stdout: &out, Stderr: &stderr},
			"git", "ls-files", "-z", "-co", "--exclude-standard", "*.go")
		if err == nil {
			for _, f := range strings.Split(out.String(), "\x00") {
				// A tracked file deleted in the work tree is still listed.
				if _, err := os.Stat(filepath.Join(r.Root, f)); f != "" && err == nil {
					files = append(files, f)
				}
			}
			sort.Strings(files)
			return files, "$(git ls-files -co --exclude-standard '*.go')", nil
		}
		fmt.Printf("git ls-files failed (not a git work tree?); walking the folder instead\n")
	}
	err = filepath.WalkDir(r.Root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != r.Root && (d.Name() == ".git" || d.Name() == ".bin") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(path, ".go") {
			rel, err := filepath.Rel(r.Root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	return files, fmt.Sprintf("<%d .go files outside .git and .bin>", len(files)), err
}

// gofmtPath finds the gofmt that comes with the go command in use.
func gofmtPath(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err == nil {
		path := filepath.Join(strings.TrimSpace(string(out)), "bin", "gofmt")
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return "gofmt"
}

// vet runs go vet on the repository as the learner sees it.
func vet(ctx context.Context, r *core.Repo) error {
	return r.Run(ctx, core.RunOpts{Timeout: core.VetTimeout}, "go", "vet", "./...")
}

// vetSolutions runs go vet with every reference solution swapped in.
func vetSolutions(ctx context.Context, r *core.Repo) error {
	days, err := r.Days("")
	if err != nil || len(days) == 0 {
		return core.NoDays(err)
	}
	overlay, remove, err := core.ReferenceOverlay(days)
	if err != nil {
		return err
	}
	defer remove()
	return r.Run(ctx, core.RunOpts{Timeout: core.VetTimeout}, "go", "vet", "-overlay="+overlay, "./...")
}

// buildBuf builds the buf version pinned in tools/go.mod into .bin/buf and
// returns its path. The go command skips the build when .bin/buf is
// already up to date.
func buildBuf(ctx context.Context, r *core.Repo) (string, error) {
	if _, err := os.Stat(filepath.Join(r.Root, "tools", "go.mod")); err != nil {
		return "", fmt.Errorf("tools/go.mod, which pins buf, is missing: %w", err)
	}
	buf := filepath.Join(r.Root, ".bin", "buf")
	fmt.Println("building buf from tools/go.mod into .bin/buf (the first build downloads and compiles buf and can take several minutes; later ones take a second)")
	err := r.Run(ctx, core.RunOpts{Timeout: core.BufTimeout}, "go", "build", "-C", "tools", "-o", buf, "github.com/bufbuild/buf/cmd/buf")
	if err != nil {
		return "", fmt.Errorf("building buf: %w", err)
	}
	return buf, nil
}

// protoCheck lints the protos and checks that pb/ is exactly what a fresh
// generation from proto/ produces.
func protoCheck(ctx context.Context, r *core.Repo) error {
	if _, err := os.Stat(filepath.Join(r.Root, "buf.yaml")); errors.Is(err, fs.ErrNotExist) {
		fmt.Println("no buf.yaml at the root: no protos to check")
		return nil
	}
	buf, err := buildBuf(ctx, r)
	if err != nil {
		return err
	}
	if err := r.Run(ctx, core.RunOpts{Timeout: core.ProtoTimeout}, buf, "lint"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kata-proto-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := r.Run(ctx, core.RunOpts{Timeout: core.ProtoTimeout}, buf, "generate", "-o", tmp); err != nil {
		return err
	}
	diffs, err := compareTrees(filepath.Join(r.Root, "pb"), filepath.Join(tmp, "pb"))
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return fmt.Errorf("pb/ is not what proto/ generates:\n  %s\nrun make proto", strings.Join(diffs, "\n  "))
	}
	fmt.Println("pb/ matches a fresh generation from proto/")
	return nil
}

// compareTrees compares the committed tree with a freshly generated one,
// file by file and byte by byte, and describes each difference. A missing
// folder counts as empty.
func compareTrees(committed, generated string) ([]string, error) {
	want, err := readTree(generated)
	if err != nil {
		return nil, err
	}
	have, err := readTree(committed)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(committed)
	var diffs []string
	if len(want) == 0 {
		diffs = append(diffs, "generation produced no "+base+"/ folder (check buf.gen.yaml)")
	}
	for name, data := range want {
		old, ok := have[name]
		switch {
		case !ok:
			diffs = append(diffs, base+"/"+name+": missing (generation produces it)")
		case !bytes.Equal(old, data):
			diffs = append(diffs, base+"/"+name+": differs from the generated file")
		}
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, base+"/"+name+": not produced by generation")
		}
	}
	slices.Sort(diffs)
	return diffs, nil
}

// readTree reads every regular file under dir, keyed by slash-separated
// path relative to dir. A missing dir reads as empty.
func readTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	return files, err
}

// CmdProto lints the protos and regenerates pb/ in place.
func CmdProto(ctx context.Context, r *core.Repo, inv core.Invocation) error {
	buf, err := buildBuf(ctx, r)
	if err != nil {
		return err
	}
	if err := r.Run(ctx, core.RunOpts{Timeout: core.ProtoTimeout}, buf, "lint"); err != nil {
		return err
	}
	return r.Run(ctx, core.RunOpts{Timeout: core.ProtoTimeout}, buf, "generate")
}
