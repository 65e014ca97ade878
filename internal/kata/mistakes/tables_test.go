package mistakes

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

var tableList = []core.Antipattern{
	{Name: "a", Mistake: "no path check | at all", Symptom: "validateFileName(\"../x.txt\") = <nil>", CaughtBy: []string{"TestValidateFileName", "TestFileUpload/Rejects_path_traversal"}},
	{Name: "b", Mistake: "`SendAndClose` forgotten", Symptom: "a `quoted` symptom", CaughtBy: []string{"TestFileUpload/Small_file_upload"}},
}

const wantTable = "| mistake | what you see | caught by |\n|---|---|---|\n" +
	"| no path check \\| at all | `validateFileName(\"../x.txt\") = <nil>` | `TestValidateFileName`, `TestFileUpload/Rejects_path_traversal` |\n" +
	"| `SendAndClose` forgotten | ``a `quoted` symptom`` | `TestFileUpload/Small_file_upload` |\n"

func readmeWith(table string) string {
	return "# Day\n\n" + mistakesHeading + ", and the test that catches each\n\nIntro.\n\n" + table + "\n## Next\n\n| not | `TestElsewhere` |\n"
}

func TestRenderMistakeTable(t *testing.T) {
	if got := renderMistakeTable(tableList); got != wantTable {
		t.Errorf("renderMistakeTable =\n%s\nwant\n%s", got, wantTable)
	}
}

func TestCheckMistakeTable(t *testing.T) {
	if problems := checkMistakeTable(readmeWith(wantTable), tableList); len(problems) != 0 {
		t.Errorf("checkMistakeTable(the generated table) = %q, want none", problems)
	}
	stale := strings.Replace(wantTable, "Small_file_upload", "Empty_stream", 1)
	if problems := checkMistakeTable(readmeWith(stale), tableList); len(problems) != 1 || !strings.Contains(problems[0], "kata tables") {
		t.Errorf("checkMistakeTable(a stale table) = %q, want one problem that says how to write it", problems)
	}
	if problems := checkMistakeTable("# Day\n\nno table\n", tableList); len(problems) != 1 {
		t.Errorf("checkMistakeTable(no section) = %q, want one problem", problems)
	}
}

func TestMistakeTableSpan(t *testing.T) {
	readme := readmeWith(wantTable)
	start, end, err := mistakeTableSpan(readme)
	if err != nil || readme[start:end] != wantTable {
		t.Errorf("mistakeTableSpan = %q, %v; want the table of the section and nothing of the next one", readme[start:end], err)
	}
}
