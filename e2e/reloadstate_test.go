package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-llm-route/llmroute/internal/redistest"
	"github.com/caddy-llm-route/llmroute/mock"
)

// A reload that changes the state settings drops the old Redis store
// while a request is still under way on it: that request's reservation
// must still be given back on Redis (its slot and its day's count), not
// fail on a closed client and stay on the fleet's counters.
func TestReloadOfStateKeepsSettlements(t *testing.T) {
	srv := redistest.Start(t)
	cfg := func(timeout string) setup {
		return withDefaults(fmt.Sprintf(`
		first_byte_timeout 1m
		state redis %s {
			timeout %s
		}
		model held alpha {
			upstream_name mock-held
			max_concurrent 5
			daily_requests 100
		}
`, srv.URL(), timeout))
	}
	start(t, cfg("5s"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := mock.Served("alpha")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/chat/completions",
		strings.NewReader(`{"model":"held","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("X-Mock-Fault", "alpha:no_answer")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := new(http.Client).Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for mock.Served("alpha") == before {
		if ctx.Err() != nil {
			t.Fatal("the request never reached the mock")
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a timing assumption
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer c.Close()
	counters := func() []string {
		keys, err := c.Keys(context.Background(), "llm_route:model:held|*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if len(counters()) == 0 {
		t.Fatal("the request under way holds nothing on Redis")
	}

	loadConfig(t, cfg("6s")) // other settings: another Redis client
	<-done
	for keys := counters(); len(keys) != 0; keys = counters() {
		if ctx.Err() != nil {
			t.Fatalf("counters still held on Redis after the request ended: %v", keys)
		}
		time.Sleep(20 * time.Millisecond) // the settlement follows the client's end
	}
}

// A request waiting out a 429 (max_retry_wait) has settled its first
// reservation and holds nothing on Redis; a reload that changes the state
// settings meanwhile must not close the Redis client it will reserve on
// again: with on_error deny its retry was refused as state_unavailable.
func TestReloadOfStateDuringRetryWait(t *testing.T) {
	srv := redistest.Start(t)
	first := make(chan struct{})
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "3")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
			close(first)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"after the wait"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(up.Close)
	cfg := func(timeout string) setup {
		return setup{Mocks: []mockSite{}, Route: fmt.Sprintf(`
		max_retry_wait 1m
		state redis %s {
			timeout %s
			on_error deny
		}
		provider up %s
		model m up {
			daily_requests 100
		}
`, srv.URL(), timeout, up.URL)}
	}
	start(t, cfg("5s"))

	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	hc := newHTTPClient(t)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/v1/chat/completions", bytes.NewReader(chatBody("m")))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	select {
	case <-first:
	case <-time.After(time.Minute):
		t.Fatal("the request never reached the upstream")
	}
	loadConfig(t, cfg("6s")) // other settings: another Redis client
	res := <-done
	if res.status != http.StatusOK || !strings.Contains(res.body, "after the wait") {
		t.Fatalf("after the reload, the retry got %d %s (%d calls upstream)", res.status, res.body, calls.Load())
	}
}
