package llmroute

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// sharedConfig is pairConfig with the state in Redis at url, with the
// given timeout; state is "" for memory.
func sharedConfig(url, timeout string) string {
	state := ""
	if url != "" {
		state = fmt.Sprintf(`"state": {"backend": "redis", "url": %q, "timeout": %q, "sync_interval": "20ms"},`, url, timeout)
	}
	return `{` + state + `
		"providers": [{"name": "openai", "api_key": "{env.KEY_SHARED}", "proxy": ` + proxyTo("127.0.0.1:1") + `}],
		"models": [{"name": "m", "providers": ["openai"]}]
	}`
}

// With state redis and no limit, the pairs are shared through Redis:
// a reload with the same state keeps them, a config with the state in
// memory or on another client gets pairs of its own, and two clients
// (two sites, as two gateways would) see each other's cooldowns
// through Redis.
func TestStateRedisSharesPairs(t *testing.T) {
	srv := redistest.Start(t)
	shared := mustLoadHandler(t, sharedConfig(srv.URL(), "5s"))
	if shared.shared == nil {
		t.Fatal("state redis without limits does not share the pairs")
	}
	if shared.quotas != nil {
		t.Error("a store of limits without any limit")
	}
	p := pairOf(t, shared, "m", "openai")
	found := false
	for _, info := range upstreams.Pairs() {
		if info.Key == upstreams.PairKey(shared.providers["openai"], "m") && info.Shared {
			found = true
		}
	}
	if !found {
		t.Error("the pair is not listed as shared")
	}

	if again := mustLoadHandler(t, sharedConfig(srv.URL(), "5s")); pairOf(t, again, "m", "openai") != p {
		t.Error("a reload with the same state does not keep the pair's state")
	}
	memory := mustLoadHandler(t, sharedConfig("", ""))
	if pairOf(t, memory, "m", "openai") == p {
		t.Fatal("a memory config got the Redis config's pair")
	}
	other := mustLoadHandler(t, sharedConfig(srv.URL(), "6s"))
	q := pairOf(t, other, "m", "openai")
	if q == p {
		t.Fatal("two Redis clients got one pair object: sharing would not go through Redis")
	}

	coolDown(p, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for q.Available(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("a cooldown does not reach the other client's pair through Redis")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := pairOf(t, memory, "m", "openai"); !m.Available(time.Now()) {
		t.Error("the memory config's pair follows the shared one")
	}
	succeed(p)
}

func TestStateSyncInterval(t *testing.T) {
	d := caddyfile.NewTestDispenser(`state redis redis://127.0.0.1:6379 {
		sync_interval 250ms
	}`)
	d.Next()
	s, err := unmarshalState(d)
	if err != nil {
		t.Fatal(err)
	}
	if s.SyncInterval != caddy.Duration(250*time.Millisecond) {
		t.Errorf("sync_interval %v, want 250ms", time.Duration(s.SyncInterval))
	}
	for _, bad := range []string{"sync_interval x", "sync_interval"} {
		d := caddyfile.NewTestDispenser("state redis redis://127.0.0.1:6379 {\n" + bad + "\n}")
		d.Next()
		if _, err := unmarshalState(d); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	neg := &State{Backend: "redis", URL: "redis://127.0.0.1", SyncInterval: -1}
	if err := neg.Validate(); err == nil {
		t.Error("a negative sync_interval is valid")
	}
}
