package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config that loads but will not work as meant says so when it loads:
// a provider api_key whose placeholder resolves to nothing (an unset
// environment variable) and a client key written as a literal secret
// each give a WARN naming the provider or the key, and so does a
// provider key sent over plain HTTP to a remote host (not one on https,
// nor one on a private network); neither the
// literal secret nor anything of a key shows in the log.
func TestConfigWarnings(t *testing.T) {
	t.Setenv("LLMROUTE_E2E_UNSET_KEY", "")
	t.Setenv("LLMROUTE_E2E_TEAM_KEY", "team-b-secret-"+randomHex(8))
	literal := "team-a-literal-" + randomHex(8)
	caddyLog := filepath.Join(t.TempDir(), "caddy.log")
	start(t, setup{
		Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel WARN\n\t}", caddyLog),
		Mocks:  []mockSite{},
		Route: `
		provider empty http://127.0.0.1:9181 {
			api_key {env.LLMROUTE_E2E_UNSET_KEY}
		}
		provider runtime http://127.0.0.1:9182 {
			api_key {http.request.header.X-Upstream-Key}
		}
		provider plain http://api.example.invalid {
			api_key {env.LLMROUTE_E2E_TEAM_KEY}
		}
		provider tls https://api.example.invalid {
			api_key {env.LLMROUTE_E2E_TEAM_KEY}
		}
		provider lan http://10.0.0.7:8000 {
			api_key {env.LLMROUTE_E2E_TEAM_KEY}
		}
		model m empty runtime
		key team-a {
			secret ` + literal + `
		}
		key team-b {
			secret {env.LLMROUTE_E2E_TEAM_KEY}
		}`,
	})
	raw, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), literal) || strings.Contains(string(raw), os.Getenv("LLMROUTE_E2E_TEAM_KEY")) {
		t.Errorf("a secret is in the log:\n%s", raw)
	}
	warned := map[string]int{}
	for line := range strings.Lines(string(raw)) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil || e["level"] != "warn" {
			continue
		}
		msg, _ := e["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "provider api_key resolves to an empty value"):
			warned["provider "+fmt.Sprint(e["provider"])]++
		case strings.HasPrefix(msg, "provider api_key goes over plain HTTP"):
			warned["plain "+fmt.Sprint(e["provider"], " ", e["upstream"])]++
		case strings.HasPrefix(msg, "client key secret is a literal"):
			warned["key "+fmt.Sprint(e["key"])]++
		}
	}
	want := map[string]int{"provider empty": 1, "key team-a": 1, "plain plain api.example.invalid:80": 1}
	if fmt.Sprint(warned) != fmt.Sprint(want) {
		t.Errorf("warnings %v, want %v; the log:\n%s", warned, want, raw)
	}
}
