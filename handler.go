package llmroute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/translate"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Response headers set on every routed answer.
const (
	HeaderModel    = "X-LLM-Model"
	HeaderProvider = "X-LLM-Provider"
	HeaderRoute    = "X-LLM-Route"
	HeaderAttempts = "X-LLM-Attempts"
	HeaderReason   = "X-LLM-Route-Reason"
)

var (
	errFirstByteTimeout = errors.New("no response before first_byte_timeout")
	errStreamIdle       = errors.New("stream silent for longer than stream_idle_timeout")
	// errUnusable: the upstream answered, with something the client
	// cannot be given.
	errUnusable = errors.New("sent an answer that cannot be passed on")
)

// outcome of one attempt.
type outcome int

const (
	outcomeDone   outcome = iota // the answer reached the client
	outcomeRetry                 // failed before the first byte; try the next target
	outcomeFinal                 // an error the client must see (not retryable)
	outcomeBroken                // failed after the first byte; abort
	outcomeGone                  // the client went away
	outcomeUnfit                 // the target cannot serve this request; skip it
	outcomeQuota                 // a limit has no room for the target; skip it
)

// attemptResult is what one attempt left behind.
type attemptResult struct {
	outcome     outcome
	probe       bool                // the attempt probed a half-open pair
	reservation *limits.Reservation // what the attempt reserved of its limits
	denial      *denial             // why a limit did not admit the attempt
	status      int                 // upstream status, or the status to answer with
	body        []byte              // upstream error body
	header      http.Header         // upstream error headers
	err         error               // transport error or timeout
	kind        string              // the kind of the upstream error (fallback.go), if known
	retry       int                 // the try on the same target after its first (retries), 0 for the first
	aw          *attemptWriter
	// called is when the provider's reverse proxy got the request,
	// firstByte when the answer's first byte came (zero: never), and
	// upstream how long the reverse proxy took.
	called, firstByte time.Time
	upstream          time.Duration
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if id, ok := modelsPath(r.URL.Path); ok && r.Method == http.MethodGet && h.listsModels() {
		defer redactCredentials(r.Header)
		return h.serveModelList(w, r, id) // models_list.go
	}
	if h.FeedbackPath != "" && r.URL.Path == h.FeedbackPath {
		return h.serveFeedback(w, r)
	}
	matched, ok := h.match(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		return next.ServeHTTP(w, r)
	}
	endpoint := endpointFor(r.URL.Path, matched)
	atomic.AddInt64(&h.requests, 1)
	defer h.requestDone()
	// The body's buffer is released last, once everything deferred
	// below is done with the request.
	var lease *bodyLease
	defer func() { lease.release() }()
	rec := h.startRecord(w, r, endpoint)
	defer h.finishRecord(rec)
	w = rec
	// Once handled, the client's credentials (checked against its key,
	// or stripped for the providers) leave no trace in what reads the
	// request afterwards: placeholders, log_append, later handlers.
	defer redactCredentials(r.Header)
	if !safePath(r.URL.Path) {
		writeError(w, endpoint, http.StatusBadRequest, "invalid_path", "the request path has a segment that starts with a dot, or a '%' or '\\' once decoded")
		return nil
	}
	key, rerr := h.authenticate(r)
	if rerr != nil {
		writeError(w, endpoint, rerr.status, rerr.code, rerr.msg)
		return nil
	}

	if r.ContentLength > h.MaxBody {
		writeError(w, endpoint, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body is larger than %d bytes", h.MaxBody))
		return nil
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		writeError(w, endpoint, http.StatusUnsupportedMediaType, "unsupported_content_encoding",
			fmt.Sprintf("request bodies with Content-Encoding %q are not supported: send the JSON uncompressed", truncate(ce, 64)))
		return nil
	}
	body, lease, err := readBody(w, r, h.MaxBody, time.Duration(h.ReadBodyTimeout))
	if errors.Is(err, errReadBodyTimeout) {
		writeError(w, endpoint, http.StatusRequestTimeout, "request_timeout", fmt.Sprintf("the request body did not arrive within %s", time.Duration(h.ReadBodyTimeout)))
		return nil
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		// a limit set ahead of llm_route, such as request_body's max_size
		writeError(w, endpoint, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
		return nil
	}
	if err != nil {
		writeError(w, endpoint, http.StatusBadRequest, "body_read_error", "could not read the request body")
		return nil
	}
	if int64(len(body)) > h.MaxBody {
		writeError(w, endpoint, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body is larger than %d bytes", h.MaxBody))
		return nil
	}
	rec.bodyRead()
	req, rerr := parseRequest(body, h.ModelKey, h.MaxDepth)
	if rerr == nil && !h.permits(key, req.Model) {
		rerr = &requestError{status: http.StatusForbidden, code: "model_not_allowed",
			msg: fmt.Sprintf("this API key may not use the model %q", truncate(req.Model, 128))}
	}
	if rerr == nil {
		req.Endpoint = endpoint
		var p *plan
		if p, rerr = h.resolve(r, req, key); rerr == nil {
			p.lease = lease
			rec.decide(req, p)
			if h.ModelToHeader != "" {
				r.Header.Set(h.ModelToHeader, req.Model)
			}
			if h.orchestrated(req, p) {
				return goneAfterStart(rec, h.orchestrate(w, r, req, p))
			}
			return goneAfterStart(rec, h.serve(w, r, req, p))
		}
	}
	rec.refuse(r, req, key)
	writeError(w, endpoint, rerr.status, rerr.code, rerr.msg)
	return nil
}

// goneAfterStart turns the 499 of a client that went away after the
// response started into nil: Caddy would write the 499 as a status too
// ("superfluous response.WriteHeader" in its log), and its access log
// keeps the status that went out. The request's record notes the
// client's leaving all the same.
func goneAfterStart(rec *record, err error) error {
	if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok && he.StatusCode == 499 && rec.status != 0 {
		return nil
	}
	return err
}

// redactCredentials replaces the values of the client's credential
// headers with REDACTED, as Caddy's logs show Authorization and Cookie.
func redactCredentials(h http.Header) {
	for name := range h {
		if upstreams.CredentialHeader(name) {
			h[name] = []string{"REDACTED"}
		}
	}
}

// errReadBodyTimeout: the request body did not arrive within
// read_body_timeout.
var errReadBodyTimeout = errors.New("request body read timed out")

// readBody reads the request body, up to one byte past limit, within
// timeout (errReadBodyTimeout past it), so that it costs its size once
// (twice when its length was not announced). A large body is read into a
// pooled buffer (bodypool.go): the caller holds its lease, nil for an
// unpooled body, and releases it once nothing it started reads the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, *bodyLease, error) {
	// The deadline is the connection's (or the HTTP/2 stream's); Caddy's
	// read_idle_timeout keeps it as a ceiling over its own.
	deadline := time.Now().Add(timeout)
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(deadline) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	body, lease, err := readAll(r, limit)
	if err != nil && (!time.Now().Before(deadline) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return nil, nil, errReadBodyTimeout
	}
	return body, lease, err
}

func readAll(r *http.Request, limit int64) ([]byte, *bodyLease, error) {
	lr := &io.LimitedReader{R: r.Body, N: limit + 1} // (fill's, on the stack)
	n := 4 << 10
	if r.ContentLength >= 0 && r.ContentLength <= limit {
		// The announced length, and a byte more to see the end.
		n = int(r.ContentLength) + 1
	}
	// Then blocks of up to 256 KiB, joined at the end: doubling one
	// buffer would cost up to three times the body.
	var blocks [][]byte
	lease := leaseBody(n)
	for {
		var block []byte
		if lease != nil && len(blocks) == 0 {
			block = lease.buf[:n]
		} else {
			block = make([]byte, n)
		}
		m, err := fill(lr, block)
		blocks = append(blocks, block[:m])
		if err == io.EOF {
			break
		}
		if err != nil {
			lease.release()
			return nil, nil, err
		}
		n = min(4*n, 256<<10)
	}
	if len(blocks) == 1 {
		// Its capacity ends with it: an append to the body (or to a
		// slice of it) never writes into the rest of a pooled buffer.
		return blocks[0][:len(blocks[0]):len(blocks[0])], lease, nil
	}
	total := 0
	for _, b := range blocks {
		total += len(b)
	}
	joined := leaseBody(total)
	var out []byte
	if joined != nil {
		out = joined.buf[:0:total]
	} else {
		out = make([]byte, 0, total)
	}
	for _, b := range blocks {
		out = append(out, b...)
	}
	lease.release()
	return out, joined, nil
}

// fill reads into b until it is full (nil) or r ends (io.EOF). Unlike
// io.ReadFull, it tells the end of r from a body cut short, which
// net/http reports as io.ErrUnexpectedEOF.
func fill(r *io.LimitedReader, b []byte) (int, error) {
	m := 0
	for m < len(b) {
		k, err := r.Read(b[m:])
		m += k
		if err != nil {
			return m, err
		}
	}
	return m, nil
}

// match reports whether the path ends in an enabled suffix, and which.
func (h *Handler) match(path string) (string, bool) {
	for _, s := range h.EnableOnPathSuffix {
		if s == "*" || strings.HasSuffix(path, s) {
			return s, true
		}
	}
	return "", false
}

// serve runs the attempt loop.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan) error {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	if h.ProviderHeader != "" {
		// The header is the gateway's to set; a client's own value never
		// passes.
		r.Header.Del(h.ProviderHeader)
		if p.pinned != "" {
			r.Header.Set(h.ProviderHeader, p.pinned)
		}
	}

	if ce := h.logger.Check(zap.DebugLevel, "routing decision"); ce != nil {
		order := make([]string, len(p.candidates))
		for i, c := range p.candidates {
			order[i] = c.Provider.Name + "/" + c.Model
		}
		ce.Write(zap.String("requested", req.Model), zap.String("route", p.route),
			zap.String("reason", p.reason), zap.Strings("candidates", order))
	}

	var res, unfit attemptResult
	var c *strategies.Candidate
	var exhausted *denial // the first limit that turned a candidate away
	var esc escalation    // context-length errors so far
	attempts := p.calls   // (a hedge's loop counts on from its primary)
	// A text stream goes to the client through a splice (rescue.go).
	out := w
	sp := newSplice(w, req, h.rescueOn(p))
	if sp != nil {
		out = sp
	}
	for i := 0; i < len(p.candidates); i++ { // (rescueNext may add continuers)
		if esc.skips(&p.candidates[i]) {
			continue
		}
		next, hedged, err := h.attemptHedged(out, r, req, p, i, attempts+1, repl)
		if hedged {
			return err // the hedge (the rest of the candidates) answered
		}
		p.rec.attempt(p, &p.candidates[i], &next)
		switch next.outcome {
		case outcomeUnfit:
			// Skipped without calling it: kept only to explain a
			// request no target could take.
			if unfit.body == nil {
				unfit = next
			}
			continue
		case outcomeQuota:
			if exhausted == nil {
				exhausted = next.denial
				p.reason += " quota=" + next.denial.limit()
			} else if next.denial.retryAfter < exhausted.retryAfter {
				exhausted.retryAfter = next.denial.retryAfter
			}
			h.degrade(req, p, i)
			continue
		}
		c, res = &p.candidates[i], next
		attempts++
		if !sp.rescuing() {
			h.retry(r, c.Pair, &res, &attempts, func(n, try int) attemptResult {
				next := h.attempt(out, r, req, p, c, n, repl)
				next.retry = try
				p.rec.attempt(p, c, &next)
				return next
			})
		}
		esc.escalate(&res, c, p.candidates[i+1:])
		if h.rescueNext(sp, p, c, &res, i < len(p.candidates)-1) {
			continue
		}
		if res.outcome != outcomeRetry {
			break
		}
		if i < len(p.candidates)-1 {
			h.logger.Warn("attempt failed, trying the next target",
				zap.String("route", p.route), zap.String("model", c.Model), zap.String("provider", c.Provider.Name),
				zap.Int("attempt", attempts), zap.Int("status", res.status), zap.Error(res.err))
		}
	}
	if attempts == p.calls && exhausted != nil {
		// Every target that could take the request is over a limit: no
		// call of this loop was made (a hedge's primary may have called
		// and failed), so no model is named as having answered.
		h.setPlaceholders(r, p, nil, attempts, Usage{})
		setRouted(w.Header(), p, nil, attempts)
		w.Header().Set("Retry-After", retryAfterSeconds(exhausted.retryAfter))
		writeError(w, req.Endpoint, http.StatusTooManyRequests, "all_quotas_exhausted",
			fmt.Sprintf("every candidate is over a limit (first: %s); retry after %s", exhausted, retryAfterSeconds(exhausted.retryAfter)+"s"))
		return nil
	}
	answered := c // (nil: no call was made)
	if attempts == p.calls {
		// Every target refused the request before any call.
		c, res, answered = &p.candidates[0], unfit, nil
		res.outcome = outcomeFinal
	}
	h.setPlaceholders(r, p, answered, attempts, rescueEnd(sp, &res))

	switch res.outcome {
	case outcomeDone:
		return nil
	case outcomeGone:
		return caddyhttp.Error(499, r.Context().Err())
	case outcomeBroken:
		h.logger.Warn("upstream broke after the response started; aborting",
			zap.String("route", p.route), zap.String("model", c.Model), zap.String("provider", c.Provider.Name), zap.Error(res.err))
		if res.aw != nil && res.aw.stream && !res.aw.terminated {
			writeStreamError(w, req.Endpoint, res.aw, res.err)
		} else {
			sp.sendWithheld() // (the stream ended with an error event)
		}
		panic(http.ErrAbortHandler)
	}

	// Every attempt failed, or the last one failed in a way the client
	// must see: answer with the last upstream error.
	if res.outcome == outcomeRetry {
		// (Copies, so that the loop's variables stay off the heap.)
		status, err, model, provider, n := res.status, res.err, c.Model, c.Provider.Name, attempts
		h.noTarget(w, func() {
			h.logger.Warn("no target could answer",
				zap.String("route", p.route), zap.String("model", model), zap.String("provider", provider),
				zap.Int("attempts", n), zap.Int("status", status), zap.Error(err))
		})
	}
	setRouted(w.Header(), p, answered, attempts)
	if res.body != nil {
		for _, name := range []string{"Retry-After", "Retry-After-Ms"} {
			if v := res.header.Get(name); v != "" {
				w.Header().Set(name, v)
			}
		}
		retryAfterFromMs(w.Header())
		writeJSON(w, res.status, upstreamErrorBody(req.Endpoint, res.status, res.body))
		return nil
	}
	code, what := "upstream_unavailable", "could not be reached"
	switch {
	case errors.Is(res.err, errFirstByteTimeout):
		code, what = "upstream_timeout", "did not answer within first_byte_timeout"
	case errors.Is(res.err, errUnusable):
		code, what = "upstream_invalid_response", res.err.Error()
	}
	writeError(w, req.Endpoint, res.status, code,
		fmt.Sprintf("no provider could answer: the last one tried (%s) %s", c.Provider.Name, what))
	return nil
}

// attempt sends the request to one candidate through its provider's
// reverse proxy.
func (h *Handler) attempt(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, c *strategies.Candidate, n int, repl *caddy.Replacer) attemptResult {
	if req.Endpoint == countTokensEndpoint && c.Provider.API() != translate.Anthropic {
		return h.countTokens(w, req, p, c, n)
	}
	askUsage := wantsStreamUsage(req, c)
	var usageParam map[string]json.RawMessage
	if askUsage {
		usageParam = includeUsage
	}
	src := req.Body
	sp := spliceOf(w)
	if sp.rescuing() {
		if c.Provider.ContinuationMethod() == upstreams.ContinueOff {
			return attemptResult{outcome: outcomeUnfit}
		}
		var err error
		if src, err = sp.continuationBody(src); err != nil {
			return attemptResult{outcome: outcomeUnfit}
		}
	}
	clamp := h.clampOutput(req, p, c)
	if sp.rescuing() {
		clamp = sp.outputLeft(req, p, c, clamp) // (rescue.go)
	}
	body, err := rewriteBody(src, h.ModelKey, c.UpstreamModel, h.ClientModels, c.Params, p.params, clamp, usageParam)
	if err != nil {
		return attemptResult{outcome: outcomeFinal, status: http.StatusBadRequest, body: errorBody(req.Endpoint, 400, "invalid_request", "could not rewrite the request body")}
	}
	endpoint := req.Endpoint
	var tr translate.Exchange
	if pair := c.Provider.Translation(req.Endpoint); pair != nil {
		var translated []byte
		if translated, tr, err = pair.Request(body.bytes(), translate.Options{
			DefaultMaxTokens: c.Provider.DefaultMaxTokens, MaxTokensField: c.Provider.MaxTokensField,
			NoStreamUsage: !c.Provider.StreamUsageOn(),
		}); err != nil {
			msg := fmt.Sprintf("%s (model %s at provider %s)", err.Error(), c.Model, c.Provider.Name)
			return attemptResult{outcome: outcomeUnfit, status: http.StatusBadRequest,
				body: errorBody(req.Endpoint, http.StatusBadRequest, "unsupported_parameter", msg)}
		}
		body = wholeBody(translated)
		endpoint = translate.Endpoint(c.Provider.API())
	}
	if sp.rescuing() {
		continued, err := continueUpstream(body.bytes(), c.Provider, sp)
		if err != nil {
			return attemptResult{outcome: outcomeUnfit}
		}
		body = wholeBody(continued)
	}

	// Each attempt gets its own copy of Caddy's request variables: the
	// proxy writes them, and a dial left over from an abandoned attempt
	// may still read its own.
	ctx := r.Context()
	if vars, ok := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, maps.Clone(vars))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	up := r.Clone(ctx)
	sent := body.setOn(up, p.lease)
	defer sent.close()
	up.TransferEncoding = nil
	up.Header.Del("Content-Length")
	c.Provider.PrepareRequest(up, endpoint, c.UpstreamModel, h.forward)

	// The attempt's state and its writer, in one allocation.
	run := &attemptRun{p: p, c: c, n: n, w: w, sp: sp, cancel: cancel, idle: time.Duration(h.StreamIdleTimeout)}
	run.aw.init(ctx, w)
	run.timer = time.AfterFunc(time.Duration(h.FirstByteTimeout), run.expire)
	defer run.timer.Stop()

	start := time.Now()
	reservation, denied := h.admit(r.Context(), req, p, c, start)
	if denied != nil {
		return attemptResult{outcome: outcomeQuota, denial: denied}
	}
	run.reservation = reservation
	res := attemptResult{probe: c.Pair.Start(start), reservation: reservation}
	defer func() { h.finish(c, req, res, start, run.firstByteAt); h.learn(p, req, c, res, start) }()

	aw := &run.aw
	aw.tr, aw.dropUsage, aw.wants = tr, askUsage, wantsWhole
	if req.Stream {
		aw.wants = wantsStream
	}
	aw.refuses = h.fallsBackOnRefusal(p, c)
	aw.apiOnly = slices.Contains(knownEndpoints, req.Endpoint)
	aw.hooks = run

	res.called = time.Now()
	err, aborted := serveProxy(c.Provider.Proxy(), aw, up)
	sp = spliceOf(w) // (a hedged call reaches the client's splice only once it won)
	res.aw, res.err = aw, err
	res.upstream, res.firstByte = time.Since(res.called), run.firstByteAt

	if aw.committed {
		// (A JSON answer passed on as it came may turn out cut short.)
		if err == nil && !aborted && aw.finish() == nil && (!aw.stream || aw.terminated) && (sp == nil || sp.err == nil) {
			res.outcome = outcomeDone
			return res
		}
		// The client got part of an answer, whatever follows.
		aw.usage = cutShort(aw.usage, sp, req)
		switch cause := context.Cause(ctx); {
		case err == nil && !aborted:
			res.err = aw.streamErr
			if res.err == nil {
				res.err = errors.New("stream ended without its final event")
			}
		case aw.streamErr != nil:
			res.err = aw.streamErr
		case cause != nil && !errors.Is(cause, context.Canceled):
			res.err = cause
		default:
			res.err = errors.New("upstream connection broke")
		}
		if r.Context().Err() != nil {
			endGone(r, &res)
			return res
		}
		if sp != nil && (sp.finished || aw.chunkEnd) {
			// The answer's finish went out (or, translated, came): only
			// the terminator is missing.
			if res.err = sp.complete(aw); res.err == nil {
				res.outcome = outcomeDone
				return res
			}
		}
		if sp != nil && sp.err != nil {
			res.err, res.kind = sp.err, sp.failureKind() // (rescue.go)
		}
		res.outcome = outcomeBroken
		return res
	}

	if r.Context().Err() != nil {
		endGone(r, &res)
		return res
	}
	if err == nil && !aborted && !aw.failed() {
		// A success without a body, or a whole body to translate.
		if res.err = aw.finish(); res.err == nil {
			if sp == nil || sp.err == nil {
				res.outcome = outcomeDone
				return res
			}
			res.err = sp.err // (a continuation that is no stream)
		}
	}
	if aw.failed() {
		res.status, res.body, res.header = aw.status, aw.errBody, aw.header
		if res.body == nil {
			res.body = []byte{}
		}
		if tr != nil {
			res.body = tr.Error(res.status, res.body)
		}
		res.outcome = outcomeFinal
		if matchesStatus(aw.status, p.retryOn) {
			res.outcome = outcomeRetry
		}
		h.classify(&res)
		return res
	}
	if aborted && aw.wroteHeader && !aw.failed() && !aw.stream && aw.streamErr == nil && context.Cause(ctx) == nil {
		aw.streamErr = errCutShort // a held body shorter than its Content-Length (if empty)
	}
	// Nothing reached the client: a connect error, a timeout, a response
	// that broke before its first byte, or an answer the writer could
	// not pass on (one that cannot be translated, or is too long to, or
	// a JSON answer cut short).
	res.outcome = outcomeRetry
	res.status = http.StatusBadGateway
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errFirstByteTimeout):
		res.status, res.err = http.StatusGatewayTimeout, cause
	case aw.streamErr != nil:
		res.err = fmt.Errorf("%w: %w", errUnusable, aw.streamErr)
		if errors.Is(aw.streamErr, errRefusal) {
			res.kind = kindContentFilter // (the request's content, not the pair's fault)
		}
	case res.err == nil:
		res.err = errors.New("upstream closed the connection before answering")
	}
	return res
}

// attemptRun is one attempt's state that its writer's hooks need: one
// timer, for the first byte and then for a silent stream, and what the
// answer's headers say.
type attemptRun struct {
	aw          attemptWriter
	p           *plan
	c           *strategies.Candidate
	n           int                 // the attempt's number
	w           http.ResponseWriter // the client's (or a hedge's gate)
	sp          *splice             // the client's splice as the attempt began
	reservation *limits.Reservation
	cancel      context.CancelCauseFunc
	// timer cancels the attempt when no first byte came within
	// first_byte_timeout, then (streaming) when the answer is silent for
	// idle.
	timer       *time.Timer
	idle        time.Duration
	streaming   atomic.Bool
	firstByteAt time.Time
	routed      [5]string // the values of the answer's X-LLM-* headers
}

// expire is the timer's: the attempt's time ran out.
func (run *attemptRun) expire() {
	if run.streaming.Load() {
		run.cancel(errStreamIdle)
	} else {
		run.cancel(errFirstByteTimeout)
	}
}

// started implements attemptHooks: the timer now watches for silence,
// unless it ran out for the first byte already (then the attempt is
// cancelled for that).
func (run *attemptRun) started(*attemptWriter) {
	stopped := run.timer.Stop()
	run.firstByteAt = time.Now()
	if stopped {
		run.streaming.Store(true)
		run.timer.Reset(run.idle)
	}
}

// wrote implements attemptHooks: the answer is not silent.
func (run *attemptRun) wrote() {
	if run.streaming.Load() {
		run.timer.Reset(run.idle)
	}
}

// committing implements attemptHooks: the answer's headers.
func (run *attemptRun) committing(aw *attemptWriter) {
	run.sp.committing(aw)
	setRoutedIn(run.w.Header(), run.p, run.c, run.n, &run.routed) // (once: a writer commits once)
	setRateHeaders(run.w.Header(), run.reservation)
}

// finish reports a finished attempt to the pair's state: its health (a
// success closes the circuit, a failure counts toward a cooldown, and a
// 429's Retry-After starts one) and, unless it says nothing of the
// model's speed, its timing.
func (h *Handler) finish(c *strategies.Candidate, req *strategies.Request, res attemptResult, start, firstByteAt time.Time) {
	now := time.Now()
	o := upstreams.Outcome{Probe: res.probe, Total: now.Sub(start),
		// count_tokens says nothing of the model's speed.
		Timed: req.Endpoint != countTokensEndpoint}
	switch res.outcome {
	case outcomeDone:
		o.Result = upstreams.Succeeded
	case outcomeRetry, outcomeBroken:
		if res.kind != "" {
			break // the request's fault (its prompt, its content), not the pair's
		}
		o.Result = upstreams.Failed
		if res.status == http.StatusTooManyRequests && res.header != nil {
			o.RetryAfter = upstreams.RetryAfter(res.header, now)
		}
	default:
		// The client went away, or the answer was the client's error.
	}
	if aw := res.aw; aw != nil {
		o.Stream, o.OutputTokens = aw.stream, aw.usage.CompletionTokens
	}
	if !firstByteAt.IsZero() {
		o.FirstByte = firstByteAt.Sub(start)
	}
	c.Pair.Finish(o, h.policy, now)
	h.settle(res.reservation, c, res.outcome, res.aw)
}

// includeUsage asks an OpenAI-format stream for its usage chunk.
var includeUsage = map[string]json.RawMessage{"stream_options.include_usage": json.RawMessage("true")}

// wantsStreamUsage reports whether the gateway asks a native OpenAI-format
// stream for the usage chunk its client did not ask for, so that usage is
// counted (the chunk is then held back from the client).
func wantsStreamUsage(req *strategies.Request, c *strategies.Candidate) bool {
	return req.Stream && c.Provider.API() == translate.OpenAI && c.Provider.StreamUsageOn() &&
		c.Provider.Translation(req.Endpoint) == nil &&
		(req.Endpoint == "/chat/completions" || req.Endpoint == "/completions") &&
		!gjson.ParseBytes(jsonscan.Lookup(req.Body, "stream_options", "include_usage")).Bool()
}

// countTokens answers a count_tokens request for a provider that has no
// such endpoint with the gateway's estimate of the prompt: its messages,
// system prompt and tool definitions.
func (h *Handler) countTokens(w http.ResponseWriter, req *strategies.Request, p *plan, c *strategies.Candidate, n int) attemptResult {
	req.ReadPrompt()
	setRouted(w.Header(), p, c, n)
	writeJSON(w, http.StatusOK, fmt.Appendf(nil, `{"input_tokens":%d}`, req.PromptTokens))
	return attemptResult{outcome: outcomeDone}
}

// setRouted sets the headers of an answer from candidate c, the nth
// attempt of plan p. Without c (a refusal before any call: every
// candidate over a limit or unfit) it names no model or provider.
func setRouted(hdr http.Header, p *plan, c *strategies.Candidate, n int) {
	setRoutedIn(hdr, p, c, n, new([5]string))
}

// setRoutedIn is setRouted with the headers' values kept in v, which
// must not change afterwards.
func setRoutedIn(hdr http.Header, p *plan, c *strategies.Candidate, n int, v *[5]string) {
	// As hdr.Set would, with the keys in canonical form already and the
	// values in one array.
	*v = [5]string{"", "", p.route, strconv.Itoa(n), p.reason}
	if c != nil {
		v[0], v[1] = c.Model, c.Provider.Name
	}
	for i, k := range routedKeys {
		if c == nil && i < 2 { // (no model or provider answered)
			delete(hdr, k)
			continue
		}
		hdr[k] = v[i : i+1 : i+1]
	}
}

// routedKeys are the canonical forms of the headers setRouted sets, in
// its order.
var routedKeys = [5]string{
	http.CanonicalHeaderKey(HeaderModel), http.CanonicalHeaderKey(HeaderProvider), http.CanonicalHeaderKey(HeaderRoute),
	http.CanonicalHeaderKey(HeaderAttempts), http.CanonicalHeaderKey(HeaderReason),
}

// serveProxy runs a reverse proxy, turning its abort panic (a response
// that broke while streaming) into a flag.
func serveProxy(rp *reverseproxy.Handler, w http.ResponseWriter, r *http.Request) (err error, aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	return rp.ServeHTTP(w, r, noNext), false
}

var noNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// writeStreamError ends a broken event stream with an explicit error
// event in the client's format, so no client mistakes it for a finished
// answer.
func writeStreamError(w http.ResponseWriter, endpoint string, aw *attemptWriter, cause error) {
	msg := "the upstream stream was interrupted"
	if cause != nil {
		msg += ": " + cause.Error()
	}
	var ev bytes.Buffer
	if translate.IsMessages(endpoint) {
		ev.WriteString("event: error\n")
	}
	ev.WriteString("data: ")
	ev.Write(errorBody(endpoint, http.StatusBadGateway, "stream_interrupted", msg))
	ev.WriteString("\n\n")
	_, _ = w.Write(ev.Bytes())
	_ = http.NewResponseController(w).Flush()
	aw.terminated = true
}

// matchesStatus reports whether status is one of list, where a single
// digit stands for its whole class.
func matchesStatus(status int, list []int) bool {
	for _, s := range list {
		if caddyhttp.StatusCodeMatches(status, s) {
			return true
		}
	}
	return false
}

// setPlaceholders publishes the decision and usage as placeholders
// ({llm.*}, placeholders.go) and access log fields; c is the candidate
// that answered, nil when no call was made.
func (h *Handler) setPlaceholders(r *http.Request, p *plan, c *strategies.Candidate, attempts int, usage Usage) {
	var v *placeholderValues
	if p.rec != nil {
		v = p.rec.placeholders.fresh()
	} else {
		v = new(placeholderValues)
	}
	*v = placeholderValues{route: p.route, reason: p.reason, attempts: attempts, usage: usage}
	if c != nil {
		v.model, v.provider = c.Model, c.Provider.Name
	}
	if p.key != nil {
		v.key = &p.key.Name
	}
	if p.rec != nil {
		p.rec.placeholders.set(v)
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		// One field that adds them all (each Set costs Caddy an
		// allocation); a later call replaces it.
		extra.Set(zap.Field{Key: "llm_route fields", Type: zapcore.InlineMarshalerType, Interface: v})
	}
}
