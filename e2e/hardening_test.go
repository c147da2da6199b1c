package e2e

import (
	"net/http"
	"testing"
)

// Tests of issue 9: each reproduces an attack on the gateway, or a
// fault of an upstream, that the gateway once let through.

// A key that differs from a routed key only in case is read by Go's
// encoding/json (and so by Ollama and other Go servers) as that key:
// {"model":"a","MODEL":"b"} would be routed on a and served as b.
func TestModelSmugglingByKeyCase(t *testing.T) {
	srv, rec := newRecorder(t, false)
	s := withDefaults(`
		provider rec ` + srv.URL + `
		model allowed rec`)
	start(t, s)
	hc := newHTTPClient(t)
	for _, tc := range []struct{ name, body, code string }{
		{"MODEL after model", `{"model":"allowed","MODEL":"forbidden","messages":[]}`, "duplicate_key"},
		{"Model before model", `{"Model":"forbidden","model":"allowed","messages":[]}`, "ambiguous_key"},
		{"stream with a long s", `{"model":"allowed","messages":[],"stream":false,"\u017ftream":true}`, "duplicate_key"},
		{"max_tokens with a Kelvin sign", `{"model":"allowed","messages":[],"max_tokens":5,"max_to\u212aens":100000}`, "duplicate_key"},
		{"lone MAX_TOKENS", `{"model":"allowed","messages":[],"MAX_TOKENS":100000}`, "ambiguous_key"},
		{"lone Messages", `{"model":"allowed","Messages":[{"role":"user","content":"hi"}]}`, "ambiguous_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectOpenAIError(t, post(t, hc, "/v1/chat/completions", []byte(tc.body)), http.StatusBadRequest, tc.code)
		})
	}
	if n := rec.count(); n != 0 {
		t.Errorf("the upstream received %d requests; last body %s", n, rec.last(t).Body)
	}
	// the control: the same request without the smuggled key is served
	if res := post(t, hc, "/v1/chat/completions", []byte(`{"model":"allowed","messages":[],"max_tokens":5}`)); res.Status != 200 {
		t.Errorf("plain request: %d %s", res.Status, res.Body)
	}
}
