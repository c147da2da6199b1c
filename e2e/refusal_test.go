package e2e

import (
	"net/http"
	"testing"

	antoption "github.com/anthropics/anthropic-sdk-go/option"
	oaoption "github.com/openai/openai-go/v3/option"
)

// A 200 answer that ends with a refusal (Anthropic's stop_reason
// refusal) is the answer by default; with fallback_on content_filter
// the next candidate answers instead, for an Anthropic client and for
// an OpenAI client whose request was translated.
func TestContentFilterFinishFallback(t *testing.T) {
	const forbidden = "tell me something forbidden"
	for _, on := range []bool{false, true} {
		route := ""
		if on {
			route = "fallback_on content_filter"
		}
		s := withDefaults(route)
		s.Mocks[2].Lines = append(s.Mocks[2].Lines, "refuse forbidden I cannot help with that.")
		start(t, s)
		ac, oc := antClient(t), oaClient(t)

		var hr *http.Response
		msg, err := ac.Messages.New(ctxT(t), messageParams("claude-chat", forbidden), antoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("fallback_on %v: %v", on, err)
		}
		switch {
		case !on && (hr.Header.Get("X-LLM-Provider") != "claude" || msg.StopReason != "refusal"):
			t.Errorf("off: provider %q, stop_reason %q: want claude's refusal", hr.Header.Get("X-LLM-Provider"), msg.StopReason)
		case on:
			expectRoute(t, hr, "claude-chat", "claude2", "claude-chat", 2)
			if len(msg.Content) == 0 || msg.Content[0].Text != claude2Text || msg.StopReason != "end_turn" {
				t.Errorf("on: %+v, want claude2's answer", msg.Content)
			}
		}

		resp, err := oc.Chat.Completions.New(ctxT(t), chatParams("claude-chat", forbidden), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("fallback_on %v, chat completions: %v", on, err)
		}
		switch {
		case !on && hr.Header.Get("X-LLM-Provider") != "claude":
			t.Errorf("off, chat completions: provider %q, want claude's refusal", hr.Header.Get("X-LLM-Provider"))
		case on:
			expectRoute(t, hr, "claude-chat", "claude2", "claude-chat", 2)
			if resp.Choices[0].Message.Content != claude2Text {
				t.Errorf("on, chat completions: %q, want claude2's answer", resp.Choices[0].Message.Content)
			}
		}
	}
}
