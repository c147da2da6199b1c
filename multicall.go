package llmroute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/translate"
)

// This file is the core of the strategies whose answer takes several
// calls (cascade, consensus, and the judge they may ask): a call runs
// the attempt loop (serve) for some candidates into a buffer instead of
// the client's response, so its answer can be checked, compared and
// then sent, or dropped. Each call goes through the same attempts as
// any request: the same translation, fallback, limits (admitted and
// settled per call), pair state and headers. The orchestrating code
// sums the calls' usage and sends the chosen answer once.

// Response headers of the strategies that make several calls.
const (
	HeaderCascade   = "X-LLM-Cascade"
	HeaderConsensus = "X-LLM-Consensus"
)

// maxCallAnswer is the largest answer a call holds in memory.
const maxCallAnswer = 16 << 20

var errCallTooLong = errors.New("answer larger than 16 MiB")

// maxJudged is the most of an answer, and of the question, a judge is
// sent: the judge's request (a prompt holding both, escaped into JSON,
// then copied on its way) would otherwise cost several times an answer
// of up to maxCallAnswer, or a question of up to max_body, per answer
// judged at once, bill the judge for it and may not fit its context.
const maxJudged = 256 << 10

// judgedQuestion is the question as a judge is sent it: whole, or its
// start and its end (where a long turn usually asks what it asks),
// maxJudged bytes in all, with a note of what was left out.
func judgedQuestion(q string) string {
	if len(q) <= maxJudged {
		return q
	}
	head := strings.TrimSuffix(truncate(q, maxJudged/2), "…")
	tail := q[len(q)-maxJudged/2:]
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	return fmt.Sprintf("%s…\n[%d KiB of the question left out]\n…%s", head, (len(q)-len(head)-len(tail)+1023)>>10, tail)
}

// call is the outcome of one call: the answer as the client would have
// got it (status, headers and body, in the client's format), what it
// says, and its usage.
type call struct {
	model, provider string // the candidate that answered (or failed last)
	status          int
	header          http.Header
	body            []byte
	usage           Usage
	attempts        int
	answer          strategies.Answer
	err             error // the client went away
}

// ok reports whether the call got a good answer.
func (c *call) ok() bool { return c.status == http.StatusOK }

// orchestrated reports whether the plan's strategy makes several calls
// for this request: cascade and consensus, on the chat, completions,
// messages and responses endpoints, with more than one model to call.
// A stream is orchestrated by consensus always and by cascade when it
// opts in.
func (h *Handler) orchestrated(req *strategies.Request, p *plan) bool {
	switch req.Endpoint {
	case "/chat/completions", "/completions", "/messages", "/responses":
	default:
		return false
	}
	switch s := p.strategy.(type) {
	case *strategies.Cascade:
		if req.Stream && !s.Streams {
			return false
		}
	case *strategies.Consensus:
	default:
		return false
	}
	return len(modelsOf(p.candidates)) > 1
}

// orchestrate answers a request whose strategy makes several calls.
func (h *Handler) orchestrate(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan) error {
	if h.ProviderHeader != "" {
		r.Header.Del(h.ProviderHeader) // as serve does: the gateway's header
	}
	switch s := p.strategy.(type) {
	case *strategies.Cascade:
		return h.cascade(w, r, req, p, s)
	case *strategies.Consensus:
		return h.consensus(w, r, req, p, s)
	}
	return h.serve(w, r, req, p)
}

// modelsOf groups candidates by model, in the order each model first
// appears: one group per model, its providers in order.
func modelsOf(cands []strategies.Candidate) [][]strategies.Candidate {
	var groups [][]strategies.Candidate
	index := make(map[string]int)
	for _, c := range cands {
		i, seen := index[c.Model]
		if !seen {
			i = len(groups)
			index[c.Model] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

// call runs the attempt loop for cands (at most max_attempts of them)
// into a buffer, as a non-stream request (a stream is answered once its
// answer is chosen).
func (h *Handler) call(r *http.Request, req *strategies.Request, p *plan, cands []strategies.Candidate) call {
	sub := *req
	if req.Stream {
		sub.Stream = false
		sub.Body = nonStream(req.Body)
	}
	sp := *p
	if h.MaxAttempts > 0 && len(cands) > h.MaxAttempts {
		cands = cands[:h.MaxAttempts] // max_attempts caps each call
	}
	sp.candidates = slices.Clone(cands)
	// The calls of one request may run at once: each gets its own
	// request (headers) and log fields; the replacer is safe to share,
	// and the final answer sets its placeholders last.
	ctx := context.WithValue(r.Context(), caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	buf := &bufferedResponse{header: make(http.Header)}
	err := h.serveBuffered(buf, r.Clone(ctx), &sub, &sp)
	c := call{header: buf.header, status: buf.status, body: buf.body.Bytes(), err: err,
		model: buf.header.Get(HeaderModel), provider: buf.header.Get(HeaderProvider)}
	c.attempts, _ = strconv.Atoi(buf.header.Get(HeaderAttempts))
	if c.status == 0 {
		c.status = http.StatusBadGateway
	}
	if c.ok() {
		if !gjson.ValidBytes(c.body) {
			c.status = http.StatusBadGateway
			c.body = errorBody(req.Endpoint, c.status, "upstream_invalid_response", "the answer is not JSON")
		} else {
			c.usage = bodyUsage(c.body)
			c.answer = readAnswer(req.Endpoint, c.body)
		}
	}
	return c
}

// serveBuffered runs serve into a buffer; an answer that broke after it
// started (serve aborts the response) leaves a 502. Any other panic is a
// bug that fails the request, as it would in serve: it goes on up (from
// a consensus's goroutines, to the request's: goroutine.go).
func (h *Handler) serveBuffered(buf *bufferedResponse, r *http.Request, req *strategies.Request, p *plan) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			buf.status = http.StatusBadGateway
			buf.body.Reset()
			buf.body.Write(errorBody(req.Endpoint, buf.status, "upstream_invalid_response", "the answer broke off"))
		}
	}()
	return h.serve(buf, r, req, p)
}

// nonStream is a request body with streaming turned off.
func nonStream(body []byte) []byte {
	out, err := sjson.SetBytes(body, "stream", false)
	if err != nil {
		return body
	}
	if gjson.GetBytes(out, "stream_options").Exists() {
		if o, err := sjson.DeleteBytes(out, "stream_options"); err == nil {
			out = o
		}
	}
	return out
}

// bufferedResponse keeps a whole answer in memory.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 && status >= 200 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.body.Len()+len(p) > maxCallAnswer {
		return 0, errCallTooLong
	}
	return b.body.Write(p)
}

// Flush does nothing: the answer goes out once chosen.
func (b *bufferedResponse) Flush() {}

// bodyUsage reads the usage of an answer in any API's shape.
func bodyUsage(body []byte) Usage {
	var t translate.Usage
	t.Read(gjson.GetBytes(body, "usage"))
	return Usage{PromptTokens: t.Prompt(), CompletionTokens: t.Output, CacheReadTokens: t.CacheRead, CacheWriteTokens: t.CacheWrite}
}

// judge asks j to score an answer to req; ok is false when the judge
// could not answer or its reply holds no score. The judge's call is
// returned for its usage.
func (h *Handler) judge(r *http.Request, req *strategies.Request, p *plan, j *strategies.Judge, a strategies.Answer) (score float64, ok bool, jc call) {
	answer := a.Text
	if answer == "" {
		answer = a.ToolCalls
	}
	if len(answer) > maxJudged {
		answer = fmt.Sprintf("%s\n[the answer goes on: cut at %d KiB of %d KiB]", truncate(answer, maxJudged), maxJudged>>10, len(answer)>>10)
	}
	msg, _ := json.Marshal(j.PromptFor(judgedQuestion(req.LastUser), answer))
	body := fmt.Appendf(nil, `{"messages":[{"role":"user","content":%s}],"max_tokens":%d,"temperature":0}`, msg, j.Tokens())
	body, err := sjson.SetBytes(body, h.ModelKey, j.Model)
	if err != nil {
		return 0, false, call{status: http.StatusInternalServerError}
	}
	jreq, rerr := parseRequest(body, h.ModelKey, h.MaxDepth)
	if rerr != nil {
		return 0, false, call{status: rerr.status}
	}
	jreq.Endpoint = "/chat/completions"
	jp, rerr := h.resolve(r, jreq, p.key)
	if rerr != nil {
		return 0, false, call{status: rerr.status}
	}
	jp.rec = p.rec // the judge's calls are the request's: its record counts them
	jp.lane = p.lane
	jc = h.call(r, jreq, jp, jp.candidates)
	if !jc.ok() {
		return 0, false, jc
	}
	score, ok = j.ParseScore(jc.answer.Text)
	return score, ok, jc
}

// respond sends the chosen call's answer to the client: its headers
// (the routing headers of the candidate that answered), the number of
// calls made, the strategy's header, and its body with the usage of
// every call, as JSON or, for a stream request, as one well-formed
// stream in the client's format. It then sets the placeholders.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, c call, total Usage, calls int, name, value string) error {
	hdr := w.Header()
	for k, v := range c.header {
		if k != "Content-Length" {
			hdr[k] = v
		}
	}
	hdr.Set(HeaderAttempts, strconv.Itoa(calls))
	hdr.Set(name, value)

	var winner *strategies.Candidate // (nil: no call answered)
	if i := slices.IndexFunc(p.candidates, func(x strategies.Candidate) bool {
		return x.Model == c.model && x.Provider.Name == c.provider
	}); i >= 0 {
		winner = &p.candidates[i]
	}
	h.setPlaceholders(r, p, winner, calls, total)
	if p.rec != nil && c.model != "" {
		p.rec.answered = [2]string{c.model, c.provider}
	}

	if !c.ok() {
		writeJSON(w, c.status, c.body)
		return nil
	}
	body := withUsage(req.Endpoint, c.body, total)
	if !req.Stream {
		writeJSON(w, http.StatusOK, body)
		return nil
	}
	events, err := synthStream(req.Endpoint, body, gjson.GetBytes(req.Body, "stream_options.include_usage").Bool())
	if err != nil {
		writeError(w, req.Endpoint, http.StatusBadGateway, "upstream_invalid_response", "the chosen answer cannot be sent as a stream: "+err.Error())
		return nil
	}
	hdr.Del("Content-Length")
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(events)
	_ = http.NewResponseController(w).Flush()
	return nil
}

// gone is the error of a request whose client went away.
func gone(r *http.Request) error {
	return caddyhttp.Error(499, r.Context().Err())
}

// headerValue makes a text safe for a header value: no control
// characters, at most 64 bytes.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return truncate(s, 64)
}

// validJudge checks that the judge of a cascade or consensus strategy
// names a model or a route, and not one that itself makes several
// calls.
func (h *Handler) validJudge(s strategies.Strategy) error {
	var j *strategies.Judge
	switch s := s.(type) {
	case *strategies.Cascade:
		j = s.Judge
	case *strategies.Consensus:
		j = s.Judge
	}
	if j == nil {
		return nil
	}
	if _, ok := h.models[j.Model]; ok {
		return nil
	}
	rt, ok := h.routes[j.Model]
	if !ok {
		return fmt.Errorf("judge: unknown model or route %q", j.Model)
	}
	switch rt.strategy.(type) {
	case *strategies.Cascade, *strategies.Consensus:
		return fmt.Errorf("judge: route %s makes several calls itself", j.Model)
	}
	return nil
}
