package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	oaoption "github.com/openai/openai-go/v3/option"
)

// The admin API's JSON, as a client reads it.
type (
	adminOut struct {
		Handlers []adminHandlerOut `json:"handlers"`
	}
	adminHandlerOut struct {
		Name      string `json:"name"`
		Providers []struct {
			Name      string `json:"name"`
			APIKey    string `json:"api_key"`
			Healthy   bool   `json:"healthy"`
			Upstreams []struct {
				Address string `json:"address"`
			} `json:"upstreams"`
			Discovery *struct {
				Models      []string   `json:"models"`
				Fetches     int64      `json:"fetches"`
				LastSuccess *time.Time `json:"last_success"`
				Error       string     `json:"error"`
			} `json:"discovery"`
			Quota []adminQuotaOut `json:"quota"`
		} `json:"providers"`
		Models []struct {
			Name         string          `json:"name"`
			UpstreamName string          `json:"upstream_name"`
			Discovered   bool            `json:"discovered"`
			Providers    []adminPairOut  `json:"providers"`
			Quota        []adminQuotaOut `json:"quota"`
		} `json:"models"`
		Routes []struct {
			Name     string `json:"name"`
			Strategy string `json:"strategy"`
			Builtin  bool   `json:"builtin"`
		} `json:"routes"`
		Keys []struct {
			Name  string          `json:"name"`
			Quota []adminQuotaOut `json:"quota"`
		} `json:"keys"`
	}
	adminPairOut struct {
		Provider            string     `json:"provider"`
		Health              string     `json:"health"`
		CooldownUntil       *time.Time `json:"cooldown_until"`
		CooldownRemainingMs int64      `json:"cooldown_remaining_ms"`
		Stats               struct {
			LatencyMs float64 `json:"latency_ms"`
			ErrorRate float64 `json:"error_rate"`
			InFlight  int64   `json:"in_flight"`
			Samples   int64   `json:"samples"`
		} `json:"stats"`
	}
	adminQuotaOut struct {
		Limit     string     `json:"limit"`
		Max       float64    `json:"max"`
		Used      float64    `json:"used"`
		Remaining float64    `json:"remaining"`
		ResetsAt  *time.Time `json:"resets_at"`
	}
)

// adminCall sends a request to the admin API and returns the status and
// the body.
func adminCall(t *testing.T, method, path, body string, headers ...string) (int, []byte) {
	t.Helper()
	res := do(t, newHTTPClient(t), method, adminURL+path, strings.NewReader(body), int64(len(body)), headers...)
	return res.Status, res.Body
}

// adminState reads GET /llm_route/.
func adminState(t *testing.T) (adminOut, []byte) {
	t.Helper()
	status, body := adminCall(t, http.MethodGet, "/llm_route/", "")
	if status != http.StatusOK {
		t.Fatalf("GET /llm_route/: %d %s", status, body)
	}
	var out adminOut
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decoding the admin state: %v\n%s", err, body)
	}
	return out, body
}

func (o adminOut) handler(t *testing.T, name string) adminHandlerOut {
	t.Helper()
	for _, h := range o.Handlers {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no handler %q in the admin state", name)
	return adminHandlerOut{}
}

// pair returns the state of model at provider in handler h.
func (h adminHandlerOut) pair(t *testing.T, model, provider string) adminPairOut {
	t.Helper()
	for _, m := range h.Models {
		if m.Name != model {
			continue
		}
		for _, p := range m.Providers {
			if p.Provider == provider {
				return p
			}
		}
	}
	t.Fatalf("no model %s at provider %s in handler %s", model, provider, h.Name)
	return adminPairOut{}
}

func quotaOf(items []adminQuotaOut, limit string) *adminQuotaOut {
	for i := range items {
		if items[i].Limit == limit {
			return &items[i]
		}
	}
	return nil
}

// waitAdmin polls the admin state until cond holds, for up to 30s.
func waitAdmin(t *testing.T, what string, cond func(adminOut) bool) adminOut {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := adminState(t)
		if cond(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: the admin state never showed it", what)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, not a timing assumption
	}
}

const (
	providerSecret = "sk-provider-7c1d9e4f5a6b"
	headerSecret   = "hdr-secret-2b8e0a7d"
	otherKey       = "sk-second-9f3a1c5e7d2b"
)

// adminSetup: two llm_route handlers (sites), the gateway's "gw" and
// "second", provider keys and client keys written as literals (so a
// leak would show), limits on a model and a key.
func adminSetup() setup {
	mocks := defaultMocks()
	mocks[0].Lines = []string{"api_key " + providerSecret}
	return setup{
		Mocks: mocks,
		Route: fmt.Sprintf(`
		name gw
		provider alpha http://127.0.0.1:%d {
			api_key %s
		}
		provider beta http://127.0.0.1:%d {
			header X-Provider-Secret %s
		}
		model chat alpha beta {
			upstream_name mock-chat
		}
		model only-alpha alpha {
			daily_requests 100
		}
		route pair {
			models chat only-alpha
			strategy cheapest
		}
		key team {
			secret %s
			rpm 600
		}
`, portAlpha, providerSecret, portBeta, headerSecret, clientKey),
		Extra: fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	llm_route {
		name second
		provider alpha http://127.0.0.1:%d {
			api_key %s
		}
		model other alpha {
			upstream_name mock-other
		}
		key other {
			secret %s
		}
	}
}
`, portExtra1, portAlpha, providerSecret, otherKey),
	}
}

// The admin API shows the live state after scripted traffic (a cooldown
// included), resets what it is asked to, answers errors in Caddy's
// shape, and never shows a secret.
func TestAdminAPI(t *testing.T) {
	start(t, adminSetup())
	c := oaClient(t)
	for i := range 3 {
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams("only-alpha", prompt)); err != nil {
			t.Fatalf("only-alpha request %d: %v", i+1, err)
		}
	}
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt),
		faultHeader("alpha:status,code=429,retry_after=60"), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "chat", "beta", "chat", 2)
	// the second site serves its own model
	otherBody := chatBody("other")
	other := do(t, newHTTPClient(t), http.MethodPost, fmt.Sprintf("http://localhost:%d/v1/chat/completions", portExtra1),
		strings.NewReader(string(otherBody)), int64(len(otherBody)), "Authorization", "Bearer "+otherKey)
	if other.Status != http.StatusOK {
		t.Fatalf("second site: %d %s", other.Status, other.Body)
	}

	out, raw := adminState(t)
	for _, secret := range []string{providerSecret, headerSecret, clientKey, otherKey} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the admin state shows a secret %q:\n%s", secret, raw)
		}
	}
	gw := out.handler(t, "gw")
	second := out.handler(t, "second")

	// The cooldown, as the pair's state holds it.
	alpha := gw.pair(t, "chat", "alpha")
	want := cooldownUntil(t, "alpha", "mock-chat")
	if alpha.Health != "cooling" || alpha.CooldownUntil == nil || !alpha.CooldownUntil.Equal(want) {
		t.Errorf("chat at alpha: health %s until %v, want cooling until %v", alpha.Health, alpha.CooldownUntil, want)
	}
	if alpha.CooldownRemainingMs <= 0 || alpha.CooldownRemainingMs > 60_000 {
		t.Errorf("chat at alpha: %dms of cooldown remaining, want within the 60s of Retry-After", alpha.CooldownRemainingMs)
	}
	if alpha.Stats.ErrorRate != 1 || alpha.Stats.Samples != 1 {
		t.Errorf("chat at alpha: stats %+v, want one failed sample", alpha.Stats)
	}
	beta := gw.pair(t, "chat", "beta")
	if beta.Health != "healthy" || beta.CooldownUntil != nil || beta.Stats.Samples != 1 || beta.Stats.ErrorRate != 0 || beta.Stats.LatencyMs <= 0 {
		t.Errorf("chat at beta: %+v, want healthy with one good sample", beta)
	}
	oa := gw.pair(t, "only-alpha", "alpha")
	if oa.Health != "healthy" || oa.Stats.Samples != 3 || oa.Stats.InFlight != 0 {
		t.Errorf("only-alpha at alpha: %+v, want healthy with 3 samples", oa)
	}
	if p := second.pair(t, "other", "alpha"); p.Stats.Samples != 1 {
		t.Errorf("second site's other at alpha: %+v, want 1 sample", p)
	}

	// Quotas: the model's daily requests and the key's rpm.
	for _, m := range gw.Models {
		if m.Name != "only-alpha" {
			continue
		}
		q := quotaOf(m.Quota, "daily_requests")
		if q == nil || q.Max != 100 || q.Used != 3 || q.Remaining != 97 || q.ResetsAt == nil || !q.ResetsAt.After(time.Now()) {
			t.Errorf("only-alpha daily_requests: %+v, want 3 of 100 used, resetting ahead", q)
		}
	}
	if len(gw.Keys) != 1 || gw.Keys[0].Name != "team" {
		t.Fatalf("keys: %+v", gw.Keys)
	}
	if q := quotaOf(gw.Keys[0].Quota, "rpm"); q == nil || q.Max != 600 || !(q.Used > 0 && q.Used <= 4) {
		t.Errorf("team rpm: %+v, want up to 4 requests in the bucket", q)
	}

	// Providers: key redacted, upstream listed.
	for _, p := range gw.Providers {
		switch p.Name {
		case "alpha":
			if p.APIKey != "REDACTED" || len(p.Upstreams) != 1 || p.Upstreams[0].Address != fmt.Sprintf("127.0.0.1:%d", portAlpha) || !p.Healthy {
				t.Errorf("provider alpha: %+v", p)
			}
		case "beta":
			if p.APIKey != "" {
				t.Errorf("provider beta has no key, shows %q", p.APIKey)
			}
		}
	}
	routes := map[string]string{}
	for _, r := range gw.Routes {
		routes[r.Name] = r.Strategy
	}
	if routes["pair"] != "cheapest" || routes["auto"] != "balanced" {
		t.Errorf("routes: %v", routes)
	}

	// Reset the cooldown of chat at alpha: the pair is healthy again,
	// its stats are kept, and alpha answers at once.
	status, body := adminCall(t, http.MethodPost, "/llm_route/reset", `{"handler":"gw","provider":"alpha","model":"chat","reset":"cooldown"}`)
	if status != http.StatusOK || !strings.Contains(string(body), `"provider": "alpha"`) {
		t.Fatalf("reset cooldown: %d %s", status, body)
	}
	if until := cooldownUntil(t, "alpha", "mock-chat"); !until.IsZero() {
		t.Errorf("after the reset, alpha/mock-chat cools down until %v", until)
	}
	out, _ = adminState(t)
	if p := out.handler(t, "gw").pair(t, "chat", "alpha"); p.Health != "healthy" || p.CooldownUntil != nil || p.Stats.Samples != 1 {
		t.Errorf("after the cooldown reset: %+v, want healthy with its sample kept", p)
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	expectRoute(t, hr, "chat", "alpha", "chat", 1)

	// Reset alpha's stats everywhere: both sites' pairs at alpha.
	status, body = adminCall(t, http.MethodPost, "/llm_route/reset", `{"provider":"alpha","reset":"stats"}`)
	if status != http.StatusOK {
		t.Fatalf("reset stats: %d %s", status, body)
	}
	out, _ = adminState(t)
	if p := out.handler(t, "gw").pair(t, "only-alpha", "alpha"); p.Stats.Samples != 0 || p.Stats.LatencyMs != 0 {
		t.Errorf("only-alpha at alpha after the stats reset: %+v", p.Stats)
	}
	if p := out.handler(t, "second").pair(t, "other", "alpha"); p.Stats.Samples != 0 {
		t.Errorf("second's other at alpha after the stats reset: %+v", p.Stats)
	}
	if p := out.handler(t, "gw").pair(t, "chat", "beta"); p.Stats.Samples != 1 {
		t.Errorf("beta's stats were reset too: %+v", p.Stats)
	}

	// Errors, in Caddy's admin shape ({"error": …}).
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/llm_route/", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/llm_route/reset", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/llm_route/nothing", "", http.StatusNotFound},
		{http.MethodPost, "/llm_route/reset", `{}`, http.StatusBadRequest},
		{http.MethodPost, "/llm_route/reset", `{"provider":"alpha","reset":"everything"}`, http.StatusBadRequest},
		{http.MethodPost, "/llm_route/reset", `{"provider":"alpha","api_key":"x"}`, http.StatusBadRequest},
		{http.MethodPost, "/llm_route/reset", `not json`, http.StatusBadRequest},
		{http.MethodPost, "/llm_route/reset", `{"model":"nope"}`, http.StatusNotFound},
		{http.MethodPost, "/llm_route/reset", `{"handler":"third","provider":"alpha"}`, http.StatusNotFound},
	} {
		status, body := adminCall(t, tc.method, tc.path, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		if status != tc.status || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s %s %s: %d %s, want %d with an error message", tc.method, tc.path, tc.body, status, body, tc.status)
		}
	}
	// Caddy's admin server checks the host before the module runs.
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, adminURL+"/llm_route/reset", strings.NewReader(`{"provider":"alpha"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example"
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a request for another host: %d %s, want 403", resp.StatusCode, b)
	}
}
