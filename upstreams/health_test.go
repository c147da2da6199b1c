package upstreams

import (
	"net/http"
	"sync"
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

func TestCooldownsThreshold(t *testing.T) {
	Cooldowns.Reset()
	t.Cleanup(Cooldowns.Reset)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	const base = 30 * time.Second

	if u := Cooldowns.Until("p", "m"); !u.IsZero() {
		t.Fatalf("fresh pair cooling until %v", u)
	}
	// Below the threshold nothing cools down.
	for i := 1; i <= 2; i++ {
		if u := Cooldowns.Failure("p", "m", 0, base, 3, now); !u.IsZero() {
			t.Fatalf("failure %d: cooldown until %v", i, u)
		}
	}
	if u := Cooldowns.Until("p", "m"); !u.IsZero() {
		t.Fatalf("cooling until %v below the threshold", u)
	}
	// Reaching it starts the base cooldown; each failed probe after
	// that doubles it, up to MaxCooldown.
	for i, want := range []time.Duration{
		base, 2 * base, 4 * base, 8 * base, 16 * base, MaxCooldown, MaxCooldown,
	} {
		now = now.Add(time.Hour) // the previous cooldown is over: a probe
		u := Cooldowns.Failure("p", "m", 0, base, 3, now)
		if got := u.Sub(now); got != want {
			t.Errorf("failure %d: cooldown %v, want %v", i+3, got, want)
		}
		if got := Cooldowns.Until("p", "m"); !got.Equal(u) {
			t.Errorf("Until = %v, want %v", got, u)
		}
	}
	// Other pairs are not affected.
	if u := Cooldowns.Until("p", "other"); !u.IsZero() {
		t.Errorf("other model cooling until %v", u)
	}
	if u := Cooldowns.Until("other", "m"); !u.IsZero() {
		t.Errorf("other provider cooling until %v", u)
	}
	// Success closes the circuit and forgets the failures.
	Cooldowns.Success("p", "m")
	if u := Cooldowns.Until("p", "m"); !u.IsZero() {
		t.Errorf("cooling until %v after a success", u)
	}
	if u := Cooldowns.Failure("p", "m", 0, base, 3, now); !u.IsZero() {
		t.Errorf("first failure after a success cooled down until %v", u)
	}
}

func TestCooldownsRetryAfter(t *testing.T) {
	Cooldowns.Reset()
	t.Cleanup(Cooldowns.Reset)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	// A Retry-After starts a cooldown at once, below the threshold.
	if got := Cooldowns.Failure("p", "m", 5*time.Second, 30*time.Second, 3, now).Sub(now); got != 5*time.Second {
		t.Errorf("Retry-After 5s: cooldown %v", got)
	}
	// At the threshold it replaces the base cooldown.
	Cooldowns.Failure("q", "m", 0, 30*time.Second, 3, now)
	Cooldowns.Failure("q", "m", 0, 30*time.Second, 3, now)
	if got := Cooldowns.Failure("q", "m", 2*time.Second, 30*time.Second, 3, now).Sub(now); got != 2*time.Second {
		t.Errorf("Retry-After 2s at the threshold: cooldown %v, want 2s", got)
	}
	// It is capped.
	if got := Cooldowns.Failure("r", "m", time.Hour, 30*time.Second, 3, now).Sub(now); got != MaxCooldown {
		t.Errorf("Retry-After 1h: cooldown %v, want %v", got, MaxCooldown)
	}
	// A shorter one does not cut a running cooldown short.
	if got := Cooldowns.Failure("r", "m", time.Second, 30*time.Second, 3, now).Sub(now); got != MaxCooldown {
		t.Errorf("Retry-After 1s during a 10m cooldown: cooldown %v, want %v", got, MaxCooldown)
	}
	// Without threshold or base, only Retry-After cools down.
	if u := Cooldowns.Failure("s", "m", 0, 30*time.Second, 0, now); !u.IsZero() {
		t.Errorf("threshold 0: cooldown until %v", u)
	}
	if u := Cooldowns.Failure("t", "m", 0, 0, 1, now); !u.IsZero() {
		t.Errorf("base 0: cooldown until %v", u)
	}
}

func TestCooldownsConcurrent(t *testing.T) {
	Cooldowns.Reset()
	t.Cleanup(Cooldowns.Reset)
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				switch (i + j) % 3 {
				case 0:
					Cooldowns.Failure("p", "m", 0, time.Second, 2, now)
				case 1:
					Cooldowns.Until("p", "m")
				case 2:
					Cooldowns.Success("p", "m")
				}
			}
		})
	}
	wg.Wait()
}
