package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of issue 9: each reproduces an attack on the gateway, or a
// fault of an upstream, that the gateway once let through.

// A key that differs from a routed key only in case is read by Go's
// encoding/json (and so by Ollama and other Go servers) as that key:
// {"model":"a","MODEL":"b"} would be routed on a and served as b.
func TestModelSmugglingByKeyCase(t *testing.T) {
	srv, rec := newRecorder(t, false)
	s := withDefaults(`
		provider rec ` + srv.URL + `
		model allowed rec`)
	start(t, s)
	hc := newHTTPClient(t)
	for _, tc := range []struct{ name, body, code string }{
		{"MODEL after model", `{"model":"allowed","MODEL":"forbidden","messages":[]}`, "duplicate_key"},
		{"Model before model", `{"Model":"forbidden","model":"allowed","messages":[]}`, "ambiguous_key"},
		{"stream with a long s", `{"model":"allowed","messages":[],"stream":false,"\u017ftream":true}`, "duplicate_key"},
		{"max_tokens with a Kelvin sign", `{"model":"allowed","messages":[],"max_tokens":5,"max_to\u212aens":100000}`, "duplicate_key"},
		{"lone MAX_TOKENS", `{"model":"allowed","messages":[],"MAX_TOKENS":100000}`, "ambiguous_key"},
		{"lone Messages", `{"model":"allowed","Messages":[{"role":"user","content":"hi"}]}`, "ambiguous_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, "/v1/chat/completions", []byte(tc.body)), http.StatusBadRequest, tc.code)
		})
	}
	if n := rec.count(); n != 0 {
		t.Errorf("the upstream received %d requests; last body %s", n, rec.last(t).Body)
	}
	// the control: the same request without the smuggled key is served
	if res := post(t, hc, "/v1/chat/completions", []byte(`{"model":"allowed","messages":[],"max_tokens":5}`)); res.Status != 200 {
		t.Errorf("plain request: %d %s", res.Status, res.Body)
	}
}

// allocated returns the bytes the whole process (Caddy and the gateway
// in it included) allocates while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// An 8 MiB body whose `models` array repeats a valid name about a
// million times once cost 250 to 330 MB and seconds of CPU per request;
// eight at once took the process past 2 GB. Now the list is bounded
// (no repeats, no more entries than the gateway has routes and
// model+provider pairs) and reading a request costs about its size.
func TestClientModelsBomb(t *testing.T) {
	start(t, withDefaults(`
		client_models
		max_body 16MB`))
	hc := newHTTPClient(t)
	bomb := func(item string) []byte {
		var b bytes.Buffer
		b.WriteString(`{"model":"only-alpha","messages":[{"role":"user","content":"hi"}],"models":[`)
		for b.Len() < 8<<20 {
			b.WriteString(item)
			b.WriteByte(',')
		}
		b.WriteString(item + `]}`)
		return b.Bytes()
	}
	for _, tc := range []struct{ name, item string }{
		{"a model repeated", `"only-beta"`},
		{"a route repeated", `"auto"`},
		{"a pinned model repeated", `"beta/only-beta"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bomb(tc.item)
			var res rawResponse
			alloc := allocated(func() { res = post(t, hc, "/v1/chat/completions", body) })
			expectOpenAIError(t, res, http.StatusBadRequest, "invalid_models")
			t.Logf("%d bytes allocated for a %d byte body (%.1fx)", alloc, len(body), float64(alloc)/float64(len(body)))
			if alloc > 3*uint64(len(body)) {
				t.Errorf("the request allocated %.1f times its body size", float64(alloc)/float64(len(body)))
			}
		})
	}

	t.Run("eight at once", func(t *testing.T) {
		body := bomb(`"only-beta"`)
		var wg sync.WaitGroup
		codes := make([]int, 8)
		alloc := allocated(func() {
			for i := range codes {
				wg.Go(func() { codes[i] = postStatus(hc, body) })
			}
			wg.Wait()
		})
		for _, c := range codes {
			if c != http.StatusBadRequest {
				t.Errorf("status %d, want 400", c)
			}
		}
		if t.Failed() {
			return
		}
		if alloc > 3*uint64(len(codes)*len(body)) {
			t.Errorf("eight requests allocated %.1f times their bodies", float64(alloc)/float64(len(codes)*len(body)))
		}
	})

	t.Run("a list within bounds still works", func(t *testing.T) {
		body := chatBody("only-alpha", `"models":["only-beta","alpha/chat"]`)
		res := post(t, hc, "/v1/chat/completions", body, "X-Mock-Fault", "alpha:status,code=503")
		if res.Status != 200 || routeOf(res.Header).Provider != "beta" {
			t.Errorf("got %d from %s: %s", res.Status, routeOf(res.Header), res.Body)
		}
		for _, bad := range []string{
			`"models":["only-beta","only-beta"]`,
			`"models":["only-beta",42]`,
			`"models":[` + strings.Repeat(`"auto",`, 50) + `"chat"]`,
		} {
			expectOpenAIError(t, post(t, hc, "/v1/chat/completions", chatBody("only-alpha", bad)), http.StatusBadRequest, "invalid_models")
		}
	})
}

// postStatus sends a chat completions request from any goroutine and
// returns the status, or 0 when none came.
func postStatus(hc *http.Client, body []byte) int {
	resp, err := hc.Post(gatewayURL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// With enable_on_path_suffix *, the path after /v1 is the endpoint the
// provider is called at, under its base path. A dot segment, encoded or
// not, once took the call out of the base path, with the operator's key.
func TestPathTraversal(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	srv, rec := newRecorder(t, false)
	start(t, setup{Mocks: []mockSite{}, Route: `
		enable_on_path_suffix *
		provider rec ` + srv.URL + `/v1/restricted {
			api_key {env.LLMROUTE_TEST_KEY}
		}
		model m rec`})
	hc := newHTTPClient(t)
	for _, path := range []string{
		"/v1/%2e%2e/%2e%2e/admin",
		"/v1/%2E%2E/%2E%2E/admin",
		"/v1/..%2f..%2fadmin",
		"/v1/..%2F..%2Fadmin",
		"/x/../../../admin",
		"/v1/./admin",
		"/v1/..;/..;/admin",
		"/v1/%2e%2e%5c%2e%2e%5cadmin",
		"/v1/%252e%252e/%252e%252e/admin",
		"/v1/chat/completions/../../../admin",
	} {
		t.Run(path, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, path, chatBody("m")), http.StatusBadRequest, "invalid_path")
		})
	}
	if n := rec.count(); n != 0 {
		got := rec.last(t)
		t.Errorf("the upstream received %d requests; the last at %s with %q", n, got.Path, got.Header.Get("Authorization"))
	}
	// the control: a plain path is served, under the base path
	if res := post(t, hc, "/v1/custom/endpoint", chatBody("m")); res.Status != 200 {
		t.Fatalf("plain path: %d %s", res.Status, res.Body)
	}
	if got := rec.last(t).Path; got != "/v1/restricted/custom/endpoint" {
		t.Errorf("upstream path %q", got)
	}
}

// The operator's key travels with what the client sends upstream: a
// client's query string (?key=…) and billing headers (OpenAI-Organization,
// OpenAI-Project) once went along, so a client chose which organization
// or project the operator's key billed. Only what the provider's format
// needs, and what the operator names, is forwarded.
func TestForwardAllowlist(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	srv, rec := newRecorder(t, false)
	start(t, setup{Mocks: []mockSite{}, Route: `
		forward_headers X-Request-Id
		provider rec ` + srv.URL + ` {
			api_key {env.LLMROUTE_TEST_KEY}
		}
		provider az ` + srv.URL + ` {
			format azure
			api_key {env.LLMROUTE_TEST_KEY}
		}
		model m rec
		model deployment az`})
	hc := newHTTPClient(t)
	headers := []string{
		"OpenAI-Organization", "org-chosen-by-client",
		"OpenAI-Project", "proj-chosen-by-client",
		"X-Custom", "client-header",
		"X-Forwarded-Host", "evil.example",
		"X-Request-Id", "req-1",
		"OpenAI-Beta", "assistants=v2",
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	for _, tc := range []struct{ model, path, query string }{
		{"m", "/v1/chat/completions?key=client-chosen&organization=org-x", ""},
		{"deployment", "/v1/chat/completions?api-version=1999-01-01&key=client-chosen", "api-version=2024-10-21"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			if res := post(t, hc, tc.path, chatBody(tc.model), headers...); res.Status != 200 {
				t.Fatalf("%d %s", res.Status, res.Body)
			}
			got := rec.last(t)
			if got.Query != tc.query {
				t.Errorf("upstream query %q, want %q", got.Query, tc.query)
			}
			for _, name := range []string{"OpenAI-Organization", "OpenAI-Project", "X-Custom"} {
				if v := got.Header.Values(name); len(v) != 0 {
					t.Errorf("client header %s reached the upstream: %q", name, v)
				}
			}
			if v := got.Header.Get("X-Forwarded-Host"); v == "evil.example" {
				t.Errorf("the client's X-Forwarded-Host reached the upstream")
			}
			for name, want := range map[string]string{
				"X-Request-Id": "req-1", "OpenAI-Beta": "assistants=v2",
				"Traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				"Content-Type": "application/json",
			} {
				if v := got.Header.Get(name); v != want {
					t.Errorf("upstream %s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

// Once llm_route has checked a client's key, or stripped the client's
// credentials for a provider, what reads the request afterwards does not
// see them: placeholders such as {http.request.header.X-Api-Key} in
// log_append fields (the access log), later handlers. Caddy's own
// record of the request as it arrived (the access log's request>headers)
// is made before any handler runs: it redacts Authorization and Cookie
// only, and the README's filter is what covers the rest.
func TestClientKeysOutOfLogs(t *testing.T) {
	secret := "sk-gateway-client-" + randomHex(8)
	t.Setenv("LLMROUTE_CLIENT_SECRET", secret)
	dir := t.TempDir()
	plain, filtered := dir+"/access.log", dir+"/filtered.log"
	logAppend := ""
	for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
		logAppend += "\tlog_append seen_" + h + " {http.request.header." + h + "}\n"
	}
	for _, keys := range []bool{true, false} {
		name := "stripped"
		route := defaultRoute
		if keys {
			name = "checked"
			route += "\t\tkey team {\n\t\t\tsecret {env.LLMROUTE_CLIENT_SECRET}\n\t\t}\n"
		}
		t.Run(name, func(t *testing.T) {
			start(t, setup{
				Site: logAppend + "\tlog {\n\t\toutput file " + plain + "\n\t\tformat json\n\t}\n" +
					"\tlog filtered {\n\t\toutput file " + filtered + "\n\t\tformat filter {\n\t\t\twrap json\n" +
					"\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t\trequest>headers>Api-Key replace REDACTED\n" +
					"\t\t\trequest>headers>X-Goog-Api-Key replace REDACTED\n\t\t}\n\t}",
				Route: route, Mocks: defaultMocks(),
			})
			hc := newHTTPClient(t)
			for i, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
				v := secret
				if h == "Authorization" {
					v = "Bearer " + secret
				}
				res := post(t, hc, "/v1/chat/completions", chatBody("chat"), h, v, "X-Test-Id", name+strconv.Itoa(i))
				if res.Status != 200 {
					t.Fatalf("%s: %d %s", h, res.Status, res.Body)
				}
			}
			// the entries are written once the responses are
			var entries map[string]map[string]any
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				entries = accessEntries(t, plain)
				if _, ok := entries[name+"3"]; ok || time.Now().After(deadline) {
					break
				}
			}
			for i, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
				e, ok := entries[name+strconv.Itoa(i)]
				if !ok {
					t.Fatalf("no access log entry for %s", h)
				}
				if got := e["seen_"+h]; got != "REDACTED" {
					t.Errorf("log_append of %s after llm_route shows %q, want REDACTED", h, got)
				}
				req := e["request"].(map[string]any)
				delete(req, "headers") // Caddy's record of the request as it arrived
				if b, _ := json.Marshal(e); strings.Contains(string(b), secret) {
					t.Errorf("the client key sent in %s is in the access log beyond Caddy's request>headers: %s", h, b)
				}
			}
			b, err := os.ReadFile(filtered)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), secret) {
				t.Errorf("the client key is in the access log filtered as the README says")
			}
			// Caddy's own record of the request redacts Authorization
			if strings.Contains(string(b), "Bearer "+secret) {
				t.Errorf("Authorization in clear")
			}
		})
	}
}

// accessEntries reads an access log file, by X-Test-Id.
func accessEntries(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		req, _ := e["request"].(map[string]any)
		hdr, _ := req["headers"].(map[string]any)
		if ids, _ := hdr["X-Test-Id"].([]any); len(ids) == 1 {
			out[ids[0].(string)] = e
		}
	}
	return out
}
