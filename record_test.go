package llmroute

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-llm-route/llmroute/strategies"
)

func TestParseFeedback(t *testing.T) {
	for _, tc := range []struct {
		body string
		norm float64
		err  string
	}{
		{`{"request_id":"abc","score":0.5}`, 0.5, ""},
		{`{"request_id":"abc","score":1}`, 1, ""},
		{`{"request_id":"abc","score":0}`, 0, ""},
		{`{"request_id":"abc","score":5,"comment":"great"}`, 1, ""},
		{`{"request_id":"abc","score":2}`, 0.25, ""},
		{`{"request_id":"abc","score":1,"scale":5}`, 0, ""},
		{`{"request_id":"abc","score":1,"scale":1}`, 1, ""},
		{`{"request_id":"abc","score":0.5,"scale":5}`, 0, "within 1..5"},
		{`{"request_id":"abc","score":3,"scale":1}`, 0, "within 0..1"},
		{`{"request_id":"abc","score":3,"scale":10}`, 0, "scale must be"},
		{`{"request_id":"abc","score":-0.1}`, 0, "score must be"},
		{`{"request_id":"abc","score":5.5}`, 0, "score must be"},
		{`{"request_id":"abc","score":"5"}`, 0, "JSON object"},
		{`{"request_id":"abc"}`, 0, "score is required"},
		{`{"score":1}`, 0, "request_id"},
		{`{"request_id":"a b","score":1}`, 0, "printable"},
		{`{"request_id":"` + strings.Repeat("x", 129) + `","score":1}`, 0, "request_id"},
		{`{"request_id":"abc","score":1,"comment":"` + strings.Repeat("x", maxComment+1) + `"}`, 0, "comment"},
		{`{"request_id":"abc","score":1,"extra":true}`, 0, "unknown field"},
		{`{"request_id":"abc","score":1,"request_id":"def"}`, 0, "twice"},
		{`["abc",1]`, 0, "JSON object"},
		{`{"request_id":"abc","score":1`, 0, "JSON object"},
		{``, 0, "JSON object"},
	} {
		_, norm, msg := parseFeedback([]byte(tc.body))
		if tc.err == "" && (msg != "" || norm != tc.norm) || tc.err != "" && !strings.Contains(msg, tc.err) {
			t.Errorf("%.60s: norm %v, error %q; want %v, error with %q", tc.body, norm, msg, tc.norm, tc.err)
		}
	}
}

func TestCauseOf(t *testing.T) {
	for _, tc := range []struct {
		res  attemptResult
		want cause
	}{
		{attemptResult{outcome: outcomeDone}, causeOK},
		{attemptResult{outcome: outcomeQuota}, causeQuota},
		{attemptResult{outcome: outcomeUnfit}, causeUnfit},
		{attemptResult{outcome: outcomeGone}, causeGone},
		{attemptResult{outcome: outcomeBroken}, causeBroken},
		{attemptResult{outcome: outcomeRetry, status: 429, body: []byte("{}")}, cause429},
		{attemptResult{outcome: outcomeRetry, status: 503, body: []byte{}}, cause5xx},
		{attemptResult{outcome: outcomeFinal, status: 400, body: []byte("{}")}, cause4xx},
		{attemptResult{outcome: outcomeRetry, status: 504, err: errFirstByteTimeout}, causeTimeout},
		{attemptResult{outcome: outcomeRetry, status: 502, err: fmt.Errorf("%w: x", errUnusable)}, causeInvalid},
		{attemptResult{outcome: outcomeRetry, status: 502, err: errors.New("dial tcp: refused")}, causeConnect},
	} {
		if got := causeOf(&tc.res); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.res, got, tc.want)
		}
	}
}

// The record of a request that fell back: the response carries its id,
// and the decision log has one entry with the attempts and their causes.
func TestRecordOfFallback(t *testing.T) {
	a := newUpstream(t, answer(503, `{"error":{"message":"busy"}}`))
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"decision_log": {},`)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.decisions = h.logger.Named("decisions")

	rec, repl, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	id := rec.Header().Get(HeaderRequestID)
	if uuid, _ := repl.GetString("http.request.uuid"); id == "" || id != uuid {
		t.Fatalf("X-LLM-Request-Id %q, Caddy's request UUID %q", id, uuid)
	}
	entries := logs.FilterLoggerName("decisions").FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	f := entries[0].ContextMap()
	if f["request_id"] != id || f["model"] != "m" || f["provider"] != "b" || fmt.Sprint(f["status"]) != "200" ||
		fmt.Sprint(f["calls"]) != "2" || fmt.Sprint(f["input_tokens"]) != "3" || fmt.Sprint(f["output_tokens"]) != "2" {
		t.Errorf("record %v", f)
	}
	atts := fmt.Sprint(f["attempts"])
	if !strings.Contains(atts, "cause:5xx") || !strings.Contains(atts, "cause:ok") {
		t.Errorf("attempts %s", atts)
	}
	if n := logs.FilterMessage("attempt").Len(); n != 2 {
		t.Errorf("%d debug lines of attempts, want 2", n)
	}

	// Without decision_log, nothing is logged (the metrics still count).
	h.DecisionLog = nil
	serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if n := logs.FilterMessage("decision").Len(); n != 1 {
		t.Errorf("%d decision records with decision_log off", n)
	}
}

// Retries of the same target are calls of their own in the record:
// each with its cause and its try, and none counted as a fallback.
func TestRecordOfRetries(t *testing.T) {
	var calls atomic.Int32
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			answer(503, `{"error":{"message":"busy"}}`)(w, r)
			return
		}
		answer(200, okChat)(w, r)
	})
	b := newUpstream(t, answer(200, okChat))
	c := newUpstream(t, answer(500, ``))
	h := gateway(t, a, b, c, `"decision_log": {}, "retries": 2,`)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.decisions = h.logger.Named("decisions")

	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if rec.Code != 200 || rec.Header().Get(HeaderProvider) != "a" || rec.Header().Get(HeaderAttempts) != "3" {
		t.Fatalf("status %d, provider %q, attempts %q: want a's answer at the third try", rec.Code, rec.Header().Get(HeaderProvider), rec.Header().Get(HeaderAttempts))
	}
	entries := logs.FilterLoggerName("decisions").FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	f := entries[0].ContextMap()
	if fmt.Sprint(f["calls"]) != "3" || f["provider"] != "a" {
		t.Errorf("record %v, want 3 calls answered by a", f)
	}
	atts, _ := f["attempts"].([]any)
	var got []string
	for _, at := range atts {
		m, _ := at.(map[string]any)
		got = append(got, fmt.Sprintf("%v/%v/%v", m["provider"], m["cause"], m["retry"]))
	}
	if want := "[a/5xx/<nil> a/5xx/1 a/ok/2]"; fmt.Sprint(got) != want {
		t.Errorf("attempts %v, want %s", got, want)
	}
}

// BenchmarkRecord measures what a request's record costs the hot path
// besides the request itself: start, decide, one attempt and the finish
// (the metrics), with the decision log off.
func BenchmarkRecord(b *testing.B) {
	h := mustLoadHandler(b, resolveConfig)
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "http://gateway.example/v1/chat/completions", nil)
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, w, &caddyhttp.Server{})
	req := &strategies.Request{Endpoint: "/chat/completions", Model: "m"}
	p, rerr := h.resolve(r, req, nil)
	if rerr != nil {
		b.Fatal(rerr.msg)
	}
	aw := newAttemptWriter(r.Context(), w)
	aw.usage = Usage{PromptTokens: 100, CompletionTokens: 20}
	now := time.Now()
	res := attemptResult{outcome: outcomeDone, aw: aw, called: now, firstByte: now.Add(time.Millisecond), upstream: 2 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		rec := &record{ResponseWriter: w, h: h, endpoint: req.Endpoint, start: now, id: "id"}
		rec.bodyRead()
		rec.decide(req, p)
		rec.attempt(p, &p.candidates[0], &res)
		h.finishRecord(rec)
	}
}

// Every call made for one request is paid for: a record's usage and
// cost are the sums over its calls, each at its own model's prices.
func TestRecordSumsCalls(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [
			{"name": "cheap", "providers": ["a"], "input_price": 1, "output_price": 2},
			{"name": "dear", "providers": ["a"], "input_price": 10, "output_price": 20}
		]
	}`)
	cheap := newCandidate(h.models["cheap"], h.models["cheap"].serving[0], nil)
	dear := newCandidate(h.models["dear"], h.models["dear"].serving[0], nil)
	rec := &record{h: h}
	rec.attempts = []attemptRecord{
		{c: &cheap, aw: &attemptWriter{usage: Usage{PromptTokens: 1000, CompletionTokens: 500}}},
		{c: &dear, aw: &attemptWriter{usage: Usage{PromptTokens: 2000, CompletionTokens: 100}}},
		{c: &dear, cause: causeQuota},
	}
	if u := rec.usage(); u.PromptTokens != 3000 || u.CompletionTokens != 600 {
		t.Errorf("usage %+v, want 3000 in and 600 out", u)
	}
	want := (1000*1 + 500*2 + 2000*10 + 100*20) / 1e6
	if cost, priced := rec.cost(); !priced || math.Abs(cost-want) > 1e-12 {
		t.Errorf("cost %v (priced %v), want %v", cost, priced, want)
	}
}

// Calls made in parallel (a consensus's votes, a hedge's two calls)
// count once in the time spent upstream: the overhead is the time no
// call was under way, not the total time minus the calls' sum (which
// is more than the request lasted, and left no overhead at all).
func TestOverheadOfParallelCalls(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"]}]
	}`)
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	call := func(from, d int) attemptRecord {
		return attemptRecord{c: &c, called: at(from), upstream: time.Duration(d) * time.Millisecond}
	}
	for _, tc := range []struct {
		name     string
		calls    []attemptRecord
		upstream time.Duration
	}{
		{"one call", []attemptRecord{call(2, 500)}, 500 * time.Millisecond},
		// Three votes at once (1..501, 2..503, 1..41), then a judge
		// (600..700); a candidate turned away by a limit made no call.
		{"votes and a judge", []attemptRecord{call(2, 501), {c: &c, cause: causeQuota}, call(1, 500), call(1, 40), call(600, 100)}, 602 * time.Millisecond},
		{"one after another", []attemptRecord{call(1, 100), call(101, 100), call(300, 50)}, 250 * time.Millisecond},
	} {
		rec := &record{h: h, start: t0, read: t0, attempts: tc.calls}
		end := at(800)
		if got := rec.upstreamTime(); got != tc.upstream {
			t.Errorf("%s: upstream %v, want %v", tc.name, got, tc.upstream)
		}
		if got, want := rec.overhead(end), 800*time.Millisecond-tc.upstream; got != want {
			t.Errorf("%s: overhead %v, want %v", tc.name, got, want)
		}
	}
}

// The decision log has the cache writes as well as the cache reads
// that the cost includes.
func TestRecordCacheTokens(t *testing.T) {
	h := mustLoadHandler(t, `{
		"decision_log": {},
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"]}]
	}`)
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	for _, tc := range []struct {
		usage  Usage
		fields string
	}{
		{Usage{PromptTokens: 100, CompletionTokens: 5, CacheReadTokens: 30, CacheWriteTokens: 20}, "30 20"},
		{Usage{PromptTokens: 100, CompletionTokens: 5}, "<nil> <nil>"},
	} {
		rec := &record{h: h, start: time.Now(), status: 200,
			attempts: []attemptRecord{{c: &c, aw: &attemptWriter{usage: tc.usage}}}}
		enc := zapcore.NewMapObjectEncoder()
		if err := (recordFields{rec, time.Now()}).MarshalLogObject(enc); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(enc.Fields["cache_read_tokens"], " ", enc.Fields["cache_write_tokens"]); got != tc.fields {
			t.Errorf("usage %+v: cache_read_tokens cache_write_tokens %s, want %s", tc.usage, got, tc.fields)
		}
	}
}

// A consensus's votes run at once: the decision log's upstream_ms is
// the time a call was under way, within the request's duration, and
// the overhead is what is left, not 0 (the votes' sum was more than
// the request lasted).
func TestRecordOfParallelVotes(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	vote := func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		answer(200, okChat)(w, r)
	}
	a, b := newUpstream(t, vote), newUpstream(t, vote)
	h := mustLoadHandler(t, `{
		"decision_log": {},
		"providers": [
			{"name": "a", "api_key": "key-a", "proxy": `+gatewayProxy(a.addr())+`},
			{"name": "b", "api_key": "key-b", "proxy": `+gatewayProxy(b.addr())+`}
		],
		"models": [{"name": "m1", "providers": ["a"]}, {"name": "m2", "providers": ["b"]}],
		"routes": [{"name": "vote", "targets": [{"model": "m1"}, {"model": "m2"}], "strategy": {"name": "consensus"}}]
	}`)
	core, logs := observer.New(zapcore.InfoLevel)
	h.decisions = zap.New(core)
	go func() {
		// Both votes are under way before either answers.
		<-arrived
		<-arrived
		close(release)
	}()
	rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"vote","messages":[{"role":"user","content":"hi"}]}`)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	entries := logs.FilterMessage("decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision records", len(entries))
	}
	f := entries[0].ContextMap()
	duration, _ := f["duration_ms"].(float64)
	upstream, _ := f["upstream_ms"].(float64)
	overhead, _ := f["overhead_ms"].(float64)
	if fmt.Sprint(f["calls"]) != "2" || upstream <= 0 || upstream > duration || overhead <= 0 {
		t.Errorf("calls %v, duration %vms, upstream %vms, overhead %vms: want 2 calls whose time upstream is within the duration, and an overhead",
			f["calls"], duration, upstream, overhead)
	}
}
