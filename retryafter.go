package llmroute

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryAfterFromMs sets Retry-After (whole seconds, rounded up) from
// retry-after-ms when an upstream error sent only the latter, so that
// clients that read only Retry-After back off too.
func retryAfterFromMs(hdr http.Header) {
	if hdr.Get("Retry-After") != "" {
		return
	}
	ms, err := strconv.ParseFloat(strings.TrimSpace(hdr.Get("Retry-After-Ms")), 64)
	if err != nil || !(ms > 0) {
		return
	}
	hdr.Set("Retry-After", retryAfterSeconds(time.Duration(min(ms, 1e9)*float64(time.Millisecond))))
}
