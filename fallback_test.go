package llmroute

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/strategies"
)

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}`, kindContextLength},
		{`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`, kindContextLength},
		// vLLM
		{`{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","code":400}`, kindContextLength},
		// Ollama
		{`{"error":"input length exceeds the context length"}`, kindContextLength},
		// llama.cpp
		{`{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}`, kindContextLength},
		// Azure OpenAI
		{`{"error":{"code":"content_filter","message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy."}}`, kindContentFilter},
		{`{"error":{"message":"Your request was rejected as a result of our safety system.","code":"content_policy_violation"}}`, kindContentFilter},
		{`{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}`, ""},
		{``, ""},
	} {
		if got := errorKind([]byte(tc.body)); got != tc.want {
			t.Errorf("errorKind(%s) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestRetryWait(t *testing.T) {
	h := &Handler{Retries: 3, MaxRetryWait: caddy.Duration(2 * time.Second)}
	now := time.Now()
	fail := func(status int, body []byte, err error) *attemptResult {
		return &attemptResult{outcome: outcomeRetry, status: status, body: body, err: err, header: http.Header{}}
	}
	for tries := 1; tries <= 3; tries++ {
		full := min(retryBackoff<<(tries-1), maxRetryBackoff)
		for range 20 {
			d, ok := h.retryWait(fail(503, []byte(`{}`), nil), tries, now)
			if !ok || d < full/2 || d > full {
				t.Fatalf("try %d: wait %v %v, want between %v and %v", tries, d, ok, full/2, full)
			}
		}
	}
	if _, ok := h.retryWait(fail(503, []byte(`{}`), nil), 4, now); ok {
		t.Error("a fourth retry with retries 3")
	}
	if _, ok := h.retryWait(fail(502, nil, errors.New("connection refused")), 1, now); !ok {
		t.Error("a connect error is not retried")
	}
	if _, ok := h.retryWait(fail(504, nil, errFirstByteTimeout), 1, now); ok {
		t.Error("a first-byte timeout is retried on the same target")
	}
	r429 := fail(429, []byte(`{}`), nil)
	r429.header.Set("Retry-After", "1")
	if d, ok := h.retryWait(r429, 1, now); !ok || d != time.Second {
		t.Errorf("429 Retry-After 1: %v %v", d, ok)
	}
	if _, ok := h.retryWait(r429, 2, now); ok {
		t.Error("a 429 retried twice")
	}
	r429.header.Set("Retry-After", "3")
	if _, ok := h.retryWait(r429, 1, now); ok {
		t.Error("a 429 asking for more than max_retry_wait is retried")
	}
	if _, ok := h.retryWait(&attemptResult{outcome: outcomeFinal, status: 400, body: []byte(`{}`)}, 1, now); ok {
		t.Error("a 400 is retried")
	}
}

// A 200 answer that ends with a content-policy refusal (OpenAI's
// finish_reason content_filter, Anthropic's stop_reason refusal) is an
// answer unless fallback_on content_filter: then the next candidate is
// asked, without counting against the refusing pair; the last
// candidate's refusal is the answer.
func TestFallbackOnContentFilterFinish(t *testing.T) {
	const filtered = `{"id":"chatcmpl-2","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}`
	const refused = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-real","content":[],"stop_reason":"refusal","usage":{"input_tokens":3,"output_tokens":0}}`
	// OpenAI's refusal: finish_reason stop, the refusal in message.refusal
	const openAIRefusal = `{"id":"chatcmpl-3","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I cannot help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}`
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name, extra, first string
		want               string // the provider that answers
	}{
		{"openai off", ``, filtered, "a"},
		{"openai on", `"fallback_on": ["content_filter"],`, filtered, "b"},
		{"openai refusal off", ``, openAIRefusal, "a"},
		{"openai refusal on", `"fallback_on": ["content_filter"],`, openAIRefusal, "b"},
		{"ok on", `"fallback_on": ["content_filter"],`, okChat, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newUpstream(t, answer(200, tc.first))
			b := newUpstream(t, answer(200, okChat))
			c := newUpstream(t, answer(500, ``))
			h := gateway(t, a, b, c, tc.extra)
			rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", body)
			if rec.Code != 200 || rec.Header().Get(HeaderProvider) != tc.want {
				t.Fatalf("status %d, provider %q: want %s's answer (%s)", rec.Code, rec.Header().Get(HeaderProvider), tc.want, rec.Body)
			}
			if s := pairOf(t, h, "m", "a").Snapshot(); s.ErrorRate != 0 {
				t.Errorf("the refusal counted against the pair: %+v", s)
			}
		})
	}
	// A stream whose first event is the refusal: nothing reached the
	// client yet.
	sse := func(chunks ...string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, c := range chunks {
				_, _ = io.WriteString(w, "data: "+c+"\n\n")
			}
		}
	}
	filteredChunk := `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`
	okChunk := `{"id":"c2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`
	// OpenAI's streamed refusal comes after the role's chunk, which
	// opens every stream and says nothing yet.
	roleChunk := `{"id":"c3","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}`
	refusalChunk := `{"id":"c3","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"refusal":"I'm sorry, I cannot help with that."},"finish_reason":null}]}`
	for _, tc := range []struct {
		name, extra, want string
		first             []string
	}{
		{"stream off", ``, "a", []string{filteredChunk, "[DONE]"}},
		{"stream on", `"fallback_on": ["content_filter"],`, "b", []string{filteredChunk, "[DONE]"}},
		{"stream refusal after the role off", ``, "a", []string{roleChunk, refusalChunk, "[DONE]"}},
		{"stream refusal after the role on", `"fallback_on": ["content_filter"],`, "b", []string{roleChunk, refusalChunk, "[DONE]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newUpstream(t, sse(tc.first...))
			b := newUpstream(t, sse(okChunk, "[DONE]"))
			c := newUpstream(t, answer(500, ``))
			h := gateway(t, a, b, c, tc.extra)
			rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
			if rec.Code != 200 || rec.Header().Get(HeaderProvider) != tc.want {
				t.Fatalf("status %d, provider %q: want %s's stream (%s)", rec.Code, rec.Header().Get(HeaderProvider), tc.want, rec.Body)
			}
		})
	}
	t.Run("the last candidate's refusal is the answer", func(t *testing.T) {
		a := newUpstream(t, answer(500, ``))
		b := newUpstream(t, answer(200, okChat))
		c := newUpstream(t, answer(200, refused))
		h := gateway(t, a, b, c, `"fallback_on": ["content_filter"],`)
		rec, _, _, _ := serveGateway(t, h, "POST", "/v1/messages", `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"refusal"`) {
			t.Errorf("status %d %s: want the refusal", rec.Code, rec.Body)
		}
	})
	for _, tc := range []struct {
		body string
		want bool
	}{
		{filtered, true},
		{refused, true},
		{`{"object":"response","status":"incomplete","incomplete_details":{"reason":"content_filter"}}`, true},
		{openAIRefusal, true},
		{`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"refusal":"I'm sorry"},"finish_reason":null}]}`, true},
		{`{"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"refusal","refusal":"No."}]}]}`, true},
		{`{"type":"response.refusal.delta","delta":"No."}`, true},
		{okChat, false},
		{`{"choices":[{"message":{"content":"hi","refusal":null},"finish_reason":"stop"}]}`, false},
		{`{"choices":[{"delta":{"content":"hi","refusal":""},"finish_reason":null}]}`, false},
		{`{"stop_reason":"end_turn"}`, false},
	} {
		if got := refusal([]byte(tc.body)); got != tc.want {
			t.Errorf("refusal(%s) = %v", tc.body, got)
		}
	}
}

// fallback_on content_filter and the cascade's check agree on what a
// refusal is: whatever the API, an answer the one moves on from, the
// other escalates, and no other.
func TestRefusalJudgedAlike(t *testing.T) {
	cascade := new(strategies.Cascade)
	for _, tc := range []struct{ endpoint, body string }{
		{"/chat/completions", `{"choices":[{"message":{"role":"assistant","content":null,"refusal":"Sorry, no."},"finish_reason":"stop"}]}`},
		{"/chat/completions", `{"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`},
		{"/chat/completions", `{"choices":[{"message":{"role":"assistant","content":"Paris is the capital.","refusal":null},"finish_reason":"stop"}]}`},
		{"/messages", `{"type":"message","content":[{"type":"text","text":"Sorry."}],"stop_reason":"refusal"}`},
		{"/messages", `{"type":"message","content":[{"type":"text","text":"Paris is the capital."}],"stop_reason":"end_turn"}`},
		{"/responses", `{"status":"completed","output":[{"type":"message","content":[{"type":"refusal","refusal":"Sorry, no."}]}]}`},
		{"/responses", `{"status":"incomplete","incomplete_details":{"reason":"content_filter"},"output":[]}`},
		{"/responses", `{"status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Paris is the capital."}]}]}`},
	} {
		req := &strategies.Request{Endpoint: tc.endpoint, Body: []byte(`{"messages":[{"role":"user","content":"capital of France?"}]}`)}
		escalates := slices.Contains(cascade.Check(req, readAnswer(tc.endpoint, []byte(tc.body))), "refusal")
		if moves := refusal([]byte(tc.body)); moves != escalates {
			t.Errorf("%s %s: fallback_on content_filter moves on: %v; the cascade escalates for a refusal: %v", tc.endpoint, tc.body, moves, escalates)
		}
	}
}
