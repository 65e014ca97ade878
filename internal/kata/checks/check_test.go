package checks

import (
	"errors"
	"testing"
	"time"
)

func TestSummaryTable(t *testing.T) {
	got := summaryTable([]stageResult{
		{name: "lint", elapsed: 12300 * time.Millisecond},
		{name: "solutions", err: errors.New("boom"), elapsed: 40 * time.Second},
		{name: "demo", skipped: true},
	})
	want := "" +
		"stage            result       time\n" +
		"lint             ok          12.3s\n" +
		"solutions        FAILED      40.0s\n" +
		"demo             skipped         -\n"
	if got != want {
		t.Errorf("summaryTable:\n%s\nwant:\n%s", got, want)
	}
}
