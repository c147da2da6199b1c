package upstreams

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-llm-route/llmroute/internal/testcaddy"
)

func TestMain(m *testing.M) { testcaddy.Main(m) }

var newContext = testcaddy.Context

// provision unmarshals a provider from JSON and provisions and
// validates it.
func provision(t *testing.T, cfg string) *Provider {
	t.Helper()
	p := new(Provider)
	if err := json.Unmarshal([]byte(cfg), p); err != nil {
		t.Fatalf("decoding provider: %v", err)
	}
	if err := p.Provision(newContext(t)); err != nil {
		t.Fatalf("provisioning provider: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("validating provider: %v", err)
	}
	return p
}

// proxyJSON is a reverse_proxy reaching addr; its transport is loaded as
// a module so that its idle connections are closed on cleanup.
func proxyJSON(addr string, extra string) string {
	return `{"handler": "reverse_proxy", "transport": {"protocol": "http"}, "upstreams": [{"dial": "` + addr + `"}]` + extra + `}`
}

func TestPrepareRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		provider   Provider
		target     string
		endpoint   string
		model      string
		reqHeaders map[string]string
		wantURI    string
		wantHeader map[string]string // "" means absent
	}{
		{
			name:     "openai",
			provider: Provider{Format: FormatOpenAI, BasePath: "/v1"},
			target:   "/gateway/v1/chat/completions?x=1&key=client&beta=true",
			endpoint: "/chat/completions",
			model:    "gpt-4o",
			reqHeaders: map[string]string{
				"Authorization":       "Bearer client",
				"X-Api-Key":           "client",
				"Api-Key":             "client",
				"X-Goog-Api-Key":      "client",
				"Cookie":              "session=1",
				"Accept-Encoding":     "br",
				"Content-Type":        "application/json",
				"Accept":              "text/event-stream",
				"User-Agent":          "sdk/1",
				"Traceparent":         "00-1-2-01",
				"Openai-Beta":         "assistants=v2",
				"Openai-Organization": "org-client",
				"Openai-Project":      "proj-client",
				"X-Forwarded-For":     "10.0.0.1",
				"X-Custom":            "dropped",
				"X-Named":             "kept",
				"Anthropic-Beta":      "x",
			},
			wantURI: "/v1/chat/completions",
			wantHeader: map[string]string{
				"Authorization":       "",
				"X-Api-Key":           "",
				"Api-Key":             "",
				"X-Goog-Api-Key":      "",
				"Cookie":              "",
				"Accept-Encoding":     "",
				"Content-Type":        "application/json",
				"Accept":              "text/event-stream",
				"User-Agent":          "sdk/1",
				"Traceparent":         "00-1-2-01",
				"Openai-Beta":         "assistants=v2",
				"Openai-Organization": "",
				"Openai-Project":      "",
				"X-Forwarded-For":     "",
				"X-Custom":            "",
				"X-Named":             "kept",
				"Anthropic-Beta":      "",
				"Anthropic-Version":   "",
			},
		},
		{
			name:     "openai with a base path",
			provider: Provider{Format: FormatOpenAI, BasePath: "/openai/v1"},
			target:   "/v1/embeddings",
			endpoint: "/embeddings",
			model:    "e",
			wantURI:  "/openai/v1/embeddings",
		},
		{
			name:       "forward_client_auth",
			provider:   Provider{Format: FormatOpenAI, BasePath: "/v1", ForwardClientAuth: true},
			target:     "/v1/chat/completions",
			endpoint:   "/chat/completions",
			reqHeaders: map[string]string{"Authorization": "Bearer client", "Cookie": "c=1", "X-Api-Key": "k"},
			wantURI:    "/v1/chat/completions",
			wantHeader: map[string]string{"Authorization": "Bearer client", "Cookie": "c=1", "X-Api-Key": "k"},
		},
		{
			name:       "anthropic",
			provider:   Provider{Format: FormatAnthropic, BasePath: "/v1", APIVersion: "2023-06-01"},
			target:     "/v1/messages?beta=true&key=client",
			endpoint:   "/messages",
			model:      "claude",
			reqHeaders: map[string]string{"X-Api-Key": "client", "Anthropic-Beta": "tools-2024", "Openai-Beta": "x"},
			wantURI:    "/v1/messages?beta=true",
			wantHeader: map[string]string{"X-Api-Key": "", "Anthropic-Version": "2023-06-01", "Anthropic-Beta": "tools-2024", "Openai-Beta": ""},
		},
		{
			name:       "anthropic keeps the client's version",
			provider:   Provider{Format: FormatAnthropic, BasePath: "/v1", APIVersion: "2023-06-01"},
			target:     "/v1/messages",
			endpoint:   "/messages",
			reqHeaders: map[string]string{"anthropic-version": "2024-01-01"},
			wantURI:    "/v1/messages",
			wantHeader: map[string]string{"Anthropic-Version": "2024-01-01"},
		},
		{
			name:       "azure",
			provider:   Provider{Format: FormatAzure, BasePath: "/openai", APIVersion: "2024-10-21"},
			target:     "/v1/chat/completions",
			endpoint:   "/chat/completions",
			model:      "my-gpt4o",
			reqHeaders: map[string]string{"Api-Key": "client"},
			wantURI:    "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
			wantHeader: map[string]string{"Api-Key": ""},
		},
		{
			name:     "azure replaces the client's api-version and drops its query",
			provider: Provider{Format: FormatAzure, BasePath: "/openai", APIVersion: "2024-10-21"},
			target:   "/v1/embeddings?api-version=2020-01-01&extra=1",
			endpoint: "/embeddings",
			model:    "emb.v3",
			wantURI:  "/openai/deployments/emb.v3/embeddings?api-version=2024-10-21",
		},
		{
			name:     "escaped client path is dropped",
			provider: Provider{Format: FormatOpenAI, BasePath: "/v1"},
			target:   "/v1/a%2Fb/../chat/completions",
			endpoint: "/chat/completions",
			wantURI:  "/v1/chat/completions",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://gateway.example"+tc.target, strings.NewReader("{}"))
			for k, v := range tc.reqHeaders {
				r.Header.Set(k, v)
			}
			p := tc.provider
			p.PrepareRequest(r, tc.endpoint, tc.model, []string{"X-Named"})
			if got := r.URL.RequestURI(); got != tc.wantURI {
				t.Errorf("request URI = %q, want %q", got, tc.wantURI)
			}
			if r.RequestURI != "" {
				t.Errorf("RequestURI = %q, want it cleared", r.RequestURI)
			}
			for k, want := range tc.wantHeader {
				if got := r.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestPrepareRequestAzureDeploymentEscaping: the deployment name must be
// escaped once in the request line, not twice.
func TestPrepareRequestAzureDeploymentEscaping(t *testing.T) {
	p := Provider{Format: FormatAzure, BasePath: "/openai", APIVersion: "2024-10-21"}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	p.PrepareRequest(r, "/chat/completions", "my deployment:1", nil)
	if got, want := r.URL.EscapedPath(), "/openai/deployments/my%20deployment:1/chat/completions"; got != want {
		t.Errorf("escaped path = %q, want %q", got, want)
	}
}

// The provider's extra headers are set by its transport, with the key
// (below reverse_proxy's logging), placeholders resolved per request.
func TestAuthTransportExtraHeaders(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_TEAM", "blue")
	headers := http.Header{
		"Http-Referer":  {"https://example.com"},
		"X-Team":        {"{env.LLMROUTE_TEST_TEAM}"},
		"X-Request":     {"{custom.id}"},
		"X-Unknown":     {"{no.such.placeholder}"},
		"X-Multi":       {"a", "b"},
		"X-Overwritten": {"provider"},
	}
	var sent http.Header
	tr := &AuthTransport{Format: FormatOpenAI, Headers: headers, inner: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r.Header
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
	})}
	repl := caddy.NewReplacer()
	repl.Set("custom.id", "req-42")
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	r.Header.Set("X-Overwritten", "client")
	if _, err := tr.RoundTrip(r); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]string{
		"Http-Referer":  {"https://example.com"},
		"X-Team":        {"blue"},
		"X-Request":     {"req-42"},
		"X-Unknown":     {"{no.such.placeholder}"},
		"X-Multi":       {"a", "b"},
		"X-Overwritten": {"provider"},
	} {
		if got := sent.Values(k); !reflect.DeepEqual(got, want) {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	// Neither the request the proxy logs nor the config is changed.
	if r.Header.Get("X-Overwritten") != "client" || r.Header.Get("X-Team") != "" {
		t.Errorf("the transport changed the proxy's request: %v", r.Header)
	}
	if headers.Get("X-Team") != "{env.LLMROUTE_TEST_TEAM}" {
		t.Error("the transport changed the provider's headers")
	}
}

func TestServes(t *testing.T) {
	for _, tc := range []struct {
		format   string
		endpoint string
		want     bool
	}{
		{FormatAnthropic, "/messages", true},
		{FormatAnthropic, "/messages/count_tokens", true},
		{FormatAnthropic, "/chat/completions", true}, // translated
		{FormatAnthropic, "/embeddings", false},
		{FormatAnthropic, "/responses", false},
		{FormatAzure, "/messages/count_tokens", true},
		{FormatOpenAI, "/messages", true},              // translated
		{FormatOpenAI, "/messages/count_tokens", true}, // estimated by the gateway
		{FormatOpenAI, "/chat/completions", true},
		{FormatOpenAI, "/responses", true},
		{FormatOpenAI, "/rerank", true},
		{FormatAzure, "/messages", true}, // translated
		{FormatAzure, "/embeddings", true},
	} {
		p := Provider{Format: tc.format}
		if got := p.Serves(tc.endpoint); got != tc.want {
			t.Errorf("%s provider Serves(%q) = %v, want %v", tc.format, tc.endpoint, got, tc.want)
		}
	}
}

func TestProviderValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       Provider
		wantErr string
	}{
		{"valid", Provider{Name: "a", Format: FormatOpenAI, BasePath: "/v1"}, ""},
		{"valid without base path", Provider{Name: "a", Format: FormatAzure}, ""},
		{"no name", Provider{Format: FormatOpenAI}, "provider without a name"},
		{"slash in name", Provider{Name: "a/b", Format: FormatOpenAI}, "must not contain '/'"},
		{"space in name", Provider{Name: "a b", Format: FormatOpenAI}, "must not contain '/' or spaces"},
		{"unknown format", Provider{Name: "a", Format: "bedrock"}, `unknown format "bedrock"`},
		{"empty format", Provider{Name: "a"}, `unknown format ""`},
		{"relative base path", Provider{Name: "a", Format: FormatOpenAI, BasePath: "v1"}, "base_path must start with '/'"},
		{"max_completion_tokens field", Provider{Name: "a", Format: FormatOpenAI, MaxTokensField: "max_completion_tokens"}, ""},
		{"unknown max tokens field", Provider{Name: "a", Format: FormatOpenAI, MaxTokensField: "n_predict"}, `max_tokens_field must be max_tokens or max_completion_tokens, not "n_predict"`},
		{"negative default_max_tokens", Provider{Name: "a", Format: FormatAnthropic, DefaultMaxTokens: -1}, "default_max_tokens must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestProvisionDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, cfg           string
		basePath, version   string
		healthName, healthV string
	}{
		{
			name:     "openai",
			cfg:      `{"name": "a", "api_key": "{env.K}", "proxy": ` + proxyJSON("127.0.0.1:1", `, "health_checks": {"active": {"uri": "/v1/models", "interval": "1h"}}`) + `}`,
			basePath: "/v1", healthName: "Authorization", healthV: "Bearer {env.K}",
		},
		{
			name:     "anthropic",
			cfg:      `{"name": "a", "format": "anthropic", "api_key": "{env.K}", "proxy": ` + proxyJSON("127.0.0.1:1", `, "health_checks": {"active": {"uri": "/v1/models", "interval": "1h"}}`) + `}`,
			basePath: "/v1", version: DefaultAnthropicVersion, healthName: "X-Api-Key", healthV: "{env.K}",
		},
		{
			name:     "azure",
			cfg:      `{"name": "a", "format": "azure", "base_path": "/custom/", "api_key": "k", "proxy": ` + proxyJSON("127.0.0.1:1", `, "health_checks": {"active": {"uri": "/", "interval": "1h"}}`) + `}`,
			basePath: "/custom", version: DefaultAzureAPIVersion, healthName: "Api-Key", healthV: "k",
		},
		{
			name:     "user health header kept",
			cfg:      `{"name": "a", "api_key": "k", "proxy": ` + proxyJSON("127.0.0.1:1", `, "health_checks": {"active": {"uri": "/", "interval": "1h", "headers": {"Authorization": ["Bearer health"]}}}`) + `}`,
			basePath: "/v1", healthName: "Authorization", healthV: "Bearer health",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := provision(t, tc.cfg)
			if p.BasePath != tc.basePath || p.APIVersion != tc.version {
				t.Errorf("base path %q, version %q; want %q, %q", p.BasePath, p.APIVersion, tc.basePath, tc.version)
			}
			rp := p.Proxy()
			if rp == nil {
				t.Fatal("no proxy")
			}
			if _, ok := rp.Transport.(*AuthTransport); !ok {
				t.Errorf("transport is %T, want the auth wrapper", rp.Transport)
			}
			if got := rp.Headers.Request.Set.Get("Host"); got != "{http.reverse_proxy.upstream.hostport}" {
				t.Errorf("Host header set to %q", got)
			}
			if got := rp.HealthChecks.Active.Headers.Get(tc.healthName); got != tc.healthV {
				t.Errorf("health check %s = %q, want %q", tc.healthName, got, tc.healthV)
			}
			if tc.name == "anthropic" {
				if got := rp.HealthChecks.Active.Headers.Get("anthropic-version"); got != DefaultAnthropicVersion {
					t.Errorf("health check anthropic-version = %q", got)
				}
			}
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, wantErr string
	}{
		{"no proxy", `{"name": "a"}`, "provider a: no proxy configured"},
		{"not a reverse proxy", `{"name": "a", "proxy": {"handler": "static_response"}}`, "proxy must be a reverse_proxy handler"},
		{"unknown proxy field", `{"name": "a", "proxy": {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:1"}], "bogus": 1}}`, `unknown field "bogus"`},
		{"bad proxy", `{"name": "a", "proxy": {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:1"}], "load_balancing": {"selection_policy": {"policy": "nope"}}}}`, "provider a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Provider)
			if err := json.Unmarshal([]byte(tc.cfg), p); err != nil {
				t.Fatal(err)
			}
			err := p.Provision(newContext(t))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestValidateUpstreams checks that a provisioned provider whose proxy
// has no upstream at all (neither static nor dynamic) is refused, as the
// Caddyfile refused it.
func TestValidateUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name, proxy, wantErr string
	}{
		{"static", `{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:1"}]}`, ""},
		{"dynamic", `{"handler": "reverse_proxy", "dynamic_upstreams": {"source": "a", "name": "example.com", "port": "443"}}`, ""},
		{"none", `{"handler": "reverse_proxy"}`, "provider a: no upstream address"},
		{"empty list", `{"handler": "reverse_proxy", "upstreams": []}`, "provider a: no upstream address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Provider{Name: "a", ProxyRaw: json.RawMessage(tc.proxy)}
			if err := p.Provision(newContext(t)); err != nil {
				t.Fatal(err)
			}
			err := p.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAuthTransport(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", "sk-env")
	for _, tc := range []struct {
		name       string
		p          Provider
		ctxVars    map[string]any
		clientAuth string
		header     string
		want       string
	}{
		{"openai literal", Provider{Format: FormatOpenAI, APIKey: "sk-lit"}, nil, "", "Authorization", "Bearer sk-lit"},
		{"openai env", Provider{Format: FormatOpenAI, APIKey: "{env.LLMROUTE_TEST_KEY}"}, nil, "", "Authorization", "Bearer sk-env"},
		{"request placeholder", Provider{Format: FormatOpenAI, APIKey: "{custom.key}"}, map[string]any{"custom.key": "sk-req"}, "", "Authorization", "Bearer sk-req"},
		{"anthropic", Provider{Format: FormatAnthropic, APIKey: "{env.LLMROUTE_TEST_KEY}"}, nil, "", "X-Api-Key", "sk-env"},
		{"azure", Provider{Format: FormatAzure, APIKey: "{env.LLMROUTE_TEST_KEY}"}, nil, "", "Api-Key", "sk-env"},
		{"replaces the client's", Provider{Format: FormatOpenAI, APIKey: "sk-lit", ForwardClientAuth: true}, nil, "Bearer client", "Authorization", "Bearer sk-lit"},
		{"no key keeps the client's", Provider{Format: FormatOpenAI, ForwardClientAuth: true}, nil, "Bearer client", "Authorization", "Bearer client"},
		{"empty env adds nothing", Provider{Format: FormatOpenAI, APIKey: "{env.LLMROUTE_TEST_UNSET}"}, nil, "", "Authorization", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen *http.Request
			tr := &AuthTransport{Format: tc.p.Format, APIKey: tc.p.APIKey, inner: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				seen = r
				h := http.Header{}
				for _, name := range []string{"openai-organization", "openai-project", "anthropic-organization-id", "set-cookie"} {
					h.Set(name, "acct")
				}
				h.Set("X-Request-Id", "req-1")
				return &http.Response{StatusCode: 200, Header: h, Body: http.NoBody, Request: r}, nil
			})}
			req := httptest.NewRequest(http.MethodPost, "http://upstream.example/v1/chat/completions", nil)
			repl := caddy.NewReplacer()
			for k, v := range tc.ctxVars {
				repl.Set(k, v)
			}
			req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
			if tc.clientAuth != "" {
				req.Header.Set("Authorization", tc.clientAuth)
			}
			before := req.Header.Clone()
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := seen.Header.Get(tc.header); got != tc.want {
				t.Errorf("upstream %s = %q, want %q", tc.header, got, tc.want)
			}
			// The answer to a call with the operator's key leaves out
			// what describes the operator's account; a call with the
			// client's own credentials keeps it.
			operator := tc.want != "" && tc.want != tc.clientAuth
			if got := resp.Header.Get("Openai-Project") + resp.Header.Get("Openai-Organization") + resp.Header.Get("Anthropic-Organization-Id") + resp.Header.Get("Set-Cookie"); operator != (got == "") {
				t.Errorf("operator's key %t: account headers %q reached the answer", operator, got)
			}
			if resp.Header.Get("X-Request-Id") != "req-1" {
				t.Error("an ordinary header of the answer was dropped")
			}
			if !reflect.DeepEqual(req.Header, before) {
				t.Errorf("RoundTrip changed the caller's headers: %v, was %v", req.Header, before)
			}
			if tc.want != "" && tc.clientAuth == "" && seen == req {
				t.Error("the caller's request object was passed on")
			}
		})
	}
}

// TestProviderAuthEndToEnd provisions providers in front of a test
// server and checks what the upstream receives.
func TestProviderAuthEndToEnd(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", "sk-secret")
	type seenReq struct {
		uri    string
		host   string
		header http.Header
		body   string
	}
	var mu sync.Mutex
	var seen []seenReq
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, seenReq{r.RequestURI, r.Host, r.Header.Clone(), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		format, endpoint, model string
		wantURI, header, value  string
	}{
		{FormatOpenAI, "/chat/completions", "gpt-4o", "/v1/chat/completions", "Authorization", "Bearer sk-secret"},
		{FormatAnthropic, "/messages", "claude", "/v1/messages", "X-Api-Key", "sk-secret"},
		{FormatAzure, "/chat/completions", "dep", "/openai/deployments/dep/chat/completions?api-version=" + DefaultAzureAPIVersion, "Api-Key", "sk-secret"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			p := provision(t, `{"name": "p", "format": "`+tc.format+`", "api_key": "{env.LLMROUTE_TEST_KEY}", "proxy": `+proxyJSON(addr, "")+`}`)

			repl := caddy.NewReplacer()
			rec := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "http://gateway.example/v1"+tc.endpoint, strings.NewReader(`{"model":"x"}`))
			r.Header.Set("Authorization", "Bearer client-key")
			r.Header.Set("X-Api-Key", "client-key")
			r = caddyhttp.PrepareRequest(r, repl, rec, &caddyhttp.Server{})
			p.PrepareRequest(r, tc.endpoint, tc.model, nil)
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			if err := p.Proxy().ServeHTTP(rec, r, next); err != nil {
				t.Fatalf("proxy: %v", err)
			}
			if rec.Code != 200 || rec.Body.String() != `{"ok":true}` {
				t.Fatalf("response %d %q", rec.Code, rec.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests", len(seen))
			}
			got := seen[0]
			if got.uri != tc.wantURI {
				t.Errorf("upstream URI = %q, want %q", got.uri, tc.wantURI)
			}
			if got.host != addr {
				t.Errorf("upstream Host = %q, want %q (the provider's, not the client's)", got.host, addr)
			}
			if v := got.header.Get(tc.header); v != tc.value {
				t.Errorf("upstream %s = %q, want %q", tc.header, v, tc.value)
			}
			for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key"} {
				if h != tc.header && got.header.Get(h) != "" {
					t.Errorf("upstream got the client's %s: %q", h, got.header.Get(h))
				}
			}
			if got.body != `{"model":"x"}` {
				t.Errorf("upstream body = %q", got.body)
			}
			if strings.Contains(r.Header.Get("Authorization")+r.Header.Get("X-Api-Key")+r.Header.Get("Api-Key"), "sk-secret") {
				t.Error("the key leaked into the caller's request headers")
			}
		})
	}
}

// TestActiveHealthCheckAuth checks that active health checks carry the
// provider's key, resolved at check time.
func TestActiveHealthCheckAuth(t *testing.T) {
	t.Setenv("LLMROUTE_TEST_KEY", "sk-health")
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			select {
			case got <- r.Header.Get("X-Api-Key") + "|" + r.Header.Get("Anthropic-Version"):
			default:
			}
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	provision(t, `{"name": "p", "format": "anthropic", "api_key": "{env.LLMROUTE_TEST_KEY}", "proxy": `+
		proxyJSON(addr, `, "health_checks": {"active": {"uri": "/v1/models", "interval": "50ms", "timeout": "1s"}}`)+`}`)
	select {
	case v := <-got:
		if v != "sk-health|"+DefaultAnthropicVersion {
			t.Errorf("health check headers = %q", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no health check arrived")
	}
}

// TestAvailable follows reverse_proxy's active health checks.
func TestAvailable(t *testing.T) {
	if !(&Provider{}).Available() {
		t.Error("an unprovisioned provider is not available")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	health := `, "health_checks": {"active": {"uri": "/health", "interval": "50ms", "timeout": "1s"}}`

	up := provision(t, `{"name": "up", "proxy": `+proxyJSON(strings.TrimPrefix(srv.URL, "http://"), health)+`}`)
	down := provision(t, `{"name": "down", "proxy": `+proxyJSON(deadAddr, health)+`}`)
	deadline := time.Now().Add(5 * time.Second)
	for down.Available() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if down.Available() {
		t.Error("a provider whose only upstream fails its health checks is available")
	}
	if !up.Available() {
		t.Error("a healthy provider is not available")
	}
}

func TestAuthTransportPassesInterfaces(t *testing.T) {
	inner := new(reverseproxy.HTTPTransport)
	tr := &AuthTransport{inner: inner}
	if tr.ProxyProtocolEnabled() {
		t.Error("PROXY protocol reported without the inner transport using it")
	}
	u := &url.URL{Scheme: "http", Host: "x:1"}
	tr.OverrideHealthCheckScheme(u, "1")
	plain := &AuthTransport{inner: roundTripFunc(nil)}
	plain.OverrideHealthCheckScheme(u, "1")
	if plain.ProxyProtocolEnabled() {
		t.Error("PROXY protocol reported for a plain round tripper")
	}
}
