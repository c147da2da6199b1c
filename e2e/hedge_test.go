package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/mock"
)

// waitFor waits until cond holds, up to a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHedge(t *testing.T) {
	start(t, withDefaults(`
		first_byte_timeout 30s
		route hedged {
			models only-alpha only-beta
			hedge 100ms budget 1
		}
		route hedged-budget {
			models only-alpha only-beta
			hedge 50ms budget 0.1
		}
`))
	c := oaClient(t)

	t.Run("an answer in time is not hedged", func(t *testing.T) {
		a := ask(t, c, chatParams("hedged", prompt))
		expectRoute(t, a.hr, "only-alpha", "alpha", "hedged", 1)
		if got := a.hr.Header.Get("X-LLM-Hedged"); got != "primary" {
			t.Errorf("X-LLM-Hedged %q, want primary", got)
		}
	})

	t.Run("a slow primary loses to the hedge and is cancelled", func(t *testing.T) {
		before := mock.Cancels("alpha")
		a := ask(t, c, chatParams("hedged", prompt), faultHeader("alpha:slow_first_token,delay=20s"))
		if got := a.hr.Header.Get("X-LLM-Hedged"); got != "hedge" || a.provider() != "beta" || a.text() != betaText {
			t.Errorf("X-LLM-Hedged %q, provider %q, text %q: want beta's answer by the hedge", got, a.provider(), a.text())
		}
		// The loser's upstream request was cancelled (long before its
		// 20s delay, and with first_byte_timeout at 30s).
		waitFor(t, "alpha to see its request cancelled", func() bool { return mock.Cancels("alpha") == before+1 })
		if s := pairInfo(t, "alpha", "only-alpha").Stats; s.ErrorRate != 0 {
			t.Errorf("the loser counted as a failure: %+v", s)
		}
	})

	t.Run("a primary that wins the race the hedge joined", func(t *testing.T) {
		// The hedge starts after 100ms and waits on beta; alpha answers
		// after 2s and wins. Both calls are counted: the headers say
		// two attempts, and the record has beta's call, cancelled.
		before := mock.Cancels("beta")
		m0 := metricsNow(t)
		lost := series("llm_route_attempts_total", "model", "only-beta", "provider", "beta", "cause", "hedge_lost")
		passed := series("llm_route_fallbacks_total", "model", "only-beta", "provider", "beta", "cause", "hedge_lost")
		a := ask(t, c, chatParams("hedged", prompt), faultHeader("alpha:slow_first_token,delay=2s;beta:slow_first_token,delay=20s"))
		expectRoute(t, a.hr, "only-alpha", "alpha", "hedged", 2)
		if got := a.hr.Header.Get("X-LLM-Hedged"); got != "primary" || a.text() != alphaText {
			t.Errorf("X-LLM-Hedged %q, text %q: want alpha's answer by the primary", got, a.text())
		}
		waitFor(t, "beta to see its request cancelled", func() bool { return mock.Cancels("beta") == before+1 })
		waitFor(t, "the record of the hedge's call", func() bool { return metricsNow(t)[lost] == m0[lost]+1 })
		if m := metricsNow(t); m[passed] != m0[passed] {
			t.Errorf("the hedge's lost call counted as a fallback: %v, before %v", m[passed], m0[passed])
		}
	})

	t.Run("streams too", func(t *testing.T) {
		before := mock.Cancels("alpha")
		res := chatStream(t, c, chatParams("hedged", prompt), faultHeader("alpha:slow_first_token,delay=20s"))
		if res.Err != nil || res.Text != betaText || res.Resp.Header.Get("X-LLM-Hedged") != "hedge" {
			t.Errorf("err %v text %q hedged %q", res.Err, res.Text, res.Resp.Header.Get("X-LLM-Hedged"))
		}
		waitFor(t, "alpha to see its stream cancelled", func() bool { return mock.Cancels("alpha") == before+1 })
	})

	t.Run("the budget caps the hedges", func(t *testing.T) {
		// budget 0.1: the budget starts with 10 saved hedges, and each
		// request adds a tenth of one, so the first 11 slow requests are
		// hedged and the 12th waits for the slow primary.
		var hedged []int
		for i := 1; i <= 12; i++ {
			a := ask(t, c, chatParams("hedged-budget", prompt), faultHeader("alpha:slow_first_token,delay=2s"))
			switch got := a.hr.Header.Get("X-LLM-Hedged"); got {
			case "hedge":
				hedged = append(hedged, i)
				if a.provider() != "beta" {
					t.Errorf("request %d: hedged, answered by %s", i, a.provider())
				}
			case "primary":
				if a.provider() != "alpha" {
					t.Errorf("request %d: not hedged, answered by %s", i, a.provider())
				}
			default:
				t.Errorf("request %d: X-LLM-Hedged %q", i, got)
			}
		}
		if want := "[1 2 3 4 5 6 7 8 9 10 11]"; fmt.Sprint(hedged) != want {
			t.Errorf("requests hedged %v, want %s (10 saved, then one per ten requests)", hedged, want)
		}
	})
}

// hedge p95 reads the pair's live stats, which every route's traffic
// feeds: once a pair has answered 20 streams through any route, a
// hedged route knows its p95 from its first request.
func TestHedgeP95FromPairStats(t *testing.T) {
	start(t, withDefaults(`
		first_byte_timeout 30s
		route plain {
			models only-alpha only-beta
		}
		route hedged-p95 {
			models only-alpha only-beta
			hedge p95 budget 1
		}
`))
	c := oaClient(t)
	for range 20 {
		if res := chatStream(t, c, chatParams("plain", prompt)); res.Err != nil || res.Text != alphaText {
			t.Fatalf("plain stream: %v, %q", res.Err, res.Text)
		}
	}
	waitFor(t, "the pair's p95", func() bool { return pairInfo(t, "alpha", "only-alpha").Stats.Samples >= 20 })
	res := chatStream(t, c, chatParams("hedged-p95", prompt), faultHeader("alpha:slow_first_token,delay=5s"))
	if res.Err != nil || res.Text != betaText || res.Resp.Header.Get("X-LLM-Hedged") != "hedge" {
		t.Errorf("err %v, text %q, X-LLM-Hedged %q: want beta's answer by the hedge", res.Err, res.Text, res.Resp.Header.Get("X-LLM-Hedged"))
	}
}
