package core

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Lang is a language the lessons are taught in. Identifiers, doc
// comments and test failure messages are English in both; the READMEs,
// the hints, the planted mistakes' explanations and the learner's tools'
// own words exist in each.
type Lang int

const (
	English Lang = iota
	Japanese
)

// Langs lists every language, English first: it is the one the lesson
// is written in first, and the one the other is kept in step with.
var Langs = []Lang{English, Japanese}

// String is the language's code, as KATA_LANG takes it.
func (l Lang) String() string {
	if l == Japanese {
		return "ja"
	}
	return "en"
}

// Readme is the file name of a README in the language.
func (l Lang) Readme() string {
	if l == Japanese {
		return "README.ja.md"
	}
	return "README.md"
}

// LangFromEnv chooses the language of the learner's tools. KATA_LANG=ja or
// KATA_LANG=en decides; otherwise the locale does, as POSIX reads it for
// messages: the first of LC_ALL, LC_MESSAGES and LANG that is set, and
// Japanese when it starts with "ja". Anything else is English.
func LangFromEnv(getenv func(string) string) (Lang, error) {
	switch v := getenv("KATA_LANG"); v {
	case "ja":
		return Japanese, nil
	case "en":
		return English, nil
	case "":
	default:
		return English, fmt.Errorf("KATA_LANG=%s: want ja or en", v)
	}
	for _, name := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := getenv(name); v != "" {
			if strings.HasPrefix(v, "ja") {
				return Japanese, nil
			}
			return English, nil
		}
	}
	return English, nil
}

// Text is one piece of the tools' own wording, in every language. A
// format's verbs are the same, in the same order, in each.
type Text struct{ En, Ja string }

// NewText is a text in English and in Japanese.
func NewText(en, ja string) Text { return Text{En: en, Ja: ja} }

// In returns the text in l.
func (t Text) In(l Lang) string {
	if l == Japanese {
		return t.Ja
	}
	return t.En
}

// F formats the text in l with args.
func (t Text) F(l Lang, args ...any) string { return fmt.Sprintf(t.In(l), args...) }

// The README sections the runner writes, by language.
var (
	hintsHeading    = Text{"## Hints, by symptom", "## 症状別のヒント"}
	mistakesHeading = Text{"## Common mistakes", "## よくある間違い"}
	mistakesHeader  = Text{"| mistake | what you see | caught by |", "| 間違い | 表示される内容 | 捕まえるテスト |"}
)

// HintsHeading opens the README section, in l, written from the hints.
func HintsHeading(l Lang) string { return hintsHeading.In(l) }

// MistakesHeading starts the heading, in l, of the README section whose
// table names, for each planted mistake, what a learner sees and the
// tests that catch it.
func MistakesHeading(l Lang) string { return mistakesHeading.In(l) }

// MistakesHeader is the header row of that table in l.
func MistakesHeader(l Lang) string { return mistakesHeader.In(l) }

// verb matches a fmt verb, with its flags, width and precision.
var verb = regexp.MustCompile(`%[-+# 0]*[0-9*]*(?:\.[0-9*]*)?[a-zA-Z%]`)

// TextProblems says what is wrong with a text named name: a language
// missing, a Japanese text that is the English one, or verbs that differ
// between the two, which would format one language's arguments wrongly.
func TextProblems(name string, t Text) []string {
	var problems []string
	if strings.TrimSpace(t.En) == "" || strings.TrimSpace(t.Ja) == "" {
		problems = append(problems, name+": a language is missing")
	}
	if t.En == t.Ja {
		problems = append(problems, name+": the Japanese text is the English one")
	}
	if en, ja := verb.FindAllString(t.En, -1), verb.FindAllString(t.Ja, -1); !slices.Equal(en, ja) {
		problems = append(problems, fmt.Sprintf("%s: verbs %q in English, %q in Japanese", name, en, ja))
	}
	return problems
}

// Width is how many columns s takes in a terminal: two for a wide (CJK)
// character, one for anything else.
func Width(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x1100 && utf8.RuneLen(r) > 1 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
