package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
)

// expectOpenAIError checks an OpenAI-shaped error answer.
func expectOpenAIError(t *testing.T, res rawResponse, status int, code string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("status %d, want %d (body %s)", res.Status, status, res.Body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := res.json("error.code"); got != code {
		t.Errorf("error.code %q, want %q (body %s)", got, code, res.Body)
	}
	if res.json("error.message") == "" || res.json("error.type") == "" {
		t.Errorf("error without message or type: %s", res.Body)
	}
	if res.json("type") != "" {
		t.Errorf("OpenAI error with a top-level type: %s", res.Body)
	}
	if m := res.Header.Get("X-Mock-Name"); m != "" {
		t.Errorf("the request reached provider %s", m)
	}
}

// expectAnthropicError checks an Anthropic-shaped error answer.
func expectAnthropicError(t *testing.T, res rawResponse, status int, typ string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("status %d, want %d (body %s)", res.Status, status, res.Body)
	}
	if res.json("type") != "error" || res.json("error.type") != typ || res.json("error.message") == "" {
		t.Errorf("not an Anthropic %s error: %s", typ, res.Body)
	}
}

func TestBadInput(t *testing.T) {
	start(t, withDefaults(`
		max_body 1KB`))
	hc := newHTTPClient(t)
	const chat = "/v1/chat/completions"

	for _, tc := range []struct {
		name, body, code string
	}{
		{"invalid JSON", `{"model":"chat","messages":[`, "invalid_json"},
		{"trailing garbage", `{"model":"chat"} x`, "invalid_json"},
		{"duplicated model key", `{"model":"only-alpha","messages":[],"model":"only-beta"}`, "duplicate_key"},
		{"max_tokens 1e400", `{"model":"chat","messages":[],"max_tokens":1e400}`, "invalid_number"},
		{"max_tokens negative", `{"model":"chat","messages":[],"max_tokens":-1}`, "invalid_number"},
		{"max_tokens fraction", `{"model":"chat","messages":[],"max_tokens":2.5}`, "invalid_number"},
		{"max_tokens string", `{"model":"chat","messages":[],"max_tokens":"10"}`, "invalid_number"},
		{"temperature 1e400", `{"model":"chat","messages":[],"temperature":1e400}`, "invalid_number"},
		{"no model", `{"messages":[]}`, "missing_model"},
		{"model not a string", `{"model":42,"messages":[]}`, "invalid_model"},
		{"empty model", `{"model":"","messages":[]}`, "invalid_model"},
		{"stream not a bool", `{"model":"chat","messages":[],"stream":"yes"}`, "invalid_stream"},
		{"array body", `[{"model":"chat"}]`, "invalid_request"},
		{"too deep", `{"model":"chat","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "too_deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, chat, []byte(tc.body)), http.StatusBadRequest, tc.code)
		})
	}

	t.Run("body over max_body", func(t *testing.T) {
		big := chatBody("chat", `"pad":"`+strings.Repeat("x", 2000)+`"`)
		expectOpenAIError(t, post(t, hc, chat, big), http.StatusRequestEntityTooLarge, "request_too_large")
		// without a Content-Length the limit holds as well
		res := do(t, hc, http.MethodPost, gatewayURL+chat, io.MultiReader(bytes.NewReader(big)), -1)
		expectOpenAIError(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
		// just under the limit is fine
		small := chatBody("only-beta", `"pad":"`+strings.Repeat("x", 850)+`"`)
		if len(small) > 1000 {
			t.Fatalf("test body of %d bytes", len(small))
		}
		if res := post(t, hc, chat, small); res.Status != 200 {
			t.Errorf("a %d byte body: %d %s", len(small), res.Status, res.Body)
		}
	})

	t.Run("messages errors are Anthropic-shaped", func(t *testing.T) {
		const messages = "/v1/messages"
		expectAnthropicError(t, post(t, hc, messages, []byte(`{"model":`)), 400, "invalid_request_error")
		expectAnthropicError(t, post(t, hc, messages, []byte(`{"model":"claude-chat","model":"x"}`)), 400, "invalid_request_error")
		expectAnthropicError(t, post(t, hc, messages, []byte(`{"model":"claude-chat","max_tokens":1e400,"messages":[]}`)), 400, "invalid_request_error")
		expectAnthropicError(t, post(t, hc, messages, []byte(`{"model":"nope","max_tokens":5,"messages":[]}`)), 404, "not_found_error")
		expectAnthropicError(t, post(t, hc, messages, chatBody("claude-chat", `"pad":"`+strings.Repeat("x", 2000)+`"`)), 413, "request_too_large")

		// and the SDK reads them
		ac := antClient(t)
		_, err := ac.Messages.New(ctxT(t), messageParams("no-such-claude", prompt))
		var aerr *anthropic.Error
		if !asError(err, &aerr) {
			t.Fatalf("got %v, want an *anthropic.Error", err)
		}
		if aerr.StatusCode != 404 || !strings.Contains(aerr.RawJSON(), `"type":"error"`) || !strings.Contains(aerr.Error(), "model_not_found") {
			t.Errorf("status %d, body %s, error %v", aerr.StatusCode, aerr.RawJSON(), aerr)
		}
		p := messageParams("claude-chat", strings.Repeat("long prompt ", 200))
		_, err = ac.Messages.New(ctxT(t), p)
		if !asError(err, &aerr) || aerr.StatusCode != 413 {
			t.Errorf("oversized message: %v, want 413", err)
		}
		s := messageStream(t, ac, p)
		if !asError(s.Err, &aerr) || aerr.StatusCode != 413 {
			t.Errorf("oversized message stream: %v, want 413", s.Err)
		}
	})
}

func TestHugeNestedBody(t *testing.T) {
	start(t, withDefaults(`
		max_body 32MB`))
	hc := newHTTPClient(t)
	body := make([]byte, 20<<20)
	for i := range body {
		body[i] = '['
	}
	res := post(t, hc, "/v1/chat/completions", body)
	expectOpenAIError(t, res, http.StatusBadRequest, "too_deep")

	// a deep body that is otherwise valid JSON, under the limit
	deep := `{"model":"chat","messages":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `}`
	expectOpenAIError(t, post(t, hc, "/v1/chat/completions", []byte(deep)), http.StatusBadRequest, "too_deep")

	// the server is still there
	if res := post(t, hc, "/v1/chat/completions", chatBody("chat")); res.Status != 200 || res.json("choices") == "" {
		t.Fatalf("after the huge body: %d %s", res.Status, res.Body)
	}
	c := oaClient(t)
	if resp, err := c.Chat.Completions.New(ctxT(t), chatParams("chat", prompt)); err != nil || resp.Choices[0].Message.Content != alphaText {
		t.Fatalf("after the huge body: %v", err)
	}
}
