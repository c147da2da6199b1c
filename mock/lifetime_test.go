package mock

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// watchedServer serves h over a real connection and tells when a
// request enters the handler and when the handler has returned.
type watchedServer struct {
	*httptest.Server
	entered chan struct{} // one value per request that entered
	ended   chan struct{} // one value per request whose handler returned
}

func startWatched(t *testing.T, h *Handler) *watchedServer {
	t.Helper()
	s := &watchedServer{entered: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.entered <- struct{}{}
		defer func() { s.ended <- struct{}{} }()
		_ = h.ServeHTTP(w, withReplacer(r), nil)
	}))
	t.Cleanup(func() {
		if t.Failed() {
			// Close would wait for a handler that never ends
			s.CloseClientConnections()
			s.Listener.Close()
			return
		}
		s.Close()
	})
	return s
}

// post sends a request for path with a JSON body through s, and reads
// the whole answer; the result comes on the returned channel.
func (s *watchedServer) post(ctx context.Context, path string, stream bool, headers ...string) <-chan error {
	fr := faultRequest(path, stream, headers...)
	req, _ := http.NewRequestWithContext(ctx, fr.Method, s.URL+path, fr.Body)
	req.Header = fr.Header
	errc := make(chan error, 1)
	go func() {
		resp, err := s.Client().Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		errc <- err
	}()
	return errc
}

// waitFor waits for an event that must come, or fails the test after a
// long while (a handler that never ends).
func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still waiting after 30s", what)
	}
}

// Every wait of the mock ends when the client goes away: Go's server
// notices that only once the request body was read, so a fault that
// waited before reading it (no_answer, latency) held its handler, and
// a graceful shutdown of the server, for good.
func TestWaitsEndWhenTheClientLeaves(t *testing.T) {
	hour := caddy.Duration(time.Hour)
	for _, tc := range []struct {
		name   string
		h      Handler
		path   string
		stream bool
		fault  string
	}{
		{name: "no_answer", path: "/v1/chat/completions", fault: "no_answer"},
		{name: "no_answer messages stream", path: "/v1/messages", stream: true, fault: "no_answer"},
		{name: "latency", h: Handler{Latency: hour}, path: "/v1/chat/completions"},
		{name: "ttft", h: Handler{TTFT: hour}, path: "/v1/chat/completions"},
		{name: "ttft stream", h: Handler{TTFT: hour}, path: "/v1/chat/completions", stream: true},
		{name: "pacing", h: Handler{TokensPerSecond: 0.0001}, path: "/v1/responses"},
		{name: "pacing stream", h: Handler{TokensPerSecond: 0.0001}, path: "/v1/messages", stream: true},
		{name: "slow_first_token", path: "/v1/completions", fault: "slow_first_token,delay=1h"},
		{name: "slow_first_token stream", path: "/v1/chat/completions", stream: true, fault: "slow_first_token,delay=1h"},
		{name: "stall", path: "/v1/chat/completions", fault: "stall"},
		{name: "stall stream", path: "/v1/messages", stream: true, fault: "stall,after=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &tc.h)
			s := startWatched(t, h)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var headers []string
			if tc.fault != "" {
				headers = []string{"X-Mock-Fault", tc.fault}
			}
			errc := s.post(ctx, tc.path, tc.stream, headers...)
			waitFor(t, s.entered, "request to reach the mock")
			cancel()
			waitFor(t, s.ended, "handler to end after the client left")
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("client got %v, want its own cancellation", err)
			}
		})
	}
}

// A request the mock holds ends when its server shuts down (Cleanup
// stands for the server's shutdown hook here), and the client, still
// there, sees a broken connection rather than a complete answer.
func TestWaitsEndOnShutdown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      Handler
		stream bool
		fault  string
	}{
		{name: "no_answer", fault: "no_answer"},
		{name: "latency", h: Handler{Latency: caddy.Duration(time.Hour)}},
		{name: "stall stream", stream: true, fault: "stall"},
		{name: "stall", fault: "stall"},
		{name: "slow_first_token stream", stream: true, fault: "slow_first_token,delay=1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provision(t, &tc.h)
			s := startWatched(t, h)
			var headers []string
			if tc.fault != "" {
				headers = []string{"X-Mock-Fault", tc.fault}
			}
			errc := s.post(context.Background(), "/v1/chat/completions", tc.stream, headers...)
			waitFor(t, s.entered, "request to reach the mock")
			if err := h.Cleanup(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, s.ended, "handler to end on shutdown")
			err := <-errc
			if err == nil || errors.Is(err, context.Canceled) {
				t.Errorf("client got %v, want a broken connection", err)
			}
		})
	}

	t.Run("answers after the shutdown began", func(t *testing.T) {
		// a request that does not wait is answered as usual
		h := provision(t, &Handler{})
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if w := serve(t, h, faultRequest("/v1/chat/completions", false)); w.Code != http.StatusOK {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
}

// A body larger than the mock reads gets a 413 at once.
func TestBodyTooLarge(t *testing.T) {
	h := provision(t, &Handler{Faults: []string{"no_answer"}})
	big := strings.NewReader(`{"messages":"` + strings.Repeat("x", maxBodySize) + `"}`)
	r := newRequest("POST", "/v1/chat/completions", "")
	r.Body = io.NopCloser(big)
	w := serve(t, h, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413: %s", w.Code, w.Body)
	}
}
