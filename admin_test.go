package llmroute

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The admin API shows the pair's own state, through a cooldown, its
// half-open probe and the ramp after it, not one derived from the
// cooldown's end alone.
func TestAdminPairHealth(t *testing.T) {
	prov := &upstreams.Provider{Name: "admin-health-test"}
	pair := upstreams.AcquirePair(prov, "m", nil)
	defer upstreams.ReleasePair(prov, "m", nil)
	s := serving{provider: prov, pair: pair}
	policy := upstreams.Policy{Cooldown: 30 * time.Second, FailThreshold: 1, ProbeInterval: time.Second, Ramp: 2 * time.Second}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	check := func(at time.Time, health string, probes, recoveries uint64) {
		t.Helper()
		ap := pairState(s, at)
		if ap.Health != health || ap.Probes != probes || ap.Recoveries != recoveries {
			t.Errorf("at +%v: health %q, probes %d, recoveries %d; want %q, %d, %d", at.Sub(now), ap.Health, ap.Probes, ap.Recoveries, health, probes, recoveries)
		}
	}
	check(now, "healthy", 0, 0)
	pair.Start(now)
	pair.Finish(upstreams.Outcome{Result: upstreams.Failed}, policy, now)
	check(now.Add(500*time.Millisecond), "cooling", 0, 0)
	at := now.Add(time.Second)
	check(at, "half_open", 0, 0)
	if !pair.Start(at) {
		t.Fatal("no probe after the probe interval")
	}
	check(at, "probing", 1, 0)
	pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Probe: true}, policy, at)
	check(at.Add(time.Second), "ramping", 1, 1)
	if ap := pairState(s, at.Add(time.Second)); ap.CooldownUntil != nil {
		t.Errorf("a cooldown after the recovery: %v", ap.CooldownUntil)
	}
	check(at.Add(3*time.Second), "healthy", 1, 1)
}

// A reset that matches nothing says what did not match, as a 404 (a
// request without a provider or a model is a 400).
func TestAdminResetErrors(t *testing.T) {
	mustLoadHandler(t, `{
		"name": "admin-reset-test",
		"providers": [
			{"name": "reset-p1", "proxy": `+proxyTo("127.0.0.1:1")+`},
			{"name": "reset-p2", "proxy": `+proxyTo("127.0.0.1:1")+`}
		],
		"models": [{"name": "reset-m1", "providers": ["reset-p1"]}, {"name": "reset-m2", "providers": ["reset-p2"]}]
	}`)
	for _, tc := range []struct {
		body   string
		status int
		msg    string
	}{
		{`{"provider":"reset-p1","model":"reset-m1","handler":"admin-reset-test"}`, 200, ""},
		{`{"provider":"nope"}`, 404, `unknown provider "nope"`},
		{`{"provider":"nope","handler":"admin-reset-test"}`, 404, `unknown provider "nope" in handler "admin-reset-test"`},
		{`{"model":"nope","handler":"admin-reset-test"}`, 404, `unknown model "nope" in handler "admin-reset-test"`},
		{`{"model":"reset-m1","handler":"no-such-handler"}`, 404, `unknown handler "no-such-handler"`},
		{`{"provider":"reset-p2","model":"reset-m1","handler":"admin-reset-test"}`, 404, `provider "reset-p2" does not serve model "reset-m1" in handler "admin-reset-test"`},
		{`{"handler":"admin-reset-test"}`, 400, "name a provider, a model or both"},
		{`{"provider":"reset-p1","reset":"everything"}`, 400, `reset must be cooldown, stats or all`},
	} {
		w := httptest.NewRecorder()
		err := adminAPI{}.reset(w, httptest.NewRequest("POST", "/llm_route/reset", strings.NewReader(tc.body)))
		var apiErr caddy.APIError
		switch {
		case tc.status == 200 && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.status != 200 && (!errors.As(err, &apiErr) || apiErr.HTTPStatus != tc.status || !strings.Contains(apiErr.Err.Error(), tc.msg)):
			t.Errorf("%s: %v, want %d %q", tc.body, err, tc.status, tc.msg)
		}
	}
}

// The routes in the admin API show their hedge setting, and the hedges
// the budget allows now (full before the first request).
func TestAdminRouteHedge(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "p", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "a", "providers": ["p"]}, {"name": "b", "providers": ["p"]}],
		"routes": [
			{"name": "hedged", "targets": [{"model": "a"}, {"model": "b"}], "hedge": {"delay": "100ms"}},
			{"name": "adaptive", "targets": [{"model": "a"}, {"model": "b"}], "hedge": {"adaptive": "p95", "budget": 0.05}},
			{"name": "plain", "targets": [{"model": "a"}]}
		]
	}`)
	got := map[string]string{}
	for _, r := range h.adminState(t.Context(), "x", time.Now()).Routes {
		b, _ := json.Marshal(r.Hedge)
		got[r.Name] = string(b)
	}
	for route, want := range map[string]string{
		"hedged":   `{"delay":"100ms","budget":0.1,"saved":10}`,
		"adaptive": `{"adaptive":"p95","budget":0.05,"saved":10}`,
		"plain":    `null`,
	} {
		if got[route] != want {
			t.Errorf("route %s: hedge %s, want %s", route, got[route], want)
		}
	}
}
