package llmroute

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A request refused before routing gets a record that says why: the
// error code of its answer (a 401's too), the model it asked for and, when its key
// was known (a 403), the key's name, also in {llm.key}; never the
// secret.
func TestRecordOfRefusal(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"decision_log": {},
		"keys": [{"name": "ka", "secret": "secret-a", "models": ["m"]}, {"name": "kb", "secret": "secret-b"}],
		"providers": [{"name": "p", "api_key": "k", "proxy": `+gatewayProxy(u.addr())+`}],
		"models": [{"name": "m", "providers": ["p"]}, {"name": "other", "providers": ["p"]}]
	}`)
	core, logs := observer.New(zapcore.InfoLevel)
	h.decisions = zap.New(core)

	for _, c := range []struct {
		body, secret   string
		status         int
		code, model, k string
	}{
		{`{"model":"other","messages":[{"role":"user","content":"hi"}]}`, "secret-a", 403, "model_not_allowed", "other", "ka"},
		{`{"model":"no-such","messages":[{"role":"user","content":"hi"}]}`, "secret-b", 404, "model_not_found", "no-such", "kb"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "wrong", 401, "invalid_api_key", "", ""},
	} {
		rec, repl, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", c.body, "Authorization", "Bearer "+c.secret)
		if rec.Code != c.status {
			t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
		}
		entries := logs.TakeAll()
		if len(entries) != 1 {
			t.Fatalf("%d: %d records", c.status, len(entries))
		}
		f := entries[0].ContextMap()
		if fmt.Sprint(f["status"]) != fmt.Sprint(c.status) || f["request_id"] != rec.Header().Get(HeaderRequestID) {
			t.Errorf("%d: record %v", c.status, f)
		}
		if c.status == 401 {
			// (refused before the body is read: no model, no key)
			if _, ok := f["key"]; ok || f["error"] != c.code {
				t.Errorf("401: record %v, want error %s and no key", f, c.code)
			}
			continue
		}
		if f["error"] != c.code || f["requested"] != c.model || f["key"] != c.k {
			t.Errorf("%d: record %v, want error %s, requested %s, key %s", c.status, f, c.code, c.model, c.k)
		}
		if got, _ := repl.GetString("llm.key"); got != c.k {
			t.Errorf("%d: {llm.key} %q, want %q", c.status, got, c.k)
		}
		if strings.Contains(fmt.Sprint(f), "secret-") {
			t.Errorf("%d: the record holds the secret: %v", c.status, f)
		}
	}
}
