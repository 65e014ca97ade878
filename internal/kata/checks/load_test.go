package checks

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/grpc-streaming-katas/grpc-streaming-katas/internal/kata/core"
)

func TestGhzReportProblems(t *testing.T) {
	tests := []struct {
		name   string
		report string
		want   []string // fragments of the problems, in order; none when OK
	}{
		{"All_OK", `{"count": 10, "statusCodeDistribution": {"OK": 10}}`, nil},
		{"Failures_are_problems_although_ghz_exits_0", `{"count": 10, "statusCodeDistribution": {"OK": 7, "DataLoss": 3}, "errorDistribution": {"rpc error: checksum": 3}}`,
			[]string{"3 calls ended with DataLoss", "7 calls ended OK, want all 10", "3× rpc error: checksum"}},
		{"Missing_calls", `{"count": 8, "statusCodeDistribution": {"OK": 8}}`, []string{"8 calls were made, want 10", "8 calls ended OK"}},
		{"Nothing_ran", `{}`, []string{"0 calls were made", "0 calls ended OK"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r ghzReport
			if err := json.Unmarshal([]byte(tc.report), &r); err != nil {
				t.Fatal(err)
			}
			got := r.problems(10)
			if len(got) != len(tc.want) {
				t.Fatalf("problems(10) of %s = %q, want %d problems like %q", tc.report, got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Fatalf("problems(10) of %s = %q, want problem %d to contain %q", tc.report, got, i, w)
				}
			}
		})
	}
}

func TestLoadSpecValidate(t *testing.T) {
	good := core.LoadCall{Call: "streaming.v1.S.M", Total: 10, Concurrency: 2, Data: []json.RawMessage{json.RawMessage(`{}`)}}
	if err := (&core.LoadSpec{Calls: []core.LoadCall{good}}).Validate(); err != nil {
		t.Fatalf("validate(a good call) = %v", err)
	}
	bad := map[string]core.LoadCall{
		"not a method":           {Call: "Method", Total: 10, Concurrency: 2, Data: good.Data},
		"unbounded":              {Call: good.Call, Total: 1_000_000, Concurrency: 2, Data: good.Data},
		"concurrency over total": {Call: good.Call, Total: 2, Concurrency: 4, Data: good.Data},
		"no data":                {Call: good.Call, Total: 10, Concurrency: 2},
	}
	for name, c := range bad {
		if err := (&core.LoadSpec{Calls: []core.LoadCall{c}}).Validate(); err == nil {
			t.Errorf("validate(%s) = nil, want an error", name)
		}
	}
	if err := (&core.LoadSpec{}).Validate(); err == nil {
		t.Error("validate(no calls) = nil, want an error")
	}
}
