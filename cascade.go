package llmroute

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// cascade answers with the first tier (model) whose answer passes the
// strategy's checks, trying the tiers from the cheapest; the last tier's
// answer is taken unchecked. A tier that cannot answer at all passes the
// request on too. When the last tier cannot answer either, the latest
// answer that failed a check is sent rather than an error. The
// X-LLM-Cascade header shows each tier's model and its outcome:
//
//	cheap:length,short > mid:judge=0.40 > premium:final
func (h *Handler) cascade(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, s *strategies.Cascade) error {
	tiers := modelsOf(p.candidates)
	var steps []string
	var total Usage
	calls := 0
	var chosen, fallback *call
	for i, tier := range tiers {
		c := h.call(r, req, p, tier)
		if c.err != nil || r.Context().Err() != nil {
			return gone(r)
		}
		total = total.add(c.usage)
		calls += c.attempts
		name := tier[0].Model
		if c.model != "" {
			name = c.model
		}
		if !c.ok() {
			steps = append(steps, name+":status="+strconv.Itoa(c.status))
			chosen = &c
			continue
		}
		if i == len(tiers)-1 {
			steps = append(steps, name+":final")
			chosen = &c
			break
		}
		failed := s.Check(req, c.answer)
		if len(failed) == 0 && s.Judge != nil {
			score, ok, jc := h.judge(r, req, p, s.Judge, c.answer)
			if jc.err != nil || r.Context().Err() != nil {
				return gone(r)
			}
			total = total.add(jc.usage)
			calls += jc.attempts
			switch {
			case !ok:
				failed = []string{"judge=error"}
			case !s.Judge.Pass(score):
				failed = []string{fmt.Sprintf("judge=%.2f", score)}
			default:
				name += fmt.Sprintf(":judge=%.2f", score)
			}
		}
		if len(failed) == 0 {
			steps = append(steps, name+":ok")
			chosen = &c
			break
		}
		steps = append(steps, name+":"+strings.Join(failed, ","))
		fallback, chosen = &c, &c
	}
	if !chosen.ok() && fallback != nil {
		chosen = fallback
	}
	return h.respond(w, r, req, p, *chosen, total, calls, HeaderCascade, strings.Join(steps, " > "))
}
