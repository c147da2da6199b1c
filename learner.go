package llmroute

import (
	"time"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// bindRoute gives a route's strategy that keeps learned state (such as
// adaptive) the route's identity, under which its state survives reloads.
func bindRoute(r *Route) {
	if b, ok := r.strategy.(strategies.RouteBinder); ok {
		b.BindRoute(r.Name)
	}
}

// learn reports a finished attempt on c to the strategy that ordered the
// plan, if it learns from outcomes: a success with its latency, or a
// failure on the upstream's side (an error status, a timeout, a broken
// stream). An attempt that says nothing of the model (the client went
// away, a client error, a limit) is not reported.
func (p *plan) learn(req *strategies.Request, c *strategies.Candidate, res attemptResult, start time.Time) {
	if p.learner == nil {
		return
	}
	var sig strategies.Signal
	switch res.outcome {
	case outcomeDone:
		sig.Latency = time.Since(start)
	case outcomeRetry, outcomeBroken:
		sig.Failed = true
	default:
		return
	}
	p.learner.Outcome(req, c.Model, sig)
}
