package llmroute

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/requestbody"
	"github.com/tidwall/gjson"
)

// TestServeRequestBodyMaxSize: Caddy's `request_body { max_size }` ahead
// of llm_route cuts a body without Content-Length while llm_route reads
// it. The client gets a 413 in its API shape, as for max_body, not a 400
// "could not read the request body".
func TestServeRequestBodyMaxSize(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, a, a, "")
	for _, tc := range []struct {
		path      string
		anthropic bool
	}{{"/v1/chat/completions", false}, {"/v1/messages", true}} {
		rec := httptest.NewRecorder()
		body := io.MultiReader(strings.NewReader(`{"model":"m","max_tokens":5,"x":"`), strings.NewReader(strings.Repeat("x", 1000)+`"}`))
		r := httptest.NewRequest("POST", tc.path, body)
		r.ContentLength = -1 // chunked: request_body cannot refuse it up front
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
		rb := requestbody.RequestBody{MaxSize: 100}
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, nil) })
		if err := rb.ServeHTTP(rec, r, next); err != nil {
			t.Fatal(err)
		}
		b := rec.Body.Bytes()
		if rec.Code != http.StatusRequestEntityTooLarge || gjson.GetBytes(b, "error.code").Str != "request_too_large" {
			t.Errorf("%s: status %d %s, want 413 request_too_large", tc.path, rec.Code, b)
		}
		if got := gjson.GetBytes(b, "type").Str == "error"; got != tc.anthropic {
			t.Errorf("%s: anthropic shape %v, want %v: %s", tc.path, got, tc.anthropic, b)
		}
		if msg := gjson.GetBytes(b, "error.message").Str; !strings.Contains(msg, "100 bytes") {
			t.Errorf("%s: message %q does not name the limit", tc.path, msg)
		}
	}
	if a.requests() != 0 {
		t.Errorf("upstream got %d requests", a.requests())
	}
}
