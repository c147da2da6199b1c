package llmroute

import (
	"context"
	"fmt"
	"net/http"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// consensus asks the first voters models at once and answers with the
// one chosen by the strategy's mode; models that fail to answer do not
// vote. The X-LLM-Consensus header shows the vote:
//
//	mode=majority votes=2/3 agreement=0.67 winner=mid
//
// votes counts the answers whose extracted value is the winner's, of
// the answers given; agreement is that share (majority, judge) or the
// winner's mean similarity to the others (agreement), and a judge's
// score follows as score=.
func (h *Handler) consensus(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, s *strategies.Consensus) error {
	voters := modelsOf(p.candidates)
	voters = voters[:min(len(voters), s.VoterCount())]
	calls := make([]call, len(voters))
	// The calls run on goroutines of their own (goroutine.go): a panic
	// in one cancels the others and is raised here once all returned.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := func() { cancel(errPanicked) }
	cr := r.WithContext(ctx)
	tasks := make([]*task, len(voters))
	for i := range voters {
		tasks[i] = spawn(func() { calls[i] = h.call(cr, req, p.inLane(i+1), voters[i]) }, stop)
	}
	h.waitAll(tasks)
	if r.Context().Err() != nil {
		return gone(r)
	}
	var total Usage
	attempts := 0
	var answered []*call
	for i := range calls {
		c := &calls[i]
		total = total.add(c.usage)
		attempts += c.attempts
		if c.ok() {
			answered = append(answered, c)
		}
	}
	if len(answered) == 0 {
		return h.respond(w, r, req, p, calls[0], total, attempts, HeaderConsensus,
			fmt.Sprintf("mode=%s votes=0/0", s.Mode))
	}

	keys := make([]string, len(answered))
	quality := make([]float64, len(answered))
	for i, c := range answered {
		keys[i] = s.Key(c.answer)
		if m := h.model(c.model); m != nil {
			quality[i] = m.Quality
		}
	}
	winner, votes := strategies.Vote(keys, quality)
	agreement := float64(votes) / float64(len(answered))
	extra := ""
	switch s.Mode {
	case "agreement":
		texts := make([]string, len(answered))
		for i, c := range answered {
			texts[i] = c.answer.Text + c.answer.ToolCalls
		}
		winner, agreement = strategies.Agreement(texts, quality)
	case "judge":
		scores := make([]float64, len(answered))
		judged := make([]call, len(answered))
		tasks = tasks[:0]
		for i, c := range answered {
			tasks = append(tasks, spawn(func() {
				var ok bool
				if scores[i], ok, judged[i] = h.judge(cr, req, p.inLane(len(voters)+1+i), s.Judge, c.answer); !ok {
					scores[i] = -1
				}
			}, stop))
		}
		h.waitAll(tasks)
		if r.Context().Err() != nil {
			return gone(r)
		}
		winner = -1
		for i := range answered {
			total = total.add(judged[i].usage)
			attempts += judged[i].attempts
			if winner < 0 || scores[i] > scores[winner] || scores[i] == scores[winner] && quality[i] > quality[winner] {
				winner = i
			}
		}
		extra = fmt.Sprintf(" score=%.2f", max(scores[winner], 0))
	}
	// votes: the answers sharing the winner's value
	votes = 0
	for _, k := range keys {
		if k != "" && k == keys[winner] {
			votes++
		}
	}
	if keys[winner] == "" {
		votes = 1
	}
	if s.Mode != "agreement" {
		agreement = float64(votes) / float64(len(answered))
	}
	c := answered[winner]
	return h.respond(w, r, req, p, *c, total, attempts, HeaderConsensus,
		fmt.Sprintf("mode=%s votes=%d/%d agreement=%.2f winner=%s%s", s.Mode, votes, len(answered), agreement, headerValue(c.model), extra))
}
