package checks

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const enReadme = "# Day 1: a lesson\n\nEnglish | [日本語](README.ja.md)\n\nIntro.\n\n" +
	"```sh\nmake progress           # which tasks are done\nmake test DAY=1\n```\n\n" +
	"## Concepts\n\nText.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n" +
	"### Task 1: `parse`\n\nRules.\n\n<!-- checked: grpcurl -->\n```sh\ngrpcurl -plaintext 127.0.0.1:1 list\n#> svc.v1.S\n# exit status 80 (64 + Unauthenticated)\n```\n\n" +
	"```go\nfor { // receive\n\tmsg, err := stream.Recv()\n}\n```\n"

const jaReadme = "# Day 1: ある課題\n\n[English](README.md) | 日本語\n\n前書き。\n\n" +
	"```sh\nmake progress           # どの課題が終わったか\nmake test DAY=1\n```\n\n" +
	"## 概念\n\n本文。\n\n| あ | い |\n|---|---|\n| 1 | 2 |\n\n" +
	"### 課題 1: `parse`\n\n規則。\n\n<!-- checked: grpcurl -->\n```sh\ngrpcurl -plaintext 127.0.0.1:1 list\n#> svc.v1.S\n# exit status 80 (64 + 16。Unauthenticated のコード)\n```\n\n" +
	"```go\nfor { // 受信する\n\tmsg, err := stream.Recv()\n}\n```\n"

var names = [2]string{"README.md", "README.ja.md"}

func TestCompareTranslation(t *testing.T) {
	require.Empty(t, compareTranslation(enReadme, jaReadme, names), "a faithful translation whose comments are Japanese")

	tests := []struct {
		name      string
		edit      func(ja string) string
		wantIn    string // the section named
		wantWhat  string // what differs
		wantCount int
	}{
		{"a section only in English", func(ja string) string {
			return strings.Replace(ja, "## 概念\n\n本文。\n\n| あ | い |\n|---|---|\n| 1 | 2 |\n\n", "", 1)
		}, "## Concepts", "the headings differ", 2},
		{"a section only in Japanese", func(ja string) string { return ja + "\n## 付録\n\n本文。\n" }, "## 付録", "has a section that README.md lacks", 2},
		{"a missing last section", func(ja string) string { return ja[:strings.Index(ja, "### 課題 1")] }, "### Task 1: `parse`", "lacks the section", 2},
		{"a heading's code changed", func(ja string) string { return strings.Replace(ja, "`parse`", "`Parse`", 1) }, "### Task 1: `parse`", "the headings differ", 1},
		{"a command changed", func(ja string) string { return strings.Replace(ja, "make test DAY=1", "make test DAY=2", 1) }, "# Day 1: a lesson", "the code and command blocks differ", 1},
		{"a command missing", func(ja string) string { return strings.Replace(ja, "\nmake test DAY=1", "", 1) }, "# Day 1: a lesson", "the code and command blocks differ", 1},
		{"an exit status changed", func(ja string) string { return strings.Replace(ja, "# exit status 80 (", "# exit status 81 (", 1) }, "### Task 1: `parse`", "block 1, line 3", 1},
		{"expected output changed", func(ja string) string { return strings.Replace(ja, "#> svc.v1.S", "#> svc.v1.T", 1) }, "### Task 1: `parse`", "block 1, line 2", 1},
		{"a code line changed", func(ja string) string { return strings.Replace(ja, "stream.Recv()", "stream.Recv(ctx)", 1) }, "### Task 1: `parse`", "the code and command blocks differ", 1},
		{"a checked marker dropped", func(ja string) string { return strings.Replace(ja, "<!-- checked: grpcurl -->\n", "", 1) }, "### Task 1: `parse`", "markers differ", 1},
		{"a table only in English", func(ja string) string { return strings.Replace(ja, "| あ | い |\n|---|---|\n| 1 | 2 |\n", "", 1) }, "## Concepts", "the tables differ", 1},
		{"a table row missing", func(ja string) string { return strings.Replace(ja, "| 1 | 2 |\n", "", 1) }, "## Concepts", "rows [3] in README.md, [2] in README.ja.md", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := compareTranslation(enReadme, tt.edit(jaReadme), names)
			require.Len(t, problems, tt.wantCount, "problems: %q", problems)
			if tt.wantCount == 2 {
				assert.Contains(t, problems[0], "sections", "the section counts, first")
			}
			last := problems[len(problems)-1]
			assert.Contains(t, last, tt.wantIn, "the section named")
			assert.Contains(t, last, tt.wantWhat)
		})
	}
}

func TestStripComment(t *testing.T) {
	assert.Equal(t, "make watch DAY=48", stripComment("sh", "make watch DAY=48            # re-runs your task"))
	assert.Equal(t, "#> grpc.health.v1.Health", stripComment("sh", "#> grpc.health.v1.Health"), "expected output is not a comment")
	assert.Equal(t, "# exit status 80", stripComment("sh", "# exit status 80 (64 + Unauthenticated)"), "the status is compared, its explanation is not")
	assert.Equal(t, "", stripComment("sh", "# start the server first"))
	assert.Equal(t, "\tmsg, err := stream.Recv()", stripComment("go", "\tmsg, err := stream.Recv() // check msg"))
	assert.Equal(t, "rpc Upload(stream Chunk) returns (Result); # not a comment in proto", stripComment("proto", "rpc Upload(stream Chunk) returns (Result); # not a comment in proto"))
}
