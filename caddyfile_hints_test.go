package llmroute

import (
	"strings"
	"testing"
)

// TestBlockDirectivesKnown: every name the hints give as a block's
// subdirective is one that block's parser reads (so a hint never sends
// the user to a place that refuses the name too).
func TestBlockDirectivesKnown(t *testing.T) {
	wrap := map[string]func(string) string{
		"llm_route": func(l string) string { return l },
		"provider":  func(l string) string { return "provider a https://a.example.com {\n\t" + l + "\n}" },
		"model":     func(l string) string { return "model m {\n\t" + l + "\n}" },
		"route":     func(l string) string { return "route r {\n\t" + l + "\n}" },
		"key":       func(l string) string { return "key k {\n\t" + l + "\n}" },
	}
	for block, names := range blockDirectives {
		for _, name := range names {
			_, err := adaptSite(wrap[block](name + " x"))
			if err != nil && strings.Contains(err.Error(), "unrecognized subdirective") {
				t.Errorf("%s block: %s: %v", block, name, err)
			}
		}
	}
}

func TestSubdirectiveHintTypo(t *testing.T) {
	for _, tc := range []struct{ block, dir, want string }{
		{"llm_route", "max_bdy", " (did you mean max_body?)"},
		{"key", "secert", " (did you mean secret?)"},
		{"model", "qualty", " (did you mean quality?)"},
		{"llm_route", "zzzzzzzz", ""},
		{"model", "format", " (format belongs in a provider block)"},
	} {
		if got := subdirectiveHint(tc.block, tc.dir); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.block, tc.dir, got, tc.want)
		}
	}
}

func TestStrategyOptionHint(t *testing.T) {
	const prov = "provider a https://a.example.com\nmodel m a\n"
	for _, tc := range []struct{ body, want string }{
		{prov + "route r m {\n\tstrategy cheapest {\n\t\tmin_length 20\n\t}\n}", "route r: strategy cheapest: unrecognized subdirective: min_length, at Caddyfile:7 (min_length is an option of strategy cascade)"},
		{prov + "route r m {\n\tstrategy cheapest {\n\t\texpected_output 100\n\t\tvoters 3\n\t}\n}", "(voters is an option of strategy consensus)"},
		{prov + "route r m {\n\tstrategy fallback {\n\t\tfrobnicate\n\t}\n}", "unrecognized subdirective: frobnicate, at Caddyfile:7"},
	} {
		_, err := adaptSite(tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one containing %q", err, tc.want)
		}
		if strings.HasSuffix(tc.want, ":7") && strings.Contains(err.Error(), "is an option of") {
			t.Errorf("error %v names a strategy for an option none has", err)
		}
	}
}
