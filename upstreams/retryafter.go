package upstreams

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads how long a provider asked the client to wait:
// `retry-after-ms` (milliseconds), or `Retry-After` as seconds or as an
// HTTP-date. It returns 0 when the response says nothing usable.
// A cooldown it starts is at most MaxCooldown.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	return min(MaxCooldown, RetryAfterAsked(h, now))
}

// RetryAfterAsked is RetryAfter as the provider asked it, not capped at
// MaxCooldown (at most about 11 days): what a wait on the same target
// is judged by, as a provider asking for an hour must not be retried
// after ten minutes.
func RetryAfterAsked(h http.Header, now time.Time) time.Duration {
	if d, ok := RetryAfterMs(h); ok {
		return d
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if !(s > 0) { // also NaN
			return 0
		}
		return time.Duration(min(s, 1e6) * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 1e6*time.Second)
		}
	}
	return 0
}

// RetryAfterMs reads Retry-After-Ms (OpenAI's and Azure's header, in
// milliseconds): false when it is missing, not a number or not positive.
func RetryAfterMs(h http.Header) (time.Duration, bool) {
	ms, err := strconv.ParseFloat(strings.TrimSpace(h.Get("Retry-After-Ms")), 64)
	if err != nil || !(ms > 0) { // (also NaN)
		return 0, false
	}
	return time.Duration(min(ms, 1e9) * float64(time.Millisecond)), true
}
