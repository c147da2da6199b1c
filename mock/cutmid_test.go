package mock

import (
	"testing"
	"unicode/utf8"
)

func TestMidEvent(t *testing.T) {
	for _, tc := range []struct{ ev, before string }{
		{"data: {\"t\":\"Héllo\"}\n\n", "data: {\"t\":\"H\xc3"},
		{"event: content_block_delta\ndata: {\"t\":\"日本\"}\n\n", "event: content_block_delta\ndata: {\"t\":\"\xe6"},
		{"data: {\"t\":\"ab\"}\n\n", "data: {\""},
	} {
		at := midEvent([]byte(tc.ev))
		if got := tc.ev[:at]; got != tc.before {
			t.Errorf("%q cut at %q, want %q", tc.ev, got, tc.before)
		}
		if at >= len(tc.ev) || tc.ev[at-1] == '\n' {
			t.Errorf("%q cut at the end of a line", tc.ev)
		}
	}
	if utf8.ValidString("data: {\"t\":\"H\xc3") {
		t.Fatal("the cut is no cut inside a character")
	}
	if _, err := parseFault("cut_mid,after=1"); err != nil {
		t.Errorf("cut_mid: %v", err)
	}
}
