package llmroute

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// pairConfig is a handler with one provider "openai" (the given api_key
// and extra provider fields) serving model m.
func pairConfig(apiKey, extra string) string {
	return `{
		"providers": [{"name": "openai", "api_key": "` + apiKey + `", ` + extra + ` "proxy": ` + proxyTo("127.0.0.1:1") + `}],
		"models": [{"name": "m", "providers": ["openai"]}]
	}`
}

// Two handlers (two sites) that each define a provider called openai
// with a different key keep separate cooldowns and stats; the same
// provider in a reloaded config keeps its state.
func TestPairStateIdentity(t *testing.T) {
	siteA := mustLoadHandler(t, pairConfig("{env.KEY_A}", ""))
	siteB := mustLoadHandler(t, pairConfig("{env.KEY_B}", ""))
	a, b := pairOf(t, siteA, "m", "openai"), pairOf(t, siteB, "m", "openai")
	coolDown(a, time.Minute)
	if until := b.CooldownUntil(); !until.IsZero() {
		t.Fatalf("a 429 on site A's account cooled site B's down until %v", until)
	}
	if !b.Available(time.Now()) || a.Available(time.Now()) {
		t.Fatal("availability follows the other site's pair")
	}

	// A reload: the same provider in a new config gets the same state.
	reloaded := mustLoadHandler(t, pairConfig("{env.KEY_A}", ""))
	if got := pairOf(t, reloaded, "m", "openai").CooldownUntil(); !got.Equal(a.CooldownUntil()) {
		t.Errorf("reloaded config: cooldown until %v, want %v", got, a.CooldownUntil())
	}
	// Another upstream address is another provider.
	moved := mustLoadHandler(t, `{
		"providers": [{"name": "openai", "api_key": "{env.KEY_A}", "proxy": `+proxyTo("127.0.0.1:2")+`}],
		"models": [{"name": "m", "providers": ["openai"]}]
	}`)
	if got := pairOf(t, moved, "m", "openai").CooldownUntil(); !got.IsZero() {
		t.Errorf("a provider at another address shares the cooldown (until %v)", got)
	}
	// An explicit state_key shares state on purpose.
	k1 := mustLoadHandler(t, pairConfig("{env.KEY_A}", `"state_key": "shared",`))
	k2 := mustLoadHandler(t, pairConfig("{env.KEY_C}", `"state_key": "shared",`))
	coolDown(pairOf(t, k1, "m", "openai"), time.Minute)
	if got := pairOf(t, k2, "m", "openai").CooldownUntil(); got.IsZero() {
		t.Error("providers with the same state_key do not share their state")
	}
}

// A pair's state lives while a config uses it: stats survive a reload
// (the new config is provisioned before the old one is cleaned up), and
// the state goes with the last config that used it.
func TestPairStateSurvivesReload(t *testing.T) {
	cfg := pairConfig("{env.KEY_RELOAD}", "")
	old := new(Handler)
	if err := json.Unmarshal([]byte(cfg), old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Cleanup() })
	if err := old.Provision(newContext(t)); err != nil {
		t.Fatal(err)
	}
	p := pairOf(t, old, "m", "openai")
	now := time.Now()
	for range 3 {
		probe := p.Start(now)
		p.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Probe: probe, Timed: true, Total: 40 * time.Millisecond}, upstreams.Policy{}, now)
	}

	// Reload: provision the new config, then clean up the old one.
	next := mustLoadHandler(t, cfg)
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s := pairOf(t, next, "m", "openai").Snapshot()
	if s.Samples != 3 || s.LatencyMs != 40 {
		t.Fatalf("stats after the reload: %+v, want 3 samples of 40ms", s)
	}

	// Once no config uses the pair, its state is gone.
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, info := range upstreams.Pairs() {
		if info.Provider == "openai" && info.Model == "m" && info.Key == upstreams.PairKey(next.providers["openai"], "m") {
			t.Fatalf("state of %s kept after every config using it was cleaned up", info.Key)
		}
	}
	fresh := mustLoadHandler(t, cfg)
	if s := pairOf(t, fresh, "m", "openai").Snapshot(); s.Samples != 0 {
		t.Errorf("a config loaded after the pair was released sees old stats: %+v", s)
	}
}
