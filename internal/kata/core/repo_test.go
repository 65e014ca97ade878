package core

import "testing"

func TestSelectDay(t *testing.T) {
	dirs := []string{"day01_intro", "day48_client_streaming", "day49_bidi_streaming"}
	tests := []struct {
		arg, want string
	}{
		{"48", "day48_client_streaming"},
		{"day48", "day48_client_streaming"},
		{"day48_client_streaming", "day48_client_streaming"},
		{"./day49_bidi_streaming/", "day49_bidi_streaming"},
		{"1", "day01_intro"},
		{"01", "day01_intro"},
	}
	for _, tc := range tests {
		got, err := selectDay(dirs, tc.arg)
		if err != nil || got != tc.want {
			t.Errorf("selectDay(%q) = %q, %v, want %q", tc.arg, got, err, tc.want)
		}
	}
	for _, arg := range []string{"50", "day4", "client", "day48_client"} {
		if got, err := selectDay(dirs, arg); err == nil {
			t.Errorf("selectDay(%q) = %q, want an error", arg, got)
		}
	}
	if _, err := selectDay(nil, "48"); err == nil {
		t.Error("selectDay with no days: want an error")
	}
}

func TestDayNumber(t *testing.T) {
	for dir, want := range map[string]string{
		"day48_client_streaming": "48",
		"day49_bidi_streaming":   "49",
		"day01_x":                "01",
	} {
		if got := dayNumber(dir); got != want {
			t.Errorf("dayNumber(%q) = %q, want %q", dir, got, want)
		}
	}
}
