package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// What a provider's upstream request looks like for each format: path,
// query, protocol headers, credentials, extra headers, base path.
func TestProviderRequestShape(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", testKey)
	t.Setenv("LLMROUTE_TEST_ORG", "org-e2e")
	srv, rec := newRecorder(t, false)
	u, _ := url.Parse(srv.URL)
	start(t, setup{
		Mocks: []mockSite{},
		Route: fmt.Sprintf(`
		provider oa http://%[1]s/custom/v2 {
			api_key {env.LLMROUTE_TEST_KEY}
			header X-Org {env.LLMROUTE_TEST_ORG}
			header X-Static static-value
		}
		provider az http://%[1]s {
			format azure
			api_key {env.LLMROUTE_TEST_KEY}
			api_version 2025-01-01-preview
		}
		provider an http://%[1]s {
			format anthropic
			api_key {env.LLMROUTE_TEST_KEY}
		}
		provider an2 http://%[1]s {
			format anthropic
			base_path /anthropic
			api_version 2024-02-02
		}
		model m-oa oa {
			upstream_name gpt-upstream
		}
		model m-az az {
			upstream_name my-deployment
		}
		model m-an an an2
`, u.Host),
	})
	hc := newHTTPClient(t)
	creds := []string{
		"Authorization", "Bearer " + clientKey, "X-Api-Key", clientKey, "Api-Key", clientKey,
		"Cookie", "session=" + clientKey, "X-Org", "forged-by-client",
	}

	check := func(t *testing.T, got recorded, path, query string, headers map[string]string) {
		t.Helper()
		if got.Path != path {
			t.Errorf("path %q, want %q", got.Path, path)
		}
		if got.Query != query {
			t.Errorf("query %q, want %q", got.Query, query)
		}
		for name, want := range headers {
			v := got.Header.Values(name)
			if want == "" && len(v) != 0 {
				t.Errorf("header %s %q, want none", name, v)
			}
			if want != "" && (len(v) != 1 || v[0] != want) {
				t.Errorf("header %s %q, want [%s]", name, v, want)
			}
		}
		if got.Host != srv.Listener.Addr().String() {
			t.Errorf("Host %q", got.Host)
		}
		for name, vals := range got.Header {
			for _, v := range vals {
				if strings.Contains(v, clientKey) {
					t.Errorf("the client key reached the upstream in %s", name)
				}
			}
		}
	}

	t.Run("openai", func(t *testing.T) {
		res := post(t, hc, "/v1/chat/completions?client=1", chatBody("m-oa"), creds...)
		if res.Status != 200 {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		got := rec.last(t)
		// the client's query is not the provider's (see TestForwardAllowlist)
		check(t, got, "/custom/v2/chat/completions", "", map[string]string{
			"Authorization": "Bearer " + testKey, "X-Api-Key": "", "Api-Key": "", "Cookie": "",
			"X-Org": "org-e2e", "X-Static": "static-value",
		})
		if m := jsonPath(got.Body, "model"); m != "gpt-upstream" {
			t.Errorf("model %q", m)
		}
		post(t, hc, "/v1/embeddings", []byte(`{"model":"m-oa","input":"x"}`), creds...)
		check(t, rec.last(t), "/custom/v2/embeddings", "", nil)
		post(t, hc, "/v1/responses", []byte(`{"model":"m-oa","input":"x"}`), creds...)
		check(t, rec.last(t), "/custom/v2/responses", "", nil)
		post(t, hc, "/v1/completions", []byte(`{"model":"m-oa","prompt":"x"}`), creds...)
		check(t, rec.last(t), "/custom/v2/completions", "", nil)
	})

	t.Run("azure", func(t *testing.T) {
		res := post(t, hc, "/v1/chat/completions?api-version=client-chosen", chatBody("m-az"), creds...)
		if res.Status != 200 {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		got := rec.last(t)
		check(t, got, "/openai/deployments/my-deployment/chat/completions", "api-version=2025-01-01-preview", map[string]string{
			"Api-Key": testKey, "Authorization": "", "X-Api-Key": "", "Cookie": "",
		})
	})

	t.Run("anthropic", func(t *testing.T) {
		body := []byte(`{"model":"m-an","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		res := post(t, hc, "/v1/messages", body, creds...)
		if res.Status != 200 {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		check(t, rec.last(t), "/v1/messages", "", map[string]string{
			"X-Api-Key": testKey, "Authorization": "", "Api-Key": "", "Cookie": "",
			"Anthropic-Version": "2023-06-01",
		})
		// the client's anthropic-version and beta headers are kept
		post(t, hc, "/v1/messages", body, append(creds, "anthropic-version", "2099-01-01", "anthropic-beta", "some-beta")...)
		check(t, rec.last(t), "/v1/messages", "", map[string]string{
			"Anthropic-Version": "2099-01-01", "Anthropic-Beta": "some-beta",
		})
		// pinned to the provider without a key: its base path and version,
		// and no credential at all
		post(t, hc, "/v1/messages", []byte(`{"model":"an2/m-an","max_tokens":5,"messages":[]}`), creds...)
		check(t, rec.last(t), "/anthropic/messages", "", map[string]string{
			"X-Api-Key": "", "Authorization": "", "Anthropic-Version": "2024-02-02",
		})
	})
}

// model_key may point into the body; routing and the rewrite follow it.
func TestNestedModelKey(t *testing.T) {
	srv, rec := newRecorder(t, false)
	start(t, setup{
		Mocks: []mockSite{},
		Route: fmt.Sprintf(`
		model_key options.model
		provider rec %s
		model small rec {
			upstream_name small-upstream
		}
`, srv.URL),
	})
	hc := newHTTPClient(t)
	res := post(t, hc, "/v1/chat/completions", []byte(`{"options":{"model":"small"},"model":"ignored","messages":[]}`))
	if res.Status != http.StatusOK {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	expectAttempts(t, res.Header, "rec", 1)
	got := rec.last(t)
	if m := jsonPath(got.Body, "options.model"); m != "small-upstream" {
		t.Errorf("options.model %q, want small-upstream (body %s)", m, got.Body)
	}
	if m := jsonPath(got.Body, "model"); m != "ignored" {
		t.Errorf("top-level model %q changed", m)
	}
	for _, tc := range []struct{ body, code string }{
		{`{"options":{"model":"small","model":"other"},"messages":[]}`, "duplicate_key"},
		{`{"options":{},"model":"small"}`, "missing_model"},
		{`{"options":{"model":7}}`, "invalid_model"},
		{`{"options":{"model":"nope"}}`, "model_not_found"},
	} {
		status := http.StatusBadRequest
		if tc.code == "model_not_found" {
			status = http.StatusNotFound
		}
		expectOpenAIError(t, post(t, hc, "/v1/chat/completions", []byte(tc.body)), status, tc.code)
	}
}
