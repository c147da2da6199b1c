package mock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// How long a request may live. Every wait of the mock (latency, ttft,
// pacing, slow_first_token, stall, no_answer) ends when the client goes
// away or when the server that runs the mock shuts down, so that a
// fault never keeps Caddy from stopping or reloading.

// errShutdown is the cause of a request context cancelled because the
// server shuts down.
var errShutdown = errors.New("llm_mock: server shutting down")

// watchShutdown makes h.stopping end when the Caddy server that serves
// h begins to shut down (a stop or a reload), or when h is cleaned up.
// Go's server does not cancel the requests it waits for in a graceful
// shutdown: a request held by a fault would hold the shutdown for good.
func (h *Handler) watchShutdown(ctx caddy.Context) {
	h.stopping, h.stop = context.WithCancel(context.Background())
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil {
		srv.RegisterOnShutdown(h.stop)
	}
}

// Cleanup ends the waits of requests still held by the mock.
func (h *Handler) Cleanup() error {
	if h.stop != nil {
		h.stop()
	}
	return nil
}

// requestContext returns the context the mock's waits for r use: the
// request's, cancelled with errShutdown when the server shuts down.
// Call the returned function when the request is served.
func (h *Handler) requestContext(r *http.Request) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	if h.stopping == nil {
		return ctx, func() { cancel(nil) }
	}
	stop := context.AfterFunc(h.stopping, func() { cancel(errShutdown) })
	return ctx, func() { stop(); cancel(nil) }
}

// errBodyTooLarge refuses a request body larger than maxBodySize.
var errBodyTooLarge = fmt.Errorf("request body larger than %d bytes", maxBodySize)

// readBody reads the request body, up to maxBodySize. It must come
// before any wait: Go's server notices that a client went away (and
// cancels the request's context) only once the body was read to its
// end. A larger body is refused unread, with errBodyTooLarge.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if len(body) > maxBodySize {
		return nil, errBodyTooLarge
	}
	return body, err
}

// sleep waits for d, or until ctx is done. It reports whether the
// request goes on: a wait of zero is no wait, so a request that does
// not wait is answered even once the server's shutdown began (whether
// its context was cancelled by then or not, which depends on when the
// cancelling goroutine ran); only a client that left stops it.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil || errors.Is(context.Cause(ctx), errShutdown)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		ended(ctx)
		return false
	}
}

// hold waits until ctx is done: a request that never gets (the rest
// of) its answer.
func hold(ctx context.Context) {
	<-ctx.Done()
	ended(ctx)
}

// ended is called when a wait was cut short. On the server's shutdown
// it aborts the connection: a client still there sees a broken answer,
// never a complete but empty or shortened one.
func ended(ctx context.Context) {
	if errors.Is(context.Cause(ctx), errShutdown) {
		panic(http.ErrAbortHandler)
	}
}
