package llmroute

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
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

// Caddy's active health checks feed the pair's state: when they find a
// provider's upstream again after none was, a cooldown of the
// gateway's own lets a probe through at once instead of at its probe
// interval (10m here), and the recovered provider answers again.
func TestActiveHealthRecoveryProbes(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			answer(503, `{"error":{"message":"down"}}`)(w, r)
			return
		}
		answer(200, okChat)(w, r)
	})
	b := newUpstream(t, answer(200, okChat))
	checked := `{"handler": "reverse_proxy", "transport": {"protocol": "http"}, "upstreams": [{"dial": "` + a.addr() + `"}],
		"health_checks": {"active": {"uri": "/health", "interval": 20000000, "timeout": 1000000000}}}`
	h := mustLoadHandler(t, `{
		"fail_threshold": 1, "cooldown": 600000000000, "probe_interval": 600000000000,
		"providers": [
			{"name": "a", "proxy": `+checked+`},
			{"name": "b", "proxy": `+gatewayProxy(b.addr())+`}
		],
		"models": [{"name": "m", "providers": ["a", "b"]}]
	}`)
	provider := func() *upstreams.Provider {
		for _, s := range h.models["m"].serving {
			if s.provider.Name == "a" {
				return s.provider
			}
		}
		t.Fatal("no provider a")
		return nil
	}()
	ask := func() string {
		t.Helper()
		rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
		if rec.Code != 200 {
			t.Fatalf("status %d %s", rec.Code, rec.Body)
		}
		return rec.Header().Get(HeaderProvider)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited in vain for %s", what)
			}
		}
	}

	waitUntil("the health checks to find a down", func() bool { return !provider.Available() })
	if got := ask(); got != "b" {
		t.Fatalf("answered by %s while a's health checks fail", got)
	}
	// a's last failure (a 503 it answered before the checks caught it)
	// opened a cooldown of the gateway's own.
	pair := pairOf(t, h, "m", "a")
	now := time.Now()
	pair.Finish(upstreams.Outcome{Result: upstreams.Failed, Probe: pair.Start(now)}, h.policy, now)
	if got := ask(); got != "b" {
		t.Fatalf("answered by %s while a cools down", got)
	}

	down.Store(false)
	waitUntil("the health checks to find a again", provider.Available)
	if got := ask(); got != "a" {
		t.Errorf("answered by %s after a's health checks recovered; want a's probe (cooling until %v)", got, pair.CooldownUntil())
	}
	if !pair.CooldownUntil().IsZero() {
		t.Errorf("a still cools down until %v after its probe succeeded", pair.CooldownUntil())
	}
}
