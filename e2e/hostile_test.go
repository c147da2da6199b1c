package e2e

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// inflated is a response body as a client that honours Content-Encoding
// deflate reads it.
func inflated(t *testing.T, res rawResponse) string {
	t.Helper()
	if !strings.EqualFold(res.Header.Get("Content-Encoding"), "deflate") {
		return string(res.Body)
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(res.Body)))
	if err != nil {
		return string(res.Body)
	}
	return string(b)
}

// An upstream that compresses what it reflects with an encoding the
// gateway did not ask for (the transport asks for gzip only, and
// decompresses it) once had its answer passed on as it came: the key
// scrubber saw only compressed bytes, and a client that inflates the
// body read the operator's key. An answer the gateway cannot read is no
// answer: the next candidate serves the request.
func TestUnrequestedEncodingRefused(t *testing.T) {
	canary := "sk-canary-encoded-" + randomHex(12)
	t.Setenv("LLMROUTE_CANARY", canary)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		var ct, text string
		status := http.StatusOK
		switch {
		case strings.HasPrefix(r.URL.Path, "/text200/"):
			ct, text = "text/plain", "your key is "+key
		case strings.HasPrefix(r.URL.Path, "/json401/"):
			ct, text, status = "application/json", `{"error":{"message":"bad key `+key+`"}}`, http.StatusUnauthorized
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"plain answer"},"finish_reason":"stop"}]}`)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Encoding", "deflate")
		w.WriteHeader(status)
		fw, _ := flate.NewWriter(w, flate.BestCompression)
		_, _ = io.WriteString(fw, text)
		_ = fw.Close()
	}))
	t.Cleanup(up.Close)
	route := "\t\tretry_on 401 5xx\n"
	for _, p := range []string{"text200", "json401", "ok"} {
		route += fmt.Sprintf("\t\tprovider %[1]s %[2]s/%[1]s/v1 {\n\t\t\tapi_key {env.LLMROUTE_CANARY}\n\t\t}\n\t\tmodel %[1]s %[1]s\n", p, up.URL)
	}
	route += "\t\troute r-text200 text200 ok\n\t\troute r-json401 json401 ok\n"
	start(t, setup{Mocks: []mockSite{}, Route: route})
	hc := newHTTPClient(t)
	for _, model := range []string{"text200", "json401"} {
		t.Run(model, func(t *testing.T) {
			res := post(t, hc, "/v1/chat/completions", chatBody("r-"+model))
			body := inflated(t, res)
			if strings.Contains(body, canary) {
				t.Fatalf("the key reached the client: %s", body)
			}
			if res.Status != http.StatusOK || res.Header.Get("X-Llm-Model") != "ok" {
				t.Errorf("status %d from %q, want 200 from the next candidate (ok): %s", res.Status, res.Header.Get("X-Llm-Model"), body)
			}
		})
	}
}

// A 200 whose body is an HTML page (a captive portal, a proxy's error
// page) or a redirect once passed on to the client as the answer, and
// counted as a success. On the API's endpoints only JSON or an event
// stream is an answer: anything else fails the attempt and the next
// candidate serves the request.
func TestNonAPIAnswerFallsBack(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/html/"):
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<html><body>Please log in to the network</body></html>")
		case strings.HasPrefix(r.URL.Path, "/redirect/"):
			w.Header().Set("Location", "http://127.0.0.1:9/elsewhere")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/empty/"):
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"plain answer"},"finish_reason":"stop"}]}`)
		}
	}))
	t.Cleanup(up.Close)
	route := ""
	for _, p := range []string{"html", "redirect", "empty", "ok"} {
		route += fmt.Sprintf("\t\tprovider %[1]s %[2]s/%[1]s/v1\n\t\tmodel %[1]s %[1]s\n\t\troute r-%[1]s %[1]s ok\n", p, up.URL)
	}
	start(t, setup{Mocks: []mockSite{}, Route: route})
	hc := newHTTPClient(t)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, model := range []string{"html", "redirect", "empty"} {
		t.Run(model, func(t *testing.T) {
			res := post(t, hc, "/v1/chat/completions", chatBody("r-"+model))
			if res.Status != http.StatusOK || res.Header.Get("X-Llm-Model") != "ok" || res.json("choices.0.message.content") != "plain answer" {
				t.Errorf("status %d from %q, want 200 from the next candidate (ok): %s", res.Status, res.Header.Get("X-Llm-Model"), res.Body)
			}
			// Alone, the model's answer is an error in the API's shape.
			res = post(t, hc, "/v1/chat/completions", chatBody(model))
			if res.Status != http.StatusBadGateway || res.json("error.code") != "upstream_invalid_response" || res.Header.Get("Location") != "" {
				t.Errorf("alone: status %d, want 502 upstream_invalid_response: %v %s", res.Status, res.Header, res.Body)
			}
		})
	}
}

// strategy_header let a client borrow the strategy of any route, even one
// its key may not ask for: a key limited to a fallback route named a
// cascade route in the header, and the cascade's judge, a model the key
// may not use, was called (and billed). A hint naming a route the key
// may not use is ignored now, like one naming no route.
func TestStrategyHintHonoursKeyModels(t *testing.T) {
	t.Setenv("LLMROUTE_NARROW", "sk-narrow-"+randomHex(8))
	t.Setenv("LLMROUTE_WIDE", "sk-wide-"+randomHex(8))
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		model := jsonPath(b, "model")
		mu.Lock()
		calls[model]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Score: 9 for `+model+`"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(up.Close)
	start(t, setup{Mocks: []mockSite{}, Route: fmt.Sprintf(`
		strategy_header X-LLM-Strategy
		key narrow {
			secret {env.LLMROUTE_NARROW}
			models pair
		}
		key wide {
			secret {env.LLMROUTE_WIDE}
		}
		provider up %s
		model cheap up
		model mid up
		model judge up
		route pair cheap mid
		route graded {
			models cheap mid
			strategy cascade {
				judge judge
			}
		}`, up.URL)})
	hc := newHTTPClient(t)
	ask := func(env string) rawResponse {
		return post(t, hc, "/v1/chat/completions", chatBody("pair"),
			"Authorization", "Bearer "+os.Getenv(env), "X-LLM-Strategy", "graded")
	}
	res := ask("LLMROUTE_NARROW")
	mu.Lock()
	judged := calls["judge"]
	mu.Unlock()
	if res.Status != http.StatusOK || judged != 0 {
		t.Errorf("key limited to pair: status %d, the judge called %d times, want 200 and never: %s", res.Status, judged, res.Body)
	}
	// A key that may use the route borrows its strategy.
	res = ask("LLMROUTE_WIDE")
	mu.Lock()
	judged = calls["judge"]
	mu.Unlock()
	if res.Status != http.StatusOK || judged != 1 || res.Header.Get("X-Llm-Cascade") == "" {
		t.Errorf("key with every model: status %d, cascade %q, the judge called %d times, want once: %s", res.Status, res.Header.Get("X-Llm-Cascade"), judged, res.Body)
	}
}

// The X-LLM-* response headers are the gateway's account of what it did
// (which tiers a cascade tried, whether a hedge won, the request's id
// for feedback); an upstream's headers of that name once went to the
// client beside them, so a provider could claim a cascade or a hedge
// that never happened. The gateway's namespace is its own.
func TestUpstreamCannotForgeRoutingHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"X-Llm-Cascade", "X-Llm-Hedged", "X-Llm-Consensus", "X-Llm-Request-Id", "X-Llm-Model", "X-Llm-Anything"} {
			w.Header().Set(name, "forged")
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"plain answer"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(up.Close)
	start(t, setup{Mocks: []mockSite{}, Route: fmt.Sprintf("\t\tprovider up %s\n\t\tmodel m up\n", up.URL)})
	res := post(t, newHTTPClient(t), "/v1/chat/completions", chatBody("m"))
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	for name, vals := range res.Header {
		for _, v := range vals {
			if strings.Contains(v, "forged") {
				t.Errorf("the upstream's %s: %s reached the client", name, v)
			}
		}
	}
	if res.Header.Get("X-Llm-Model") != "m" || res.Header.Get("X-Llm-Request-Id") == "" {
		t.Errorf("the gateway's own headers are missing: %v", res.Header)
	}
}

// A key's models judge a provider/model request by its model; that rule
// once applied to any name with a slash, so a key allowed "llama" reached
// a registered (or discovered) model named "meta/llama", "meta" being no
// provider. Only a name that resolves as provider/model is judged by its
// model part.
func TestKeyModelsSlashedName(t *testing.T) {
	t.Setenv("LLMROUTE_NARROW", "sk-narrow-"+randomHex(8))
	var mu sync.Mutex
	calls := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls[jsonPath(b, "model")]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"plain answer"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(up.Close)
	start(t, setup{Mocks: []mockSite{}, Route: fmt.Sprintf(`
		client_models
		key narrow {
			secret {env.LLMROUTE_NARROW}
			models llama
		}
		provider up %s
		model llama up
		model meta/llama up {
			price 30 60
		}`, up.URL)})
	hc := newHTTPClient(t)
	auth := []string{"Authorization", "Bearer " + os.Getenv("LLMROUTE_NARROW")}
	for _, body := range [][]byte{chatBody("meta/llama"), chatBody("llama", `"models":["meta/llama"]`)} {
		res := post(t, hc, "/v1/chat/completions", body, auth...)
		if res.Status != http.StatusForbidden || res.json("error.code") != "model_not_allowed" {
			t.Errorf("%s: status %d, want 403 model_not_allowed: %s", body, res.Status, res.Body)
		}
	}
	// provider/model still works for a model the key may use.
	if res := post(t, hc, "/v1/chat/completions", chatBody("up/llama"), auth...); res.Status != http.StatusOK {
		t.Errorf("up/llama: status %d: %s", res.Status, res.Body)
	}
	res := do(t, hc, http.MethodGet, gatewayURL+"/v1/models", nil, 0, auth...)
	if strings.Contains(string(res.Body), "meta/llama") {
		t.Errorf("the model list shows the key meta/llama: %s", res.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["meta/llama"] != 0 {
		t.Errorf("meta/llama was called %d times", calls["meta/llama"])
	}
}

// A provider's extra headers carry secrets too (a gateway service's key
// in `header X-Portkey-Api-Key {env.…}`): they were set above
// reverse_proxy's logging, so its debug log showed them in clear, and an
// upstream reflecting one passed it to the client. They are added with
// the key now, below the logging, and scrubbed from answers like it.
func TestProviderHeaderSecretsKept(t *testing.T) {
	extra := "pk-canary-header-" + randomHex(12)
	t.Setenv("LLMROUTE_EXTRA", extra)
	var got atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("X-Portkey-Api-Key")
		got.Store(v + "|" + r.Header.Get("X-Team"))
		w.Header().Set("X-Echo", v)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"bad portkey key %s"}}`, v)
	}))
	t.Cleanup(up.Close)
	caddyLog := t.TempDir() + "/caddy.log"
	start(t, setup{
		Global: fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}", caddyLog),
		Mocks:  []mockSite{},
		Route: fmt.Sprintf(`
		provider up %s {
			header X-Portkey-Api-Key {env.LLMROUTE_EXTRA}
			header X-Team blue
		}
		model m up`, up.URL),
	})
	res := post(t, newHTTPClient(t), "/v1/chat/completions", chatBody("m"))
	if res.Status != http.StatusUnauthorized {
		t.Errorf("status %d, want the upstream's 401: %s", res.Status, res.Body)
	}
	if v, _ := got.Load().(string); v != extra+"|blue" {
		t.Errorf("the upstream got the headers %q, want %q", v, extra+"|blue")
	}
	var seen strings.Builder
	_ = res.Header.Write(&seen)
	seen.Write(res.Body)
	logs, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "upstream roundtrip") {
		t.Errorf("the debug log holds no upstream round trip")
	}
	for name, text := range map[string]string{"client response": seen.String(), "debug log": string(logs)} {
		if i := strings.Index(text, extra); i >= 0 {
			t.Errorf("the header's secret is in the %s: …%s…", name, text[max(0, i-200):min(len(text), i+60)])
		}
	}
}
