package llmroute

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestServeRetryAfterMs: an upstream 429 with only retry-after-ms gives
// the client Retry-After too, in whole seconds rounded up.
func TestServeRetryAfterMs(t *testing.T) {
	limited := answer(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After-Ms", "1500")
	a, b, c := newUpstream(t, limited), newUpstream(t, limited), newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if rec.Code != 429 || gjson.Get(rec.Body.String(), "error.message").Str != "slow down" {
		t.Fatalf("response %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Retry-After-Ms"); got != "1500" {
		t.Errorf("Retry-After-Ms = %q, want 1500", got)
	}
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (1500ms rounded up)", got)
	}
}

// TestServeStreamIdleKeepAlives: keep-alive comments after the stream's
// first text do not keep it alive past stream_idle_timeout: only events
// with data reset the idle timer.
func TestServeStreamIdleKeepAlives(t *testing.T) {
	first := "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		give := time.After(10 * time.Second) // (then it ends, unfinished)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-give:
				return
			case <-tick.C:
				_, _ = io.WriteString(w, ": ping\n\n")
				w.(http.Flusher).Flush()
			}
		}
	})
	b, c := newUpstream(t, answer(500, ``)), newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"rescue": false, "stream_idle_timeout": 300000000,`)

	rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
	if !aborted {
		t.Fatal("a stream that only pings after its first event was not aborted")
	}
	out := rec.Body.String()
	if !strings.HasPrefix(out, first) || !strings.Contains(out, "stream_idle_timeout") {
		t.Fatalf("output ends %q, want the first event then an error event naming stream_idle_timeout", out[max(len(out)-300, 0):])
	}
}

// cutShortJSON answers 200 with a JSON Content-Length longer than the
// body it sends before closing the connection.
func cutShortJSON(w http.ResponseWriter, r *http.Request) { cutShortAfter(w, 40) }

// cutShortAfter answers a 200 JSON of Content-Length 500 and closes the
// connection after n bytes of its body.
func cutShortAfter(w http.ResponseWriter, n int) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + okChat[:n])
	_ = buf.Flush()
}

// TestServeCutShortContentLength: a 200 JSON answer whose body ends
// before its Content-Length is an invalid answer, not an unreachable
// upstream: the next target is tried, and with none the client gets 502
// upstream_invalid_response saying it was cut short.
func TestServeCutShortContentLength(t *testing.T) {
	empty := func(w http.ResponseWriter, r *http.Request) { cutShortAfter(w, 0) }
	a, b, c := newUpstream(t, cutShortJSON), newUpstream(t, empty), newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"decision_log": {},`)
	core, logs := observer.New(zapcore.InfoLevel)
	h.decisions = zap.New(core)

	rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m"}`)
	if aborted || rec.Code != 502 {
		t.Fatalf("response %d (aborted %t) %s", rec.Code, aborted, rec.Body)
	}
	if b.requests() != 1 {
		t.Errorf("the next target was called %d times", b.requests())
	}
	body := rec.Body.String()
	if code := gjson.Get(body, "error.code").Str; code != "upstream_invalid_response" || !strings.Contains(gjson.Get(body, "error.message").Str, "cut short") {
		t.Errorf("body %s, want upstream_invalid_response saying the answer was cut short", body)
	}
	entries := logs.FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	atts, _ := entries[0].ContextMap()["attempts"].([]any)
	var causes []string
	for _, at := range atts {
		m, _ := at.(map[string]any)
		causes = append(causes, fmt.Sprint(m["cause"]))
	}
	if fmt.Sprint(causes) != "[invalid invalid]" {
		t.Errorf("attempt causes %v, want [invalid invalid]", causes)
	}
}

// cancelOnWrite cancels the request's context once the response's first
// body bytes are written: a client that leaves mid-stream.
type cancelOnWrite struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (w cancelOnWrite) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.ResponseRecorder.Write(p)
}

// TestServeClientGoneMidStream: a client that leaves after the stream
// started gets no 499 handler error (Caddy would write it as a second
// status); the response keeps the status that went out.
func TestServeClientGoneMidStream(t *testing.T) {
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	b := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, b, b, "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := cancelOnWrite{httptest.NewRecorder(), cancel}
	r := httptest.NewRequestWithContext(ctx, "POST", "/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	if err := h.ServeHTTP(rec, r, nil); err != nil {
		t.Errorf("error = %v, want none once the response started", err)
	}
	if rec.Code != 200 {
		t.Errorf("status %d", rec.Code)
	}
	if b.requests() != 0 {
		t.Error("tried the next target for a client that went away")
	}
}

// TestServeTranslatedStreamWithoutStop: an Anthropic stream that ends
// after its finish (message_delta with usage) without message_stop is
// completed for an OpenAI client with what message_stop would have
// given: the usage chunk it asked for, then [DONE].
func TestServeTranslatedStreamWithoutStop(t *testing.T) {
	stream := anthropicStream[:strings.Index(anthropicStream, "event: message_stop")]
	c := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, stream)
	})
	a, b := newUpstream(t, answer(500, ``)), newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")

	rec, repl, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions",
		`{"model":"claude","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	if aborted || rec.Code != 200 {
		t.Fatalf("response %d (aborted %t) %q", rec.Code, aborted, rec.Body)
	}
	out := rec.Body.String()
	if !strings.HasSuffix(out, "\n\ndata: [DONE]\n\n") {
		t.Fatalf("stream %q does not end with [DONE]", out)
	}
	events := strings.Split(strings.TrimSuffix(out, "\n\n"), "\n\n")
	usage := gjson.Get(strings.TrimPrefix(events[len(events)-2], "data: "), "usage")
	if usage.Get("prompt_tokens").Int() != 38 || usage.Get("completion_tokens").Int() != 15 {
		t.Errorf("the event before [DONE] is %q, want the usage chunk (38 prompt, 15 completion tokens)", events[len(events)-2])
	}
	if got := repl.ReplaceAll("{llm.usage.completion_tokens}", ""); got != "15" {
		t.Errorf("completion tokens = %q", got)
	}
}

// TestCascadeClientError: a 400 from the cheap tier ends the cascade
// with that error instead of paying every tier for a request that fails
// everywhere; a context-length error still escalates.
func TestCascadeClientError(t *testing.T) {
	bad := `{"error":{"message":"messages: unknown role 'robot'","type":"invalid_request_error","code":null}}`
	tooLong := `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}`
	var cheapBody atomic.Value
	cheap := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { answer(400, cheapBody.Load().(string))(w, r) })
	premium := newUpstream(t, answer(200, okChat))
	// tiered cascades from cheap (at the upstream first) to premium.
	tiered := func(first *upstream) *Handler {
		return mustLoadHandler(t, `{
			"providers": [
				{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(first.addr())+`},
				{"name": "b", "api_key": "key-b", "proxy": `+gatewayProxy(premium.addr())+`}
			],
			"models": [
				{"name": "cheap", "providers": ["a"], "input_price": 0.1, "output_price": 0.1},
				{"name": "premium", "providers": ["b"], "input_price": 5, "output_price": 5}
			],
			"routes": [{"name": "tiered", "targets": [{"model": "cheap"}, {"model": "premium"}], "strategy": {"name": "cascade"}}]
		}`)
	}
	h := tiered(cheap)
	req := `{"model":"tiered","messages":[{"role":"robot","content":"hi"}]}`

	cheapBody.Store(bad)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", req)
	if rec.Code != 400 || gjson.Get(rec.Body.String(), "error.message").Str != "messages: unknown role 'robot'" {
		t.Fatalf("response %d %s, want the cheap tier's 400", rec.Code, rec.Body)
	}
	if premium.requests() != 0 {
		t.Errorf("the premium tier was called %d times for a client error", premium.requests())
	}
	if got := rec.Header().Get(HeaderCascade); got != "cheap:status=400" {
		t.Errorf("%s = %q", HeaderCascade, got)
	}

	cheapBody.Store(tooLong)
	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", req)
	if rec.Code != 200 || premium.requests() != 1 || rec.Header().Get(HeaderCascade) != "cheap:status=400 > premium:final" {
		t.Errorf("context-length error: response %d, %s %q, premium called %d times",
			rec.Code, HeaderCascade, rec.Header().Get(HeaderCascade), premium.requests())
	}

	// A 401 is the tier's provider refusing its key, not the request's
	// fault: the next tier is tried.
	unauthorized := newUpstream(t, answer(401, `{"error":{"message":"invalid api key","type":"invalid_request_error"}}`))
	rec, _, _, _ = serveGateway(t, tiered(unauthorized), "POST", "/v1/chat/completions", req)
	if rec.Code != 200 || rec.Header().Get(HeaderCascade) != "cheap:status=401 > premium:final" {
		t.Errorf("401: response %d, %s %q", rec.Code, HeaderCascade, rec.Header().Get(HeaderCascade))
	}
}

// TestSplicePlainAnswer: a stream request that the upstream answers with
// a body that is no event stream (nor JSON, which is an invalid answer
// to a stream: TestServeWrongAnswerType) is no answer of the API either
// (errNotAnAnswer): nothing of it reaches the client, and the next
// candidate is tried.
func TestSplicePlainAnswer(t *testing.T) {
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello")
	})
	b := newUpstream(t, answer(500, ``))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, "")
	rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi."}]}`)
	if aborted || rec.Code != 500 || strings.Contains(rec.Body.String(), "hello") || b.requests() != 1 {
		t.Fatalf("aborted %v, status %d, type %q, body %q, b called %d times; want the next candidate's error",
			aborted, rec.Code, rec.Header().Get("Content-Type"), rec.Body, b.requests())
	}
}

// TestServeWrongAnswerType: a JSON answer to a stream request, or an
// event stream to a request that is no stream, is an invalid answer:
// nothing of it reaches the client, the next target is tried, and with
// none the client gets 502 upstream_invalid_response in its own shape.
func TestServeWrongAnswerType(t *testing.T) {
	sse := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, openAIStream)
	}
	for _, tc := range []struct {
		name, path, body string
		first            func(http.ResponseWriter, *http.Request)
		why              string
	}{
		{"json to a stream", "/v1/chat/completions", `{"model":"m","stream":true}`, answer(200, okChat), "with JSON"},
		{"stream to json", "/v1/chat/completions", `{"model":"m"}`, sse, "with an event stream"},
		{"stream to json, anthropic client", "/v1/messages", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, sse, "with an event stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both targets of m answer with the wrong type: 502.
			a, b, c := newUpstream(t, tc.first), newUpstream(t, tc.first), newUpstream(t, answer(500, ``))
			h := gateway(t, a, b, c, "")
			rec, _, _, aborted := serveGateway(t, h, "POST", tc.path, tc.body)
			if aborted || rec.Code != 502 || b.requests() != 1 {
				t.Fatalf("response %d (aborted %t, next target called %d times) %q", rec.Code, aborted, b.requests(), rec.Body)
			}
			body := rec.Body.String()
			if gjson.Get(body, "error.code").Str != "upstream_invalid_response" || !strings.Contains(gjson.Get(body, "error.message").Str, tc.why) {
				t.Errorf("body %s, want upstream_invalid_response saying it answered %s", body, tc.why)
			}
			if strings.HasPrefix(tc.path, "/v1/messages") && gjson.Get(body, "type").Str != "error" {
				t.Errorf("body %s is not in the Anthropic error shape", body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestServeTranslatedStreamWithoutDone: an OpenAI stream that ends after
// its finish and usage without [DONE] is complete for an Anthropic
// client too: it gets message_delta (stop reason, usage) and
// message_stop, which the translation gives at [DONE], not an error.
func TestServeTranslatedStreamWithoutDone(t *testing.T) {
	stream := strings.TrimSuffix(openAIStream, "data: [DONE]\n\n")
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, stream)
	})
	b := newUpstream(t, answer(500, ``))
	for _, rescue := range []bool{false, true} {
		h := gateway(t, a, b, b, fmt.Sprintf(`"rescue": %t,`, rescue))
		rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/messages",
			`{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		out := rec.Body.String()
		if aborted || rec.Code != 200 || !strings.HasSuffix(out, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
			t.Fatalf("rescue %t: response %d (aborted %t) %q", rescue, rec.Code, aborted, out)
		}
		i := strings.LastIndex(out, "event: message_delta\ndata: ")
		if i < 0 {
			t.Fatalf("rescue %t: no message_delta in %q", rescue, out)
		}
		delta := gjson.Get(out[i+len("event: message_delta\ndata: "):], "@this")
		if delta.Get("delta.stop_reason").Str != "end_turn" || delta.Get("usage.output_tokens").Int() != 5 {
			t.Errorf("rescue %t: message_delta %s", rescue, delta.Raw)
		}
		if b.requests() != 0 {
			t.Errorf("rescue %t: a finished answer was continued", rescue)
		}
	}
}
