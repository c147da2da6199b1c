package llmroute

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The hedge delay: a fixed one as configured; p95 from the pair's live
// stats (streams' and other answers' apart), at least the minimum
// delay, which is also the delay until the stats know 20 answers (no
// hedging without one).
func TestHedgeDelay(t *testing.T) {
	prov := &upstreams.Provider{Name: "hedge-delay"}
	pair := upstreams.AcquirePair(prov, "m", nil)
	defer upstreams.ReleasePair(prov, "m", nil)
	c := &strategies.Candidate{Pair: pair}
	fixed := &Hedge{Delay: caddy.Duration(80 * time.Millisecond)}
	p95 := &Hedge{Adaptive: "p95"}
	p95min := &Hedge{Adaptive: "p95", Delay: caddy.Duration(50 * time.Millisecond)}
	expect := func(what string, hg *Hedge, stream bool, want time.Duration, wantOK bool) {
		t.Helper()
		if d, ok := hg.delayFor(c, stream); d != want || ok != wantOK {
			t.Errorf("%s: %v %v, want %v %v", what, d, ok, want, wantOK)
		}
	}
	expect("fixed", fixed, true, 80*time.Millisecond, true)
	expect("p95 before 20 answers", p95, true, 0, false)
	expect("p95 50ms before 20 answers", p95min, true, 50*time.Millisecond, true)

	now := time.Now()
	for i := range 20 {
		d := time.Duration(i+1) * 10 * time.Millisecond // 10ms … 200ms
		pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Timed: true, Stream: true, FirstByte: d, Total: 2 * d}, upstreams.Policy{}, now)
	}
	expect("p95 of streams", p95, true, 190*time.Millisecond, true)
	expect("p95 50ms of streams", p95min, true, 190*time.Millisecond, true)
	expect("p95 of other answers", p95, false, 0, false)
	expect("fixed, whatever the stats", fixed, true, 80*time.Millisecond, true)
	for range 20 {
		pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Timed: true, Total: 20 * time.Millisecond}, upstreams.Policy{}, now)
	}
	expect("p95 50ms of other answers", p95min, false, 50*time.Millisecond, true)
}

// A call that did not answer gives its reservation back, unless it
// reported usage (a hedge's loser whose answer came whole as the other
// won): then its limits are charged what it used.
func TestSettleOnReportedUsage(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "daily_tokens": 1000000}]
	}`)
	req := &strategies.Request{Model: "m", Endpoint: "/chat/completions", MaxTokens: 256, PromptTokens: 100}
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	used := func() float64 {
		t.Helper()
		q := &quotaReader{h: h, ctx: t.Context(), now: time.Now()}
		items := q.of(h.models["m"].subject)
		if len(items) != 1 || q.err != nil {
			t.Fatalf("quota %+v %v", items, q.err)
		}
		return items[0].Used
	}
	for _, tc := range []struct {
		name  string
		usage Usage
		want  float64
	}{
		{"no usage: released", Usage{}, 0},
		{"usage reported: settled on it", Usage{PromptTokens: 30, CompletionTokens: 12}, 42},
	} {
		before := used()
		res, d := h.admit(t.Context(), req, &plan{route: "m"}, &c, time.Now())
		if d != nil || res == nil {
			t.Fatal("not admitted")
		}
		aw := &attemptWriter{usage: tc.usage}
		h.settle(res, &c, outcomeGone, aw)
		if got := used() - before; got != tc.want {
			t.Errorf("%s: %v tokens charged, want %v", tc.name, got, tc.want)
		}
	}
}
