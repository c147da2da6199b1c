package llmroute

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/strategies"
)

// defaultOutputReserve is the output reserved for a request that sets no
// output cap on a model without max_output.
const defaultOutputReserve = 4096

// provisionLimits makes the limit subjects of the client keys, models,
// providers and routes, and opens the store when anything is limited.
func (h *Handler) provisionLimits() error {
	limited := false
	subject := func(name string, l limits.Limits) *limits.Subject {
		if l.Empty() {
			return nil
		}
		limited = true
		if l.TPM > 0 || l.DailyTokens > 0 || l.DailyBudget > 0 || l.MonthlyBudget > 0 {
			h.needsPrompt = true
		}
		return limits.NewSubject(name, l, h.resetLoc)
	}
	for _, k := range h.keys {
		k.subject = subject("key:"+k.Name, k.Limits)
	}
	for _, m := range h.Models {
		m.subject = subject("model:"+m.Name, m.Limits)
	}
	h.provSubject = make(map[string]*limits.Subject)
	for _, p := range h.Providers {
		if s := subject("provider:"+p.Identity(), p.Limits); s != nil {
			h.provSubject[p.Name] = s
		}
	}
	for _, r := range h.Routes {
		r.subject = subject("route:"+r.Name, r.Limits)
	}
	if !limited {
		return nil
	}
	return h.openStore()
}

// denial is why an attempt was not admitted.
type denial struct {
	kind        limits.Kind
	subject     string
	retryAfter  time.Duration
	unavailable bool // the shared state could not be asked (on_error deny)
}

// limit names what turned the attempt away, for the reason and the
// record: a limit, or state_unavailable.
func (d *denial) limit() string {
	if d.unavailable {
		return "state_unavailable"
	}
	return d.kind.String()
}

// String says what turned the attempt away, for the client.
func (d *denial) String() string {
	if d.unavailable {
		return "the shared state cannot be reached (on_error deny)"
	}
	return d.kind.String() + " of " + d.subject
}

// admit reserves what an attempt on c may take of every limit that
// applies to it: the client key's, the route's, the model's and the
// provider's, all or nothing. It returns a nil reservation when nothing
// is limited, and a denial when a limit has no room.
func (h *Handler) admit(ctx context.Context, req *strategies.Request, p *plan, c *strategies.Candidate, now time.Time) (*limits.Reservation, *denial) {
	if h.quotas == nil || req.Endpoint == countTokensEndpoint {
		return nil, nil
	}
	m := h.model(c.Model)
	var subjects [4]*limits.Subject
	if p.key != nil {
		subjects[0] = p.key.subject
	}
	if p.rt != nil {
		subjects[1] = p.rt.subject
	}
	subjects[2], subjects[3] = m.subject, h.provSubject[c.Provider.Name]
	var out int64
	if generates(req.Endpoint) {
		out = h.sentOutputCap(req, p, c) * choices(req, p, c)
	}
	a := estimate(req, m, out)
	res := limits.NewReservation()
	for _, s := range subjects {
		if s != nil {
			res.Charges = s.Charges(res.Charges, a, now)
		}
	}
	if len(res.Charges) == 0 {
		res.Free()
		return nil, nil
	}
	v, err := res.Reserve(ctx, h.quotas, now)
	var d *denial
	switch {
	case err != nil:
		// The store's on_error policy speaks through its verdict; an
		// error it still returns admits the request.
	case v.Unavailable:
		d = &denial{retryAfter: v.RetryAfter, unavailable: true}
	case !v.OK:
		ch := res.Charges[v.Denied]
		d = &denial{kind: ch.Kind, subject: limits.SubjectOf(ch.Counter), retryAfter: v.RetryAfter}
	default:
		return res, nil
	}
	res.Free()
	return nil, d
}

// generates reports whether answers to an endpoint may hold generated
// tokens, which a reservation covers up to the output cap: not an
// embedding, a moderation or a rerank, whose usage is their input.
func generates(endpoint string) bool {
	switch endpoint {
	case "/embeddings", "/moderations", "/rerank":
		return false
	}
	return true
}

// choices is how many answers the body sent to c asks for (OpenAI's
// `n`), each of which may take the whole output cap; at least 1.
func choices(req *strategies.Request, p *plan, c *strategies.Candidate) int64 {
	if n, ok := sentField(req, p, c, "n"); ok && n > 1 {
		return n
	}
	return 1
}

// estimate is what a request may take at most on model m: one request,
// the prompt estimate plus the output cap out in tokens, and their price.
func estimate(req *strategies.Request, m *Model, out int64) limits.Amount {
	prompt := float64(req.PromptTokens)
	return limits.Amount{Requests: 1, Tokens: prompt + float64(out),
		Cost: (prompt*m.InputPrice + float64(out)*m.OutputPrice) / 1e6}
}

// clampOutput returns the parameters that lower the output cap fields
// of the body sent to c to the model's max_output, or nil when none is
// above it. rewriteBody sets them last, after the target's and the
// strategy's parameters, whose values it judges (see askedOutput).
func (h *Handler) clampOutput(req *strategies.Request, p *plan, c *strategies.Candidate) map[string]json.RawMessage {
	m := h.model(c.Model)
	if m.MaxOutput <= 0 || askedOutput(req, p, c) <= m.MaxOutput {
		return nil
	}
	var params map[string]json.RawMessage
	for _, field := range outputCapFields {
		if n, ok := sentField(req, p, c, field); ok && n > m.MaxOutput {
			if params == nil {
				params = make(map[string]json.RawMessage, 1)
			}
			params[field] = json.RawMessage(strconv.FormatInt(m.MaxOutput, 10))
		}
	}
	return params
}

// sentOutputCap is the most output the body sent to c can get: what it
// asks for (askedOutput), clamped to the model's max_output, or
// max_output, or the default. Reservations and cost estimates use it.
func (h *Handler) sentOutputCap(req *strategies.Request, p *plan, c *strategies.Candidate) int64 {
	return outputCap(askedOutput(req, p, c), h.model(c.Model).MaxOutput)
}

// askedOutput is the output cap the body sent to c asks for before the
// clamp: the largest of its cap fields, each as the strategy's
// parameters set it, else the target's, else the client's body (the
// order rewriteBody applies them in); 0 when none is set.
func askedOutput(req *strategies.Request, p *plan, c *strategies.Candidate) int64 {
	if (p == nil || len(p.params) == 0) && len(c.Params) == 0 {
		return req.MaxTokens
	}
	var asked int64
	for _, field := range outputCapFields {
		if n, ok := sentField(req, p, c, field); ok {
			asked = max(asked, n)
		}
	}
	return asked
}

// sentField is the number an output cap field of the body sent to c
// holds, before the clamp; ok is false when it holds no number.
func sentField(req *strategies.Request, p *plan, c *strategies.Candidate, field string) (int64, bool) {
	var v gjson.Result
	if raw, set := planParam(p, field); set {
		v = gjson.ParseBytes(raw)
	} else if raw, set := c.Params[field]; set {
		v = gjson.ParseBytes(raw)
	} else {
		v = gjson.GetBytes(req.Body, field)
	}
	if v.Type != gjson.Number {
		return 0, false
	}
	return v.Int(), true
}

// planParam is the strategy's parameter of that name, if it set one.
func planParam(p *plan, name string) (json.RawMessage, bool) {
	if p == nil {
		return nil, false
	}
	raw, ok := p.params[name]
	return raw, ok
}

// clampedOutput is a client's output cap asked, clamped to maxOutput
// when set; 0 when none was asked.
func clampedOutput(asked, maxOutput int64) int64 {
	if maxOutput > 0 {
		return min(asked, maxOutput)
	}
	return asked
}

// outputCapFields are the body fields that cap a request's output.
var outputCapFields = []string{"max_tokens", "max_completion_tokens", "max_output_tokens"}

// outputCap is the most output a request can get: the client's cap,
// clamped to the model's max_output, or max_output, or the default.
func outputCap(asked, maxOutput int64) int64 {
	switch {
	case asked > 0:
		return clampedOutput(asked, maxOutput)
	case maxOutput > 0:
		return maxOutput
	}
	return defaultOutputReserve
}

// actual is what an answer took on model m, from its usage; ok is false
// when the answer reported none.
func actual(u Usage, m *Model) (limits.Amount, bool) {
	if u.PromptTokens == 0 && u.CompletionTokens == 0 {
		return limits.Amount{}, false
	}
	read, write := float64(u.CacheReadTokens), float64(u.CacheWriteTokens)
	plain := max(float64(u.PromptTokens)-read-write, 0)
	readPrice, writePrice := m.InputPrice, m.InputPrice
	if m.CacheReadPrice != nil {
		readPrice = *m.CacheReadPrice
	}
	if m.CacheWritePrice != nil {
		writePrice = *m.CacheWritePrice
	}
	return limits.Amount{
		Requests: 1,
		Tokens:   float64(u.PromptTokens + u.CompletionTokens),
		Cost:     (plain*m.InputPrice + read*readPrice + write*writePrice + float64(u.CompletionTokens)*m.OutputPrice) / 1e6,
	}, true
}

// settle ends an attempt's reservation: a success is settled on the
// answer's usage (or, without usage, on the reservation itself);
// anything else gives the reservation back, unless it reported usage
// (a stream that broke after its usage, a hedge's loser whose answer
// came whole as the other won), which it is settled on.
func (h *Handler) settle(res *limits.Reservation, c *strategies.Candidate, outcome outcome, aw *attemptWriter) {
	if res == nil {
		return
	}
	ctx, now := context.Background(), time.Now()
	if outcome != outcomeDone && (aw == nil || aw.usage == Usage{}) {
		// No answer, or one that reported no usage (a hedge's loser
		// cancelled before its first byte, say): nothing to settle on.
		_ = res.Release(ctx, now)
		return
	}
	var used limits.Amount
	ok := false
	if aw != nil {
		used, ok = actual(aw.usage, h.model(c.Model))
	}
	if !ok {
		used = reserved(res)
	}
	_ = res.Settle(ctx, used, now)
}

// reserved is the amount a reservation took, read back from its charges.
func reserved(res *limits.Reservation) limits.Amount {
	var a limits.Amount
	for _, ch := range res.Charges {
		switch ch.Kind {
		case limits.RPM, limits.DailyRequests:
			a.Requests = ch.Amount
		case limits.TPM, limits.DailyTokens:
			a.Tokens = ch.Amount
		case limits.DailyBudget, limits.MonthlyBudget:
			a.Cost = ch.Amount
		}
	}
	return a
}

// degrade reorders the candidates after position i, whose attempt was
// denied by a limit, by the route's on_exhausted: the cheapest first
// (default), the strategy's order (`next`), or the listed models first.
func (h *Handler) degrade(req *strategies.Request, p *plan, i int) {
	rest := p.candidates[i+1:]
	order := []string{"cheapest"}
	if p.rt != nil && len(p.rt.OnExhausted) > 0 {
		order = p.rt.OnExhausted
	}
	switch order[0] {
	case "next":
	case "cheapest":
		slices.SortStableFunc(rest, func(a, b strategies.Candidate) int {
			return compareCost(estimateCost(req, &a, h.sentOutputCap(req, p, &a)), estimateCost(req, &b, h.sentOutputCap(req, p, &b)))
		})
	default:
		strategies.Prefer(rest, order)
	}
}

// estimateCost is the candidate's estimated cost of req with an output
// cap of out; +Inf when the model has no price (never read as free).
func estimateCost(req *strategies.Request, c *strategies.Candidate, out int64) float64 {
	if !c.Priced {
		return math.Inf(1)
	}
	return (float64(req.PromptTokens)*c.InputPrice + float64(out)*c.OutputPrice) / 1e6
}

func compareCost(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// setRateHeaders sets OpenAI's x-ratelimit-* headers of an answer from
// its reservation: the tightest requests-per-minute and tokens-per-minute
// limits that applied, and the room left on them.
func setRateHeaders(hdr http.Header, res *limits.Reservation) {
	if res == nil {
		return
	}
	for k, kind := range [2]limits.Kind{limits.RPM, limits.TPM} {
		best := -1
		for i, ch := range res.Charges {
			if ch.Kind == kind && (best < 0 || ch.Left < res.Charges[best].Left) {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		ch := res.Charges[best]
		// As hdr.Set would, with the keys in canonical form already and
		// the two values in one array.
		v := &[2]string{strconv.FormatInt(int64(ch.Counter.Limit), 10), strconv.FormatInt(max(int64(ch.Left), 0), 10)}
		hdr[rateKeys[k][0]], hdr[rateKeys[k][1]] = v[0:1:1], v[1:2:2]
	}
}

// rateKeys are the canonical names of the headers setRateHeaders sets:
// the limit and the room left, of requests and of tokens per minute.
var rateKeys = [2][2]string{
	{http.CanonicalHeaderKey("X-Ratelimit-Limit-requests"), http.CanonicalHeaderKey("X-Ratelimit-Remaining-requests")},
	{http.CanonicalHeaderKey("X-Ratelimit-Limit-tokens"), http.CanonicalHeaderKey("X-Ratelimit-Remaining-tokens")},
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}
