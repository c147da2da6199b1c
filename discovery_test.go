package llmroute

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// listServer is a provider's model list endpoint whose answer the test
// sets: a JSON body, or "" for a 500.
type listServer struct {
	body     atomic.Value // string
	requests atomic.Int64
	auth     atomic.Value // string: the last credential header seen
}

func newListServer(t *testing.T, body string) (*listServer, string) {
	ls := new(listServer)
	ls.body.Store(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.requests.Add(1)
		ls.auth.Store(r.Header.Get("Authorization") + r.Header.Get("X-Api-Key") + "|" + r.Header.Get("Anthropic-Version"))
		b := ls.body.Load().(string)
		if r.URL.Path != "/v1/models" || b == "" {
			http.Error(w, `{"error":{"message":"down"}}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, b)
	}))
	t.Cleanup(srv.Close)
	return ls, strings.TrimPrefix(srv.URL, "http://")
}

func TestDiscoveryKeepsLastList(t *testing.T) {
	ls, addr := newListServer(t, `{"object":"list","data":[{"id":"m1"},{"id":"m2"},{"id":"m1"}]}`)
	h := mustLoadHandler(t, `{"providers": [{"name": "p", "api_key": "k-discovery-1234", "models": "auto",
		"models_refresh": "1h", "proxy": `+proxyTo(addr)+`}],
		"models": [{"name": "m*", "context": 5000}, {"name": "m2", "providers": ["p"], "upstream_name": "other"}]}`)
	if got := ls.auth.Load(); got != "Bearer k-discovery-1234|" {
		t.Errorf("the list was fetched with %q, want the provider's key", got)
	}
	m1 := h.model("m1")
	if m1 == nil || m1.Context != 5000 || m1.UpstreamName != "m1" || len(m1.serving) != 1 || m1.serving[0].provider.Name != "p" {
		t.Fatalf("discovered m1: %+v", m1)
	}
	if m2 := h.model("m2"); m2 == nil || m2.UpstreamName != "other" {
		t.Errorf("m2 is the registry's: %+v", m2)
	}
	if h.model("m*") != nil {
		t.Error("the pattern is a model")
	}

	core, logs := observer.New(zap.WarnLevel)
	h.logger = zap.New(core)
	p := h.providers["p"]
	ls.body.Store("")
	if changed, ok := h.disc.fetch(context.Background(), p); changed || ok {
		t.Fatalf("a failed fetch: changed %v ok %v", changed, ok)
	}
	if h.model("m1") == nil {
		t.Error("a failed fetch dropped the last known list")
	}
	st := h.disc.lists["p"].status()
	if !strings.Contains(st.Err, "status 500") || st.FailedAt.IsZero() || st.Fetched.IsZero() || len(st.IDs) != 2 {
		t.Errorf("status after a failure: %+v", st)
	}
	entries := logs.FilterMessage("model discovery failed; keeping the last known list").All()
	if len(entries) != 1 || entries[0].ContextMap()["provider"] != "p" || entries[0].ContextMap()["models"] != int64(2) {
		t.Errorf("log entries: %+v", logs.All())
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "k-discovery-1234") {
			t.Errorf("the log shows the key: %+v", e)
		}
	}

	ls.body.Store(`{"data":[{"id":"m3"}]}`)
	if changed, ok := h.disc.fetch(context.Background(), p); !changed || !ok {
		t.Fatalf("a new list: changed %v ok %v", changed, ok)
	}
	h.disc.rebuild()
	if h.model("m1") != nil || h.model("m3") == nil {
		t.Errorf("after a new list: m1 %v m3 %v", h.model("m1"), h.model("m3"))
	}
}

func TestDiscoveryAnthropicPages(t *testing.T) {
	var page atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != "k-ant-12345678" || r.Header.Get("Anthropic-Version") == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch page.Add(1) {
		case 1:
			fmt.Fprint(w, `{"data":[{"type":"model","id":"c1"}],"has_more":true,"last_id":"c1"}`)
		default:
			if r.URL.Query().Get("after_id") != "c1" {
				http.Error(w, "bad page", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"data":[{"type":"model","id":"c2"}],"has_more":false,"last_id":"c2"}`)
		}
	}))
	t.Cleanup(srv.Close)
	h := mustLoadHandler(t, `{"providers": [{"name": "a", "format": "anthropic", "api_key": "k-ant-12345678",
		"models": "auto", "proxy": `+proxyTo(strings.TrimPrefix(srv.URL, "http://"))+`}]}`)
	if h.model("c1") == nil || h.model("c2") == nil {
		t.Fatalf("discovered from two pages: %v", h.discoveredModels())
	}
}

func TestModelsPath(t *testing.T) {
	for _, tc := range []struct {
		path, id string
		ok       bool
	}{
		{"/v1/models", "", true},
		{"/v1/models/", "", true},
		{"/openai/v1/models", "", true},
		{"/v1/models/gpt-4o", "gpt-4o", true},
		{"/v1/models/meta/llama-3", "meta/llama-3", true},
		{"/v1/chat/completions", "", false},
		{"/v1/modelsx", "", false},
	} {
		id, ok := modelsPath(tc.path)
		if id != tc.id || ok != tc.ok {
			t.Errorf("modelsPath(%q) = %q, %v; want %q, %v", tc.path, id, ok, tc.id, tc.ok)
		}
	}
}

// A listed id that a registered model serves at that provider (its
// upstream_name there) is that model's, not a model of its own; at a
// provider where no registered model serves it, it is discovered.
func TestDiscoveryKeepsRegisteredUpstreamNames(t *testing.T) {
	_, addrP := newListServer(t, `{"data":[{"id":"mock-large"},{"id":"mock-reasoner"}]}`)
	_, addrQ := newListServer(t, `{"data":[{"id":"mock-large"}]}`)
	h := mustLoadHandler(t, `{"providers": [
		{"name": "p", "models": "auto", "models_refresh": "1h", "proxy": `+proxyTo(addrP)+`},
		{"name": "q", "models": "auto", "models_refresh": "1h", "proxy": `+proxyTo(addrQ)+`}],
		"models": [{"name": "large", "providers": ["p"], "upstream_name": "mock-large"}]}`)
	if h.model("mock-reasoner") == nil {
		t.Fatalf("mock-reasoner was not discovered: %v", h.discoveredModels())
	}
	m := h.model("mock-large")
	if m == nil || len(m.serving) != 1 || m.serving[0].provider.Name != "q" {
		t.Fatalf("mock-large: %+v, want a discovered model served by q alone (p serves it as large)", m)
	}
	if l := h.model("large"); l == nil || len(l.serving) != 1 || l.serving[0].provider.Name != "p" || l.UpstreamName != "mock-large" {
		t.Errorf("large: %+v", l)
	}
}

// A discovered id shaped like provider/model ("p/large", an aggregator's
// name for a model) does not take the place of that pin when provider p
// serves large: the request goes to p, and a key allowed large may ask
// for it. An id whose prefix serves no such model stays a model.
func TestDiscoveredIDDoesNotShadowPin(t *testing.T) {
	_, addrP := newListServer(t, `{"data":[]}`)
	_, addrR := newListServer(t, `{"data":[{"id":"p/large"},{"id":"p/other"}]}`)
	h := mustLoadHandler(t, `{"providers": [
		{"name": "p", "proxy": `+proxyTo(addrP)+`},
		{"name": "router", "models": "auto", "models_refresh": "1h", "proxy": `+proxyTo(addrR)+`}],
		"models": [{"name": "large", "providers": ["p"]}]}`)
	if h.model("p/large") == nil || h.model("p/other") == nil {
		t.Fatalf("not discovered: %v", h.discoveredModels())
	}
	rt, targets, rerr := h.targetsFor("p/large")
	if rerr != nil || rt != nil || len(targets) != 1 || targets[0].Provider != "p" || targets[0].Model != "large" {
		t.Fatalf("p/large resolves to %+v %v, want large pinned to p", targets, rerr)
	}
	if _, targets, rerr := h.targetsFor("p/other"); rerr != nil || len(targets) != 1 || targets[0].Model != "p/other" {
		t.Errorf("p/other resolves to %+v %v, want the discovered model", targets, rerr)
	}
	key := &ClientKey{Name: "k", Models: []string{"large"}}
	if !h.permits(key, "p/large") || h.permits(key, "p/other") {
		t.Errorf("a key allowed large: p/large %v, p/other %v", h.permits(key, "p/large"), h.permits(key, "p/other"))
	}
}
