package upstreams

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cooldowns tracks the health of each provider+model pair: consecutive
// failures and a cooldown deadline. It is package state keyed by name, so
// it survives config reloads.
var Cooldowns = &cooldowns{m: make(map[string]*cooldown)}

// MaxCooldown caps every cooldown, including one asked for by a
// provider's Retry-After header.
const MaxCooldown = 10 * time.Minute

type cooldowns struct {
	mu sync.Mutex
	m  map[string]*cooldown
}

type cooldown struct {
	until time.Time
	fails int
}

func key(provider, model string) string { return provider + "\x00" + model }

// Until returns the end of the pair's cooldown; a zero or past time
// means the pair is available.
func (c *cooldowns) Until(provider, model string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[key(provider, model)]; ok {
		return s.until
	}
	return time.Time{}
}

// Success closes the pair's circuit.
func (c *cooldowns) Success(provider, model string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key(provider, model))
}

// Failure records a failed attempt. A retryAfter above zero (from a 429's
// Retry-After) starts a cooldown of that length at once. Otherwise the
// pair cools down for base once threshold consecutive failures are
// reached, and each further failure after a cooldown (a failed half-open
// probe) doubles it, up to MaxCooldown. It returns the cooldown's end, or
// a zero time if none started.
func (c *cooldowns) Failure(provider, model string, retryAfter, base time.Duration, threshold int, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := key(provider, model)
	s, ok := c.m[k]
	if !ok {
		s = new(cooldown)
		c.m[k] = s
	}
	s.fails++
	d := retryAfter
	if d <= 0 && threshold > 0 && s.fails >= threshold && base > 0 {
		d = base
		for i := threshold; i < s.fails && d < MaxCooldown; i++ {
			d *= 2
		}
	}
	if d <= 0 {
		return time.Time{}
	}
	d = min(d, MaxCooldown)
	if until := now.Add(d); until.After(s.until) {
		s.until = until
	}
	return s.until
}

// Reset forgets all state; for tests.
func (c *cooldowns) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

// RetryAfter reads how long a provider asked the client to wait:
// `retry-after-ms` (milliseconds), or `Retry-After` as seconds or as an
// HTTP-date. It returns 0 when the response says nothing usable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return min(MaxCooldown, time.Duration(min(ms, 1e9)*float64(time.Millisecond)))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if !(s > 0) { // also NaN
			return 0
		}
		return min(MaxCooldown, time.Duration(min(s, 1e6)*float64(time.Second)))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxCooldown)
		}
	}
	return 0
}
