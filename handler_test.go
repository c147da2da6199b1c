package llmroute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// resolveConfig has openai-format providers a and b, an anthropic one c
// and an azure one az; none is ever contacted by resolve.
var resolveConfig = `{
	"providers": [
		{"name": "a", "proxy": ` + proxyTo("127.0.0.1:1") + `},
		{"name": "b", "proxy": ` + proxyTo("127.0.0.1:1") + `},
		{"name": "c", "format": "anthropic", "proxy": ` + proxyTo("127.0.0.1:1") + `},
		{"name": "az", "format": "azure", "proxy": ` + proxyTo("127.0.0.1:1") + `}
	],
	"models": [
		{"name": "m", "providers": ["a", "b"]},
		{"name": "aliased", "providers": ["a", "az"], "upstream_name": "real-name"},
		{"name": "claude", "providers": ["c"]},
		{"name": "mixed", "providers": ["a", "c"]},
		{"name": "solo", "providers": ["b"]},
		{"name": "a/slashed", "providers": ["b"], "upstream_name": "slashed"}
	],
	"routes": [
		{"name": "r", "retry_on": [500], "targets": [
			{"model": "m", "provider": "b", "params": {"temperature": 0.1}},
			{"model": "claude"},
			{"model": "solo"}
		]},
		{"name": "fallback", "targets": [{"model": "m"}, {"model": "aliased"}]}
	]
}`

// pairs lists a plan's candidates as model@provider.
func pairs(p *plan) []string {
	var out []string
	for _, c := range p.candidates {
		out = append(out, c.Model+"@"+c.Provider.Name)
	}
	return out
}

// pairOf returns the state h keeps for model at provider.
func pairOf(t testing.TB, h *Handler, model, provider string) upstreams.Pair {
	t.Helper()
	if m := h.models[model]; m != nil {
		for _, s := range m.serving {
			if s.provider.Name == provider {
				return s.pair
			}
		}
	}
	t.Fatalf("no pair %s@%s", model, provider)
	return nil
}

// coolDown makes the pair cool down for d, as a 429 with Retry-After
// does.
func coolDown(p upstreams.Pair, d time.Duration) {
	now := time.Now()
	probe := p.Start(now)
	p.Finish(upstreams.Outcome{Result: upstreams.Failed, Probe: probe, RetryAfter: d}, upstreams.Policy{}, now)
}

// succeed finishes a successful attempt on the pair.
func succeed(p upstreams.Pair) {
	now := time.Now()
	probe := p.Start(now)
	p.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Probe: probe}, upstreams.Policy{}, now)
}

func TestResolve(t *testing.T) {
	h := mustLoadHandler(t, resolveConfig)
	for _, tc := range []struct {
		model, endpoint string
		route           string
		pairs           []string
		retryOn         []int
		status          int
		code            string
	}{
		{model: "m", endpoint: "/chat/completions", route: "m", pairs: []string{"m@a", "m@b"}, retryOn: []int{429, 5}},
		{model: "m", endpoint: "/embeddings", route: "m", pairs: []string{"m@a", "m@b"}},
		{model: "aliased", endpoint: "/chat/completions", route: "aliased", pairs: []string{"aliased@a", "aliased@az"}},
		// Chat completions and messages cross formats by translation.
		{model: "r", endpoint: "/chat/completions", route: "r", pairs: []string{"m@b", "claude@c", "solo@b"}, retryOn: []int{500}},
		{model: "r", endpoint: "/messages", route: "r", pairs: []string{"m@b", "claude@c", "solo@b"}, retryOn: []int{500}},
		{model: "r", endpoint: "/embeddings", route: "r", pairs: []string{"m@b", "solo@b"}, retryOn: []int{500}},
		{model: "fallback", endpoint: "/chat/completions", route: "fallback", pairs: []string{"m@a", "m@b", "aliased@a", "aliased@az"}},
		{model: "a/m", endpoint: "/chat/completions", route: "m", pairs: []string{"m@a"}},
		{model: "b/m", endpoint: "/responses", route: "m", pairs: []string{"m@b"}},
		{model: "c/claude", endpoint: "/messages", route: "claude", pairs: []string{"claude@c"}},
		{model: "az/aliased", endpoint: "/chat/completions", route: "aliased", pairs: []string{"aliased@az"}},
		{model: "mixed", endpoint: "/messages", route: "mixed", pairs: []string{"mixed@a", "mixed@c"}},
		{model: "mixed", endpoint: "/chat/completions", route: "mixed", pairs: []string{"mixed@a", "mixed@c"}},
		{model: "mixed", endpoint: "/responses", route: "mixed", pairs: []string{"mixed@a"}},
		{model: "claude", endpoint: "/chat/completions", route: "claude", pairs: []string{"claude@c"}},
		{model: "a/m", endpoint: "/messages", route: "m", pairs: []string{"m@a"}},
		// A registered model whose name looks like provider/model.
		{model: "a/slashed", endpoint: "/chat/completions", route: "a/slashed", pairs: []string{"a/slashed@b"}},

		{model: "c/m", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "a/solo", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "a/nope", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "x/m", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "nope", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "M", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		{model: "/m", endpoint: "/chat/completions", status: 404, code: "model_not_found"},
		// No candidate left for the endpoint: a client error (any code).
		// (Only chat completions and messages translate.)
		{model: "claude", endpoint: "/embeddings", status: 400},
		{model: "claude", endpoint: "/responses", status: 400},
		// count_tokens: natively at anthropic providers, estimated for others.
		{model: "m", endpoint: "/messages/count_tokens", route: "m", pairs: []string{"m@a", "m@b"}},
		{model: "mixed", endpoint: "/messages/count_tokens", route: "mixed", pairs: []string{"mixed@a", "mixed@c"}},
		{model: "c/claude", endpoint: "/completions", status: 400},
	} {
		t.Run(tc.model+tc.endpoint, func(t *testing.T) {
			p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: tc.model, Endpoint: tc.endpoint}, nil)
			if tc.status != 0 {
				if rerr == nil {
					t.Fatalf("resolved to %v, want %d %s", pairs(p), tc.status, tc.code)
				}
				if rerr.status != tc.status || (tc.code != "" && rerr.code != tc.code) || rerr.code == "" {
					t.Errorf("got %d %s (%s), want %d %s", rerr.status, rerr.code, rerr.msg, tc.status, tc.code)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("got %d %s: %s", rerr.status, rerr.code, rerr.msg)
			}
			if p.route != tc.route {
				t.Errorf("route = %q, want %q", p.route, tc.route)
			}
			if got := pairs(p); !reflect.DeepEqual(got, tc.pairs) {
				t.Errorf("candidates = %v, want %v", got, tc.pairs)
			}
			if tc.retryOn != nil && !reflect.DeepEqual(p.retryOn, tc.retryOn) {
				t.Errorf("retryOn = %v, want %v", p.retryOn, tc.retryOn)
			}
		})
	}
}

func TestResolveParams(t *testing.T) {
	h := mustLoadHandler(t, resolveConfig)
	p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: "r", Endpoint: "/chat/completions"}, nil)
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	if got := string(p.candidates[0].Params["temperature"]); got != "0.1" {
		t.Errorf("first target params = %v", p.candidates[0].Params)
	}
	if p.candidates[1].Params != nil {
		t.Errorf("second target params = %v", p.candidates[1].Params)
	}
}

func TestResolveCooldown(t *testing.T) {
	h := mustLoadHandler(t, resolveConfig)
	resolve := func(model string) []string {
		t.Helper()
		p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: model, Endpoint: "/chat/completions"}, nil)
		if rerr != nil {
			t.Fatalf("%s: %s", model, rerr.msg)
		}
		return pairs(p)
	}
	coolDown(pairOf(t, h, "m", "a"), time.Minute)
	if got, want := resolve("m"), []string{"m@b", "m@a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("a cooling: candidates = %v, want %v", got, want)
	}
	// Cooldowns are per provider and model: aliased@a is not affected.
	if got, want := resolve("fallback"), []string{"m@b", "aliased@a", "aliased@az", "m@a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("a cooling for m: candidates = %v, want %v", got, want)
	}
	// All cooling: all kept, in order.
	coolDown(pairOf(t, h, "m", "b"), time.Minute)
	if got, want := resolve("m"), []string{"m@a", "m@b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("all cooling: candidates = %v, want %v", got, want)
	}
	// A pinned provider in cooldown is still tried.
	if got, want := resolve("a/m"), []string{"m@a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("pinned: candidates = %v, want %v", got, want)
	}
	// The pair is the provider and the model's upstream name.
	coolDown(pairOf(t, h, "aliased", "a"), time.Minute)
	if got, want := resolve("aliased"), []string{"aliased@az", "aliased@a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("aliased cooling: candidates = %v, want %v", got, want)
	}
	// A success ends it.
	succeed(pairOf(t, h, "m", "a"))
	if got, want := resolve("m"), []string{"m@a", "m@b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after success: candidates = %v, want %v", got, want)
	}
}

func TestResolveMaxAttempts(t *testing.T) {
	h := mustLoadHandler(t, resolveConfig)
	for _, tc := range []struct {
		max   int
		model string
		want  []string
	}{
		{0, "fallback", []string{"m@a", "m@b", "aliased@a", "aliased@az"}},
		{1, "fallback", []string{"m@a"}},
		{3, "fallback", []string{"m@a", "m@b", "aliased@a"}},
		{10, "m", []string{"m@a", "m@b"}},
	} {
		h.MaxAttempts = tc.max
		p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: tc.model, Endpoint: "/chat/completions"}, nil)
		if rerr != nil {
			t.Fatal(rerr.msg)
		}
		if got := pairs(p); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("max_attempts %d: candidates = %v, want %v", tc.max, got, tc.want)
		}
	}
	// The cap applies after cooling pairs moved to the end.
	coolDown(pairOf(t, h, "m", "a"), time.Minute)
	h.MaxAttempts = 1
	p, _ := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: "m", Endpoint: "/chat/completions"}, nil)
	if got := pairs(p); !reflect.DeepEqual(got, []string{"m@b"}) {
		t.Errorf("max_attempts 1 with a cooling: candidates = %v, want [m@b]", got)
	}
}

func TestMatchesStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		list   []int
		want   bool
	}{
		{429, []int{429, 5}, true},
		{500, []int{429, 5}, true},
		{503, []int{429, 5}, true},
		{599, []int{5}, true},
		{404, []int{429, 5}, false},
		{400, []int{4}, true},
		{499, []int{4}, true},
		{429, []int{4}, true},
		{500, []int{4}, false},
		{502, []int{500, 503}, false},
		{503, []int{500, 503}, true},
		{200, []int{2}, true},
		{500, nil, false},
		{500, []int{}, false},
	} {
		if got := matchesStatus(tc.status, tc.list); got != tc.want {
			t.Errorf("matchesStatus(%d, %v) = %v, want %v", tc.status, tc.list, got, tc.want)
		}
	}
}

func TestHandlerMatch(t *testing.T) {
	h := &Handler{EnableOnPathSuffix: DefaultPathSuffixes}
	for _, tc := range []struct {
		path    string
		matched string
		ok      bool
	}{
		{"/v1/chat/completions", "/completions", true},
		{"/v1/messages", "/messages", true},
		{"/v1/responses", "/responses", true},
		{"/v1/rerank", "/rerank", true},
		{"/v1/models", "", false},
		{"/v1/chat/completions/", "", false},
		{"/", "", false},
	} {
		matched, ok := h.match(tc.path)
		if matched != tc.matched || ok != tc.ok {
			t.Errorf("match(%q) = %q, %v; want %q, %v", tc.path, matched, ok, tc.matched, tc.ok)
		}
	}
	h.EnableOnPathSuffix = []string{"*"}
	if m, ok := h.match("/anything"); !ok || m != "*" {
		t.Errorf("* did not match: %q %v", m, ok)
	}
}

// upstream is a test provider: it records what it received and answers
// with its handler.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	heads  []http.Header
	uris   []string
}

func newUpstream(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := new(upstream)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.heads = append(u.heads, r.Header.Clone())
		u.uris = append(u.uris, r.RequestURI)
		u.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

func (u *upstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

func (u *upstream) body(i int) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies[i]
}

// gatewayProxy is a reverse_proxy with an explicitly loaded transport, so
// that its idle connections are closed when the test's context ends.
func gatewayProxy(addr string) string {
	return `{"handler": "reverse_proxy", "transport": {"protocol": "http"}, "upstreams": [{"dial": "` + addr + `"}]}`
}

// serveGateway runs one request through h like Caddy's server would. It
// returns the response and the replacer, recovering an abort panic.
func serveGateway(t *testing.T, h *Handler, method, path, body string, hdr ...string) (rec *httptest.ResponseRecorder, repl *caddy.Replacer, nextCalled, aborted bool) {
	t.Helper()
	rec = httptest.NewRecorder()
	r := httptest.NewRequest(method, "http://gateway.example"+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	repl = caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, rec, &caddyhttp.Server{})
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		nextCalled = true
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					panic(v)
				}
				aborted = true
			}
		}()
		if err := h.ServeHTTP(rec, r, next); err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	}()
	return rec, repl, nextCalled, aborted
}

const okChat = `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`

func answer(status int, body string, hdr ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// gateway provisions a handler with providers a and b (openai format)
// and c (anthropic), model m on a then b (upstream name real-m), model
// claude on c, and route r (m with parameters).
func gateway(t *testing.T, a, b, c *upstream, extra string) *Handler {
	t.Helper()
	h := mustLoadHandler(t, `{
		`+extra+`
		"providers": [
			{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`},
			{"name": "b", "api_key": "key-b", "proxy": `+gatewayProxy(b.addr())+`},
			{"name": "c", "format": "anthropic", "api_key": "key-c", "proxy": `+gatewayProxy(c.addr())+`}
		],
		"models": [
			{"name": "m", "providers": ["a", "b"], "upstream_name": "real-m"},
			{"name": "claude", "providers": ["c"], "upstream_name": "claude-real"}
		],
		"routes": [
			{"name": "r", "targets": [{"model": "m", "provider": "b", "params": {"temperature": 0.1, "max_tokens": 5}}]}
		]
	}`)
	return h
}

func TestServeFallback(t *testing.T) {
	a := newUpstream(t, answer(429, `{"error":{"message":"slow down"}}`, "Retry-After", "30", "X-Upstream-Secret", "a"))
	b := newUpstream(t, answer(200, okChat, "X-From", "b"))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"model_to_header": "X-Requested-Model",`)

	rec, repl, nextCalled, _ := serveGateway(t, h, "POST", "/v1/chat/completions",
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer client")
	if nextCalled {
		t.Fatal("next handler called")
	}
	if rec.Code != 200 || rec.Body.String() != okChat {
		t.Fatalf("response %d %s", rec.Code, rec.Body)
	}
	for k, want := range map[string]string{
		"X-From":            "b",
		"X-Upstream-Secret": "",
		"Retry-After":       "",
		HeaderModel:         "m",
		HeaderProvider:      "b",
		HeaderRoute:         "m",
		HeaderAttempts:      "2",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if a.requests() != 1 || b.requests() != 1 || c.requests() != 0 {
		t.Fatalf("requests: a %d, b %d, c %d", a.requests(), b.requests(), c.requests())
	}
	for name, u := range map[string]*upstream{"a": a, "b": b} {
		if got := gjson.Get(u.body(0), "model").Str; got != "real-m" {
			t.Errorf("%s got model %q", name, got)
		}
		u.mu.Lock()
		if got := u.heads[0].Get("Authorization"); got != "Bearer key-"+name {
			t.Errorf("%s got Authorization %q", name, got)
		}
		if got := u.heads[0].Get("X-Requested-Model"); got != "m" {
			t.Errorf("%s got X-Requested-Model %q", name, got)
		}
		if u.uris[0] != "/v1/chat/completions" {
			t.Errorf("%s got URI %q", name, u.uris[0])
		}
		u.mu.Unlock()
	}
	// The 429's Retry-After cools a down.
	if until := pairOf(t, h, "m", "a").CooldownUntil(); time.Until(until) < 20*time.Second {
		t.Errorf("a cooling until %v, want about 30s from now", until)
	}
	if until := pairOf(t, h, "m", "b").CooldownUntil(); !until.IsZero() {
		t.Errorf("b cooling until %v", until)
	}
	for k, want := range map[string]string{
		"llm.route":                    "m",
		"llm.model":                    "m",
		"llm.provider":                 "b",
		"llm.attempts":                 "2",
		"llm.usage.prompt_tokens":      "3",
		"llm.usage.completion_tokens":  "2",
		"llm.usage.total_tokens":       "5",
		"llm.usage.cache_read_tokens":  "0",
		"llm.usage.cache_write_tokens": "0",
	} {
		if got := repl.ReplaceAll("{"+k+"}", "-"); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
}

func TestServeAllFail(t *testing.T) {
	a := newUpstream(t, answer(503, `{"error":{"message":"a is down"}}`, "X-Upstream-Secret", "a"))
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Retry-After", "5")
		w.Header().Set("X-Upstream-Secret", "b")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "b is down")
	})
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if rec.Code != 503 {
		t.Fatalf("status %d", rec.Code)
	}
	if got := gjson.Get(rec.Body.String(), "error.message").Str; got != "upstream error: b is down" {
		t.Errorf("body %s", rec.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"Retry-After":       "5",
		"X-Upstream-Secret": "",
		HeaderProvider:      "b",
		HeaderAttempts:      "2",
		HeaderRoute:         "m",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestServeNotRetryable(t *testing.T) {
	a := newUpstream(t, answer(400, `{"error":{"message":"bad request","type":"invalid_request_error"}}`))
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if rec.Code != 400 || rec.Body.String() != `{"error":{"message":"bad request","type":"invalid_request_error"}}` {
		t.Fatalf("response %d %s", rec.Code, rec.Body)
	}
	if b.requests() != 0 {
		t.Error("a non-retryable error moved on to the next target")
	}
	if rec.Header().Get(HeaderAttempts) != "1" {
		t.Errorf("attempts = %q", rec.Header().Get(HeaderAttempts))
	}
}

func TestServeConnectError(t *testing.T) {
	dead := newUpstream(t, answer(200, okChat))
	dead.Close() // its address now refuses connections
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, dead, b, c, "")

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if rec.Code != 200 || rec.Header().Get(HeaderProvider) != "b" {
		t.Fatalf("response %d from %q: %s", rec.Code, rec.Header().Get(HeaderProvider), rec.Body)
	}
}

func TestServeFirstByteTimeout(t *testing.T) {
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"first_byte_timeout": 200000000,`)

	start := time.Now()
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if rec.Code != 200 || rec.Header().Get(HeaderProvider) != "b" {
		t.Fatalf("response %d from %q: %s", rec.Code, rec.Header().Get(HeaderProvider), rec.Body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestServeStream(t *testing.T) {
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, ev := range strings.SplitAfter(openAIStream, "\n\n") {
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	})
	b := newUpstream(t, answer(500, ``))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	// A client that asks for the usage chunk gets the stream as it came.
	rec, repl, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	if aborted {
		t.Fatal("aborted")
	}
	if rec.Code != 200 || rec.Body.String() != openAIStream {
		t.Fatalf("response %d %q", rec.Code, rec.Body)
	}
	if got := repl.ReplaceAll("{llm.usage.total_tokens}", ""); got != "17" {
		t.Errorf("total tokens = %q", got)
	}

	// One that does not: the gateway asks for it all the same, to count
	// usage, and holds the usage chunk back.
	rec, repl, _, aborted = serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
	if aborted {
		t.Fatal("aborted")
	}
	if got := gjson.Get(a.body(1), "stream_options.include_usage"); !got.Bool() {
		t.Errorf("upstream request asks for no usage: %s", a.body(1))
	}
	usageChunk := "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
	if want := strings.Replace(openAIStream, usageChunk, "", 1); want == openAIStream || rec.Body.String() != want {
		t.Fatalf("response %d %q, want the stream without its usage chunk", rec.Code, rec.Body)
	}
	if got := repl.ReplaceAll("{llm.usage.total_tokens}", ""); got != "17" {
		t.Errorf("total tokens of the held-back chunk = %q", got)
	}
}

func TestServeStreamBroken(t *testing.T) {
	first := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	})
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	for _, rescue := range []bool{false, true} {
		h := gateway(t, a, b, c, fmt.Sprintf(`"rescue": %t,`, rescue))
		before := b.requests()
		rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
		if !aborted {
			t.Errorf("rescue %t: a stream broken after the first byte did not abort the response", rescue)
		}
		// With rescue on, b is asked to continue, and its answer (not a
		// stream) is no continuation.
		if tried := b.requests() - before; !rescue && tried != 0 || rescue && tried != 1 {
			t.Errorf("rescue %t: %d calls of the next target", rescue, tried)
		}
		expectStreamError(t, rec.Body.String(), first)
	}
}

// expectStreamError checks that a stream is its first event then the
// gateway's error event.
func expectStreamError(t *testing.T, out, first string) {
	t.Helper()
	rest, ok := strings.CutPrefix(out, first)
	if !ok {
		t.Fatalf("output %q does not start with the first event", out)
	}
	data, ok := strings.CutPrefix(rest, "data: ")
	if !ok || !strings.HasSuffix(data, "\n\n") {
		t.Fatalf("no error event after the first one: %q", rest)
	}
	if code := gjson.Get(strings.TrimSpace(data), "error.code").Str; code != "stream_interrupted" {
		t.Errorf("error event %q", data)
	}
}

func TestServeRouteParams(t *testing.T) {
	a := newUpstream(t, answer(500, ``))
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	body := `{"model":"r","messages":[{"role":"user","content":"hi"}],"temperature":1}`
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", body)
	if rec.Code != 200 || a.requests() != 0 {
		t.Fatalf("response %d, a got %d requests", rec.Code, a.requests())
	}
	got := b.body(0)
	for path, want := range map[string]string{
		"model":       `"real-m"`,
		"temperature": `0.1`,
		"max_tokens":  `5`,
		"messages":    `[{"role":"user","content":"hi"}]`,
	} {
		if v := gjson.Get(got, path).Raw; v != want {
			t.Errorf("upstream %s = %s, want %s", path, v, want)
		}
	}
	if rec.Header().Get(HeaderRoute) != "r" {
		t.Errorf("route header %q", rec.Header().Get(HeaderRoute))
	}
}

func TestServeAnthropic(t *testing.T) {
	a := newUpstream(t, answer(500, ``))
	b := newUpstream(t, answer(500, ``))
	msg := `{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":4,"output_tokens":6}}`
	c := newUpstream(t, answer(200, msg))
	h := gateway(t, a, b, c, "")

	rec, repl, _, _ := serveGateway(t, h, "POST", "/v1/messages", `{"model":"claude","max_tokens":10,"messages":[]}`, "X-Api-Key", "client-key")
	if rec.Code != 200 || rec.Body.String() != msg {
		t.Fatalf("response %d %s", rec.Code, rec.Body)
	}
	c.mu.Lock()
	hdr, uri := c.heads[0], c.uris[0]
	c.mu.Unlock()
	if hdr.Get("X-Api-Key") != "key-c" || hdr.Get("Anthropic-Version") != upstreams.DefaultAnthropicVersion || uri != "/v1/messages" {
		t.Errorf("upstream got %s with x-api-key %q, anthropic-version %q", uri, hdr.Get("X-Api-Key"), hdr.Get("Anthropic-Version"))
	}
	if got := gjson.Get(c.body(0), "model").Str; got != "claude-real" {
		t.Errorf("upstream model %q", got)
	}
	if got := repl.ReplaceAll("{llm.usage.prompt_tokens}/{llm.usage.completion_tokens}", ""); got != "4/6" {
		t.Errorf("usage %s", got)
	}
}

func TestServeClientErrors(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, b, c, `"max_body": 200,`)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		anthropic                bool
		hdr                      []string
	}{
		{"too large", "POST", "/v1/chat/completions", `{"model":"m","x":"` + strings.Repeat("x", 300) + `"}`, 413, "request_too_large", false, nil},
		{"invalid JSON", "POST", "/v1/chat/completions", `{"model":`, 400, "invalid_json", false, nil},
		{"invalid JSON on messages", "POST", "/v1/messages", `{"model":`, 400, "invalid_json", true, nil},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9"}`, 404, "model_not_found", false, nil},
		{"feature the target cannot serve", "POST", "/v1/messages", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}`, 400, "unsupported_parameter", true, nil},
		{"too deep", "POST", "/v1/embeddings", `{"model":"m","input":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, 400, "too_deep", false, nil},
		{"compressed body", "POST", "/v1/chat/completions", "\x1f\x8b\x08\x00", 415, "unsupported_content_encoding", false, []string{"Content-Encoding", "gzip"}},
		{"compressed body on messages", "POST", "/v1/messages", "\x28\xb5\x2f\xfd", 415, "unsupported_content_encoding", true, []string{"Content-Encoding", "zstd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _, nextCalled, _ := serveGateway(t, h, tc.method, tc.path, tc.body, tc.hdr...)
			if nextCalled {
				t.Fatal("next handler called")
			}
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			b := rec.Body.Bytes()
			if got := gjson.GetBytes(b, "error.code").Str; got == "" || (tc.code != "" && got != tc.code) {
				t.Errorf("code %q, want %q", got, tc.code)
			}
			if got := gjson.GetBytes(b, "type").Str == "error"; got != tc.anthropic {
				t.Errorf("anthropic shape %v, want %v: %s", got, tc.anthropic, b)
			}
		})
	}
	if n := a.requests() + b.requests() + c.requests(); n != 0 {
		t.Errorf("upstreams got %d requests", n)
	}
}

// TestServeTooLargeChunked: a body without Content-Length is cut at
// max_body too.
func TestServeTooLargeChunked(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, a, a, `"max_body": 100,`)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/v1/chat/completions", io.MultiReader(strings.NewReader(`{"model":"m","x":"`), strings.NewReader(strings.Repeat("x", 1000)+`"}`)))
	r.ContentLength = -1
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	if err := h.ServeHTTP(rec, r, nil); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 413 || a.requests() != 0 {
		t.Errorf("status %d, upstream requests %d", rec.Code, a.requests())
	}
}

func TestServePassThrough(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, a, a, "")
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/chat/completions"},
		{"POST", "/v1/models"},
		{"POST", "/health"},
	} {
		rec, _, nextCalled, _ := serveGateway(t, h, tc.method, tc.path, `{"model":"m"}`)
		if !nextCalled || rec.Code != http.StatusTeapot {
			t.Errorf("%s %s: next called %v, status %d", tc.method, tc.path, nextCalled, rec.Code)
		}
	}
	// GET …/models is the gateway's model list, unless list_models is off.
	rec, _, nextCalled, _ := serveGateway(t, h, "GET", "/v1/models", "")
	if nextCalled || rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"object":"list"`) {
		t.Errorf("GET /v1/models: next called %v, status %d %s", nextCalled, rec.Code, rec.Body)
	}
	off := gateway(t, a, a, a, `"list_models": false,`)
	if rec, _, nextCalled, _ := serveGateway(t, off, "GET", "/v1/models", ""); !nextCalled || rec.Code != http.StatusTeapot {
		t.Errorf("GET /v1/models with list_models off: next called %v, status %d", nextCalled, rec.Code)
	}
	if a.requests() != 0 {
		t.Errorf("upstream got %d requests", a.requests())
	}
}

func TestServeProviderHeader(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	b := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, b, a, `"provider_header": "X-LLM-Requested-Provider",`)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"b/m"}`)
	if rec.Code != 200 || rec.Header().Get(HeaderProvider) != "b" || a.requests() != 0 {
		t.Fatalf("response %d from %q", rec.Code, rec.Header().Get(HeaderProvider))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if got := b.heads[0].Get("X-LLM-Requested-Provider"); got != "b" {
		t.Errorf("provider header %q", got)
	}
	if got := gjson.Get(b.bodies[0], "model").Str; got != "real-m" {
		t.Errorf("upstream model %q", got)
	}
}

// TestServeClientGone: a client that goes away stops the attempts.
func TestServeClientGone(t *testing.T) {
	release := make(chan struct{})
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	b := newUpstream(t, answer(200, okChat))
	defer close(release)
	h := gateway(t, a, b, a, "")

	ctx, cancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(ctx, "POST", "/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	time.AfterFunc(100*time.Millisecond, cancel)
	err := h.ServeHTTP(rec, r, nil)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 499 {
		t.Errorf("error = %v, want a 499 handler error", err)
	}
	if b.requests() != 0 {
		t.Error("tried the next target for a client that went away")
	}
}

// Make sure the test config helpers produce valid JSON.
func TestGatewayProxyJSON(t *testing.T) {
	for _, s := range []string{gatewayProxy("127.0.0.1:1"), proxyTo("a:1", "b:2"), resolveConfig} {
		if !json.Valid([]byte(s)) {
			t.Errorf("invalid JSON: %s", s)
		}
	}
}

// TestServeCountTokens: count_tokens goes to an anthropic provider as
// is, and is answered with the gateway's estimate for other providers,
// which have no such endpoint.
func TestServeCountTokens(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(200, `{"input_tokens":1234}`))
	h := gateway(t, a, b, c, "")
	body := `{"model":"%s","system":"Be brief.","messages":[{"role":"user","content":"` + strings.Repeat("count these words ", 50) +
		`"}],"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}`

	rec, repl, _, _ := serveGateway(t, h, "POST", "/v1/messages/count_tokens?beta=true", fmt.Sprintf(body, "m"))
	want := strategies.BuildRequest("/messages", fmt.Appendf(nil, body, "m")).PromptTokens
	if rec.Code != 200 || gjson.Get(rec.Body.String(), "input_tokens").Int() != int64(want) || want < 150 {
		t.Errorf("estimate: %d %s, want input_tokens %d", rec.Code, rec.Body, want)
	}
	if rec.Header().Get(HeaderProvider) != "a" || rec.Header().Get(HeaderModel) != "m" {
		t.Errorf("headers %v", rec.Header())
	}
	if n := a.requests() + b.requests(); n != 0 {
		t.Errorf("openai upstreams got %d requests", n)
	}
	if got, _ := repl.GetString("llm.provider"); got != "a" {
		t.Errorf("{llm.provider} = %q", got)
	}

	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/messages/count_tokens?beta=true", fmt.Sprintf(body, "claude"))
	if rec.Code != 200 || rec.Body.String() != `{"input_tokens":1234}` {
		t.Errorf("native: %d %s", rec.Code, rec.Body)
	}
	if c.requests() != 1 || c.uris[0] != "/v1/messages/count_tokens?beta=true" || gjson.Get(c.body(0), "model").Str != "claude-real" {
		t.Errorf("anthropic upstream got %d requests: %v %s", c.requests(), c.uris, c.body(0))
	}
}

// TestResolvePinned: only a provider/model request pins a provider (for
// provider_header); a registered model whose name has a slash does not.
func TestResolvePinned(t *testing.T) {
	h := mustLoadHandler(t, resolveConfig)
	for model, want := range map[string]string{"a/m": "a", "az/aliased": "az", "a/slashed": "", "m": "", "r": ""} {
		p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), &strategies.Request{Model: model, Endpoint: "/chat/completions"}, nil)
		if rerr != nil {
			t.Fatalf("%s: %s", model, rerr.msg)
		}
		if p.pinned != want {
			t.Errorf("%s: pinned %q, want %q", model, p.pinned, want)
		}
	}
}

// The messages are read only for a strategy that looks at them: a
// prompt-blind one (fallback, lowest_latency, …) routes without reading
// them, one that prices the prompt (cheapest) reads them.
func TestResolveReadsPromptOnlyWhenLooked(t *testing.T) {
	h := mustLoadHandler(t, `{
	"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
	"models": [{"name": "m", "providers": ["a"], "input_price": 1, "output_price": 2}, {"name": "n", "providers": ["a"], "input_price": 3, "output_price": 4},
		{"name": "small", "providers": ["a"], "context": 300}, {"name": "large", "providers": ["a"], "context": 100000}],
	"routes": [
		{"name": "blind", "strategy": {"name": "fallback"}, "targets": [{"model": "m"}, {"model": "n"}]},
		{"name": "fast", "strategy": {"name": "lowest_latency"}, "targets": [{"model": "m"}, {"model": "n"}]},
		{"name": "cheap", "strategy": {"name": "cheapest"}, "targets": [{"model": "m"}, {"model": "n"}]},
		{"name": "windows", "strategy": {"name": "fallback"}, "targets": [{"model": "small"}, {"model": "large"}]}
	]
}`)
	long := strings.Repeat("word ", 100)
	for _, tc := range []struct {
		route, text string
		maxTokens   int64
		read        bool
	}{
		{"blind", "how many words are in this prompt", 0, false},
		{"fast", "how many words are in this prompt", 0, false},
		{"cheap", "how many words are in this prompt", 0, true},
		// A body that fits the smallest window with its max_tokens
		// cannot hold more tokens than bytes: no need to read it.
		{"windows", "how many words are in this prompt", 100, false},
		// One that might not fit is read, and the small model is unfit.
		{"windows", "how many words are in this prompt", 250, true},
		{"windows", "how many words are in this prompt", 295, true},
		{"windows", long, 0, true},
	} {
		body := []byte(`{"model":"` + tc.route + `","messages":[{"role":"user","content":"` + tc.text + `"}]}`)
		req := &strategies.Request{Model: tc.route, Endpoint: "/chat/completions", Body: body, MaxTokens: tc.maxTokens}
		p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), req, nil)
		if rerr != nil {
			t.Fatalf("%s: %s", tc.route, rerr.msg)
		}
		if tc.route == "windows" {
			fits := int64(req.PromptTokens)+tc.maxTokens <= 300
			if got := pairs(p)[0] == "small@a"; got != fits {
				t.Errorf("windows, %d bytes, max_tokens %d: candidates %v (the prompt's %d tokens fit the small window: %t)", len(body), tc.maxTokens, pairs(p), req.PromptTokens, fits)
			}
		}
		if read := req.PromptTokens > 0 || req.LastUser != ""; read != tc.read {
			t.Errorf("%s: prompt read %t (tokens %d, last user %q), want %t", tc.route, read, req.PromptTokens, req.LastUser, tc.read)
		}
	}
}
