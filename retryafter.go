package llmroute

import (
	"net/http"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

// retryAfterFromMs sets Retry-After (whole seconds, rounded up) from
// retry-after-ms when an upstream error sent only the latter, so that
// clients that read only Retry-After back off too.
func retryAfterFromMs(hdr http.Header) {
	if hdr.Get("Retry-After") != "" {
		return
	}
	if d, ok := upstreams.RetryAfterMs(hdr); ok {
		hdr.Set("Retry-After", retryAfterSeconds(d))
	}
}
