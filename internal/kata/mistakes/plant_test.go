package mistakes

import (
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMinimalEdits(t *testing.T) {
	ref := "func a() {\n\tx := 1\n\treturn x\n}\n\nfunc b() {\n\tx := 1\n\treturn x\n}\n"
	for _, tc := range []struct {
		name, edited string
		edits        int
		maxFindLines int // the longest find text, in lines
	}{
		{"A line that occurs twice gets context", strings.Replace(ref, "func b() {\n\tx := 1", "func b() {\n\tx := 2", 1), 1, 2},
		{"A unique line needs none", strings.Replace(ref, "func a() {", "func a() { // changed", 1), 1, 1},
		{"An inserted line", strings.Replace(ref, "func b() {\n", "func b() {\n\tpanic(0)\n", 1), 1, 1},
		{"A deleted line", strings.Replace(ref, "func b() {\n\tx := 1\n", "func b() {\n", 1), 1, 2},
		{"Two changes far apart", strings.Replace(strings.Replace(ref, "func a() {", "func a() { // 1", 1), "func b() {", "func b() { // 2", 1), 2, 1},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			edits, err := minimalEdits(ref, tc.edited)
			require.NoError(t, err)
			assert.Len(t, edits, tc.edits, "edits %q", edits)
			got, err := core.ApplyEdits(ref, edits)
			require.NoError(t, err, "applying the edits the way the runner does")
			assert.Equal(t, tc.edited, got, "the reference with the edits applied")
			for _, e := range edits {
				assert.LessOrEqual(t, strings.Count(strings.TrimSuffix(e.Find, "\n"), "\n")+1, tc.maxFindLines, "find %q is longer than it needs to be", e.Find)
			}
		})
	}
	_, err := minimalEdits(ref, ref)
	assert.Error(t, err, "an edited copy equal to the reference")
}

func TestFailureMessage(t *testing.T) {
	assert.Equal(t, `handle(x) = nil, want code InvalidArgument`, failureMessage(`    chat_test.go:123: handle(x) = nil, want code InvalidArgument`))
	assert.Equal(t, `panic: boom`, failureMessage(`panic: boom`))
	testify := []string{"    upload_test.go:45: ", "        \tError Trace:\t/work/x/upload_test.go:45", "        \tError:      \tReceived unexpected error:", "        \t            \trpc error: code = InvalidArgument"}
	assert.Equal(t, "", proposeSymptom(testify), "testify's report without a message of the test's own")
	assert.Equal(t, `validateFileName("a.txt")`, proposeSymptom(append(testify, "Messages: validateFileName(\"a.txt\")")), "testify's report with one")
	assert.Equal(t, "f() = 0, want 2", proposeSymptom([]string{"x_test.go:6: f() = 0, want 2"}))
	assert.Equal(t, "validateFileName(x)", proposeSymptom([]string{"upload_test.go:47:", "Error: Received unexpected error:", "rpc error: code = InvalidArgument", "Messages: validateFileName(x)"}), "testify's report as the runner keeps it")
}
