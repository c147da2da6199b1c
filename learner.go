package llmroute

import (
	"sync"
	"time"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// bindRoute gives a route's strategy that keeps learned state (such as
// adaptive) the route's identity, under which its state survives reloads,
// and the handler's Redis when the state lives there.
func (h *Handler) bindRoute(r *Route) {
	if b, ok := r.strategy.(strategies.SharedBinder); ok && h.redis != nil {
		b.BindShared(h.sharedState())
	}
	if b, ok := r.strategy.(strategies.RouteBinder); ok {
		b.BindRoute(r.Name)
	}
}

// learn reports a finished attempt on c to the strategy that ordered the
// plan, if it learns from outcomes: a success with its latency, or a
// failure on the upstream's side (an error status, a timeout, a broken
// stream). An attempt that says nothing of the model (the client went
// away, a client error, a limit) is not reported.
//
// A success is also remembered under the request's id, so that feedback
// on it (feedback_path) teaches the same strategy: see awaiting.
func (h *Handler) learn(p *plan, req *strategies.Request, c *strategies.Candidate, res attemptResult, start time.Time) {
	if p.learner == nil {
		return
	}
	var sig strategies.Signal
	switch res.outcome {
	case outcomeDone:
		sig.Latency = time.Since(start)
		// (A judge's plan shares the request's record; its strategy did
		// not choose the answer.)
		if p.rec != nil && p.rec.id != "" && (p.rec.p == nil || p.rec.p.learner == p.learner) {
			l := lesson{learner: p.learner, context: p.learner.ContextOf(req), model: c.Model}
			if p.key != nil {
				l.key = p.key.Name
			}
			h.awaiting.remember(p.rec.id, l)
		}
	case outcomeRetry, outcomeBroken:
		sig.Failed = true
	default:
		return
	}
	p.learner.Outcome(req, c.Model, sig)
}

// maxAwaiting bounds the decisions kept for feedback per handler; the
// oldest is forgotten first.
const maxAwaiting = 10_000

// lesson is what feedback on one answer teaches: the strategy that
// chose it, the request's context for it, and the model that answered;
// and who may teach it: the client key that made the request (its
// name, "" without client keys).
type lesson struct {
	learner strategies.Learner
	context string
	model   string
	key     string
}

// awaiting holds the lessons of the last answers a learning strategy
// routed, by request id, until feedback on them comes (or they are
// forgotten). It lives as long as its handler: feedback sent after a
// config reload on an answer from before it is logged but not learned.
type awaiting struct {
	mu    sync.Mutex
	byID  map[string]lesson
	order []string // ids in the order remembered, a ring of maxAwaiting
	next  int
}

func (a *awaiting) remember(id string, l lesson) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = make(map[string]lesson)
	}
	if len(a.order) < maxAwaiting {
		a.order = append(a.order, id)
	} else {
		delete(a.byID, a.order[a.next])
		a.order[a.next] = id
		a.next = (a.next + 1) % maxAwaiting
	}
	a.byID[id] = l
}

// teach gives score (0..1) on the answer to request id to the strategy
// that chose it, once, when key (the feedback's client key name, ""
// without client keys) made the request; it reports whether one was
// waiting for it. Another key's feedback is told from feedback on an
// unknown id by nothing, and leaves the lesson for the request's own.
func (a *awaiting) teach(id, key string, score float64) bool {
	a.mu.Lock()
	l, ok := a.byID[id]
	if ok && l.key != key {
		ok = false
	}
	if ok {
		delete(a.byID, id)
	}
	a.mu.Unlock()
	if ok {
		l.learner.Observe(l.context, l.model, score)
	}
	return ok
}
