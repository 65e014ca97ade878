package core

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLangFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Lang
	}{
		{"nothing set", nil, English},
		{"a Japanese LANG", map[string]string{"LANG": "ja_JP.UTF-8"}, Japanese},
		{"a Japanese LC_MESSAGES", map[string]string{"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "C.UTF-8"}, Japanese},
		{"a Japanese LC_ALL", map[string]string{"LC_ALL": "ja", "LANG": "en_US.UTF-8"}, Japanese},
		{"LC_ALL overrides LANG", map[string]string{"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, English},
		{"LC_MESSAGES overrides LANG", map[string]string{"LC_MESSAGES": "en_GB.UTF-8", "LANG": "ja_JP.UTF-8"}, English},
		{"an English LANG", map[string]string{"LANG": "en_US.UTF-8"}, English},
		{"KATA_LANG=ja over an English locale", map[string]string{"KATA_LANG": "ja", "LC_ALL": "en_US.UTF-8"}, Japanese},
		{"KATA_LANG=en over a Japanese locale", map[string]string{"KATA_LANG": "en", "LANG": "ja_JP.UTF-8"}, English},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LangFromEnv(func(k string) string { return tt.env[k] })
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := LangFromEnv(func(k string) string { return map[string]string{"KATA_LANG": "fr"}[k] })
	assert.ErrorContains(t, err, "KATA_LANG=fr: want ja or en")
}

func TestTextProblems(t *testing.T) {
	assert.Empty(t, TextProblems("ok", NewText("Task %d: %s", "課題 %d: %s")))
	assert.Equal(t, []string{"x: a language is missing"}, TextProblems("x", NewText("Task", "")))
	assert.Equal(t, []string{"x: the Japanese text is the English one"}, TextProblems("x", NewText("Task", "Task")))
	assert.Equal(t, []string{`x: verbs ["%d" "%s"] in English, ["%s" "%d"] in Japanese`}, TextProblems("x", NewText("%d %s", "%s %d")))
}

// TestTheRunnersTextsInEveryLanguage checks the words of this package
// that a learner reads: the README headings it writes and the hints'
// own sentences.
func TestTheRunnersTextsInEveryLanguage(t *testing.T) {
	for name, text := range map[string]Text{
		"hintsHeading": hintsHeading, "mistakesHeading": mistakesHeading, "mistakesHeader": mistakesHeader,
		"usuallyMeans": usuallyMeans, "taskIntro": taskIntro, "commonMistake": commonMistake,
	} {
		assert.Empty(t, TextProblems(name, text))
	}
}
