package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	oaoption "github.com/openai/openai-go/v3/option"
)

const claudeKey = "sk-ant-mock-4e2a9c1b7d"

// Discovery: alpha (OpenAI format) and claude (Anthropic format) list
// their models; alpha's list endpoint fails after its first answer.
func discoverySetup() setup {
	mocks := defaultMocks()
	mocks[0].Lines = []string{"models gpt-x1 gpt-x2 gpt-y1", "fault list_status,code=500,after=1"}
	mocks[2].Lines = []string{"models claude-d1 claude-d2", "api_key " + claudeKey}
	return setup{
		Mocks: mocks,
		Route: fmt.Sprintf(`
		name disc
		provider alpha http://127.0.0.1:%d {
			models auto
			models_refresh 1s
		}
		provider beta http://127.0.0.1:%d
		provider claude http://127.0.0.1:%d {
			format anthropic
			api_key %s
			models auto
		}
		model gpt-x* {
			context 1000
		}
		model gpt-x2 beta {
			upstream_name mock-chat
		}
`, portAlpha, portBeta, portClaude, claudeKey),
	}
}

// providerDiscovery returns the discovery state of provider in handler
// "disc".
func providerDiscovery(o adminOut, provider string) (models []string, fetches int64, errMsg string, ok bool) {
	for _, h := range o.Handlers {
		if h.Name != "disc" {
			continue
		}
		for _, p := range h.Providers {
			if p.Name == provider && p.Discovery != nil && p.Discovery.LastSuccess != nil {
				return p.Discovery.Models, p.Discovery.Fetches, p.Discovery.Error, true
			}
		}
	}
	return nil, 0, "", false
}

// `models auto` registers the models a provider lists (OpenAI's and
// Anthropic's list shapes, with the provider's credentials), a registry
// entry of the same name overrides a discovered model and a pattern
// entry gives discovered models defaults; a failing list endpoint keeps
// the last known list and the admin API says so.
func TestModelDiscovery(t *testing.T) {
	start(t, discoverySetup())
	// (the mocks listen once the configuration has started: the first
	// fetches at provision fail, the fetches after the start succeed)
	waitAdmin(t, "both lists", func(o adminOut) bool {
		_, _, _, a := providerDiscovery(o, "alpha")
		_, _, _, c := providerDiscovery(o, "claude")
		return a && c
	})
	c := oaClient(t)
	for _, tc := range []struct{ model, provider string }{
		{"gpt-x1", "alpha"},     // discovered
		{"gpt-y1", "alpha"},     // discovered, no pattern
		{"gpt-x2", "beta"},      // the registry's entry wins
		{"claude-d2", "claude"}, // discovered from an Anthropic list
		{"alpha/gpt-x1", "alpha"},
	} {
		var hr *http.Response
		if _, err := c.Chat.Completions.New(ctxT(t), chatParams(tc.model, prompt), oaoption.WithResponseInto(&hr)); err != nil {
			t.Fatalf("%s: %v", tc.model, err)
		}
		if got := routeOf(hr.Header); got.Provider != tc.provider || got.Attempts != 1 {
			t.Errorf("%s: routed %s, want provider %s", tc.model, got, tc.provider)
		}
	}
	// The pattern's context window applies to gpt-x1, not to gpt-y1.
	big := chatBody("gpt-x1", `"max_tokens":5000`)
	if res := post(t, newHTTPClient(t), "/v1/chat/completions", big); res.Status != http.StatusBadRequest || !strings.Contains(string(res.Body), "context window") {
		t.Errorf("gpt-x1 past its pattern's context: %d %s", res.Status, res.Body)
	}
	if res := post(t, newHTTPClient(t), "/v1/chat/completions", chatBody("gpt-y1", `"max_tokens":5000`)); res.Status != http.StatusOK {
		t.Errorf("gpt-y1 with max_tokens 5000: %d %s", res.Status, res.Body)
	}

	// The gateway's list shows the discovered models.
	var ids []string
	iter := c.Models.ListAutoPaging(ctxT(t))
	for iter.Next() {
		ids = append(ids, iter.Current().ID)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gpt-x1", "gpt-x2", "gpt-y1", "claude-d1", "claude-d2"} {
		if !slices.Contains(ids, want) {
			t.Errorf("the model list %v lacks %s", ids, want)
		}
	}

	// alpha's list now fails: the last list stays, and says why.
	o := waitAdmin(t, "alpha's failed refresh", func(o adminOut) bool {
		_, _, e, _ := providerDiscovery(o, "alpha")
		return e != ""
	})
	models, fetches, e, _ := providerDiscovery(o, "alpha")
	if !slices.Equal(models, []string{"gpt-x1", "gpt-x2", "gpt-y1"}) || fetches < 2 || !strings.Contains(e, "500") {
		t.Errorf("alpha's discovery after a failure: models %v fetches %d error %q", models, fetches, e)
	}
	var hr *http.Response
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("gpt-x1", prompt), oaoption.WithResponseInto(&hr)); err != nil {
		t.Fatalf("gpt-x1 after the failed refresh: %v", err)
	}
	for _, h := range o.Handlers {
		for _, m := range h.Models {
			if m.Name == "gpt-x1" && (!m.Discovered || len(m.Providers) != 1 || m.Providers[0].Provider != "alpha") {
				t.Errorf("gpt-x1 in the admin state: %+v", m)
			}
			if m.Name == "gpt-x2" && m.Discovered {
				t.Errorf("gpt-x2 is the registry's: %+v", m)
			}
		}
	}
}

// A provider that accepts connections and never answers does not hold
// the configuration load past models_timeout; its discovery shows the
// failure.
func TestDiscoveryDeadProvider(t *testing.T) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", portExtra2))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	start(t, setup{Route: fmt.Sprintf(`
		name disc
		provider silent http://127.0.0.1:%d {
			models auto
			models_timeout 300ms
		}
		provider alpha http://127.0.0.1:%d
		model chat alpha
`, portExtra2, portAlpha)})
	o, _ := adminState(t)
	for _, p := range o.handler(t, "disc").Providers {
		if p.Name == "silent" {
			if p.Discovery == nil || p.Discovery.Error == "" || p.Discovery.LastSuccess != nil || len(p.Discovery.Models) != 0 {
				t.Errorf("silent's discovery: %+v", p.Discovery)
			}
		}
	}
	c := oaClient(t)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil {
		t.Fatal(err)
	}
}

// A discovering provider that is a site of the same Caddy: on a cold
// start it does not listen yet when the config is provisioned, and on a
// reload the previous config's site answers then. Its list is fetched
// again once the config has started, so the list is the new config's at
// once and a cold start logs no warning. The id a registered model
// serves at the provider (its upstream_name) stays that model's.
func TestDiscoveryOwnSite(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cfg := func(models string) setup {
		return setup{
			Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel WARN\n\t}", logFile),
			Mocks:  []mockSite{{Port: portExtra1, Name: "lister", Text: "Listed.", Lines: []string{"models " + models}}},
			Route: fmt.Sprintf(`
		name disc
		provider lister http://127.0.0.1:%d {
			models auto
			models_refresh 1h
		}
		model big lister {
			upstream_name mock-big
		}
`, portExtra1),
		}
	}
	listed := func(want ...string) func(adminOut) bool {
		return func(o adminOut) bool {
			models, _, _, ok := providerDiscovery(o, "lister")
			return ok && slices.Equal(models, want)
		}
	}

	start(t, cfg("mock-big one"))
	waitAdmin(t, "the first list", listed("mock-big", "one"))
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logs), "model discovery failed") {
		t.Errorf("a cold start warned of its own site:\n%s", logs)
	}

	loadConfig(t, cfg("mock-big two"))
	waitAdmin(t, "the new config's list", listed("mock-big", "two"))

	var ids []string
	c := oaClient(t)
	iter := c.Models.ListAutoPaging(ctxT(t))
	for iter.Next() {
		ids = append(ids, iter.Current().ID)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, "big") || !slices.Contains(ids, "two") || slices.Contains(ids, "mock-big") || slices.Contains(ids, "one") {
		t.Errorf("the gateway lists %v: want big and two, not mock-big (big's) or one (the old list)", ids)
	}
}
