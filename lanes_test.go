package llmroute

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The voters of a consensus call at once, each down its own model's
// providers: a voter that failed with nothing after it in its own call
// passed over no one, whatever the order the calls ended in; a provider
// that failed and its model's next provider answered for the voter is a
// fallback.
func TestFallbacksOfParallelVoters(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	attempted := func(n int) {
		// (an attempt is logged once the record holds it)
		deadline := time.Now().Add(30 * time.Second)
		for logs.FilterMessage("attempt").Len() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	fail := newUpstream(t, answer(500, `{"error":{"message":"down"}}`))
	late := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		attempted(2) // both failures are in the record before this answer
		answer(200, okChat)(w, r)
	})
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "lane-a", "api_key": "k", "proxy": `+gatewayProxy(fail.addr())+`},
			{"name": "lane-b1", "api_key": "k", "proxy": `+gatewayProxy(fail.addr())+`},
			{"name": "lane-b2", "api_key": "k", "proxy": `+gatewayProxy(late.addr())+`}
		],
		"models": [{"name": "lane-va", "providers": ["lane-a"]}, {"name": "lane-vb", "providers": ["lane-b1", "lane-b2"]}],
		"routes": [{"name": "lane-vote", "targets": [{"model": "lane-va"}, {"model": "lane-vb"}], "strategy": {"name": "consensus", "voters": 2}}]
	}`)
	t.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.New(core)
	beforeA := counterValue(t, metrics.fallbacks, "lane-va", "lane-a", "5xx")
	beforeB := counterValue(t, metrics.fallbacks, "lane-vb", "lane-b1", "5xx")
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"lane-vote","messages":[{"role":"user","content":"hi"}]}`)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if n := logs.FilterMessage("attempt").Len(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if got := counterValue(t, metrics.fallbacks, "lane-va", "lane-a", "5xx") - beforeA; got != 0 {
		t.Errorf("the failed voter counted %v fallbacks: no one took its place", got)
	}
	if got := counterValue(t, metrics.fallbacks, "lane-vb", "lane-b1", "5xx") - beforeB; got != 1 {
		t.Errorf("the voter's first provider counted %v fallbacks, want 1 (its second answered)", got)
	}
}
