package llmroute

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/strategies"
)

// benchBody returns a chat completions body whose user message is about
// size bytes long.
func benchBody(size int) []byte {
	msg := strings.Repeat("The quick brown fox jumps over the lazy dog. ", size/45+1)[:size]
	return fmt.Appendf(nil, `{"model":"small","stream":true,"max_tokens":256,"temperature":0.7,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":%q}]}`, msg)
}

func BenchmarkParseRequest(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 64 << 10} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseRequest(body, "model", defaultMaxDepth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckJSON is the validation parseRequest starts with: one
// pass over the body, for its syntax and its nesting.
func BenchmarkCheckJSON(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 64 << 10} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if jsonscan.Check(body, defaultMaxDepth) != jsonscan.Valid {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// BenchmarkRewriteBody: "model" sets the model (an attempt's usual
// rewrite, which copies nothing), "usage" also adds
// stream_options.include_usage (as for an OpenAI stream: a new member,
// which copies nothing either), "param" changes an existing parameter
// (with sjson, on a copy).
func BenchmarkRewriteBody(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 64 << 10} {
		body := benchBody(size)
		for _, arm := range []struct {
			name   string
			params map[string]json.RawMessage
		}{
			{"model", nil},
			{"usage", includeUsage}, // a new member, as for an OpenAI stream
			{"param", map[string]json.RawMessage{"temperature": json.RawMessage("0.2")}},
		} {
			b.Run(fmt.Sprintf("%s/%dB", arm.name, size), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rewriteBody(body, "model", "mock-small", false, arm.params); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEventStream measures the pass-through of a streamed answer:
// per event, the attempt writer checks the JSON and looks for usage and
// the terminator.
func BenchmarkEventStream(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	aw := newAttemptWriter(context.Background(), discardWriter{http.Header{}})
	aw.header.Set("Content-Type", "text/event-stream")
	aw.WriteHeader(http.StatusOK)
	for b.Loop() {
		if _, err := aw.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventStreamSplice is the same chunk on the path of a text
// stream whose client did not ask for usage (an OpenAI chat completion
// stream's usual case): the attempt writer, which holds back the usage
// chunk the gateway asks for, then the splice that follows what the
// client was sent (rescue.go).
func BenchmarkEventStreamSplice(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	req := &strategies.Request{Endpoint: "/chat/completions", Stream: true, Body: benchBody(1 << 10)}
	aw := newAttemptWriter(context.Background(), newSplice(discardWriter{http.Header{}}, req, true))
	aw.dropUsage = true
	aw.header.Set("Content-Type", "text/event-stream")
	aw.WriteHeader(http.StatusOK)
	for b.Loop() {
		if _, err := aw.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (d discardWriter) WriteHeader(int)             {}

// BenchmarkAdmission is the cost of the limits on one attempt: reserving
// on a model with one limit (rpm) and settling, in memory.
func BenchmarkAdmission(b *testing.B) {
	h := mustLoadHandler(b, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "rpm": 1000000000000}]
	}`)
	req := &strategies.Request{Model: "m", Endpoint: "/chat/completions", MaxTokens: 256, PromptTokens: 100}
	p := &plan{route: "m"}
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	b.ReportAllocs()
	for b.Loop() {
		res, d := h.admit(context.Background(), req, p, &c, time.Now())
		if d != nil || res == nil {
			b.Fatal("not admitted")
		}
		h.settle(res, &c, outcomeDone, nil)
	}
}

// benchArm is a handler an in-process benchmark runs requests through.
type benchArm struct {
	name string
	h    caddyhttp.MiddlewareHandler
}

// benchArms are the two arms of BenchmarkServe and BenchmarkServeStream
// in front of the upstream at addr: a bare reverse_proxy ("proxy"), and
// llm_route with one model ("llm_route").
func benchArms(b *testing.B, addr string) []benchArm {
	var proxy reverseproxy.Handler
	if err := json.Unmarshal([]byte(gatewayProxy(addr)), &proxy); err != nil {
		b.Fatal(err)
	}
	if err := proxy.Provision(newContext(b)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = proxy.Cleanup() })
	gw := mustLoadHandler(b, `{
		"providers": [{"name": "a", "proxy": `+gatewayProxy(addr)+`}],
		"models": [{"name": "small", "providers": ["a"], "input_price": 0.15, "output_price": 0.6}]
	}`)
	return []benchArm{{"proxy", &proxy}, {"llm_route", gw}}
}

// BenchmarkServe is one non-stream chat completion through a handler,
// in process, to a loopback upstream: "proxy" is a bare reverse_proxy,
// "llm_route" the gateway with one model in front of the same upstream.
// The difference between the two is what llm_route adds to a request.
func BenchmarkServe(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okChat)
	}))
	b.Cleanup(up.Close)
	addr := strings.TrimPrefix(up.URL, "http://")

	handlers := benchArms(b, addr)
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		body := benchBody(size)
		body = bytes.Replace(body, []byte(`"stream":true`), []byte(`"stream":false`), 1)
		for _, arm := range handlers {
			b.Run(fmt.Sprintf("%s/%dKB", arm.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					r := httptest.NewRequest(http.MethodPost, "http://gateway.example/v1/chat/completions", bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
					if err := arm.h.ServeHTTP(rec, r, nil); err != nil || rec.Code != http.StatusOK {
						b.Fatalf("status %d, error %v", rec.Code, err)
					}
				}
			})
		}
	}
}

// streamChunks is an OpenAI chat completion stream as the benchmark's
// upstream sends it: the first chunk (the role), then eight more (text,
// the finish, the usage chunk the gateway asks for) and the terminator.
var streamChunks = func() (first, rest []byte) {
	chunk := func(delta, finish, usage string) string {
		return `data: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"mock-small","choices":[{"index":0,"delta":` +
			delta + `,"finish_reason":` + finish + `}]` + usage + "}\n\n"
	}
	first = []byte(chunk(`{"role":"assistant","content":""}`, "null", ""))
	var b strings.Builder
	for _, w := range []string{"The ", "quick ", "brown ", "fox ", "jumps ", "over."} {
		b.WriteString(chunk(`{"content":"`+w+`"}`, "null", ""))
	}
	b.WriteString(chunk(`{}`, `"stop"`, ""))
	b.WriteString(`data: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"mock-small","choices":[],"usage":{"prompt_tokens":300,"completion_tokens":7,"total_tokens":307}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return first, []byte(b.String())
}

// firstByteWriter is the client's side of a streamed answer in
// BenchmarkServeStream: it notes when the first body byte was flushed
// to it, and tells the upstream (seen), which sends the rest of the
// stream only then. Reused across requests, it allocates nothing. The
// upstream notes when it got the request and when it flushed the
// stream's first chunk (called, sent: nanoseconds since base, atomic
// since the upstream's goroutine writes them).
type firstByteWriter struct {
	h      http.Header
	status int
	n      int       // body bytes written
	first  time.Time // the first body byte was flushed
	seen   chan struct{}

	base         time.Time
	called, sent atomic.Int64
}

// since returns the time from the request's start to a stamp of the
// upstream's.
func (f *firstByteWriter) since(start time.Time, stamp *atomic.Int64) time.Duration {
	return f.base.Add(time.Duration(stamp.Load())).Sub(start)
}

func (f *firstByteWriter) Header() http.Header { return f.h }
func (f *firstByteWriter) WriteHeader(status int) {
	if f.status == 0 {
		f.status = status
	}
}

func (f *firstByteWriter) Write(p []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	f.n += len(p)
	return len(p), nil
}

func (f *firstByteWriter) Flush() {
	if f.n > 0 && f.first.IsZero() {
		f.first = time.Now()
		select {
		case f.seen <- struct{}{}:
		default:
		}
	}
}

func (f *firstByteWriter) reset() {
	clear(f.h)
	f.status, f.n, f.first = 0, 0, time.Time{}
	f.called.Store(0)
	f.sent.Store(0)
	select {
	case <-f.seen:
	default:
	}
}

// BenchmarkServeStream is one streamed chat completion (1 KB body)
// through a handler, in process, to a loopback upstream that sends the
// stream's first chunk, flushes, and sends the rest (eight chunks and
// [DONE]) once the client has that first chunk. ns/first-byte is the
// median time from the call of ServeHTTP to the first body byte flushed
// to the client: "proxy" a bare reverse_proxy, "llm_route" the gateway
// with one model in front of the same upstream. It splits in two legs:
// ns/to-upstream, until the upstream's handler has the request, and
// ns/relay, from the upstream's flush of the first chunk to the
// client's (medians each). ns/op and the allocations are the whole
// stream's.
func BenchmarkServeStream(b *testing.B) {
	first, rest := streamChunks()
	cw := &firstByteWriter{h: make(http.Header), seen: make(chan struct{}, 1), base: time.Now()}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw.called.Store(int64(time.Since(cw.base)))
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(first)
		w.(http.Flusher).Flush()
		cw.sent.Store(int64(time.Since(cw.base)))
		select {
		case <-cw.seen:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(rest)
	}))
	b.Cleanup(up.Close)
	addr := strings.TrimPrefix(up.URL, "http://")

	body := benchBody(1 << 10)
	for _, arm := range benchArms(b, addr) {
		b.Run(arm.name+"/1KB", func(b *testing.B) {
			const keep = 1 << 16
			samples := make([]time.Duration, 0, keep)
			toUp := make([]time.Duration, 0, keep)
			relay := make([]time.Duration, 0, keep)
			b.ReportAllocs()
			for b.Loop() {
				cw.reset()
				r := httptest.NewRequest(http.MethodPost, "http://gateway.example/v1/chat/completions", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), cw, &caddyhttp.Server{})
				start := time.Now()
				if err := arm.h.ServeHTTP(cw, r, nil); err != nil || cw.status != http.StatusOK || cw.first.IsZero() {
					b.Fatalf("status %d, error %v, first byte flushed: %v", cw.status, err, !cw.first.IsZero())
				}
				if len(samples) < keep {
					samples = append(samples, cw.first.Sub(start))
					toUp = append(toUp, cw.since(start, &cw.called))
					relay = append(relay, cw.first.Sub(start)-cw.since(start, &cw.sent))
				}
			}
			for _, m := range []struct {
				s    []time.Duration
				unit string
			}{{samples, "ns/first-byte"}, {toUp, "ns/to-upstream"}, {relay, "ns/relay"}} {
				slices.Sort(m.s)
				b.ReportMetric(float64(m.s[len(m.s)/2]), m.unit)
			}
		})
	}
}

// BenchmarkObserve is the metrics of one finished request: one model,
// one attempt that answered with usage.
func BenchmarkObserve(b *testing.B) {
	h := mustLoadHandler(b, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "small", "providers": ["a"], "input_price": 0.15, "output_price": 0.6}]
	}`)
	req := &strategies.Request{Model: "small", Endpoint: "/chat/completions"}
	p, rerr := h.resolve(httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil), req, nil)
	if rerr != nil {
		b.Fatal(rerr.msg)
	}
	aw := newAttemptWriter(context.Background(), discardWriter{http.Header{}})
	aw.usage = Usage{PromptTokens: 300, CompletionTokens: 7}
	now := time.Now()
	rec := &record{h: h, status: http.StatusOK, start: now, read: now, decided: now}
	rec.decide(req, p)
	rec.attempt(p, &p.candidates[0], &attemptResult{outcome: outcomeDone, aw: aw, called: now, firstByte: now.Add(time.Millisecond), upstream: 2 * time.Millisecond})
	b.ReportAllocs()
	for b.Loop() {
		observe(rec, now.Add(3*time.Millisecond))
	}
}

// BenchmarkRateHeaders is the x-ratelimit-* headers of an answer whose
// model has an rpm and a tpm limit.
func BenchmarkRateHeaders(b *testing.B) {
	h := mustLoadHandler(b, `{
		"providers": [{"name": "a", "proxy": `+proxyTo("127.0.0.1:1")+`}],
		"models": [{"name": "m", "providers": ["a"], "rpm": 1000000000000, "tpm": 1000000000000}]
	}`)
	req := &strategies.Request{Model: "m", Endpoint: "/chat/completions", MaxTokens: 256, PromptTokens: 100}
	p := &plan{route: "m"}
	c := newCandidate(h.models["m"], h.models["m"].serving[0], nil)
	res, d := h.admit(context.Background(), req, p, &c, time.Now())
	if d != nil || res == nil {
		b.Fatal("not admitted")
	}
	hdr := make(http.Header)
	b.ReportAllocs()
	for b.Loop() {
		clear(hdr)
		setRateHeaders(hdr, res)
	}
	if len(hdr) != 4 {
		b.Fatalf("headers %v", hdr)
	}
}
