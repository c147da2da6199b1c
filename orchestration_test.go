package llmroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// recordedAttempts serves body on h and returns the error ServeHTTP
// returned and its record's attempts as provider/cause.
func recordedAttempts(t *testing.T, h *Handler, ctx context.Context, body string) (error, []string) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.decisions = h.logger.Named("decisions")
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(ctx, "POST", "http://gateway.example/v1/chat/completions", strings.NewReader(body))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	err := h.ServeHTTP(rec, r, noNext)
	entries := logs.FilterLoggerName("decisions").FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	atts, _ := entries[0].ContextMap()["attempts"].([]any)
	var got []string
	for _, at := range atts {
		m, _ := at.(map[string]any)
		got = append(got, fmt.Sprintf("%v/%v", m["provider"], m["cause"]))
	}
	return err, got
}

// A client that goes away while the gateway waits out a 429's
// Retry-After (or a retry's backoff) ends the request there: no further
// target is "called" for it (an attempt the record, the metrics, the
// limits and the pair's state would count), and the answer is the
// client's leaving.
func TestRetryWaitClientGone(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		fail        func(http.ResponseWriter, *http.Request)
		cause       string
	}{
		{"retry-after", `"max_retry_wait": "1m",`,
			answer(429, `{"error":{"message":"slow down"}}`, "Retry-After", "50"), "429"},
		{"backoff", `"retries": 10, "fail_threshold": 1000,`,
			answer(503, `{"error":{"message":"busy"}}`), "5xx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a := newUpstream(t, tc.fail)
			b := newUpstream(t, answer(200, okChat))
			h := gateway(t, a, b, b, `"decision_log": {},`+tc.extra)
			// The client leaves once a's attempt is over and the gateway
			// waits to try it again (the 429's 50s, or the fourth try's
			// backoff of 400-800ms).
			tries := 1
			if tc.cause == "5xx" {
				tries = 4
			}
			pa := pairOf(t, h, "m", "a")
			go func() {
				for a.requests() < tries || pa.Snapshot().InFlight != 0 {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			err, got := recordedAttempts(t, h, ctx, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
			var he caddyhttp.HandlerError
			if !errors.As(err, &he) || he.StatusCode != 499 {
				t.Errorf("error = %v, want a 499 handler error", err)
			}
			for _, g := range got {
				if !strings.HasPrefix(g, "a/") {
					t.Errorf("attempts %v: a target was called after the client left", got)
					break
				}
			}
			if b.requests() != 0 {
				t.Errorf("b got %d requests", b.requests())
			}
		})
	}
}

// A cascade escalates up its tiers: a tier cooling down (kept last by
// resolve, as a last resort) is no tier above the others. While the
// cheap tier cools down, the premium tier is the top one and its answer
// is final, unchecked; the cooling cheap model is asked only when no
// healthy tier could answer at all, and never replaces a better model's
// answer with its own unchecked one.
func TestCascadeCoolingTierLast(t *testing.T) {
	chat := func(text string) string {
		return `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"` + text + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	}
	cheap := newUpstream(t, answer(200, chat("A long enough answer from the cheap model.")))
	var premiumDown atomic.Bool
	premium := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if premiumDown.Load() {
			answer(503, `{"error":{"message":"down"}}`)(w, r)
			return
		}
		answer(200, chat("42"))(w, r)
	})
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "a", "api_key": "k", "proxy": `+gatewayProxy(cheap.addr())+`},
			{"name": "b", "api_key": "k", "proxy": `+gatewayProxy(premium.addr())+`}
		],
		"models": [
			{"name": "cheap", "providers": ["a"], "quality": 0.3, "input_price": 0.1, "output_price": 0.1},
			{"name": "premium", "providers": ["b"], "quality": 0.9, "input_price": 5, "output_price": 5}
		],
		"routes": [
			{"name": "tiered", "targets": [{"model": "cheap"}, {"model": "premium"}], "strategy": {"name": "cascade", "min_length": 20}}
		]
	}`)
	const ask = `{"model":"tiered","messages":[{"role":"user","content":"6 times 7?"}]}`
	// Healthy: the cheap tier first, and the premium tier's short answer
	// is final.
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", ask)
	if got := rec.Header().Get(HeaderCascade); got != "cheap:ok" {
		t.Fatalf("healthy: %s %q", HeaderCascade, got)
	}

	coolDown(pairOf(t, h, "cheap", "a"), time.Minute)
	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", ask)
	if got := rec.Header().Get(HeaderCascade); rec.Code != http.StatusOK || got != "premium:final" {
		t.Errorf("cheap tier cooling: status %d, %s %q, want premium:final", rec.Code, HeaderCascade, got)
	}
	if got := gjson.GetBytes(rec.Body.Bytes(), "choices.0.message.content").Str; got != "42" {
		t.Errorf("cheap tier cooling: the answer is %q, want the premium tier's", got)
	}
	if cheap.requests() != 1 {
		t.Errorf("the cooling cheap tier was called %d times in all, want once (while healthy)", cheap.requests())
	}

	// With the premium tier failing, the cooling tier is the last resort.
	premiumDown.Store(true)
	rec, _, _, _ = serveGateway(t, h, "POST", "/v1/chat/completions", ask)
	if got := rec.Header().Get(HeaderCascade); rec.Code != http.StatusOK || got != "premium:status=503 > cheap:final" {
		t.Errorf("premium failing: status %d, %s %q", rec.Code, HeaderCascade, got)
	}
}

// A rescued stream keeps the client's output cap: the continuation is
// asked for what is left of max_tokens (max_completion_tokens,
// max_output_tokens) once the text already sent is counted, so the
// spliced answer is no longer than the client allowed. Before, each
// continuation got the whole cap again.
func TestRescueKeepsOutputCap(t *testing.T) {
	chunk := "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"}}]}\n\n"
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for range 4 {
			_, _ = io.WriteString(w, chunk)
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	})
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: {\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"end.\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n")
	})
	h := gateway(t, a, b, b, "")
	for _, tc := range []struct{ field, body string }{
		{"max_tokens", `"max_tokens":10`},
		{"max_completion_tokens", `"max_completion_tokens":10`},
	} {
		body := `{"model":"m","stream":true,` + tc.body + `,"messages":[{"role":"user","content":"Count."}]}`
		rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", body)
		if aborted || !strings.Contains(rec.Body.String(), "end.") {
			t.Fatalf("%s: not rescued (aborted %v): %s", tc.field, aborted, rec.Body.String())
		}
		cont := b.body(b.requests() - 1)
		left := gjson.Get(cont, tc.field)
		if !left.Exists() || left.Int() < 1 || left.Int() > 10-4 {
			t.Errorf("%s: the continuation asked for %s=%s; 4 of 10 tokens were sent already (%s)", tc.field, tc.field, left.Raw, cont)
		}
	}
}

// A continuation that restarts the answer instead of continuing it
// fails the rescue, not the provider: the pair (which answers ordinary
// requests well, and was only asked for something its API does not do,
// such as a prefill OpenAI ignores) does not count it toward a
// cooldown. Before, a few rescues took a healthy provider out of
// rotation for every request.
func TestRescueRestartNotPairFailure(t *testing.T) {
	chunk := func(text string) string {
		return "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}]}\n\n"
	}
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, word := range []string{"Once ", "upon ", "a ", "time "} {
			_, _ = io.WriteString(w, chunk(word))
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	})
	// b ignores the prefill and starts the answer again.
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, word := range []string{"Once ", "upon ", "a ", "time ", "there ", "was ", "a ", "king."} {
			_, _ = io.WriteString(w, chunk(word))
		}
		_, _ = io.WriteString(w, "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	})
	h := gateway(t, a, b, b, `"fail_threshold": 1,`)
	_, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions",
		`{"model":"m","stream":true,"messages":[{"role":"user","content":"Tell a story."}]}`)
	if !aborted {
		t.Fatal("the restarted continuation was taken as a rescue")
	}
	if b.requests() != 1 {
		t.Fatalf("b got %d requests, want the continuation", b.requests())
	}
	if !pairOf(t, h, "m", "b").Available(time.Now()) {
		t.Error("b cools down for a continuation that restarted")
	}
	if pairOf(t, h, "m", "a").Available(time.Now()) {
		t.Error("a, whose stream broke, does not cool down (fail_threshold 1)")
	}
}

// A 429 is retried on the same target only when the wait it asks for
// is at most max_retry_wait: the wait as asked, not as capped for a
// cooldown (10m). An hour asked under a max_retry_wait of 30m moves on;
// before, it was waited out for 10m and retried, against the
// provider's word.
func TestRetryWaitAsked(t *testing.T) {
	h := &Handler{MaxRetryWait: caddy.Duration(30 * time.Minute)}
	now := time.Now()
	for _, tc := range []struct {
		name, header, value string
		want                bool
	}{
		{"an hour", "Retry-After", "3600", false},
		{"an hour as a date", "Retry-After", now.Add(time.Hour).UTC().Format(http.TimeFormat), false},
		{"an hour in ms", "Retry-After-Ms", "3600000", false},
		{"20 minutes", "Retry-After", "1200", true},
	} {
		res := &attemptResult{outcome: outcomeRetry, status: 429, body: []byte(`{}`), header: http.Header{}}
		res.header.Set(tc.header, tc.value)
		if d, ok := h.retryWait(res, 1, now); ok != tc.want {
			t.Errorf("%s: retried %v after %v, want %v", tc.name, ok, d, tc.want)
		}
	}
}

// With every tier cooling down (resolve keeps them all, in the route's
// order, as a last resort), the cascade still escalates from the
// cheapest: a route that lists its premium model first does not get the
// premium answer checked and replaced by the cheap model's, unchecked.
func TestCascadeAllCoolingByCost(t *testing.T) {
	chat := func(text string) string {
		return `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"` + text + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	}
	cheap := newUpstream(t, answer(200, chat("A long enough answer from the cheap model.")))
	premium := newUpstream(t, answer(200, chat("42")))
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "a", "api_key": "k", "proxy": `+gatewayProxy(cheap.addr())+`},
			{"name": "b", "api_key": "k", "proxy": `+gatewayProxy(premium.addr())+`}
		],
		"models": [
			{"name": "cheap", "providers": ["a"], "quality": 0.3, "input_price": 0.1, "output_price": 0.1},
			{"name": "premium", "providers": ["b"], "quality": 0.9, "input_price": 5, "output_price": 5}
		],
		"routes": [
			{"name": "tiered", "targets": [{"model": "premium"}, {"model": "cheap"}], "strategy": {"name": "cascade", "min_length": 20}}
		]
	}`)
	coolDown(pairOf(t, h, "cheap", "a"), time.Minute)
	coolDown(pairOf(t, h, "premium", "b"), time.Minute)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"tiered","messages":[{"role":"user","content":"6 times 7?"}]}`)
	if got := rec.Header().Get(HeaderCascade); rec.Code != http.StatusOK || got != "cheap:ok" {
		t.Errorf("every tier cooling: status %d, %s %q, want cheap:ok", rec.Code, HeaderCascade, got)
	}
}

// A hedged stream whose hedge answered and then broke is continued by
// the primary's candidate when the hedge's loop has no candidate left:
// the primary was only slow (its call was cancelled when the hedge won),
// and a slow continuation beats the honest error. Before, a route of
// two candidates ended such a stream with the error event.
func TestHedgeBrokenContinuedByPrimary(t *testing.T) {
	chunk := func(text string) string {
		return "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}]}\n\n"
	}
	var p1calls atomic.Int32
	p1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if p1calls.Add(1) == 1 {
			<-r.Context().Done() // slow: the hedge wins, and this call is cancelled
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, chunk("a king.")+"data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	})
	p2 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, word := range []string{"Once ", "upon ", "a ", "time ", "there ", "was "} {
			_, _ = io.WriteString(w, chunk(word))
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-stream
	})
	h := hedgedHandler(t, p1, p2, "")
	rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions",
		`{"model":"hedged","stream":true,"messages":[{"role":"user","content":"Tell a story."}]}`)
	if aborted {
		t.Fatalf("the broken hedge was not continued: %s", rec.Body.String())
	}
	if got := rec.Header().Get(HeaderHedged); got != "hedge" {
		t.Errorf("%s %q, want hedge", HeaderHedged, got)
	}
	var text strings.Builder
	for _, ev := range strings.Split(rec.Body.String(), "\n\n") {
		if d, ok := strings.CutPrefix(ev, "data: "); ok && d != "[DONE]" {
			text.WriteString(gjson.Get(d, "choices.0.delta.content").Str)
		}
	}
	if got := text.String(); got != "Once upon a time there was a king." {
		t.Errorf("the client got %q", got)
	}
	if !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
		t.Errorf("the stream does not end with [DONE]: %s", rec.Body.String())
	}
	if n := p1calls.Load(); n != 2 {
		t.Fatalf("p1 got %d calls, want the primary's and the continuation", n)
	}
	if got := gjson.Get(p1.body(1), "messages.1.content").Str; got != "Once upon a time there was" {
		t.Errorf("the continuation's prefill is %q", got)
	}
}

// Retries do not go through an open circuit: once a target's failures
// make it cool down (fail_threshold reached, or a half-open probe that
// failed), it is not tried again for the request; the loop moves on.
// Before, `retries` sent every retry to the pair its failure had just
// taken out of rotation: a failed probe was followed by n more calls,
// so a pair let "one probe" through got n+1.
func TestRetryStopsAtCooldown(t *testing.T) {
	a := newUpstream(t, answer(503, `{"error":{"message":"down"}}`))
	b := newUpstream(t, answer(200, okChat))
	h := gateway(t, a, b, b, `"retries": 3, "fail_threshold": 2, "cooldown": "1m",`)
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if rec.Code != http.StatusOK || rec.Header().Get(HeaderProvider) != "b" {
		t.Fatalf("status %d from %q", rec.Code, rec.Header().Get(HeaderProvider))
	}
	if n := a.requests(); n != 2 {
		t.Errorf("a got %d calls; its second failure opened its cooldown (fail_threshold 2), want 2", n)
	}
	if pairOf(t, h, "m", "a").Available(time.Now()) {
		t.Error("a is not cooling down")
	}
}
