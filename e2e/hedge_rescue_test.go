package e2e

import (
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/caddy-llm-route/llmroute/mock"
)

// hedgeRescueSetup is rescueSetup with hedged routes:
//   - hedged-twin: alpha, then beta, hedged after 30s (a primary that
//     answers in time is not hedged);
//   - hedged-trio: alpha, then beta, then claude2 (Anthropic format),
//     hedged after 100ms.
func hedgeRescueSetup() setup {
	s := rescueSetup()
	s.Route += `
		first_byte_timeout 30s
		model trio alpha beta claude2
		route hedged-twin {
			models twin
			hedge 30s budget 1
		}
		route hedged-trio {
			models trio
			hedge 100ms budget 1
		}
`
	return s
}

// A stream that breaks after its first bytes on a hedged route is
// rescued like any other: whether the primary or the hedge answered,
// the next candidate continues it, and the client gets one whole
// stream whose usage sums every call that answered.
func TestHedgedStreamRescued(t *testing.T) {
	start(t, hedgeRescueSetup())
	oc := oaClient(t)

	check := func(t *testing.T, s *oaStreamResult) {
		t.Helper()
		if s.Err != nil {
			t.Fatalf("the stream was not rescued: %v", s.Err)
		}
		if len(s.Acc.Choices) != 1 {
			t.Fatalf("%d choices", len(s.Acc.Choices))
		}
		ch := s.Acc.Choices[0]
		if ch.Message.Content != rescueText || ch.FinishReason != "stop" {
			t.Errorf("accumulated %q (%s), want %q", ch.Message.Content, ch.FinishReason, rescueText)
		}
		if s.Usage == nil || s.Usage.CompletionTokens != rescueWords {
			t.Errorf("usage %+v, want %d completion tokens (the calls that answered)", s.Usage, rescueWords)
		}
	}
	params := func(route string) openai.ChatCompletionNewParams {
		p := chatParams(route, prompt)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		return p
	}

	t.Run("the primary answered, then broke", func(t *testing.T) {
		restart(t)
		s := oaAccumulate(t, oc, params("hedged-twin"), faultHeader("alpha:cut,after=2"))
		check(t, s)
		expectRoute(t, s.Resp, "twin", "alpha", "hedged-twin", 1)
		if got := s.Resp.Header.Get("X-LLM-Hedged"); got != "primary" {
			t.Errorf("X-LLM-Hedged %q, want primary", got)
		}
	})

	t.Run("the hedge answered, then broke", func(t *testing.T) {
		restart(t)
		cancels := mock.Cancels("alpha")
		before := metricsNow(t)
		lost := series("llm_route_attempts_total", "model", "trio", "provider", "alpha", "cause", "hedge_lost")
		broken := series("llm_route_attempts_total", "model", "trio", "provider", "beta", "cause", "broken")
		ok := series("llm_route_attempts_total", "model", "trio", "provider", "claude2", "cause", "ok")
		s := oaAccumulate(t, oc, params("hedged-trio"), faultHeader("alpha:slow_first_token,delay=20s;beta:cut,after=2"))
		check(t, s)
		// The headers name the winner, and count the primary's call
		// and the hedge's.
		expectRoute(t, s.Resp, "trio", "beta", "hedged-trio", 2)
		if got := s.Resp.Header.Get("X-LLM-Hedged"); got != "hedge" {
			t.Errorf("X-LLM-Hedged %q, want hedge", got)
		}
		waitFor(t, "alpha to see its request cancelled", func() bool { return mock.Cancels("alpha") == cancels+1 })
		// Every call is in the record: the primary the hedge beat, the
		// hedge that broke and the continuation.
		waitFor(t, "the record of the three calls", func() bool {
			now := metricsNow(t)
			return now[lost] == before[lost]+1 && now[broken] == before[broken]+1 && now[ok] == before[ok]+1
		})
	})
}
