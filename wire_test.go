package llmroute

import (
	"testing"

	"github.com/tidwall/gjson"
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
