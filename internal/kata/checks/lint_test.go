package checks

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCompareTrees(t *testing.T) {
	tmp := t.TempDir()
	committed, generated := filepath.Join(tmp, "repo", "pb"), filepath.Join(tmp, "gen", "pb")
	writeTree(t, committed, map[string]string{
		"upload.pb.go":      "same",
		"upload_grpc.pb.go": "old",
		"stale.pb.go":       "gone from proto/",
		"sub/deep.pb.go":    "same",
	})
	writeTree(t, generated, map[string]string{
		"upload.pb.go":      "same",
		"upload_grpc.pb.go": "new",
		"chat.pb.go":        "new file",
		"sub/deep.pb.go":    "same",
	})
	got, err := compareTrees(committed, generated)
	if err != nil {
		t.Fatalf("compareTrees error = %v", err)
	}
	want := []string{
		"pb/chat.pb.go: missing (generation produces it)",
		"pb/stale.pb.go: not produced by generation",
		"pb/upload_grpc.pb.go: differs from the generated file",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("compareTrees = %q, want %q", got, want)
	}

	same, err := compareTrees(generated, generated)
	if err != nil || len(same) != 0 {
		t.Errorf("compareTrees(a tree, itself) = %q, %v; want no differences", same, err)
	}
}

func TestCompareTreesMissingFolders(t *testing.T) {
	tmp := t.TempDir()
	generated := filepath.Join(tmp, "gen", "pb")
	writeTree(t, generated, map[string]string{"upload.pb.go": "x"})

	got, err := compareTrees(filepath.Join(tmp, "repo", "pb"), generated)
	if want := []string{"pb/upload.pb.go: missing (generation produces it)"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("compareTrees(no pb/) = %q, %v; want %q", got, err, want)
	}

	got, err = compareTrees(generated, filepath.Join(tmp, "nothing", "pb"))
	want := []string{
		"generation produced no pb/ folder (check buf.gen.yaml)",
		"pb/upload.pb.go: not produced by generation",
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("compareTrees(nothing generated) = %q, %v; want %q", got, err, want)
	}
}
