package llmroute

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A request every candidate's limit turned away made no call: its
// headers, its access log fields and its metrics name the route and
// the number of calls (0) but no model or provider as having answered.
func TestQuotaRefusalNamesNoModel(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"providers": [{"name": "refusal-p", "proxy": `+gatewayProxy(u.addr())+`}],
		"models": [{"name": "refusal-m", "providers": ["refusal-p"], "daily_requests": 1}]
	}`)
	serve := func() (*httptest.ResponseRecorder, map[string]any) {
		t.Helper()
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "http://gateway.example/v1/chat/completions",
			strings.NewReader(`{"model":"refusal-m","messages":[{"role":"user","content":"hi"}]}`))
		repl := caddy.NewReplacer()
		r = caddyhttp.PrepareRequest(r, repl, w, &caddyhttp.Server{})
		if err := h.ServeHTTP(w, r, noNext); err != nil {
			t.Fatal(err)
		}
		// (The access log's llm_* fields are these values: placeholderValues.)
		fields := map[string]any{}
		for _, name := range []string{"model", "provider", "route", "attempts"} {
			fields["llm_"+name], _ = repl.Get("llm." + name)
		}
		return w, fields
	}
	if w, _ := serve(); w.Code != http.StatusOK || w.Header().Get(HeaderModel) != "refusal-m" {
		t.Fatalf("first request: %d by %q", w.Code, w.Header().Get(HeaderModel))
	}
	before := counterValue(t, metrics.requests, "refusal-m", "", "", "429")
	w, fields := serve()
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "all_quotas_exhausted") {
		t.Fatalf("second request: %d %s, want 429 all_quotas_exhausted", w.Code, w.Body)
	}
	hdr := w.Header()
	if _, ok := hdr[http.CanonicalHeaderKey(HeaderModel)]; ok {
		t.Errorf("X-LLM-Model %q on a refusal that made no call", hdr.Get(HeaderModel))
	}
	if _, ok := hdr[http.CanonicalHeaderKey(HeaderProvider)]; ok {
		t.Errorf("X-LLM-Provider %q on a refusal that made no call", hdr.Get(HeaderProvider))
	}
	if hdr.Get(HeaderRoute) != "refusal-m" || hdr.Get(HeaderAttempts) != "0" ||
		!strings.Contains(hdr.Get(HeaderReason), "quota=daily_requests") || hdr.Get(HeaderRequestID) == "" {
		t.Errorf("route %q, attempts %q, reason %q, request id %q", hdr.Get(HeaderRoute), hdr.Get(HeaderAttempts),
			hdr.Get(HeaderReason), hdr.Get(HeaderRequestID))
	}
	if fields["llm_model"] != "" || fields["llm_provider"] != "" || fields["llm_route"] != "refusal-m" || fields["llm_attempts"] != 0 {
		t.Errorf("access log fields %v", fields)
	}
	if got := counterValue(t, metrics.requests, "refusal-m", "", "", "429") - before; got != 1 {
		t.Errorf("llm_route_requests_total{model=\"\",provider=\"\",status=\"429\"} grew by %v, want 1", got)
	}
}
