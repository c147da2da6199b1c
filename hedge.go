package llmroute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// Hedge asks the rest of a route's candidates in parallel when the
// current one has not started its answer after a delay: the first answer
// to start wins, and the other call is cancelled (its upstream
// connection closed). A budget caps the extra calls, so that an outage
// does not double the load.
type Hedge struct {
	// How long to wait for the answer to start (for a stream, its first
	// event; for JSON, the whole answer) before hedging.
	Delay caddy.Duration `json:"delay,omitempty"`

	// `p95`: the delay is the 95th percentile of the candidate's recent
	// times to answer (at least Delay), from the pair's live stats: of
	// streams, the time to the first token; of other answers, the whole
	// time. Until 20 are known, the delay is Delay (none: no hedging).
	Adaptive string `json:"adaptive,omitempty"`

	// The most hedged calls, as a share of the route's requests (0..1),
	// beyond the 10 the budget saves up and starts with (none with 0).
	// Default: 0.1.
	Budget *float64 `json:"budget,omitempty"`

	mu     sync.Mutex
	tokens float64 // hedges the budget allows now
}

// HeaderHedged says which call answered a hedged request: `primary` or
// `hedge`.
const HeaderHedged = "X-LLM-Hedged"

const defaultHedgeBudget = 0.1

var errHedgeLost = errors.New("another call answered first")

// Validate checks the values.
func (hg *Hedge) Validate() error {
	if hg.Delay < 0 {
		return fmt.Errorf("hedge: delay must not be negative")
	}
	if err := upstreams.ValidDuration("hedge: delay", hg.Delay); err != nil {
		return err
	}
	if hg.Adaptive != "" && hg.Adaptive != "p95" {
		return fmt.Errorf("hedge: unknown adaptive delay %q (want p95)", hg.Adaptive)
	}
	if hg.Adaptive == "" && hg.Delay == 0 {
		return fmt.Errorf("hedge: a delay or p95 is required")
	}
	if b := hg.Budget; b != nil && !(*b >= 0 && *b <= 1) {
		return fmt.Errorf("hedge: budget must be from 0 to 1, got %g", *b)
	}
	return nil
}

// hedgesSaved is the most hedges a route's budget saves up, and what it
// starts with, so that hedging shows from the first slow request.
const hedgesSaved = 10

// budget is the share of requests the route may hedge.
func (hg *Hedge) budget() float64 {
	if hg.Budget != nil {
		return *hg.Budget
	}
	return defaultHedgeBudget
}

// fill starts the budget full (hedgesSaved, none with a budget of 0),
// when the config is provisioned.
func (hg *Hedge) fill() {
	if hg.budget() > 0 {
		hg.tokens = hedgesSaved
	}
}

// deposit counts a request into the budget: each request adds budget
// hedges (up to hedgesSaved), each hedge takes one, so the hedges stay
// under budget × requests plus what was saved.
func (hg *Hedge) deposit() {
	b := hg.budget()
	hg.mu.Lock()
	hg.tokens = min(hg.tokens+b, hedgesSaved)
	hg.mu.Unlock()
}

// admin is the hedge as the admin API shows it.
func (hg *Hedge) admin() *adminHedge {
	a := &adminHedge{Adaptive: hg.Adaptive, Budget: hg.budget()}
	if hg.Delay > 0 {
		a.Delay = time.Duration(hg.Delay).String()
	}
	hg.mu.Lock()
	a.Saved = hg.tokens
	hg.mu.Unlock()
	return a
}

// take reports whether the budget allows a hedge, and takes it.
func (hg *Hedge) take() bool {
	hg.mu.Lock()
	defer hg.mu.Unlock()
	if hg.tokens < 1-1e-9 { // (tenths summed are not exact)
		return false
	}
	hg.tokens--
	return true
}

// delayFor is the hedge delay for candidate c of a request that
// streams or not; ok is false when there is none yet.
func (hg *Hedge) delayFor(c *strategies.Candidate, stream bool) (time.Duration, bool) {
	if hg.Adaptive != "p95" {
		return time.Duration(hg.Delay), true
	}
	p95, ok := c.Pair.Percentile(stream, 0.95)
	if !ok {
		return time.Duration(hg.Delay), hg.Delay > 0
	}
	return max(p95, time.Duration(hg.Delay)), true
}

// hedgeGate is the response writer of one of two racing calls: the
// first to start a good answer (a status below 400) claims the real
// response and the other is cancelled; until then headers are its own.
// An error answer is kept, not claimed.
type hedgeGate struct {
	race   *hedgeRace
	w      http.ResponseWriter
	name   string
	header http.Header
	cancel context.CancelCauseFunc
	won    bool
	status int
	body   bytes.Buffer // an error answer
	// noTarget logs that the gate's loop found no target that could
	// answer: the request's failure only if the gate's error answer
	// becomes the response (see noTarget).
	noTarget func()
}

// hedgeRace is what the two gates share.
type hedgeRace struct {
	mu     sync.Mutex
	winner *hedgeGate
	gates  [2]*hedgeGate
	calls  int             // the primary's attempt number: the hedge's calls come after it
	ctx    context.Context // the request's
}

// lose cancels g's call because the other call answered first, unless
// the client went away: then its call ends as the client's, not as a
// race lost (the request's context is done before its children are
// cancelled, so the check holds while they are).
func (rc *hedgeRace) lose(g *hedgeGate) {
	if rc.ctx.Err() == nil {
		g.cancel(errHedgeLost)
	}
}

func (g *hedgeGate) Header() http.Header {
	if g.won {
		return g.w.Header()
	}
	return g.header
}

func (g *hedgeGate) WriteHeader(status int) {
	if g.won || g.status != 0 || status < 200 {
		return
	}
	if status >= 400 {
		g.status = status
		return
	}
	rc := g.race
	rc.mu.Lock()
	if rc.winner == nil {
		rc.winner, g.won = g, true
	}
	gates := rc.gates
	rc.mu.Unlock()
	if !g.won {
		g.status = status
		rc.lose(g)
		return
	}
	for _, o := range gates {
		if o != g && o != nil {
			rc.lose(o)
		}
	}
	dst := g.w.Header()
	for k, v := range g.header {
		dst[k] = v
	}
	dst.Set(HeaderHedged, g.name)
	if g == gates[0] && gates[1] != nil {
		// The primary won a race the hedge had joined: both called.
		dst.Set(HeaderAttempts, strconv.Itoa(rc.calls+1))
	}
	g.w.WriteHeader(status)
}

func (g *hedgeGate) Write(p []byte) (int, error) {
	if g.status == 0 && !g.won {
		g.WriteHeader(http.StatusOK)
	}
	switch {
	case g.won:
		return g.w.Write(p)
	case g.status >= 400:
		return g.body.Write(p)
	}
	return 0, errHedgeLost
}

// Flush flushes the real response once claimed.
func (g *hedgeGate) Flush() {
	if g.won {
		_ = http.NewResponseController(g.w).Flush()
	}
}

// attemptHedged runs the attempt on candidate i, hedged when the route
// says so: if no answer has started after the hedge delay, and the
// budget allows, the rest of the candidates are tried at once (the
// attempt loop for them, into a gate of their own). When the hedge
// answered the client, or its error is the answer, done is true and
// serve returns err; otherwise res is the attempt's, as h.attempt
// returns it.
func (h *Handler) attemptHedged(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, i, n int, repl *caddy.Replacer) (attemptResult, bool, error) {
	var hg *Hedge
	if p.rt != nil {
		hg = p.rt.Hedge
	}
	if hg == nil || i == len(p.candidates)-1 || spliceOf(w).rescuing() {
		// (A continuation of a broken stream is not hedged: the stream
		// has started.)
		return h.attempt(w, r, req, p, &p.candidates[i], n, repl), false, nil
	}
	return h.hedged(w, r, req, p, i, n, repl, hg)
}

// hedged is attemptHedged with a hedge (its results are shared with the
// calls' goroutines, so they live on the heap: attemptHedged does not
// pay for that when the route has no hedge).
func (h *Handler) hedged(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, i, n int, repl *caddy.Replacer, hg *Hedge) (res attemptResult, done bool, err error) {
	c := &p.candidates[i]
	if n == 1 {
		hg.deposit()
	}
	delay, known := hg.delayFor(c, req.Stream)
	rc := &hedgeRace{calls: n, ctx: r.Context()}
	// Both calls run on goroutines of their own (goroutine.go): a panic
	// in either ends the race (the other call is cancelled) and is
	// raised here once both have returned.
	raceCtx, stopRace := context.WithCancelCause(r.Context())
	defer stopRace(nil)
	stop := func() { stopRace(errPanicked) }
	newGate := func(name string, w http.ResponseWriter) (*hedgeGate, context.Context) {
		ctx, cancel := context.WithCancelCause(raceCtx)
		g := &hedgeGate{race: rc, w: w, name: name, header: make(http.Header), cancel: cancel}
		return g, ctx
	}
	primary, pctx := newGate("primary", w)
	rc.gates[0] = primary
	defer primary.cancel(nil)

	attempted := spawn(func() { res = h.attempt(primary, r.WithContext(pctx), req, p, c, n, repl) }, stop)

	var timeout <-chan time.Time
	if known {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-attempted.done:
		h.raise(attempted.wait())
		return res, false, nil
	case <-timeout:
	}
	if rc.won() != nil || !hg.take() {
		h.raise(attempted.wait())
		return res, false, nil
	}

	// The hedge is an attempt loop of its own over the rest of the
	// candidates, with its own splice (and rescue) for a text stream: it
	// writes beneath this loop's splice, which only the primary's
	// answer goes through.
	hw := w
	if sp := spliceOf(w); sp != nil {
		hw = sp.w
	}
	hedge, hctx := newGate("hedge", hw)
	rc.mu.Lock()
	rc.gates[1] = hedge
	if rc.winner != nil {
		rc.lose(hedge)
	}
	rc.mu.Unlock()
	defer hedge.cancel(nil)
	sp := *p
	sp.candidates = slices.Clone(p.candidates[i+1:])
	sp.calls = n // the hedge's calls are counted on from the primary's
	// A stream the hedge answered that breaks may be continued by the
	// primary's candidate too (only slow, and cancelled when the hedge
	// won), once the hedge's own candidates are tried.
	sp.continuers = append([]strategies.Candidate{*c}, p.continuers...)
	hr := r.Clone(hctx)
	served := spawn(func() { err = h.serve(hedge, hr, req, &sp) }, stop)

	if pc := attempted.wait(); pc != nil {
		// (spawn's stop ended the race, the hedge's call with it)
		h.logPanic(served.wait())
		h.raise(pc)
	}
	if winner := rc.won(); winner == primary || winner == nil && res.outcome != outcomeRetry {
		// The primary answered (or failed in a way the client must see).
		rc.lose(hedge)
		if hc := served.wait(); !hc.aborted() {
			h.raise(hc)
		}
		return res, false, nil
	}
	// The hedge answered, or the primary failed and the hedge is the
	// rest of the loop. The primary's call is part of the record.
	p.rec.attempt(p, c, &res)
	// (A stream the hedge answered that broke for good aborts the
	// response here.)
	h.raise(served.wait())
	if rc.won() != hedge {
		// The hedge's error answer is the last word.
		if hedge.noTarget != nil {
			h.noTarget(w, hedge.noTarget)
		}
		hdr := w.Header()
		for k, v := range hedge.header {
			hdr[k] = v
		}
		hdr.Set(HeaderHedged, hedge.name)
		status := hedge.status
		if status == 0 {
			status = http.StatusBadGateway
		}
		w.WriteHeader(status)
		_, _ = w.Write(hedge.body.Bytes())
	}
	return res, true, err
}

// noTarget runs log, which says that no target could answer, when
// that is the request's failure: not in a hedge's loop (w is its gate),
// whose failure is the request's only once its error answer is the
// last word; attemptHedged then hands log to its own loop's writer.
func (h *Handler) noTarget(w http.ResponseWriter, log func()) {
	if sp, ok := w.(*splice); ok {
		w = sp.w
	}
	if g, ok := w.(*hedgeGate); ok {
		g.noTarget = log
		return
	}
	log()
}

// endGone ends res, an attempt's whose request's context ended: the
// client went away, or, when its error says errHedgeLost, the other call
// of a hedge race answered first (its gate was cancelled with it), in
// whichever loop the attempt ran: a primary, a hedge, a retry.
func endGone(r *http.Request, res *attemptResult) {
	res.outcome = outcomeGone
	if errors.Is(context.Cause(r.Context()), errHedgeLost) {
		res.err = errHedgeLost
	}
}

// won returns the gate that claimed the response, or nil.
func (rc *hedgeRace) won() *hedgeGate {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.winner
}

// parseHedge parses a route's hedge subdirective:
//
//	hedge <delay>|p95 [<min delay>] [budget <share>]
func parseHedge(d *caddyfile.Dispenser) (*Hedge, error) {
	hg := new(Hedge)
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	if args[0] == "p95" {
		hg.Adaptive, args = "p95", args[1:]
	}
	if len(args) > 0 && args[0] != "budget" {
		dur, err := caddy.ParseDuration(args[0])
		if err != nil {
			return nil, d.Errf("hedge: invalid delay %q: %v", args[0], err)
		}
		hg.Delay, args = caddy.Duration(dur), args[1:]
	}
	if len(args) > 0 {
		if args[0] != "budget" || len(args) != 2 {
			return nil, d.ArgErr()
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(args[1], "%"), 64)
		if err != nil {
			return nil, d.Errf("hedge: invalid budget %q", args[1])
		}
		if strings.HasSuffix(args[1], "%") {
			v /= 100
		}
		hg.Budget = &v
	}
	return hg, nil
}
