package llmroute

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/strategies"
)

// adaptiveConfig is a handler with an adaptive route named route over
// two models.
func adaptiveConfig(route string) string {
	return `{
		"providers": [{"name": "openai", "api_key": "k", "proxy": ` + proxyTo("127.0.0.1:1") + `}],
		"models": [{"name": "a", "providers": ["openai"], "input_price": 1, "output_price": 1},
		           {"name": "b", "providers": ["openai"], "input_price": 2, "output_price": 2}],
		"routes": [{"name": "` + route + `", "targets": [{"model": "a"}, {"model": "b"}], "strategy": {"name": "adaptive", "seed": 1}}]
	}`
}

func adaptiveOf(t *testing.T, h *Handler, route string) *strategies.Adaptive {
	t.Helper()
	a, ok := h.routes[route].strategy.(*strategies.Adaptive)
	if !ok {
		t.Fatalf("route %s: strategy %T", route, h.routes[route].strategy)
	}
	return a
}

// What an adaptive route learned survives a reload: a second handler
// with the same route is provisioned and finds the state; a route of
// another name does not.
func TestAdaptiveStateSurvivesHandlerReload(t *testing.T) {
	old := mustLoadHandler(t, adaptiveConfig("learned"))
	adaptiveOf(t, old, "learned").Observe("d0", "b", 1)

	next := mustLoadHandler(t, adaptiveConfig("learned"))
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if arms := adaptiveOf(t, next, "learned").Store().Arms(nil, "d0", []string{"b"}); arms[0].Alpha != 1 {
		t.Fatalf("after the reload: %+v, want the observation", arms[0])
	}
	other := mustLoadHandler(t, adaptiveConfig("elsewhere"))
	if arms := adaptiveOf(t, other, "elsewhere").Store().Arms(nil, "d0", []string{"b"}); arms[0].N() != 0 {
		t.Errorf("another route sees the state: %+v", arms[0])
	}
}

// The plan of an adaptive route carries the strategy as its learner,
// and an attempt's failure reaches it as implicit feedback in the
// request's context; a client error does not.
func TestAdaptiveLearnsFromAttempts(t *testing.T) {
	h := mustLoadHandler(t, adaptiveConfig("learns"))
	body := []byte(`{"model":"learns","messages":[{"role":"user","content":"hi"}]}`)
	req := strategies.BuildRequest("/chat/completions", body)
	req.Model = "learns"
	p, rerr := h.resolve(httptest.NewRequest("POST", "/v1/chat/completions", nil), &req, nil)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if p.learner == nil {
		t.Fatal("the plan of an adaptive route has no learner")
	}
	c := &p.candidates[0]
	h.learn(p, &req, c, attemptResult{outcome: outcomeRetry}, time.Now())
	h.learn(p, &req, c, attemptResult{outcome: outcomeFinal}, time.Now())
	a := adaptiveOf(t, h, "learns")
	arms := a.Store().Arms(nil, a.ContextOf(&req), []string{c.Model})
	if arms[0].Beta != 1 || arms[0].Alpha != 0 {
		t.Fatalf("arm of %s after a failure and a client error: %+v, want one failure", c.Model, arms[0])
	}
}

// Feedback on an answer an adaptive route chose teaches that route's
// strategy the score, in the request's context, once; feedback on an
// unknown or already taught request teaches nothing.
func TestFeedbackTeachesAdaptive(t *testing.T) {
	h := mustLoadHandler(t, adaptiveConfig("taught"))
	body := []byte(`{"model":"taught","messages":[{"role":"user","content":"hi"}]}`)
	req := strategies.BuildRequest("/chat/completions", body)
	req.Model = "taught"
	p, rerr := h.resolve(httptest.NewRequest("POST", "/v1/chat/completions", nil), &req, nil)
	if rerr != nil {
		t.Fatal(rerr)
	}
	p.rec = &record{id: "req-1"}
	c := &p.candidates[0]
	h.learn(p, &req, c, attemptResult{outcome: outcomeDone}, time.Now())
	a := adaptiveOf(t, h, "taught")
	before := a.Store().Arms(nil, a.ContextOf(&req), []string{c.Model})[0]
	if h.awaiting.teach("req-2", "", 1) {
		t.Error("feedback on an unknown request was taught")
	}
	if !h.awaiting.teach("req-1", "", 1) {
		t.Fatal("feedback on the answer was not taught")
	}
	after := a.Store().Arms(nil, a.ContextOf(&req), []string{c.Model})[0]
	if after.Alpha <= before.Alpha || after.Beta != before.Beta {
		t.Errorf("arm after a score of 1: %+v, before %+v", after, before)
	}
	if h.awaiting.teach("req-1", "", 1) {
		t.Error("the same feedback was taught twice")
	}
}

// The table of answers awaiting feedback keeps the last maxAwaiting.
func TestAwaitingForgetsTheOldest(t *testing.T) {
	var a awaiting
	var l lesson
	for i := range maxAwaiting + 5 {
		a.remember(strconv.Itoa(i), l)
	}
	if len(a.byID) != maxAwaiting {
		t.Fatalf("%d kept, want %d", len(a.byID), maxAwaiting)
	}
	for _, id := range []string{"0", "4"} {
		if _, ok := a.byID[id]; ok {
			t.Errorf("%s is still kept", id)
		}
	}
	for _, id := range []string{"5", strconv.Itoa(maxAwaiting + 4)} {
		if _, ok := a.byID[id]; !ok {
			t.Errorf("%s was forgotten", id)
		}
	}
}

// With the state in Redis, two gateways (two handlers on two clients of
// one Redis) share what an adaptive route learns: feedback taken by one
// reaches the other's strategy, and the sums are the fleet's.
func TestAdaptiveStateSharedThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	cfg := func(timeout string) string {
		return strings.Replace(adaptiveConfig("fleet"), `{`,
			`{"state": {"backend": "redis", "url": "`+srv.URL()+`", "timeout": "`+timeout+`", "sync_interval": "10ms"},`, 1)
	}
	one, two := mustLoadHandler(t, cfg("5s")), mustLoadHandler(t, cfg("6s"))
	a, b := adaptiveOf(t, one, "fleet"), adaptiveOf(t, two, "fleet")
	if _, ok := a.Store().(*strategies.AdaptiveRedis); !ok {
		t.Fatalf("store %T, want the Redis store", a.Store())
	}
	if a.Store() == b.Store() {
		t.Fatal("two Redis clients got one store: sharing would not go through Redis")
	}
	a.Observe("d0", "b", 1)
	a.Observe("d0", "b", 1)
	b.Observe("d0", "b", 0)
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range []strategies.AdaptiveStore{a.Store(), b.Store()} {
		for {
			got := s.Arms(nil, "d0", []string{"b"})[0]
			if got.Alpha == 2 && got.Beta == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("arm %+v, want alpha 2 beta 1 on both gateways", got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A memory config's route of the same name keeps its own state.
	if arms := adaptiveOf(t, mustLoadHandler(t, adaptiveConfig("fleet")), "fleet").Store().Arms(nil, "d0", []string{"b"}); arms[0].N() != 0 {
		t.Errorf("a memory config sees the Redis state: %+v", arms[0])
	}
}
