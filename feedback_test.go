package llmroute

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// With client keys, feedback teaches an adaptive route only from the
// key that made the request; another key's feedback gets the answer
// feedback on an unknown request gets (so ids cannot be probed) and
// leaves the lesson for the request's own key. Every answer, the
// feedback's and the model list's too, carries X-LLM-Request-Id.
func TestFeedbackFromTheRequestsKey(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"feedback_path": "/v1/feedback",
		"keys": [{"name": "ka", "secret": "secret-a"}, {"name": "kb", "secret": "secret-b"}],
		"providers": [{"name": "p", "api_key": "k", "proxy": `+gatewayProxy(u.addr())+`}],
		"models": [{"name": "a", "providers": ["p"]}, {"name": "b", "providers": ["p"]}],
		"routes": [{"name": "learns", "targets": [{"model": "a"}, {"model": "b"}], "strategy": {"name": "adaptive", "seed": 1}}]
	}`)
	core, logs := observer.New(zapcore.InfoLevel)
	h.decisions = zap.New(core)

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions",
		`{"model":"learns","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer secret-a")
	id := rec.Header().Get(HeaderRequestID)
	if rec.Code != 200 || id == "" {
		t.Fatalf("request: %d, id %q", rec.Code, id)
	}
	feedback := func(secret, id string) (int, string, string) {
		t.Helper()
		rec, repl, _, _ := serveGateway(t, h, "POST", "/v1/feedback",
			`{"request_id":"`+id+`","score":1}`, "Authorization", "Bearer "+secret)
		uuid, _ := repl.GetString("http.request.uuid")
		if got := rec.Header().Get(HeaderRequestID); got == "" || got != uuid {
			t.Errorf("feedback answer %d: X-LLM-Request-Id %q, Caddy's request UUID %q", rec.Code, got, uuid)
		}
		return rec.Code, strings.Replace(rec.Body.String(), id, "ID", 1), rec.Header().Get("Content-Type")
	}
	learned := func() []string {
		var out []string
		for _, e := range logs.TakeAll() {
			if e.Message != "feedback" {
				continue
			}
			f := e.ContextMap()
			out = append(out, fmt.Sprintf("%v:%v", f["key"], f["learned"]))
		}
		return out
	}
	otherKey := fmt.Sprintln(feedback("secret-b", id))
	unknown := fmt.Sprintln(feedback("secret-b", "no-such-request"))
	if otherKey != unknown || !strings.HasPrefix(otherKey, "202 ") {
		t.Errorf("another key's feedback: %s; on an unknown request: %s; want the same 202", otherKey, unknown)
	}
	if got := learned(); fmt.Sprint(got) != "[kb:false kb:false]" {
		t.Errorf("another key's feedback: %v, want nothing learned", got)
	}
	if code, _, _ := feedback("secret-a", id); code != http.StatusAccepted {
		t.Errorf("the request's key: %d", code)
	}
	if got := learned(); fmt.Sprint(got) != "[ka:true]" {
		t.Errorf("the request's key's feedback: %v, want it learned", got)
	}

	// Refusals and the model list carry the id too.
	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/feedback", `{"score":1}`, "Authorization", "Bearer secret-a")
	if rec.Code != http.StatusBadRequest || rec.Header().Get(HeaderRequestID) == "" {
		t.Errorf("invalid feedback: %d, X-LLM-Request-Id %q", rec.Code, rec.Header().Get(HeaderRequestID))
	}
	rec, _, _, _ = serveGateway(t, h, "GET", "/v1/models", ``, "Authorization", "Bearer secret-a")
	if rec.Code != http.StatusOK || rec.Header().Get(HeaderRequestID) == "" {
		t.Errorf("model list: %d, X-LLM-Request-Id %q", rec.Code, rec.Header().Get(HeaderRequestID))
	}
	rec, _, _, _ = serveGateway(t, h, "GET", "/v1/models", ``)
	if rec.Code != http.StatusUnauthorized || rec.Header().Get(HeaderRequestID) == "" {
		t.Errorf("model list without a key: %d, X-LLM-Request-Id %q", rec.Code, rec.Header().Get(HeaderRequestID))
	}
}
