package main

import (
	"strings"
	"testing"
)

const readmeWithTable = "# Day\n\n" + mistakesHeading + ", and the test that catches each\n\n" +
	"| mistake | caught by |\n|---|---|\n" +
	"| no path check | `TestValidateFileName`, `TestFileUpload/Rejects_path_traversal` |\n" +
	"| `SendAndClose` forgotten | `TestFileUpload/Small_file_upload` |\n\n" +
	"## Next\n\n| not | `TestElsewhere` |\n"

func TestMistakeTableTests(t *testing.T) {
	got, err := mistakeTableTests(readmeWithTable)
	want := "TestValidateFileName TestFileUpload/Rejects_path_traversal TestFileUpload/Small_file_upload"
	if err != nil || strings.Join(got, " ") != want {
		t.Errorf("mistakeTableTests = %q, %v; want %q (the last column of that section only)", got, err, want)
	}
	if _, err := mistakeTableTests("# Day\n\nno table\n"); err == nil {
		t.Error("mistakeTableTests(no section) = nil error, want one")
	}
}

func TestCheckMistakeTable(t *testing.T) {
	list := []antipattern{
		{Name: "a", CaughtBy: []string{"TestValidateFileName", "TestFileUpload/Rejects_path_traversal"}},
		{Name: "b", CaughtBy: []string{"TestFileUpload/Small_file_upload"}},
	}
	if problems := checkMistakeTable(readmeWithTable, list); len(problems) != 0 {
		t.Errorf("checkMistakeTable(matching) = %q, want none", problems)
	}
	list[1].CaughtBy = []string{"TestFileUpload/Empty_stream"}
	problems := checkMistakeTable(readmeWithTable, list)
	want := []string{
		"TestFileUpload/Empty_stream catches a planted mistake (antipatterns.json) but is missing from the README's common-mistakes table",
		"the README's common-mistakes table names TestFileUpload/Small_file_upload, which no planted mistake in antipatterns.json proves",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("checkMistakeTable = %q, want %q", problems, want)
	}
}
