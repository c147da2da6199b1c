package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/caddy-llm-route/llmroute/mock"
)

// utf8Text is the answer of every mock of utf8RescueSetup: words of
// several bytes a character, so that a stream cut inside an event cuts
// inside a character.
const utf8Text = "Héllo wörld — 日本語 naïve café 你好 façade ünïcode."

// utf8RescueSetup: four mocks with utf8Text (two OpenAI-format, two
// Anthropic-format) and the models of rescueSetup over them.
func utf8RescueSetup() setup {
	return setup{
		Mocks: []mockSite{
			{Port: portAlpha, Name: "alpha", Text: utf8Text},
			{Port: portBeta, Name: "beta", Text: utf8Text},
			{Port: portClaude, Name: "claude", Text: utf8Text},
			{Port: portClaude2, Name: "claude2", Text: utf8Text},
		},
		Route: fmt.Sprintf(`
		provider alpha http://127.0.0.1:%d
		provider beta http://127.0.0.1:%d
		provider claude http://127.0.0.1:%d {
			format anthropic
		}
		provider claude2 http://127.0.0.1:%d {
			format anthropic
		}
		model twin alpha beta
		model ctwin claude claude2
		model oa-to-ant alpha claude2
		model ant-to-oa claude beta
`, portAlpha, portBeta, portClaude, portClaude2)}
}

// A stream cut in the middle of an event (inside a character of several
// bytes, mid-way through its data line) is rescued like one cut between
// events: the torn event never reaches the client, and each SDK gets
// the whole answer, valid UTF-8, in both client formats and across
// formats. The continuation keeps the client's max_tokens: the spliced
// answer is no longer than it allows.
func TestRescueCutInsideEvent(t *testing.T) {
	start(t, utf8RescueSetup())
	oc, ac := oaClient(t), antClient(t)
	words := len(strings.Fields(utf8Text))
	for _, tc := range []struct{ model, first, second string }{
		{"twin", "alpha", "beta"}, {"ctwin", "claude", "claude2"}, {"oa-to-ant", "alpha", "claude2"}, {"ant-to-oa", "claude", "beta"},
	} {
		fault := faultHeader(tc.first + ":cut_mid,after=2")
		// continued reports that the second mock was asked to continue,
		// once: the first one's stream did break.
		continued := func(t *testing.T, before int64) {
			t.Helper()
			if n := mock.Served(tc.second) - before; n != 1 {
				t.Errorf("%s served %d requests, want the continuation", tc.second, n)
			}
		}
		t.Run(tc.model+"/openai", func(t *testing.T) {
			before := mock.Served(tc.second)
			s := chatStream(t, oc, chatParams(tc.model, "Say it."), fault)
			if s.Err != nil || s.Text != utf8Text || s.Finish != "stop" {
				t.Errorf("got %q (finish %q, err %v), want %q", s.Text, s.Finish, s.Err, utf8Text)
			}
			continued(t, before)
		})
		t.Run(tc.model+"/anthropic", func(t *testing.T) {
			before := mock.Served(tc.second)
			s := messageStream(t, ac, messageParams(tc.model, "Say it."), antFaultHeader(tc.first+":cut_mid,after=2"))
			if s.Err != nil || s.Text != utf8Text || s.Finish != "end_turn" {
				t.Errorf("got %q (finish %q, err %v), want %q", s.Text, s.Finish, s.Err, utf8Text)
			}
			continued(t, before)
		})
		t.Run(tc.model+"/max_tokens", func(t *testing.T) {
			p := chatParams(tc.model, "Say it.")
			p.MaxTokens = openai.Int(int64(words - 2))
			s := chatStream(t, oc, p, fault)
			if s.Err != nil || s.Finish != "length" {
				t.Fatalf("got %q (finish %q, err %v), want a rescued answer cut by max_tokens", s.Text, s.Finish, s.Err)
			}
			if n := len(strings.Fields(s.Text)); n > words-2 || !strings.HasPrefix(utf8Text, s.Text) {
				t.Errorf("got %q: %d words, more than max_tokens %d or not the answer's start", s.Text, n, words-2)
			}
		})
	}
}
