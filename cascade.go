package llmroute

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-llm-route/llmroute/strategies"
)

// cascade answers with the first tier (model) whose answer passes the
// strategy's checks, trying the tiers from the cheapest; the last tier's
// answer is taken unchecked. A tier that cannot answer at all passes the
// request on too, unless its error is the client's (clientError): then
// the cascade ends there. When the last tier cannot answer either, the latest
// answer that failed a check is sent rather than an error. The
// X-LLM-Cascade header shows each tier's model and its outcome:
//
//	cheap:length,short > mid:judge=0.40 > premium:final
//
// The tiers escalate from the healthy ones: the last healthy tier is the
// top one, whose answer is final. A tier cooling down (kept last by
// resolve) is no tier above them: it is asked only when no tier before
// it could answer at all, and its answer is then final too. The cooling
// tiers (left in the route's order by resolve) go by cost among
// themselves, so that a cascade whose tiers all cool down still
// escalates from the cheapest.
func (h *Handler) cascade(w http.ResponseWriter, r *http.Request, req *strategies.Request, p *plan, s *strategies.Cascade) error {
	if end := p.healthy + p.cooling; p.cooling > 1 && end <= len(p.candidates) {
		s.Select(req, p.candidates[p.healthy:end])
	}
	tiers := modelsOf(p.candidates)
	top := len(tiers) - 1
	if n := len(modelsOf(p.candidates[:p.healthy])); n > 0 {
		top = n - 1
	}
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
			if fallback == nil && h.clientError(p, &c) {
				break // every tier would refuse it alike (none answered yet)
			}
			continue
		}
		if i >= top {
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

// clientError reports whether a tier's error answer is the request's
// fault, which every tier would answer alike: a 4xx an upstream sent
// (not a tier that no call could serve), as the attempt loop gives the
// client, but not a 408 or 429, a 401, 403 or 404 (the tier's provider
// refused its key or lacks the model), a status in retry_on, a prompt
// too long for the tier's context (a larger tier may take it), or a
// content-policy refusal with fallback_on content_filter. (Once a tier
// answered, the request is no fault of its own: see cascade.)
func (h *Handler) clientError(p *plan, c *call) bool {
	switch c.status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return false
	}
	if c.model == "" || c.status < 400 || c.status > 499 || matchesStatus(c.status, p.retryOn) {
		return false
	}
	switch errorKind(c.body) {
	case kindContextLength:
		return false
	case kindContentFilter:
		return !slices.Contains(h.FallbackOn, kindContentFilter)
	}
	return true
}
