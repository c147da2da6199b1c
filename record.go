package llmroute

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// HeaderRequestID carries the id of the request's record on every
// answer llm_route gives: the key that joins the decision log, feedback
// and Caddy's access log (its `uuid` field).
const HeaderRequestID = "X-LLM-Request-Id"

var requestIDKey = http.CanonicalHeaderKey(HeaderRequestID)

// DecisionLog turns on the decision log: one record per request, emitted
// at INFO on the logger `http.handlers.llm_route.decisions`, which Caddy's
// `log` configuration routes like any other (e.g. to a rolled file).
type DecisionLog struct {
	// Put up to this many bytes of the last user message into each record
	// as `prompt`, so the log joined with feedback can train a router. Off
	// (0) by default: prompts may be confidential.
	PromptBytes int `json:"prompt_bytes,omitempty"`
}

// cause is why an attempt ended the way it did, or why a candidate was
// passed over without a call. Its names are metric label values.
type cause uint8

const (
	causeOK       cause = iota // answered
	causeConnect               // no answer: connect error, closed before answering
	causeTimeout               // first_byte_timeout or stream_idle_timeout
	cause429                   // rate limited upstream
	cause5xx                   // upstream server error
	cause4xx                   // the client's error, passed on
	causeInvalid               // an answer that could not be passed on
	causeBroken                // failed after the answer started
	causeGone                  // the client went away
	causeQuota                 // a limit had no room: not called
	causeCooldown              // the pair was cooling down: passed over
	causeUnfit                 // the target cannot serve this request: not called
	causeHedged                // cancelled: the other call of a hedge answered first
	numCauses
)

var causeNames = [numCauses]string{"ok", "connect", "timeout", "429", "5xx", "4xx", "invalid", "broken", "client_gone", "quota", "cooldown", "unfit", "hedge_lost"}

func (c cause) String() string { return causeNames[c] }

// causeOf classifies an attempt's result.
func causeOf(res *attemptResult) cause {
	switch res.outcome {
	case outcomeDone:
		return causeOK
	case outcomeQuota:
		return causeQuota
	case outcomeUnfit:
		return causeUnfit
	case outcomeGone:
		if errors.Is(res.err, errHedgeLost) { // (endGone)
			return causeHedged
		}
		return causeGone
	case outcomeBroken:
		return causeBroken
	}
	switch {
	case res.body != nil && res.status == http.StatusTooManyRequests:
		return cause429
	case res.body != nil && res.status >= 500:
		return cause5xx
	case res.body != nil:
		return cause4xx
	case errors.Is(res.err, errFirstByteTimeout), errors.Is(res.err, errStreamIdle):
		return causeTimeout
	case errors.Is(res.err, errUnusable):
		return causeInvalid
	}
	return causeConnect
}

// candidateRecord is one candidate of the plan, in its order.
type candidateRecord struct {
	model, provider string
	cooling         bool // demoted because the pair was cooling down
}

// attemptRecord is one attempt, or one candidate passed over for a limit.
type attemptRecord struct {
	c         *strategies.Candidate
	cause     cause
	status    int           // the upstream's status, 0 without one
	limit     string        // the limit that turned it away (quota)
	retry     int           // the retry of the same target (retries), 0 for its first try
	called    time.Time     // when the provider's reverse proxy got the request; zero: no call
	upstream  time.Duration // inside the provider's reverse proxy
	firstByte time.Duration // from the upstream call to its first byte; 0: none
	lane      int           // the plan's lane (plan.inLane)
	aw        *attemptWriter
}

// record is what happened to one request: built as the request goes
// (start, read, decided, attempt) and emitted once when it ends. It also
// stands between llm_route and the response writer, to see the status
// and to set X-LLM-Request-Id on every answer.
type record struct {
	http.ResponseWriter
	h      *Handler
	status int

	// mu orders the attempts of calls made in parallel for one answer
	// (consensus); everything else is read once they have all returned.
	mu sync.Mutex

	id       string
	idValue  [1]string // the value of the X-LLM-Request-Id header
	endpoint string
	start    time.Time
	read     time.Time // the body was read
	decided  time.Time // the plan was made
	first    time.Time // the answer's first byte reached the client

	req *strategies.Request
	p   *plan

	candBuf    [6]candidateRecord
	candidates []candidateRecord
	attBuf     [3]attemptRecord
	attempts   []attemptRecord

	placeholders placeholders // {llm.*}

	// refusal is the error code of an error answer the gateway made
	// itself (noteError), refusedModel the model it asked for and refusedKey its key, when
	// known (the decision log's error, requested and key).
	refusal, refusedModel string
	refusedKey            *ClientKey

	// answered is the model and provider whose answer went out, when
	// the answer took several calls (cascade, consensus): chosen names
	// it rather than the last call.
	answered [2]string
}

// startRecord begins the record of a request llm_route handles.
func (h *Handler) startRecord(w http.ResponseWriter, r *http.Request, endpoint string) *record {
	rec := &record{ResponseWriter: w, h: h, endpoint: endpoint, start: time.Now()}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	rec.id = requestID(repl)
	if repl != nil {
		rec.placeholders.register(repl)
	}
	return rec
}

// requestID is Caddy's UUID of the request (the access log's `uuid`
// field), made now if nothing asked for it yet.
func requestID(repl *caddy.Replacer) string {
	if repl != nil {
		if id, ok := repl.GetString("http.request.uuid"); ok && id != "" {
			return id
		}
	}
	return newID()
}

// setRequestID sets X-LLM-Request-Id on an answer that has no record:
// the model list's and feedback's.
func setRequestID(w http.ResponseWriter, r *http.Request) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	w.Header()[requestIDKey] = []string{requestID(repl)}
}

// WriteHeader sets the request id and notes the status.
func (rec *record) WriteHeader(status int) {
	if rec.status == 0 && status >= 200 {
		rec.status = status
		rec.idValue[0] = rec.id // (as Header().Set would, without allocating)
		rec.Header()[requestIDKey] = rec.idValue[:]
		if rec.first.IsZero() {
			rec.first = time.Now()
		}
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *record) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (rec *record) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// bodyRead notes the end of reading the request body.
func (rec *record) bodyRead() { rec.read = time.Now() }

// noteError notes in the request's record (w, when it is one) the code
// of the error answer the gateway makes itself.
func noteError(w http.ResponseWriter, code string) {
	if rec, ok := w.(*record); ok && rec.refusal == "" {
		rec.refusal = code
	}
}

// refuse notes what is known of a request refused before routing (the
// error code of its answer is writeError's to note): the model asked for
// (req, when the body was parsed) and the client key, when known, which
// {llm.key} and the access log's llm_key then name.
func (rec *record) refuse(r *http.Request, req *strategies.Request, key *ClientKey) {
	rec.refusedKey = key
	if req != nil {
		rec.refusedModel = truncate(req.Model, 128)
	}
	if key != nil {
		rec.h.setPlaceholders(r, &plan{key: key, rec: rec}, nil, 0, Usage{})
	}
}

// decide notes the plan made for the request.
func (rec *record) decide(req *strategies.Request, p *plan) {
	rec.decided = time.Now()
	rec.req, rec.p = req, p
	p.rec = rec
	if dl := rec.h.DecisionLog; dl != nil && dl.PromptBytes > 0 {
		req.ReadPrompt()
	}
	rec.candidates = rec.candBuf[:0]
	for i := range p.candidates {
		c := &p.candidates[i]
		rec.candidates = append(rec.candidates, candidateRecord{model: c.Model, provider: c.Provider.Name,
			cooling: i >= p.healthy && i < p.healthy+p.cooling})
	}
}

// inLane returns a copy of p for one of the calls a request makes at
// once, each for an answer of its own (a consensus's voters and
// judges): its attempts are a lane of their own in the record, so that
// a call that failed with nothing after it in its lane is no fallback,
// whichever call of the others ended after it.
func (p *plan) inLane(lane int) *plan {
	lp := *p
	lp.lane = lane
	return &lp
}

// attempt notes what the attempt loop of plan p got from candidate c.
func (rec *record) attempt(p *plan, c *strategies.Candidate, res *attemptResult) {
	if rec == nil {
		return
	}
	a := attemptRecord{c: c, lane: p.lane, cause: causeOf(res), aw: res.aw, called: res.called, upstream: res.upstream, retry: res.retry}
	if res.body != nil {
		a.status = res.status
	}
	if res.aw != nil && !res.firstByte.IsZero() && !res.called.IsZero() {
		a.firstByte = res.firstByte.Sub(res.called)
	}
	if res.denial != nil {
		a.limit = res.denial.limit()
	}
	rec.mu.Lock()
	if rec.attempts == nil {
		rec.attempts = rec.attBuf[:0]
	}
	rec.attempts = append(rec.attempts, a)
	rec.mu.Unlock()
	if ce := rec.h.logger.Check(zap.DebugLevel, "attempt"); ce != nil {
		ce.Write(zap.String("request_id", rec.id), zap.String("model", c.Model), zap.String("provider", c.Provider.Name),
			zap.Stringer("cause", a.cause), zap.Int("status", a.status), zap.Int("retry", a.retry), zap.Duration("upstream", a.upstream), zap.Error(res.err))
	}
}

// chosen is the last call of the candidate whose answer went out when
// the answer took several calls (see answered), else the last call that
// answered, else the last candidate called, or nil. (A hedge's calls
// are recorded as they end, so the one that answered need not be the
// last; nor need a consensus's winner or a cascade's chosen tier.)
func (rec *record) chosen() *attemptRecord {
	called := func(a *attemptRecord) bool { return a.cause != causeQuota && a.cause != causeUnfit }
	if rec.answered != [2]string{} {
		for i := len(rec.attempts) - 1; i >= 0; i-- {
			if a := &rec.attempts[i]; called(a) && rec.answered == [2]string{a.c.Model, a.c.Provider.Name} {
				return a
			}
		}
	}
	for i := len(rec.attempts) - 1; i >= 0; i-- {
		if a := &rec.attempts[i]; a.cause == causeOK {
			return a
		}
	}
	for i := len(rec.attempts) - 1; i >= 0; i-- {
		if a := &rec.attempts[i]; called(a) {
			return a
		}
	}
	return nil
}

// usage is the token usage of every call made for the request: a
// rescue, a cascade or a consensus makes several, and each is paid for.
func (rec *record) usage() Usage {
	var u Usage
	for i := range rec.attempts {
		if a := &rec.attempts[i]; a.aw != nil {
			u = u.add(a.aw.usage)
		}
	}
	return u
}

// cost is the cost in USD of every call made for the request, each at
// its model's prices, and whether any of them had a price.
func (rec *record) cost() (float64, bool) {
	total, priced := 0.0, false
	for i := range rec.attempts {
		if c, ok := rec.attemptCost(&rec.attempts[i]); ok {
			total, priced = total+c, true
		}
	}
	return total, priced
}

// attemptCost is the cost in USD of one call from its usage, and
// whether its model has a price.
func (rec *record) attemptCost(a *attemptRecord) (float64, bool) {
	if a.aw == nil {
		return 0, false
	}
	m := rec.h.model(a.c.Model)
	if m == nil || m.InputPrice == 0 && m.OutputPrice == 0 {
		return 0, false
	}
	amount, _ := actual(a.aw.usage, m)
	return amount.Cost, true
}

// upstreamTime is the time during which at least one call to a
// provider was under way: the union of the calls' times inside their
// reverse proxies, so that calls made in parallel (a hedge's, a
// consensus's votes) count once, not summed.
func (rec *record) upstreamTime() time.Duration {
	var buf [8]span // (no allocation for up to 8 calls)
	spans := buf[:0]
	for i := range rec.attempts {
		if a := &rec.attempts[i]; a.upstream > 0 && !a.called.IsZero() {
			spans = append(spans, span{a.called, a.called.Add(a.upstream)})
		}
	}
	return unionLength(spans)
}

// span is a stretch of time, from its start to its end.
type span struct{ from, to time.Time }

// unionLength is how long at least one of spans lasted. It sorts spans
// in place.
func unionLength(spans []span) time.Duration {
	if len(spans) == 1 {
		return spans[0].to.Sub(spans[0].from)
	}
	// Insertion sort by start: a request makes a handful of calls.
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].from.Before(spans[j-1].from); j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	var total time.Duration
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case s.from.After(cur.to):
			total += cur.to.Sub(cur.from)
			cur = s
		case s.to.After(cur.to):
			cur.to = s.to
		}
	}
	if len(spans) > 0 {
		total += cur.to.Sub(cur.from)
	}
	return total
}

// overhead is the gateway's own time: from the end of reading the body
// (before it, the client was sending) to the end, minus the time during
// which a call to a provider was under way (upstreamTime).
func (rec *record) overhead(end time.Time) time.Duration {
	from := rec.read
	if from.IsZero() {
		from = rec.start
	}
	return max(end.Sub(from)-rec.upstreamTime(), 0)
}

// finishRecord ends the record: metrics, the dashboard's ring and the
// decision log.
func (h *Handler) finishRecord(rec *record) {
	end := time.Now()
	if rec.status == 0 {
		// The handler wrote nothing: the client went away.
		rec.status = 499
	}
	observe(rec, end)
	if dashboards.Load() > 0 {
		remember(rec, end)
	}
	if h.DecisionLog == nil {
		return
	}
	if ce := h.decisions.Check(zap.InfoLevel, "decision"); ce != nil {
		ce.Write(zap.Inline(recordFields{rec, end}))
	}
}

// recordFields marshals a record for the decision log.
type recordFields struct {
	rec *record
	end time.Time
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (f recordFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	rec := f.rec
	enc.AddString("request_id", rec.id)
	enc.AddString("endpoint", truncate(rec.endpoint, 64))
	enc.AddInt("status", rec.status)
	if rec.refusal != "" {
		enc.AddString("error", rec.refusal)
	}
	if rec.p != nil {
		p := rec.p
		enc.AddString("requested", truncate(rec.req.Model, 128))
		enc.AddString("route", p.route)
		if p.strategy != nil {
			enc.AddString("strategy", caddy.GetModuleName(p.strategy))
		}
		enc.AddString("reason", p.reason)
		if p.key != nil {
			enc.AddString("key", p.key.Name)
		}
		_ = enc.AddObject("features", features{rec.req, p.reason})
		_ = enc.AddArray("candidates", zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
			for _, c := range rec.candidates {
				_ = ae.AppendObject(zapcore.ObjectMarshalerFunc(func(oe zapcore.ObjectEncoder) error {
					oe.AddString("model", c.model)
					oe.AddString("provider", c.provider)
					if c.cooling {
						oe.AddBool("cooling", true)
					}
					return nil
				}))
			}
			return nil
		}))
		if n := rec.h.DecisionLog.PromptBytes; n > 0 && rec.req.LastUser != "" {
			enc.AddString("prompt", truncateBytes(rec.req.LastUser, n))
		}
	} else if rec.refusal != "" {
		if rec.refusedModel != "" {
			enc.AddString("requested", rec.refusedModel)
		}
		if rec.refusedKey != nil {
			enc.AddString("key", rec.refusedKey.Name)
		}
	}
	calls := 0
	_ = enc.AddArray("attempts", zapcore.ArrayMarshalerFunc(func(ae zapcore.ArrayEncoder) error {
		for _, a := range rec.attempts {
			if a.cause != causeQuota && a.cause != causeUnfit {
				calls++
			}
			_ = ae.AppendObject(zapcore.ObjectMarshalerFunc(func(oe zapcore.ObjectEncoder) error {
				oe.AddString("model", a.c.Model)
				oe.AddString("provider", a.c.Provider.Name)
				oe.AddString("cause", a.cause.String())
				if a.status != 0 {
					oe.AddInt("status", a.status)
				}
				if a.limit != "" {
					oe.AddString("limit", a.limit)
				}
				if a.retry > 0 {
					oe.AddInt("retry", a.retry)
				}
				if a.upstream > 0 {
					oe.AddFloat64("upstream_ms", ms(a.upstream))
				}
				if a.firstByte > 0 {
					oe.AddFloat64("ttft_ms", ms(a.firstByte))
				}
				return nil
			}))
		}
		return nil
	}))
	if a := rec.chosen(); a != nil {
		enc.AddString("model", a.c.Model)
		enc.AddString("provider", a.c.Provider.Name)
	}
	enc.AddInt("calls", calls)
	enc.AddFloat64("duration_ms", ms(f.end.Sub(rec.start)))
	if !rec.first.IsZero() && rec.status < 300 {
		enc.AddFloat64("ttft_ms", ms(rec.first.Sub(rec.start)))
	}
	if !rec.decided.IsZero() && !rec.read.IsZero() {
		enc.AddFloat64("decision_ms", ms(rec.decided.Sub(rec.read)))
	}
	enc.AddFloat64("upstream_ms", ms(rec.upstreamTime()))
	enc.AddFloat64("overhead_ms", ms(rec.overhead(f.end)))
	u := rec.usage()
	enc.AddInt64("input_tokens", u.PromptTokens)
	enc.AddInt64("output_tokens", u.CompletionTokens)
	if u.CacheReadTokens > 0 {
		enc.AddInt64("cache_read_tokens", u.CacheReadTokens)
	}
	if u.CacheWriteTokens > 0 {
		enc.AddInt64("cache_write_tokens", u.CacheWriteTokens)
	}
	if cost, priced := rec.cost(); priced {
		enc.AddFloat64("cost_usd", cost)
	}
	return nil
}

// features are what the routing decision could see of the request, and
// the numbers its strategy reported in its reason (key=value).
type features struct {
	req    *strategies.Request
	reason string
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (f features) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if f.req.PromptTokens > 0 {
		enc.AddInt("prompt_tokens", f.req.PromptTokens)
	}
	if f.req.MaxTokens > 0 {
		enc.AddInt64("max_tokens", f.req.MaxTokens)
	}
	enc.AddBool("stream", f.req.Stream)
	if f.req.HasTools {
		enc.AddBool("tools", true)
	}
	if f.req.HasImages {
		enc.AddBool("images", true)
	}
	if f.req.JSONMode {
		enc.AddBool("json", true)
	}
	for _, field := range strings.Fields(f.reason) {
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			continue
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			enc.AddFloat64(k, n)
		} else {
			enc.AddString(k, truncate(v, 64))
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// truncateBytes cuts s to at most n bytes, on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// idPrefix and idSeq make request ids when Caddy's UUID is not at hand
// (a handler called outside Caddy's server): random per process, then a
// counter.
var (
	idPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	idSeq atomic.Uint64
)

func newID() string { return idPrefix + strconv.FormatUint(idSeq.Add(1), 10) }

// Interface guards
var (
	_ http.ResponseWriter     = (*record)(nil)
	_ zapcore.ObjectMarshaler = recordFields{}
	_ zapcore.ObjectMarshaler = features{}
)

// unmarshalDecisionLog parses `decision_log [{ prompt_bytes <n> }]`.
func unmarshalDecisionLog(d *caddyfile.Dispenser) (*DecisionLog, error) {
	dl := new(DecisionLog)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "prompt_bytes":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, d.Errf("prompt_bytes: %v", err)
			}
			dl.PromptBytes = n
		default:
			return nil, d.Errf("unrecognized subdirective: %s", d.Val())
		}
	}
	return dl, nil
}
