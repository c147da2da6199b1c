package llmroute

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// panicTransport is a reverse_proxy transport whose every round trip
// panics: a bug in some module on the path of one call. With hold, it
// first waits for the channel of that name (holds) to close, or for its
// request to end.
type panicTransport struct {
	Hold string `json:"hold,omitempty"`
}

const transportPanic = "a bug in a transport"

// holds are the channels a panicTransport may wait for.
var holds sync.Map

func (panicTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.reverse_proxy.transport.llmroute_test_panic", New: func() caddy.Module { return new(panicTransport) }}
}

func (p panicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if ch, ok := holds.Load(p.Hold); ok {
		select {
		case <-ch.(chan struct{}):
		case <-r.Context().Done():
		}
	}
	panic(transportPanic)
}

func init() { caddy.RegisterModule(panicTransport{}) }

// panickyProxy is a provider's reverse_proxy through a panicTransport.
func panickyProxy(hold string) string {
	return `{"handler": "reverse_proxy", "transport": {"protocol": "llmroute_test_panic", "hold": "` + hold + `"}, "upstreams": [{"dial": "127.0.0.1:1"}]}`
}

// holding is an upstream that takes a request and keeps it until the
// request ends: arrived is closed when the request came, ended when it
// was cancelled.
func holding(t *testing.T) (u *upstream, arrived, ended chan struct{}) {
	arrived, ended = make(chan struct{}), make(chan struct{})
	u = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(ended)
	})
	return u, arrived, ended
}

// servePanic runs one request through h as Caddy's server would, on a
// goroutine whose recover stands for net/http's, and returns what the
// request panicked with (nil: none). A request that does not end fails
// the test.
func servePanic(t *testing.T, h *Handler, body string) any {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "http://gateway.example/v1/chat/completions", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, &caddyhttp.Server{})
		_ = h.ServeHTTP(rec, r, noNext)
	}()
	select {
	case v := <-done:
		return v
	case <-time.After(time.Minute):
		t.Fatal("the request did not end: a call it started was left running")
		return nil
	}
}

// waitClosed waits for ch to be closed, or fails the test.
func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("waited in vain for %s", what)
	}
}

// requestGoroutines returns the stacks of goroutines still running in a
// method of the Handler (a call a request started), but for the
// request's own goroutine (servePanic's, which may still be unwinding).
func requestGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("llmroute.(*Handler).")) && !bytes.Contains(g, []byte("llmroute.servePanic")) {
			left = append(left, string(g))
		}
	}
	return left
}

// TestPanicInRequestGoroutine: a panic on a goroutine that a request
// started (a hedge's two calls, a consensus's votes) reaches the
// request's own goroutine, where net/http (and Caddy) recovers it, once
// the request's other calls were cancelled and returned; it does not end
// the process.
func TestPanicInRequestGoroutine(t *testing.T) {
	hedged := func(t *testing.T, primary, hedge, delay string) *Handler {
		return mustLoadHandler(t, `{
			"first_byte_timeout": "10m",
			"providers": [
				{"name": "p1", "api_key": "k1", "proxy": `+primary+`},
				{"name": "p2", "api_key": "k2", "proxy": `+hedge+`}
			],
			"models": [{"name": "m", "providers": ["p1", "p2"]}],
			"routes": [{"name": "hedged", "targets": [{"model": "m", "provider": "p1"}, {"model": "m", "provider": "p2"}],
				"strategy": {"name": "fallback"}, "hedge": {"delay": "`+delay+`", "budget": 1}}]
		}`)
	}
	const body = `{"model":"hedged","messages":[{"role":"user","content":"hi"}]}`
	check := func(t *testing.T, got any) {
		t.Helper()
		if got != transportPanic {
			t.Fatalf("the request panicked with %v, want %q", got, transportPanic)
		}
		if left := requestGoroutines(); len(left) > 0 {
			t.Errorf("calls left running after the panic was raised:\n%s", strings.Join(left, "\n\n"))
		}
	}

	t.Run("hedge: the primary panics before the delay", func(t *testing.T) {
		b := newUpstream(t, answer(200, okChat))
		// (a delay the primary's panic always beats)
		h := hedged(t, panickyProxy(""), gatewayProxy(b.addr()), "10m")
		check(t, servePanic(t, h, body))
		if b.requests() != 0 {
			t.Errorf("the hedge called after the primary panicked")
		}
	})

	t.Run("hedge: the primary panics while the hedge runs", func(t *testing.T) {
		b, arrived, ended := holding(t)
		holds.Store("hedge arrived", arrived)
		t.Cleanup(func() { holds.Delete("hedge arrived") })
		h := hedged(t, panickyProxy("hedge arrived"), gatewayProxy(b.addr()), "20ms")
		check(t, servePanic(t, h, body))
		waitClosed(t, ended, "the hedge's upstream request to be cancelled")
	})

	t.Run("hedge: the hedge panics while the primary runs", func(t *testing.T) {
		a, arrived, ended := holding(t)
		h := hedged(t, gatewayProxy(a.addr()), panickyProxy(""), "20ms")
		check(t, servePanic(t, h, body))
		waitClosed(t, arrived, "the primary's upstream request")
		waitClosed(t, ended, "the primary's upstream request to be cancelled")
	})

	t.Run("consensus: a voter panics while another votes", func(t *testing.T) {
		b, arrived, ended := holding(t)
		holds.Store("voter arrived", arrived)
		t.Cleanup(func() { holds.Delete("voter arrived") })
		h := mustLoadHandler(t, `{
			"first_byte_timeout": "10m",
			"providers": [
				{"name": "bad", "api_key": "k1", "proxy": `+panickyProxy("voter arrived")+`},
				{"name": "b", "api_key": "k2", "proxy": `+gatewayProxy(b.addr())+`}
			],
			"models": [{"name": "buggy", "providers": ["bad"]}, {"name": "good", "providers": ["b"]}],
			"routes": [{"name": "vote", "targets": [{"model": "buggy"}, {"model": "good"}], "strategy": {"name": "consensus"}}]
		}`)
		check(t, servePanic(t, h, `{"model":"vote","messages":[{"role":"user","content":"hi"}]}`))
		waitClosed(t, ended, "the other voter's upstream request to be cancelled")
	})
}

// A stream the hedge answered that broke for good (no candidate left to
// continue it) aborts the response from the request's goroutine, as
// serve does: the abort panic of the hedge's loop keeps its meaning.
func TestHedgeStreamAbortReachesRequest(t *testing.T) {
	a, _, _ := holding(t)
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		// and the stream ends without its last event
	})
	h := mustLoadHandler(t, `{
		"first_byte_timeout": "10m",
		"providers": [
			{"name": "p1", "api_key": "k1", "proxy": `+gatewayProxy(a.addr())+`},
			{"name": "p2", "api_key": "k2", "proxy": `+gatewayProxy(b.addr())+`}
		],
		"models": [{"name": "m", "providers": ["p1", "p2"]}],
		"routes": [{"name": "hedged", "targets": [{"model": "m", "provider": "p1"}, {"model": "m", "provider": "p2"}],
			"strategy": {"name": "fallback"}, "hedge": {"delay": "20ms", "budget": 1}}]
	}`)
	rec, _, _, aborted := serveGateway(t, h, "POST", "/v1/chat/completions", `{"model":"hedged","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if !aborted {
		t.Fatalf("not aborted: status %d, %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get(HeaderHedged); got != "hedge" || !strings.Contains(rec.Body.String(), "Hel") || !strings.Contains(rec.Body.String(), "error") {
		t.Errorf("X-LLM-Hedged %q, body %q: want the hedge's start and an error event", got, rec.Body)
	}
	if left := requestGoroutines(); len(left) > 0 {
		t.Errorf("calls left running:\n%s", strings.Join(left, "\n\n"))
	}
}
