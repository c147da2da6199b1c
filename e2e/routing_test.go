package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
)

// routingSetup adds, to the defaults, an upstream of our own that shows
// what reaches a provider, routes with per-target parameters, and the
// model/provider request headers.
func routingSetup(recURL string) setup {
	return withDefaults(fmt.Sprintf(`
		model_to_header X-Requested-Model
		provider_header X-Requested-Provider
		provider echo %s
		model echo-m echo {
			upstream_name echo-upstream
		}
		route resilient {
			target only-alpha
			target only-beta {
				max_tokens 3
				temperature 0.2
			}
		}
		route tuned {
			target only-alpha
			target echo-m {
				temperature 0.2
				top_p 0.5
				user e2e-route
				metadata.tier "gold"
			}
		}
		route strict {
			target only-alpha
			target only-beta
			retry_on 500
		}
`, recURL))
}

func TestRouting(t *testing.T) {
	srv, rec := newRecorder(t, false)
	start(t, routingSetup(srv.URL))
	c := oaClient(t)

	t.Run("registered model", func(t *testing.T) {
		var hr *http.Response
		resp, err := c.Chat.Completions.New(ctxT(t), chatParams("only-beta", prompt), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "only-beta", "beta", "only-beta", 1)
		if got := resp.Choices[0].Message.Content; got != betaText {
			t.Errorf("content %q", got)
		}
	})

	t.Run("provider/model pins the provider", func(t *testing.T) {
		// chat is served by alpha first; pinning beta skips alpha
		for _, tc := range []struct{ model, provider, text string }{
			{"beta/chat", "beta", betaText},
			{"alpha/chat", "alpha", alphaText},
		} {
			var hr *http.Response
			resp, err := c.Chat.Completions.New(ctxT(t), chatParams(tc.model, prompt), oaoption.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("%s: %v", tc.model, err)
			}
			expectRoute(t, hr, "chat", tc.provider, "chat", 1)
			if got := resp.Choices[0].Message.Content; got != tc.text {
				t.Errorf("%s: content %q, want %q", tc.model, got, tc.text)
			}
			if resp.Model != "mock-chat" {
				t.Errorf("%s: the upstream got model %q, want mock-chat", tc.model, resp.Model)
			}
		}
		// a pinned provider that fails is not left for another one
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("alpha/chat", prompt), faultHeader("alpha:status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 503 {
			t.Errorf("pinned alpha failing: got %v, want 503", err)
		} else if got := routeOf(oerr.Response.Header); got.Provider != "alpha" || got.Attempts != 1 {
			t.Errorf("pinned alpha failing: %s", got)
		}
	})

	t.Run("route falls back and applies the target's params", func(t *testing.T) {
		var hr *http.Response
		p := chatParams("resilient", prompt)
		p.MaxTokens = openai.Int(100) // the target overrides the client's value
		resp, err := c.Chat.Completions.New(ctxT(t), p, faultHeader("alpha:status,code=503"), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "only-beta", "beta", "resilient", 2)
		if got, want := resp.Choices[0].Message.Content, words(betaText, 3); got != want {
			t.Errorf("content %q, want the 3 tokens %q (max_tokens 3 of the second target)", got, want)
		}
		if resp.Choices[0].FinishReason != "length" || resp.Usage.CompletionTokens != 3 {
			t.Errorf("finish %q, completion tokens %d", resp.Choices[0].FinishReason, resp.Usage.CompletionTokens)
		}

		// with the first target healthy, its (absent) params apply: the
		// client's max_tokens stays and the whole text comes back
		resp, err = c.Chat.Completions.New(ctxT(t), p, oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "only-alpha", "alpha", "resilient", 1)
		if got := resp.Choices[0].Message.Content; got != alphaText {
			t.Errorf("content %q, want %q", got, alphaText)
		}

		// the same through a stream
		s := chatStream(t, c, p, faultHeader("alpha:status,code=502"))
		if s.Err != nil {
			t.Fatal(s.Err)
		}
		expectRoute(t, s.Resp, "only-beta", "beta", "resilient", 2)
		if want := words(betaText, 3); s.Text != want || s.Finish != "length" {
			t.Errorf("stream %q (%s), want %q (length)", s.Text, s.Finish, want)
		}
	})

	t.Run("target params reach the upstream body", func(t *testing.T) {
		before := rec.count()
		var hr *http.Response
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("tuned", prompt), faultHeader("alpha:reset"), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectAttempts(t, hr.Header, "echo", 2)
		if rec.count() != before+1 {
			t.Fatalf("the echo upstream got %d requests, want 1", rec.count()-before)
		}
		got := rec.last(t)
		for path, want := range map[string]string{
			"model": "echo-upstream", "temperature": "0.2", "top_p": "0.5",
			"user": "e2e-route", "metadata.tier": "gold",
		} {
			if v := jsonPath(got.Body, path); v != want {
				t.Errorf("upstream body %s = %q, want %q (body %s)", path, v, want, got.Body)
			}
		}
		if v := jsonPath(got.Body, "messages"); !strings.Contains(v, "Hello gateway") {
			t.Errorf("upstream body lost the messages: %s", got.Body)
		}
	})

	t.Run("route retry_on overrides the handler's", func(t *testing.T) {
		// retry_on 500: a 503 is final
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("strict", prompt), faultHeader("alpha:status,code=503"))
		var oerr *openai.Error
		if !asError(err, &oerr) || oerr.StatusCode != 503 || routeOf(oerr.Response.Header).Attempts != 1 {
			t.Errorf("503 on a retry_on 500 route: got %v", err)
		}
		var hr *http.Response
		resp, err := c.Chat.Completions.New(ctxT(t), chatParams("strict", prompt), faultHeader("alpha:status,code=500"), oaoption.WithResponseInto(&hr))
		if err != nil {
			t.Fatal(err)
		}
		expectRoute(t, hr, "only-beta", "beta", "strict", 2)
		if resp.Choices[0].Message.Content != betaText {
			t.Errorf("content %q", resp.Choices[0].Message.Content)
		}
	})

	t.Run("model_to_header and provider_header", func(t *testing.T) {
		// pinned: the provider header carries the provider, the model
		// header the model as the client sent it, the body the upstream name
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("echo/echo-m", prompt))
		if err != nil {
			t.Fatal(err)
		}
		got := rec.last(t)
		if v := got.Header.Get("X-Requested-Model"); v != "echo/echo-m" {
			t.Errorf("X-Requested-Model %q, want echo/echo-m", v)
		}
		if v := got.Header.Values("X-Requested-Provider"); len(v) != 1 || v[0] != "echo" {
			t.Errorf("X-Requested-Provider %q, want [echo]", v)
		}
		if v := jsonPath(got.Body, "model"); v != "echo-upstream" {
			t.Errorf("upstream body model %q, want echo-upstream", v)
		}

		// not pinned: the model header only
		_, err = c.Chat.Completions.New(ctxT(t), chatParams("echo-m", prompt))
		if err != nil {
			t.Fatal(err)
		}
		got = rec.last(t)
		if v := got.Header.Get("X-Requested-Model"); v != "echo-m" {
			t.Errorf("X-Requested-Model %q, want echo-m", v)
		}
		if v := got.Header.Get("X-Requested-Provider"); v != "" {
			t.Errorf("X-Requested-Provider %q on an unpinned model", v)
		}

		// the client cannot choose the value of the model header
		_, err = c.Chat.Completions.New(ctxT(t), chatParams("echo-m", prompt), oaoption.WithHeader("X-Requested-Model", "forged"))
		if err != nil {
			t.Fatal(err)
		}
		if v := rec.last(t).Header.Values("X-Requested-Model"); len(v) != 1 || v[0] != "echo-m" {
			t.Errorf("X-Requested-Model %q, want [echo-m]", v)
		}
	})

	t.Run("unknown model is 404 model_not_found", func(t *testing.T) {
		for _, model := range []string{"no-such-model", "beta/only-alpha", "beta/no-such-model", "nobody/chat"} {
			var hr *http.Response
			_, err := c.Chat.Completions.New(ctxT(t), chatParams(model, prompt), oaoption.WithResponseInto(&hr))
			var oerr *openai.Error
			if !asError(err, &oerr) {
				t.Errorf("%s: got %v, want an *openai.Error", model, err)
				continue
			}
			if oerr.StatusCode != http.StatusNotFound || oerr.Code != "model_not_found" || oerr.Type != "not_found_error" || oerr.Message == "" {
				t.Errorf("%s: status %d code %q type %q message %q", model, oerr.StatusCode, oerr.Code, oerr.Type, oerr.Message)
			}
			if mock := oerr.Response.Header.Get("X-Mock-Name"); mock != "" {
				t.Errorf("%s: a provider (%s) was called for an unknown model", model, mock)
			}
		}
	})

	t.Run("other paths and methods pass to the next handler", func(t *testing.T) {
		hc := newHTTPClient(t)
		// (GET /v1/models is the gateway's own model list: modellist_test.go)
		for _, tc := range []struct{ method, path string }{
			{http.MethodGet, "/health"},
			{http.MethodPost, "/health"},
			{http.MethodPost, "/v1/models"},
			{http.MethodGet, "/v1/chat/completions"},
		} {
			body := chatBody("chat")
			res := do(t, hc, tc.method, gatewayURL+tc.path, strings.NewReader(string(body)), int64(len(body)))
			if res.Status != 200 || string(res.Body) != "next" {
				t.Errorf("%s %s: %d %q, want 200 next", tc.method, tc.path, res.Status, res.Body)
			}
			if h := res.Header.Get("X-LLM-Route"); h != "" {
				t.Errorf("%s %s: routed (%s)", tc.method, tc.path, h)
			}
		}
	})
}
