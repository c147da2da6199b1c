// Package mock provides the llm_mock HTTP handler, which imitates
// LLM provider APIs (OpenAI chat completions, completions, embeddings
// and responses; Anthropic messages and count_tokens) and misbehaves on
// request, so that a gateway can be tested against slow, failing and
// broken upstreams.
//
// A chat completions or messages request that offers tools is answered
// with one call of the tool its tool_choice forces, else of the first
// function (OpenAI) or client (Anthropic) tool, with an argument for
// each required property of the tool's schema (every property if none
// is required): "mock" for strings, 1 for numbers, true for booleans,
// [] for arrays and {} for objects, or the property's const or first
// enum value. Requests whose tool_choice is none, or whose conversation
// ends with a tool result, get the usual text. The arguments are sent
// in pieces of up to 4 bytes, at least 2, which count as the output
// tokens (a tool call ignores max tokens parameters) and, in streams,
// as the content chunks the faults below count.
//
// Faults are written as kind[,key=value...] and can be configured on
// the handler or sent per request in a header (X-Mock-Fault by default),
// where several specs are separated by ";" and each may be prefixed by
// "name:" to target only the mock with that name:
//
//	X-Mock-Fault: alpha:status,code=429,retry_after=1; beta:slow_first_token,delay=2s
//
// The fault kinds are:
//
//   - status (code, retry_after, retry_after_ms, retry_after_date, error):
//     reply with an error status; code defaults to 503. error=context_length
//     or error=content_filter makes the body the error a provider sends
//     for a prompt longer than the context window, or one its content
//     policy refused (OpenAI's codes context_length_exceeded and
//     content_filter; Anthropic's "prompt is too long").
//   - reset: abort the connection before responding.
//   - no_answer: never respond; wait until the client gives up.
//   - slow_first_token (delay, default 5s): hold back the first token.
//   - cut (after, default 2): abort the connection after some content chunks.
//   - cut_mid (after, default 2): abort the connection in the middle of
//     the next content chunk, after some: inside its first character of
//     several bytes in UTF-8, else in the middle of its data line.
//   - stall (after, default 2): stop sending after some content chunks.
//   - malformed (after, default 2): send an invalid event after some content chunks.
//   - no_done: leave out the stream terminator.
//   - list_status (code, after, default 0): the models endpoint alone
//     answers with an error status once it has answered `after` times.
//   - error_event (after, default 2): end the stream with an error event
//     (an overloaded error) after some content chunks; after=0 makes the
//     error the stream's very first event.
//
// A chat completions or messages request whose conversation ends with
// an assistant turn (a prefill) is answered, by default, with the rest
// of the text when the prefill is its beginning (see Prefill).
//
// Every kind also accepts count=N, which limits a configured fault to the
// first N requests the mock serves; header faults ignore it.
//
// Every wait (latency, ttft, pacing, slow_first_token, stall, no_answer)
// ends when the client goes away or the server shuts down; in the latter
// case the connection is aborted.
package mock

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_mock", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("llm_mock", httpcaddyfile.Before, "respond")
}

const (
	// DefaultText is the reply text used when none is configured.
	DefaultText = "This is a mock response from llm_mock."

	// DefaultFaultHeader is the request header read for per-request
	// faults when none is configured.
	DefaultFaultHeader = "X-Mock-Fault"

	// maxBodySize limits how much of a request body is read.
	maxBodySize = 16 << 20
)

// Handler is an HTTP handler that imitates LLM provider APIs and can
// inject faults. It answers every request itself and never calls the
// next handler.
type Handler struct {
	// Identifies this mock. It is sent back in the X-Mock-Name response
	// header and lets header faults target this mock.
	Name string `json:"name,omitempty"`

	// The model name reported in responses. By default the request's
	// model field is echoed.
	Model string `json:"model,omitempty"`

	// How long to wait before sending response headers, for every request.
	Latency caddy.Duration `json:"latency,omitempty"`

	// Time to first token. For streams it is the wait between sending the
	// response headers and the first event; for other inference
	// responses it is added to the wait before the response headers.
	TTFT caddy.Duration `json:"ttft,omitempty"`

	// Output pace in tokens per second. Streams wait 1/tokens_per_second
	// between content chunks; other responses wait the time all tokens
	// take before the response headers. 0 means no pacing.
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`

	// The reply text. Each whitespace-separated word is one token and one
	// content chunk of a stream. Default: "This is a mock response from
	// llm_mock."
	Text string `json:"text,omitempty"`

	// If set, requests must carry this key in every credential header
	// they have (Authorization: Bearer, x-api-key, api-key), and in at
	// least one, or they get a 401. Placeholders are replaced at request
	// time.
	APIKey string `json:"api_key,omitempty"`

	// The request header that carries per-request faults.
	// Default: X-Mock-Fault.
	FaultHeader string `json:"fault_header,omitempty"`

	// How many prompt tokens answers report as read from the prompt
	// cache: prompt_tokens_details.cached_tokens in chat completions,
	// cache_read_input_tokens in messages (whose input_tokens leaves
	// them out). The reported prompt grows to hold them if needed.
	// Other APIs report no cache use.
	CachedTokens int `json:"cached_tokens,omitempty"`

	// How many prompt tokens messages answers report as written to the
	// prompt cache, in cache_creation_input_tokens (left out of
	// input_tokens). Chat completions have no such field and ignore it.
	CacheWriteTokens int `json:"cache_write_tokens,omitempty"`

	// A slow tail: this share of inference requests (0..1, spread
	// evenly) waits TTFTTailFactor times the ttft for its first token.
	TTFTTail float64 `json:"ttft_tail,omitempty"`

	// How many times slower the tail's first token is. Default: 10.
	TTFTTailFactor float64 `json:"ttft_tail_factor,omitempty"`

	// Answers scripted by what the request says: the first whose match
	// the request's text contains replaces Text (and may be a refusal).
	Replies []Reply `json:"replies,omitempty"`

	// Faults applied to every request, as specs like
	// "status,code=503,count=2". A fault with count=N applies only to
	// the first N inference requests this mock serves; requests to the
	// models endpoint (health checks) are not counted and never get
	// such faults.
	Faults []string `json:"faults,omitempty"`

	// What to do with a chat or messages request whose conversation ends
	// with an assistant turn (a prefill): `continue` (default) answers
	// with the rest of the text when the prefill is its beginning,
	// `ignore` answers with the whole text (a model that restarts), and
	// `refuse` answers 400 (a model without prefill support).
	Prefill string `json:"prefill,omitempty"`

	// The model ids the models endpoint lists (GET .../models), in
	// OpenAI's shape, or Anthropic's (paged by limit and after_id) for a
	// request with anthropic-version. Default: the model, or "mock".
	Models []string `json:"models,omitempty"`

	faults    []fault
	requests  *atomic.Int64 // inference requests served, for fault counts
	tailCount *atomic.Int64 // inference requests, for the slow tail
	lists     *atomic.Int64 // requests to the models endpoint, for list_status
	logger    *zap.Logger
	stopping  context.Context    // done when the server shuts down
	stop      context.CancelFunc // ends stopping
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_mock",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets up the handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.requests = new(atomic.Int64)
	h.tailCount = new(atomic.Int64)
	h.lists = new(atomic.Int64)
	h.watchShutdown(ctx)
	if h.Text == "" {
		h.Text = DefaultText
	}
	for _, rp := range h.Replies {
		if rp.Match == "" {
			return fmt.Errorf("a scripted reply needs a match")
		}
	}
	if h.FaultHeader == "" {
		h.FaultHeader = DefaultFaultHeader
	}
	h.faults = nil
	for _, spec := range h.Faults {
		f, err := parseConfigFault(spec)
		if err != nil {
			return fmt.Errorf("invalid fault %q: %v", spec, err)
		}
		h.faults = append(h.faults, f)
	}
	return nil
}

// Validate ensures the handler's configuration is valid.
func (h *Handler) Validate() error {
	if h.Latency < 0 {
		return fmt.Errorf("latency must not be negative")
	}
	if h.TTFT < 0 {
		return fmt.Errorf("ttft must not be negative")
	}
	if h.TokensPerSecond < 0 || math.IsNaN(h.TokensPerSecond) || math.IsInf(h.TokensPerSecond, 0) {
		return fmt.Errorf("tokens_per_second must be a finite number, at least 0")
	}
	if !(h.TTFTTail >= 0 && h.TTFTTail <= 1) {
		return fmt.Errorf("ttft_tail must be from 0 to 1")
	}
	if h.TTFTTailFactor < 0 || math.IsNaN(h.TTFTTailFactor) || math.IsInf(h.TTFTTailFactor, 0) {
		return fmt.Errorf("ttft_tail_factor must be a finite number, at least 0")
	}
	if h.CachedTokens < 0 {
		return fmt.Errorf("cached_tokens must not be negative")
	}
	if h.CacheWriteTokens < 0 {
		return fmt.Errorf("cache_write_tokens must not be negative")
	}
	switch h.Prefill {
	case "", PrefillContinue, PrefillIgnore, PrefillRefuse:
	default:
		return fmt.Errorf("prefill must be continue, ignore or refuse, not %q", h.Prefill)
	}
	return nil
}

// ServeHTTP answers the request like an LLM provider would, subject to
// the active faults.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	ctx, done := h.requestContext(r)
	defer done()
	r = r.WithContext(ctx)
	if h.Name != "" {
		w.Header().Set("X-Mock-Name", h.Name)
	}

	ep := endpointFor(r)
	body, err := readBody(r)
	switch {
	case errors.Is(err, errBodyTooLarge):
		return writeError(w, ep, http.StatusRequestEntityTooLarge, err.Error())
	case err != nil:
		return writeError(w, ep, http.StatusBadRequest, "reading request body: "+err.Error())
	}
	faults, faultErr := h.activeFaults(r, ep)
	plan := newFaultPlan(faults)
	if len(faults) > 0 && h.logger != nil {
		specs := make([]string, len(faults))
		for i, f := range faults {
			specs[i] = f.spec
		}
		h.logger.Debug("injecting faults", zap.String("mock", h.Name), zap.Strings("faults", specs))
	}

	if ep != endpointModels && ep != endpointUnknown {
		count(&served, h.Name)
		defer func() {
			if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errShutdown) {
				count(&cancels, h.Name) // (the client left; not the server's shutdown)
			}
		}()
	}
	ttft := time.Duration(h.TTFT)
	if h.TTFTTail > 0 && ep != endpointModels && h.tailCount != nil && slowTail(h.tailCount.Add(1), h.TTFTTail) {
		factor := h.TTFTTailFactor
		if factor == 0 {
			factor = 10
		}
		ttft = time.Duration(float64(ttft) * factor)
	}
	if !sleep(ctx, time.Duration(h.Latency)) {
		return nil
	}
	if ep == endpointUnknown {
		return writeError(w, ep, http.StatusNotFound, fmt.Sprintf("unknown endpoint: %s %s", r.Method, r.URL.Path))
	}
	if faultErr != nil {
		return writeError(w, ep, http.StatusBadRequest, faultErr.Error())
	}
	if plan.reset {
		panic(http.ErrAbortHandler)
	}
	if plan.noAnswer {
		hold(ctx)
		return nil
	}
	if msg := h.checkAPIKey(r); msg != "" {
		return writeError(w, ep, http.StatusUnauthorized, msg)
	}

	var req gjson.Result
	if ep != endpointModels {
		req = gjson.ParseBytes(body)
		if !gjson.ValidBytes(body) || !req.IsObject() {
			return writeError(w, ep, http.StatusBadRequest, "request body must be a JSON object")
		}
		if (ep == endpointMessages || ep == endpointCountTokens) && r.Header.Get("anthropic-version") == "" {
			return writeError(w, ep, http.StatusBadRequest, "anthropic-version: header is required")
		}
	}

	if plan.status != nil {
		plan.status.setRetryHeaders(w.Header())
		if plan.status.errorKind != "" {
			return writeKindError(w, ep, plan.status.code, plan.status.errorKind)
		}
		return writeError(w, ep, plan.status.code, fmt.Sprintf("llm_mock: injected %d fault", plan.status.code))
	}

	if ep == endpointModels {
		return h.serveModels(w, r)
	}
	rp, err := h.newReply(ep, req)
	if err != nil {
		return writeError(w, ep, http.StatusBadRequest, err.Error())
	}

	if req.Get("stream").Bool() && ep != endpointEmbeddings && ep != endpointModels && ep != endpointCountTokens {
		return h.serveStream(w, r, rp, plan, ttft)
	}

	wait := plan.firstTokenDelay
	if ep != endpointModels {
		wait += ttft + time.Duration(rp.completionTokens())*h.tokenInterval()
	}
	return serveBody(w, r, rp.body(), wait, plan)
}

// serveBody writes a JSON response body after waiting wait, breaking it
// as the plan says.
func serveBody(w http.ResponseWriter, r *http.Request, body []byte, wait time.Duration, plan faultPlan) error {
	ctx := r.Context()
	if !sleep(ctx, wait) {
		return nil
	}
	w.Header().Set("Content-Type", "application/json")

	if plan.breaksBody() {
		// send only the first half of the body
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		flush(w)
		switch {
		case plan.cutAfter >= 0:
			panic(http.ErrAbortHandler)
		case plan.stallAfter >= 0:
			hold(ctx)
		}
		return nil
	}

	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// serveStream writes the answer as server-sent events, applying the
// plan's stream faults.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, rp *reply, plan faultPlan, ttft time.Duration) error {
	ctx := r.Context()
	s := rp.stream()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush(w)

	if !sleep(ctx, ttft+plan.firstTokenDelay) {
		return nil
	}

	send := func(events ...sseEvent) bool {
		for _, ev := range events {
			if _, err := w.Write(ev.bytes()); err != nil {
				return false
			}
			flush(w)
		}
		return true
	}

	if plan.errorEventAfter == 0 {
		// the error is the stream's very first event, as from a
		// provider that fails before it starts the answer
		send(s.errorEvent(rp.endpoint))
		return nil
	}
	if !send(s.head...) {
		return nil
	}
	for i := 0; ; i++ {
		// after i content chunks; faults asking for more chunks than
		// there are strike after the last one
		hit := func(after int) bool {
			return after == i || (i == len(s.content) && after > i)
		}
		if hit(plan.malformedAfter) && !send(s.malformed) {
			return nil
		}
		if hit(plan.cutAfter) {
			panic(http.ErrAbortHandler)
		}
		if plan.cutMidAfter == i && i < len(s.content) {
			ev := s.content[i].bytes()
			_, _ = w.Write(ev[:midEvent(ev)])
			flush(w)
			panic(http.ErrAbortHandler)
		}
		if hit(plan.errorEventAfter) {
			send(s.errorEvent(rp.endpoint))
			return nil
		}
		if hit(plan.stallAfter) {
			hold(ctx)
			return nil
		}
		if i == len(s.content) {
			break
		}
		if i > 0 && !sleep(ctx, h.tokenInterval()) {
			return nil
		}
		if !send(s.content[i]) {
			return nil
		}
	}
	if !send(s.tail...) {
		return nil
	}
	if !plan.noDone {
		send(s.done...)
	}
	return nil
}

// tokenInterval is the pause between two output tokens.
func (h *Handler) tokenInterval() time.Duration {
	if h.TokensPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / h.TokensPerSecond)
}

// checkAPIKey returns why the request's credentials are rejected,
// or "" if they are accepted.
func (h *Handler) checkAPIKey(r *http.Request) string {
	if h.APIKey == "" {
		return ""
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		repl = caddy.NewReplacer()
	}
	want := []byte(repl.ReplaceKnown(h.APIKey, ""))

	var found int
	for _, field := range []string{"Authorization", "X-Api-Key", "Api-Key"} {
		for _, v := range r.Header.Values(field) {
			if field == "Authorization" {
				scheme, token, _ := strings.Cut(v, " ")
				if !strings.EqualFold(scheme, "Bearer") {
					return "Authorization header must use the Bearer scheme"
				}
				v = strings.TrimSpace(token)
			}
			found++
			if v == "" || subtle.ConstantTimeCompare([]byte(v), want) != 1 {
				return fmt.Sprintf("incorrect API key provided in %s header", field)
			}
		}
	}
	if found == 0 {
		return "missing API key"
	}
	return ""
}

// writeError writes an error response in the endpoint's shape.
func writeError(w http.ResponseWriter, ep endpoint, status int, msg string) error {
	body := errorBody(ep, status, msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// writeKindError writes the error body a provider sends for a kind of
// error (see the status fault's error key).
func writeKindError(w http.ResponseWriter, ep endpoint, status int, kind string) error {
	anthropic := ep == endpointMessages || ep == endpointCountTokens
	var body []byte
	switch {
	case kind == errorContextLength && anthropic:
		body = marshal(obj{"type": "error", "error": obj{"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})
	case kind == errorContextLength:
		body = marshal(obj{"error": obj{"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
			"type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
	case anthropic:
		body = marshal(obj{"type": "error", "error": obj{"type": "invalid_request_error", "message": "Output blocked by content filtering policy"}})
	default:
		body = marshal(obj{"error": obj{"message": "The response was filtered due to the prompt triggering the content management policy.",
			"type": "invalid_request_error", "param": "prompt", "code": "content_filter"}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// flush sends buffered response data to the client. Write errors
// surface on the next write, so the result is not needed here.
func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
