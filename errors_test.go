package llmroute

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/translate"
)

func TestErrorBody(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		want     string
	}{
		{"/chat/completions", `{"error":{"message":"no such model","type":"not_found_error","code":"model_not_found"}}`},
		{"/responses", `{"error":{"message":"no such model","type":"not_found_error","code":"model_not_found"}}`},
		{"/embeddings", `{"error":{"message":"no such model","type":"not_found_error","code":"model_not_found"}}`},
		{"/messages", `{"type":"error","error":{"message":"no such model","type":"not_found_error","code":"model_not_found"}}`},
		{"/messages/count_tokens", `{"type":"error","error":{"message":"no such model","type":"not_found_error","code":"model_not_found"}}`},
	} {
		if got := string(errorBody(tc.endpoint, 404, "model_not_found", "no such model")); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.endpoint, got, tc.want)
		}
	}
}

func TestErrorBodyEscapes(t *testing.T) {
	msg := "model \"<x>\" & \\ \n \u2028 é \x00 \xff"
	for _, endpoint := range []string{"/chat/completions", "/messages"} {
		b := errorBody(endpoint, 400, "c", msg)
		if !json.Valid(b) {
			t.Fatalf("%s: invalid JSON: %s", endpoint, b)
		}
		if got := gjson.GetBytes(b, "error.message").Str; !strings.HasPrefix(got, "model \"<x>\" & \\ \n \u2028 é \x00") {
			t.Errorf("%s: message = %q", endpoint, got)
		}
	}
}

func TestWriteError(t *testing.T) {
	rec := newRecorder()
	writeError(rec, "/messages", http.StatusTooManyRequests, "rate_limited", "slow down")
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("status = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Content-Length = %q for %d bytes", cl, rec.Body.Len())
	}
	b := rec.Body.Bytes()
	if gjson.GetBytes(b, "type").Str != "error" || gjson.GetBytes(b, "error.type").Str != "rate_limit_error" ||
		gjson.GetBytes(b, "error.code").Str != "rate_limited" || gjson.GetBytes(b, "error.message").Str != "slow down" {
		t.Errorf("body = %s", b)
	}
}

func TestUpstreamErrorBody(t *testing.T) {
	longText := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name     string
		endpoint string
		status   int
		body     string
		keep     bool   // the body is passed on as is
		message  string // else: the wrapped message
	}{
		{
			name: "openai error", endpoint: "/chat/completions", status: 429,
			body: `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			keep: true,
		},
		{
			name: "anthropic error", endpoint: "/messages", status: 529,
			body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			keep: true,
		},
		{
			name: "error as a string", endpoint: "/chat/completions", status: 500,
			body: `{"error":"internal"}`,
			keep: true,
		},
		{
			name: "JSON without error member", endpoint: "/chat/completions", status: 500,
			body:    `{"message":"bad"}`,
			message: `upstream error: {"message":"bad"}`,
		},
		{
			name: "JSON array", endpoint: "/chat/completions", status: 502,
			body:    `[{"error":"x"}]`,
			message: `upstream error: [{"error":"x"}]`,
		},
		{
			name: "plain text", endpoint: "/chat/completions", status: 502,
			body:    "Bad Gateway\n",
			message: "upstream error: Bad Gateway\n",
		},
		{
			name: "HTML", endpoint: "/messages", status: 503,
			body:    `<html><head><title>503</title></head><body><h1>Service "Unavailable"</h1></body></html>`,
			message: `upstream error: <html><head><title>503</title></head><body><h1>Service "Unavailable"</h1></body></html>`,
		},
		{
			name: "empty", endpoint: "/chat/completions", status: 503,
			body:    "",
			message: "upstream error: Service Unavailable",
		},
		{
			name: "empty anthropic", endpoint: "/messages", status: 429,
			body:    "",
			message: "upstream error: Too Many Requests",
		},
		{
			name: "long text is truncated", endpoint: "/chat/completions", status: 500,
			body:    longText,
			message: "upstream error: " + longText[:512] + "…",
		},
		{
			name: "truncated JSON error", endpoint: "/chat/completions", status: 500,
			body:    `{"error":{"message":"cut`,
			message: `upstream error: {"error":{"message":"cut`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := upstreamErrorBody(tc.endpoint, tc.status, []byte(tc.body))
			if tc.keep {
				if string(got) != tc.body {
					t.Errorf("got %s, want the upstream body", got)
				}
				return
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			r := gjson.ParseBytes(got)
			if m := r.Get("error.message").Str; m != tc.message {
				t.Errorf("message = %q, want %q", m, tc.message)
			}
			if c := r.Get("error.code").Str; c != "upstream_error" {
				t.Errorf("code = %q", c)
			}
			if typ := r.Get("error.type").Str; typ != translate.ErrorType(tc.status) {
				t.Errorf("type = %q, want %q", typ, translate.ErrorType(tc.status))
			}
			anthropic := r.Get("type").Str == "error"
			if anthropic != (tc.endpoint == "/messages") {
				t.Errorf("shape for %s: %s", tc.endpoint, got)
			}
		})
	}
}

func TestUpstreamErrorBodyInvalidUTF8(t *testing.T) {
	got := upstreamErrorBody("/chat/completions", 502, []byte("bad \xff\xfe bytes"))
	if !json.Valid(got) {
		t.Fatalf("invalid JSON: %q", got)
	}
	// A long multi-byte body cut in the middle of a rune stays valid JSON.
	got = upstreamErrorBody("/chat/completions", 502, []byte(strings.Repeat("é", 600)))
	if !json.Valid(got) {
		t.Fatalf("invalid JSON: %q", got)
	}
}
