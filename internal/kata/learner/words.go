package learner

import (
	"fmt"
	"strings"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

// words are everything the learner's tools say in their own voice, in
// each language. Test failures, test names and commands are quoted as
// they are. TestWordsInEveryLanguage proves that each exists in both
// languages with the same verbs.
var words = struct {
	whichDay, noSuchTask, notCompiling, notInKata, whichTask    core.Text
	notCompilingLine                                            core.Text
	hintPasses, hintNeeds, noHintMatches                        core.Text
	notPassing, stillFailing, readFirst, notEarned, reference   core.Text
	stopped, passedOnTo, allPassWatching, watching, watchPasses core.Text
	needsFirst, stuck, otherName, otherSummary, noTestRan       core.Text
	tasksDone, nextCompile, allPass, nextRemaining, nextTask    core.Text
	oneTask, someTasks, failedAt, contractAt                    core.Text
	docComment, docCommentAbove, readmeSection                  core.Text
}{
	whichDay:     core.NewText("which day? name it: make hint DAY=48 TASK=2", "どの日の課題ですか? 指定してください: make hint DAY=48 TASK=2"),
	noSuchTask:   core.NewText("day %s has no task %q: its tasks are 1 to %d", "Day %s に課題 %q はありません。課題は 1 から %d までです"),
	notCompiling: core.NewText("the code does not compile yet:", "コードがまだコンパイルできません:"),
	// notCompilingLine starts a line of make progress.
	notCompilingLine: core.NewText("The code does not compile yet:", "コードがまだコンパイルできません:"),
	notInKata:        core.NewText("task %d is not in %s/kata.json", "課題 %d は %s/kata.json にありません"),
	whichTask:        core.NewText("which task? %s (make progress shows them)", "どの課題ですか? %s (課題の一覧は make progress で見られます)"),

	hintPasses:    core.NewText("Task %d passes. Compare with the reference: make solution DAY=%s TASK=%d\n", "課題 %d は通っています。参考実装と見比べるには: make solution DAY=%s TASK=%d\n"),
	hintNeeds:     core.NewText("Its tests call the code of %s, which does not pass yet: start there.\n", "この課題のテストは %s のコードを呼びますが、そちらがまだ通っていません。先にそちらから取り組んでください。\n"),
	noHintMatches: core.NewText("No hint matches this failure; the task's hints, from the gentlest to the most concrete:", "この失敗に合うヒントはありません。この課題のヒントを、控えめなものから具体的なものの順に示します:"),

	notPassing:   core.NewText("Task %d (%s) does not pass yet.", "課題 %d (%s) はまだ通っていません。"),
	stillFailing: core.NewText(" Still failing: %s.", "失敗しているテスト: %s。"),
	readFirst:    core.NewText("\nThe reference is for comparing once your own code works: reading it first skips the part that teaches.\nmake hint DAY=%s TASK=%d helps with the failure.\n", "\n参考実装は、自分のコードが動いてから見比べるためのものです。先に読むと、この課題でいちばん身につく部分を飛ばしてしまいます。\n失敗の手がかりは make hint DAY=%s TASK=%d で見られます。\n"),
	notEarned:    core.NewText("the reference is shown once your code passes the task", "参考実装は、あなたのコードがこの課題を通ってから表示されます"),
	reference:    core.NewText("// Task %d (%s) passes: the reference, from %s, to compare with yours.\n\n%s", "// 課題 %d (%s) は通っています。見比べるための参考実装です (%s より)。\n\n%s"),

	stopped:         core.NewText("\nStopped watching.", "\n監視を終了しました。"),
	passedOnTo:      core.NewText("Task %d passes! On to task %d.", "課題 %d が通りました! 次は課題 %d です。"),
	allPassWatching: core.NewText("Day %s: every task passes. Well done!\nWatching for changes (Ctrl+C to stop).\n", "Day %s: すべての課題が通りました。お疲れさまでした!\n変更を監視しています (Ctrl+C で終了)。\n"),
	watching:        core.NewText("Watching for changes (Ctrl+C to stop).", "変更を監視しています (Ctrl+C で終了)。"),
	watchPasses:     core.NewText("Task %d passes! Compare with the reference: make solution DAY=%s TASK=%d\n", "課題 %d が通りました! 参考実装と見比べるには: make solution DAY=%s TASK=%d\n"),

	needsFirst:   core.NewText("      needs %s first: its tests call that code\n", "      先に %s が必要です: この課題のテストがそのコードを呼びます\n"),
	stuck:        core.NewText("      stuck? make hint DAY=%s TASK=%d\n", "      行き詰まったら: make hint DAY=%s TASK=%d\n"),
	otherName:    core.NewText("other", "その他"),
	otherSummary: core.NewText("tests that belong to no task", "どの課題にも属さないテスト"),
	noTestRan:    core.NewText("no test of this task ran (did an earlier test crash the test binary?)", "この課題のテストが 1 つも実行されませんでした (前のテストがテストバイナリを落としていませんか?)"),

	tasksDone:     core.NewText("%d/%d tasks done.", "%d/%d 課題完了。"),
	nextCompile:   core.NewText(" Next: make it compile (make test DAY=%s)\n", "次: コンパイルを通す (make test DAY=%s)\n"),
	allPass:       core.NewText(" All tests pass: well done!\n", "すべてのテストが通りました。お疲れさまでした!\n"),
	nextRemaining: core.NewText(" Next: the remaining tests (make test DAY=%s RUN=%s)\n", "次: 残りのテスト (make test DAY=%s RUN=%s)\n"),
	nextTask:      core.NewText(" Next: task %d (make test DAY=%s RUN=%s)\n", "次: 課題 %d (make test DAY=%s RUN=%s)\n"),

	oneTask:    core.NewText("task %d", "課題 %d"),
	someTasks:  core.NewText("tasks %s and %s", "課題 %s と %s"),
	failedAt:   core.NewText("The assertion that failed, %s:%d:\n", "失敗したアサーション (%s:%d):\n"),
	contractAt: core.NewText("The rules it checks are in the task's contract:", "このテストが確かめる規則は、課題の契約に書いてあります:"),

	docComment:      core.NewText("the doc comment of %s in %s", "%s のドキュメントコメント (%s)"),
	docCommentAbove: core.NewText("the doc comment of %s, above %s:%d", "%s のドキュメントコメント (%s:%d の上)"),
	readmeSection:   core.NewText("%s, section \"Task %d\"", "%s の「課題 %d」の節"),
}

// taskList names tasks: "task 2", "tasks 2 and 4".
func taskList(l core.Lang, ids []int) string {
	if len(ids) == 1 {
		return words.oneTask.F(l, ids[0])
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = fmt.Sprint(id)
	}
	return words.someTasks.F(l, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// padRight pads s with spaces to w columns.
func padRight(s string, w int) string {
	return s + strings.Repeat(" ", max(0, w-core.Width(s)))
}
