package llmroute

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/limits"
)

// maxOutputGateway has model small (max_output 50) and big (none) on
// provider a, each with a tokens-per-minute limit; route t sends small
// with max_tokens 256, route tb sends big with max_tokens 256, route
// rules sets max_tokens 100 on small by a rule.
func maxOutputGateway(t *testing.T, a *upstream) *Handler {
	t.Helper()
	return mustLoadHandler(t, `{
		"providers": [{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`}],
		"models": [
			{"name": "small", "providers": ["a"], "max_output": 50, "tpm": 100000},
			{"name": "big", "providers": ["a"], "tpm": 100000}
		],
		"routes": [
			{"name": "t", "targets": [{"model": "small", "params": {"max_tokens": 256}}]},
			{"name": "tb", "targets": [{"model": "big", "params": {"max_tokens": 256}}]},
			{"name": "rules", "targets": [{"model": "small"}],
				"strategy": {"name": "rules", "rules": [{"name": "all", "models": ["small"], "params": {"max_tokens": 100}}]}}
		]
	}`)
}

// max_output clamps the output cap of the body as sent, whatever set
// it: the client, a route target's params or a rule's; and the limits
// reserve that same cap.
func TestMaxOutputClampsSentBody(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := maxOutputGateway(t, a)
	for i, tc := range []struct {
		name, model, extra string
		field              string // the cap field to read upstream
		want               int64  // its value upstream, and the output reserved
	}{
		{"client above", "small", `,"max_tokens":1000`, "max_tokens", 50},
		{"client below", "small", `,"max_tokens":20`, "max_tokens", 20},
		{"client max_completion_tokens", "small", `,"max_completion_tokens":1000`, "max_completion_tokens", 50},
		{"target", "t", ``, "max_tokens", 50},
		{"target over a lower client cap", "t", `,"max_tokens":10`, "max_tokens", 50},
		{"rule", "rules", ``, "max_tokens", 50},
		{"rule over the client's", "rules", `,"max_tokens":1000`, "max_tokens", 50},
		{"target without max_output", "tb", `,"max_tokens":10`, "max_tokens", 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"` + tc.model + `","messages":[{"role":"user","content":"hi"}]` + tc.extra + `}`
			rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", body)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if got := gjson.Get(a.body(i), tc.field); got.Int() != tc.want {
				t.Errorf("upstream %s = %s, want %d", tc.field, got.Raw, tc.want)
			}

			// the reservation holds the prompt plus that same cap
			req, rerr := parseRequest([]byte(body), "model", 64)
			if rerr != nil {
				t.Fatal(rerr.msg)
			}
			req.Endpoint = "/chat/completions"
			p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), req, nil)
			if rerr != nil {
				t.Fatal(rerr.msg)
			}
			now := time.Now()
			res, d := h.admit(context.Background(), req, p, &p.candidates[0], now)
			if d != nil || res == nil {
				t.Fatalf("not admitted: %+v", d)
			}
			defer func() { _ = res.Release(context.Background(), now) }()
			tpm := false
			for _, ch := range res.Charges {
				if ch.Kind == limits.TPM {
					tpm = true
					if want := float64(int64(req.PromptTokens) + tc.want); ch.Amount != want {
						t.Errorf("reserved %v tokens, want %v (the prompt's %d + %d)", ch.Amount, want, req.PromptTokens, tc.want)
					}
				}
			}
			if !tpm {
				t.Errorf("no tokens reserved: %+v", res.Charges)
			}
		})
	}
}

// A model's context window is judged against the output cap as clamped
// to its max_output: a client's larger max_tokens does not make the
// request too long for it.
func TestContextFitUsesClampedOutput(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`}],
		"models": [
			{"name": "small", "providers": ["a"], "max_output": 50, "context": 1000},
			{"name": "plain", "providers": ["a"], "context": 1000}
		]
	}`)
	for model, want := range map[string]int{"small": 200, "plain": 400} {
		body := `{"model":"` + model + `","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`
		if rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", body); rec.Code != want {
			t.Errorf("%s with max_tokens 5000 and a context of 1000: status %d, want %d: %s", model, rec.Code, want, rec.Body)
		}
	}
}

// A request for n answers reserves the output cap n times: each answer
// may take all of it, and the provider bills them all. An embedding
// reserves no output at all: it has none.
func TestReservationCountsEveryChoice(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := maxOutputGateway(t, a)
	for _, tc := range []struct {
		name, model, extra string
		want               int64 // output reserved
	}{
		{"embeddings: no output", "big", `,"input":"some text"`, 0},
		{"one", "big", `,"max_tokens":10`, 10},
		{"n 4", "big", `,"max_tokens":10,"n":4`, 40},
		{"n 1", "big", `,"max_tokens":10,"n":1`, 10},
		{"n 3 clamped by max_output", "small", `,"max_tokens":1000,"n":3`, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"` + tc.model + `","messages":[{"role":"user","content":"hi"}]` + tc.extra + `}`
			endpoint := "/chat/completions"
			if strings.Contains(tc.name, "embeddings") {
				body, endpoint = `{"model":"`+tc.model+`"`+tc.extra+`}`, "/embeddings"
			}
			req, rerr := parseRequest([]byte(body), "model", 64)
			if rerr != nil {
				t.Fatal(rerr.msg)
			}
			req.Endpoint = endpoint
			p, rerr := h.resolve(httptest.NewRequest("POST", "/", nil), req, nil)
			if rerr != nil {
				t.Fatal(rerr.msg)
			}
			now := time.Now()
			res, d := h.admit(context.Background(), req, p, &p.candidates[0], now)
			if d != nil || res == nil {
				t.Fatalf("not admitted: %+v", d)
			}
			defer func() { _ = res.Release(context.Background(), now) }()
			for _, ch := range res.Charges {
				if ch.Kind == limits.TPM {
					if want := float64(int64(req.PromptTokens) + tc.want); ch.Amount != want {
						t.Errorf("reserved %v tokens, want %v (the prompt's %d + %d)", ch.Amount, want, req.PromptTokens, tc.want)
					}
				}
			}
		})
	}
}

// With on_error deny and Redis out of reach, the 429 says so: the reason
// and the message name the shared state, not a limit that had room.
func TestUnreachableStateDenialSaysSo(t *testing.T) {
	a := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"state": {"backend": "redis", "url": "redis://127.0.0.1:1", "on_error": "deny"},
		"providers": [{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`}],
		"models": [{"name": "m", "providers": ["a"], "rpm": 100}]
	}`)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if rec.Code != 429 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if reason := rec.Header().Get("X-Llm-Route-Reason"); !strings.Contains(reason, "quota=state_unavailable") {
		t.Errorf("reason %q, want quota=state_unavailable", reason)
	}
	msg := gjson.Get(rec.Body.String(), "error.message").String()
	if strings.Contains(msg, "rpm") || !strings.Contains(msg, "shared state cannot be reached") {
		t.Errorf("message %q, want the shared state named, not rpm", msg)
	}
}
