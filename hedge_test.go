package llmroute

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The hedge delay: a fixed one as configured; p95 from the pair's live
// stats (streams' and other answers' apart), at least the minimum
// delay, which is also the delay until the stats know 20 answers (no
// hedging without one).
func TestHedgeDelay(t *testing.T) {
	prov := &upstreams.Provider{Name: "hedge-delay"}
	pair := upstreams.AcquirePair(prov, "m", nil)
	defer upstreams.ReleasePair(prov, "m", nil)
	c := &strategies.Candidate{Pair: pair}
	fixed := &Hedge{Delay: caddy.Duration(80 * time.Millisecond)}
	p95 := &Hedge{Adaptive: "p95"}
	p95min := &Hedge{Adaptive: "p95", Delay: caddy.Duration(50 * time.Millisecond)}
	expect := func(what string, hg *Hedge, stream bool, want time.Duration, wantOK bool) {
		t.Helper()
		if d, ok := hg.delayFor(c, stream); d != want || ok != wantOK {
			t.Errorf("%s: %v %v, want %v %v", what, d, ok, want, wantOK)
		}
	}
	expect("fixed", fixed, true, 80*time.Millisecond, true)
	expect("p95 before 20 answers", p95, true, 0, false)
	expect("p95 50ms before 20 answers", p95min, true, 50*time.Millisecond, true)

	now := time.Now()
	for i := range 20 {
		d := time.Duration(i+1) * 10 * time.Millisecond // 10ms … 200ms
		pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Timed: true, Stream: true, FirstByte: d, Total: 2 * d}, upstreams.Policy{}, now)
	}
	expect("p95 of streams", p95, true, 190*time.Millisecond, true)
	expect("p95 50ms of streams", p95min, true, 190*time.Millisecond, true)
	expect("p95 of other answers", p95, false, 0, false)
	expect("fixed, whatever the stats", fixed, true, 80*time.Millisecond, true)
	for range 20 {
		pair.Finish(upstreams.Outcome{Result: upstreams.Succeeded, Timed: true, Total: 20 * time.Millisecond}, upstreams.Policy{}, now)
	}
	expect("p95 50ms of other answers", p95min, false, 50*time.Millisecond, true)
}

// A call that did not answer gives its reservation back, unless it
// reported usage (a hedge's loser whose answer came whole as the other
// won): then its limits are charged what it used.
func TestSettleOnReportedUsage(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "daily_tokens": 1000000}]
	}`)
	req := &strategies.Request{Model: "m", Endpoint: "/chat/completions", MaxTokens: 256, PromptTokens: 100}
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	used := func() float64 {
		t.Helper()
		q := &quotaReader{h: h, ctx: t.Context(), now: time.Now()}
		items := q.of(h.models["m"].subject)
		if len(items) != 1 || q.err != nil {
			t.Fatalf("quota %+v %v", items, q.err)
		}
		return items[0].Used
	}
	for _, tc := range []struct {
		name  string
		usage Usage
		want  float64
	}{
		{"no usage: released", Usage{}, 0},
		{"usage reported: settled on it", Usage{PromptTokens: 30, CompletionTokens: 12}, 42},
	} {
		before := used()
		res, d := h.admit(t.Context(), req, &plan{route: "m"}, &c, time.Now())
		if d != nil || res == nil {
			t.Fatal("not admitted")
		}
		aw := &attemptWriter{usage: tc.usage}
		h.settle(res, &c, outcomeGone, aw)
		if got := used() - before; got != tc.want {
			t.Errorf("%s: %v tokens charged, want %v", tc.name, got, tc.want)
		}
	}
}

// hedgedHandler routes model m at p1, then at p2, as the route hedged
// (a hedge after 20ms, every request may hedge), with extra handler
// options.
func hedgedHandler(t *testing.T, p1, p2 *upstream, extra string) *Handler {
	t.Helper()
	return mustLoadHandler(t, `{
		`+extra+`
		"providers": [
			{"name": "p1", "api_key": "k1", "proxy": `+gatewayProxy(p1.addr())+`},
			{"name": "p2", "api_key": "k2", "proxy": `+gatewayProxy(p2.addr())+`}
		],
		"models": [{"name": "m", "providers": ["p1", "p2"]}],
		"routes": [{"name": "hedged", "targets": [{"model": "m", "provider": "p1"}, {"model": "m", "provider": "p2"}],
			"strategy": {"name": "fallback"}, "hedge": {"delay": "20ms", "budget": 1}}]
	}`)
}

// hedgedAttempts serves one request on route hedged (model m at p1, then
// at p2; retries 1) and returns its record's attempts as
// provider/cause/retry.
func hedgedAttempts(t *testing.T, p1, p2 *upstream, ctx context.Context) []string {
	t.Helper()
	h := hedgedHandler(t, p1, p2, `"decision_log": {}, "retries": 1,`)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.decisions = h.logger.Named("decisions")
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(ctx, "POST", "http://gateway.example/v1/chat/completions",
		strings.NewReader(`{"model":"hedged","messages":[{"role":"user","content":"hi"}]}`))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	_ = h.ServeHTTP(rec, r, noNext)
	entries := logs.FilterLoggerName("decisions").FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	atts, _ := entries[0].ContextMap()["attempts"].([]any)
	var got []string
	for _, at := range atts {
		m, _ := at.(map[string]any)
		got = append(got, fmt.Sprintf("%v/%v/%v", m["provider"], m["cause"], m["retry"]))
	}
	slices.Sort(got)
	return got
}

// Every call a lost hedge race cancelled is recorded as hedge_lost: here
// the hedge's retry of its target (the first try failed with a 503), cut
// off when the primary answered, in the middle of its answer (held by
// the attempt writer until whole, so never the client's). A client that went away is still
// client_gone, for both calls of the race.
func TestHedgeLostRetry(t *testing.T) {
	t.Run("the primary wins while the hedge retries", func(t *testing.T) {
		retried := make(chan struct{})
		var calls atomic.Int32
		p2 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				answer(503, `{"error":{"message":"busy"}}`)(w, r)
				return
			}
			// The retry's answer starts, and stalls: cut off mid-body.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"id":"chatcmpl-2",`)
			w.(http.Flusher).Flush()
			close(retried)
			<-r.Context().Done()
		})
		p1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			<-retried
			answer(200, okChat)(w, r)
		})
		got := hedgedAttempts(t, p1, p2, context.Background())
		if want := "[p1/ok/<nil> p2/5xx/<nil> p2/hedge_lost/1]"; fmt.Sprint(got) != want {
			t.Errorf("attempts %v, want %s", got, want)
		}
	})

	t.Run("the client goes away during the race", func(t *testing.T) {
		arrived := make(chan struct{}, 2)
		hold := func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-r.Context().Done()
		}
		p1, p2 := newUpstream(t, hold), newUpstream(t, hold)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-arrived
			<-arrived
			cancel()
		}()
		got := hedgedAttempts(t, p1, p2, ctx)
		if want := "[p1/client_gone/<nil> p2/client_gone/<nil>]"; fmt.Sprint(got) != want {
			t.Errorf("attempts %v, want %s", got, want)
		}
	})
}

// A hedge's loop that found no target that could answer logs so only
// when its error answer is the response: not when the primary answers
// after it (a false "no target could answer" on a request that got
// its 200), once when the primary fails too.
func TestHedgeFailureLoggedOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary func(http.ResponseWriter, *http.Request)
		status  int
		warns   int
	}{
		{"the primary answers after the hedge failed", answer(200, okChat), 200, 0},
		{"the primary fails after the hedge failed", answer(500, `{"error":{"message":"down"}}`), 503, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hedgeDone := make(chan struct{})
			p1 := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				<-hedgeDone
				tc.primary(w, r)
			})
			p2 := newUpstream(t, answer(503, `{"error":{"message":"busy"}}`))
			h := hedgedHandler(t, p1, p2, "")
			core, logs := observer.New(zapcore.DebugLevel)
			var once sync.Once
			// The hedge's call is the first recorded: the primary's is
			// recorded once it answered, which waits for this.
			h.logger = zap.New(zapcore.RegisterHooks(core, func(e zapcore.Entry) error {
				if e.Message == "attempt" {
					once.Do(func() { close(hedgeDone) })
				}
				return nil
			}))
			h.decisions = h.logger.Named("decisions")
			rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions",
				`{"model":"hedged","messages":[{"role":"user","content":"hi"}]}`)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if n := logs.FilterMessage("no target could answer").Len(); n != tc.warns {
				t.Errorf("%d warnings that no target could answer, want %d", n, tc.warns)
			}
		})
	}
}

// The budget starts full, so that the first slow requests are hedged:
// hedgesSaved at once, then budget × requests (the default 10%: one
// more every ten requests); a budget of 0 never hedges.
func TestHedgeBudgetStartsFull(t *testing.T) {
	zero := 0.0
	for _, tc := range []struct {
		name string
		hg   *Hedge
		want []int // the requests (1, 2, …) of the first 30 that may hedge, each hedging when it can
	}{
		{"default budget", &Hedge{Delay: caddy.Duration(100 * time.Millisecond)}, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 21}},
		{"budget 0", &Hedge{Delay: caddy.Duration(100 * time.Millisecond), Budget: &zero}, nil},
	} {
		tc.hg.fill() // (as the handler's Provision does)
		var got []int
		for i := 1; i <= 30; i++ {
			tc.hg.deposit()
			if tc.hg.take() {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: hedges on requests %v, want %v", tc.name, got, tc.want)
		}
	}
}
