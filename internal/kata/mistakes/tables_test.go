package mistakes

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

var tableList = []core.Antipattern{
	{Name: "a", Mistake: "no path check | at all", MistakeJa: "パスの検査が | まったくない", Symptom: "validateFileName(\"../x.txt\") = <nil>", CaughtBy: []string{"TestValidateFileName", "TestFileUpload/Rejects_path_traversal"}},
	{Name: "b", Mistake: "`SendAndClose` forgotten", MistakeJa: "`SendAndClose` を忘れている", Symptom: "a `quoted` symptom", CaughtBy: []string{"TestFileUpload/Small_file_upload"}},
}

const wantTable = "| mistake | what you see | caught by |\n|---|---|---|\n" +
	"| no path check \\| at all | `validateFileName(\"../x.txt\") = <nil>` | `TestValidateFileName`, `TestFileUpload/Rejects_path_traversal` |\n" +
	"| `SendAndClose` forgotten | ``a `quoted` symptom`` | `TestFileUpload/Small_file_upload` |\n"

// wantTableJa is the same table for README.ja.md: the mistakes and the
// header in Japanese, the symptoms and tests as go test prints them.
const wantTableJa = "| 間違い | 表示される内容 | 捕まえるテスト |\n|---|---|---|\n" +
	"| パスの検査が \\| まったくない | `validateFileName(\"../x.txt\") = <nil>` | `TestValidateFileName`, `TestFileUpload/Rejects_path_traversal` |\n" +
	"| `SendAndClose` を忘れている | ``a `quoted` symptom`` | `TestFileUpload/Small_file_upload` |\n"

func readmeWith(table string) string {
	return "# Day\n\n" + core.MistakesHeading(core.English) + ", and the test that catches each\n\nIntro.\n\n" + table + "\n## Next\n\n| not | `TestElsewhere` |\n"
}

func TestRenderMistakeTable(t *testing.T) {
	if got := renderMistakeTable(tableList, core.English); got != wantTable {
		t.Errorf("renderMistakeTable(English) =\n%s\nwant\n%s", got, wantTable)
	}
	if got := renderMistakeTable(tableList, core.Japanese); got != wantTableJa {
		t.Errorf("renderMistakeTable(Japanese) =\n%s\nwant\n%s", got, wantTableJa)
	}
}

func TestCheckMistakeTableJapanese(t *testing.T) {
	readme := "# Day\n\n" + core.MistakesHeading(core.Japanese) + "と、それを捕まえるテスト\n\n説明。\n\n" + wantTableJa + "\n## 次\n"
	if problems := checkMistakeTable(readme, tableList, core.Japanese); len(problems) != 0 {
		t.Errorf("checkMistakeTable(the generated Japanese table) = %q, want none", problems)
	}
	if problems := checkMistakeTable(readme, tableList, core.English); len(problems) != 1 {
		t.Errorf("checkMistakeTable(a Japanese README read as English) = %q, want one problem: it has no English section", problems)
	}
	english := "# Day\n\n" + core.MistakesHeading(core.Japanese) + "\n\n" + wantTable + "\n## 次\n"
	if problems := checkMistakeTable(english, tableList, core.Japanese); len(problems) != 1 {
		t.Errorf("checkMistakeTable(an English table in README.ja.md) = %q, want one problem", problems)
	}
}

func TestCheckMistakeTable(t *testing.T) {
	if problems := checkMistakeTable(readmeWith(wantTable), tableList, core.English); len(problems) != 0 {
		t.Errorf("checkMistakeTable(the generated table) = %q, want none", problems)
	}
	stale := strings.Replace(wantTable, "Small_file_upload", "Empty_stream", 1)
	if problems := checkMistakeTable(readmeWith(stale), tableList, core.English); len(problems) != 1 || !strings.Contains(problems[0], "kata tables") {
		t.Errorf("checkMistakeTable(a stale table) = %q, want one problem that says how to write it", problems)
	}
	if problems := checkMistakeTable("# Day\n\nno table\n", tableList, core.English); len(problems) != 1 {
		t.Errorf("checkMistakeTable(no section) = %q, want one problem", problems)
	}
}

func TestMistakeTableSpan(t *testing.T) {
	readme := readmeWith(wantTable)
	start, end, err := mistakeTableSpan(readme, core.English)
	if err != nil || readme[start:end] != wantTable {
		t.Errorf("mistakeTableSpan = %q, %v; want the table of the section and nothing of the next one", readme[start:end], err)
	}
}
