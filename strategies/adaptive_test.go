package strategies

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func newAdaptive(t *testing.T, cfg string) *Adaptive {
	t.Helper()
	a := new(Adaptive)
	if err := json.Unmarshal([]byte(cfg), a); err != nil {
		t.Fatal(err)
	}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	return a
}

// banditCands are three equally priced arms with no registry quality.
func banditCands() []Candidate {
	var cs []Candidate
	for _, m := range []string{"a", "b", "c"} {
		cs = append(cs, Candidate{Model: m, InputPrice: 1, OutputPrice: 1, Priced: true, Weight: 1})
	}
	return cs
}

// On a synthetic Bernoulli bandit (arm b answers well 80% of the time,
// a and c 40% and 50%), Thompson sampling converges to b: over the last
// 500 of 2000 rounds it picks b at least 90% of the time.
func TestAdaptiveConvergesToBetterArm(t *testing.T) {
	a := newAdaptive(t, `{"context":"none","cost_weight":0,"seed":7}`)
	p := map[string]float64{"a": 0.4, "b": 0.8, "c": 0.5}
	env := rand.New(rand.NewPCG(1, 2))
	req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	late := map[string]int{}
	for i := range 2000 {
		cs := banditCands()
		d := a.Select(&req, cs)
		if !strings.HasPrefix(d.Reason, "adaptive=") || !strings.Contains(d.Reason, "context=all") {
			t.Fatalf("reason %q", d.Reason)
		}
		m := cs[0].Model
		score := 0.0
		if env.Float64() < p[m] {
			score = 1
		}
		a.Observe(a.ContextOf(&req), m, score)
		if i >= 1500 {
			late[m]++
		}
	}
	if late["b"] < 450 {
		t.Fatalf("picks over the last 500 rounds: %v, want b at least 450 times", late)
	}
}

// The same bandit under policy ucb: the upper confidence bound explores
// every arm, then settles on b; with no randomness in the policy, two
// runs on the same outcomes pick the same arms.
func TestAdaptiveUCBConvergesToBetterArm(t *testing.T) {
	run := func() (late map[string]int, seq string) {
		a := newAdaptive(t, `{"context":"none","cost_weight":0,"policy":"ucb"}`)
		p := map[string]float64{"a": 0.4, "b": 0.8, "c": 0.5}
		env := rand.New(rand.NewPCG(1, 2))
		req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
		late = map[string]int{}
		var b strings.Builder
		for i := range 2000 {
			cs := banditCands()
			a.Select(&req, cs)
			m := cs[0].Model
			b.WriteString(m)
			score := 0.0
			if env.Float64() < p[m] {
				score = 1
			}
			a.Observe("all", m, score)
			if i >= 1500 {
				late[m]++
			}
		}
		return late, b.String()
	}
	late, seq := run()
	if late["b"] < 450 {
		t.Fatalf("picks over the last 500 rounds: %v, want b at least 450 times", late)
	}
	if first := seq[:300]; !strings.Contains(first, "a") || !strings.Contains(first, "c") {
		t.Errorf("the first 300 picks never tried every arm: %s", first)
	}
	if _, again := run(); again != seq {
		t.Error("ucb is not deterministic for the same outcomes")
	}
}

// UCB's bonus shrinks with the arm's evidence and grows with the others'.
func TestUCBIndex(t *testing.T) {
	if !(ucbIndex(0.5, 10, 100) > ucbIndex(0.5, 100, 100)) {
		t.Error("more evidence does not shrink the bonus")
	}
	if !(ucbIndex(0.5, 10, 1000) > ucbIndex(0.5, 10, 100)) {
		t.Error("more evidence on the others does not grow the bonus")
	}
	if !(ucbIndex(0.7, 50, 200) > ucbIndex(0.6, 50, 200)) {
		t.Error("a higher mean does not rank higher at equal evidence")
	}
}

// Cost-aware: with two arms of equal quality, the cheaper wins; with a
// high cost weight, a cheap arm of lower quality beats an expensive good
// one, and with cost weight 0 it does not.
func TestAdaptiveCostAware(t *testing.T) {
	run := func(cfg string) map[string]int {
		a := newAdaptive(t, cfg)
		q := map[string]float64{"cheap": 0.7, "premium": 0.9}
		env := rand.New(rand.NewPCG(3, 4))
		req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
		picks := map[string]int{}
		for i := range 1500 {
			cs := []Candidate{
				{Model: "premium", InputPrice: 10, OutputPrice: 30, Priced: true},
				{Model: "cheap", InputPrice: 0.1, OutputPrice: 0.3, Priced: true},
			}
			a.Select(&req, cs)
			m := cs[0].Model
			s := 0.0
			if env.Float64() < q[m] {
				s = 1
			}
			a.Observe("all", m, s)
			if i >= 1000 {
				picks[m]++
			}
		}
		return picks
	}
	if got := run(`{"context":"none","cost_weight":0.5,"seed":1}`); got["cheap"] < 450 {
		t.Errorf("cost_weight 0.5: late picks %v, want mostly cheap (0.7 − 0.005 beats 0.9 − 0.5)", got)
	}
	if got := run(`{"context":"none","cost_weight":0,"seed":1}`); got["premium"] < 450 {
		t.Errorf("cost_weight 0: late picks %v, want mostly premium", got)
	}
}

// Failures are implicit feedback: an arm whose attempts fail loses its
// place; slow successes count against an arm when slow_after is set.
func TestAdaptiveImplicitSignals(t *testing.T) {
	a := newAdaptive(t, `{"context":"none","cost_weight":0,"seed":5,"slow_after":"1s"}`)
	req := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	for range 30 {
		a.Outcome(&req, "a", Signal{Failed: true})
		a.Outcome(&req, "b", Signal{Latency: 5 * time.Second})
		a.Outcome(&req, "c", Signal{Latency: 100 * time.Millisecond}) // fast success: no evidence
	}
	arms := a.Store().Arms(nil, "all", []string{"a", "b", "c"})
	if arms[0].Beta != 30 || arms[0].Alpha != 0 {
		t.Errorf("failed arm: %+v, want 30 failures", arms[0])
	}
	if arms[1].Beta != 15 {
		t.Errorf("slow arm: %+v, want 15 (half-weight) failures", arms[1])
	}
	if arms[2].N() != 0 {
		t.Errorf("fast success counted: %+v", arms[2])
	}
	wins := 0
	for range 100 {
		cs := banditCands()
		a.Select(&req, cs)
		if cs[0].Model == "c" {
			wins++
		}
	}
	if wins < 90 {
		t.Errorf("c first %d times of 100, want ≥ 90", wins)
	}
}

// Contexts are the difficulty buckets: what is learned on hard prompts
// does not move easy ones.
func TestAdaptiveContexts(t *testing.T) {
	a := newAdaptive(t, `{"seed":2}`)
	easy := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	hard := BuildRequest("/chat/completions", []byte(`{"messages":[{"role":"user","content":"`+strings.Repeat("Prove step by step that the algorithm is correct and derive its complexity. ", 120)+`"}]}`))
	ce, ch := a.ContextOf(&easy), a.ContextOf(&hard)
	if ce == ch || ce != "d0" {
		t.Fatalf("contexts easy %q hard %q, want d0 and another", ce, ch)
	}
	a.Observe(ch, "a", 1)
	if arms := a.Store().Arms(nil, ce, []string{"a"}); arms[0].N() != 0 {
		t.Errorf("feedback in %s reached %s: %+v", ch, ce, arms[0])
	}
}

// A config with the same route shares the learned state (a reload);
// another route or a state_key of its own does not.
func TestAdaptiveStateSurvivesReload(t *testing.T) {
	old := newAdaptive(t, `{"seed":1}`)
	old.BindRoute("test-reload")
	old.Observe("d0", "a", 1)
	next := newAdaptive(t, `{"seed":2}`)
	next.BindRoute("test-reload")
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if arms := next.Store().Arms(nil, "d0", []string{"a"}); arms[0].Alpha != 1 {
		t.Fatalf("after the reload: %+v, want the observation", arms[0])
	}
	other := newAdaptive(t, `{"seed":3}`)
	other.BindRoute("another-route")
	if arms := other.Store().Arms(nil, "d0", []string{"a"}); arms[0].N() != 0 {
		t.Errorf("another route sees the state: %+v", arms[0])
	}
	// Once nothing uses the route's state, it is gone.
	_ = next.Cleanup()
	fresh := newAdaptive(t, `{"seed":4}`)
	fresh.BindRoute("test-reload")
	if arms := fresh.Store().Arms(nil, "d0", []string{"a"}); arms[0].N() != 0 {
		t.Errorf("state kept after every user released it: %+v", arms[0])
	}
}

func TestAdaptiveValidate(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"cost_weight":-1}`:     "cost_weight",
		`{"context":"rule"}`:     "context",
		`{"policy":"greedy"}`:    "policy",
		`{"buckets":-2}`:         "buckets",
		`{"slow_after":"-1s"}`:   "slow_after",
		`{"prior_weight":-0.5}`:  "prior_weight",
		`{"expected_output":-1}`: "expected_output",
	} {
		a := new(Adaptive)
		if err := json.Unmarshal([]byte(cfg), a); err != nil {
			t.Fatal(err)
		}
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", cfg, err, want)
		}
	}
}
