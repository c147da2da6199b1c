package upstreams

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"none", nil, 0},
		{"seconds", map[string]string{"Retry-After": "120"}, 120 * time.Second},
		{"seconds with spaces", map[string]string{"Retry-After": "  7 "}, 7 * time.Second},
		{"fractional seconds", map[string]string{"Retry-After": "1.5"}, 1500 * time.Millisecond},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"negative", map[string]string{"Retry-After": "-30"}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"empty", map[string]string{"Retry-After": ""}, 0},
		{"huge seconds", map[string]string{"Retry-After": "99999999"}, MaxCooldown},
		{"just below the cap", map[string]string{"Retry-After": "599"}, 599 * time.Second},
		{"infinite seconds", map[string]string{"Retry-After": "Inf"}, MaxCooldown},
		{"negative infinite seconds", map[string]string{"Retry-After": "-Inf"}, 0},
		{"NaN seconds", map[string]string{"Retry-After": "NaN"}, 0},
		{"HTTP-date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"RFC 850 date", map[string]string{"Retry-After": now.Add(time.Minute).Format(time.RFC850)}, time.Minute},
		{"ANSI C date", map[string]string{"Retry-After": now.Add(2 * time.Minute).Format(time.ANSIC)}, 2 * time.Minute},
		{"date in the past", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"date now", map[string]string{"Retry-After": now.Format(http.TimeFormat)}, 0},
		{"date far ahead", map[string]string{"Retry-After": now.Add(24 * time.Hour).Format(http.TimeFormat)}, MaxCooldown},
		{"milliseconds", map[string]string{"Retry-After-Ms": "1500"}, 1500 * time.Millisecond},
		{"fractional milliseconds", map[string]string{"retry-after-ms": "0.5"}, 500 * time.Microsecond},
		{"milliseconds win", map[string]string{"Retry-After-Ms": "250", "Retry-After": "60"}, 250 * time.Millisecond},
		{"zero milliseconds fall back", map[string]string{"Retry-After-Ms": "0", "Retry-After": "3"}, 3 * time.Second},
		{"garbage milliseconds fall back", map[string]string{"Retry-After-Ms": "x", "Retry-After": "4"}, 4 * time.Second},
		{"negative milliseconds", map[string]string{"Retry-After-Ms": "-100"}, 0},
		{"huge milliseconds", map[string]string{"Retry-After-Ms": "1e15"}, MaxCooldown},
		{"NaN milliseconds", map[string]string{"Retry-After-Ms": "NaN"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := make(http.Header)
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			if got := RetryAfter(h, now); got != tc.want {
				t.Errorf("RetryAfter(%v) = %v, want %v", tc.headers, got, tc.want)
			}
		})
	}
}
