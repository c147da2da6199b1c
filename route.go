package llmroute

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-llm-route/llmroute/internal/jsonscan"
	"github.com/caddy-llm-route/llmroute/strategies"
)

// plan is the resolved model field: the route's name, its candidates in
// the order to try, and why.
type plan struct {
	route      string
	lane       int        // the calls made at once for one answer each have their own (record.go)
	rt         *Route     // the route, if the model field named one
	key        *ClientKey // the client's key, if keys are configured
	candidates []strategies.Candidate
	retryOn    []int
	reason     string
	pinned     string              // the provider a provider/model request names
	strategy   strategies.Strategy // the strategy that ordered the candidates, if any
	rec        *record
	// healthy candidates come first, then cooling ones cooling down.
	healthy, cooling int
	// params are set on every attempt's body (from the strategy).
	params map[string]json.RawMessage
	// learner learns from the attempts' outcomes, if the strategy does.
	learner strategies.Learner
	// calls made for the request before this plan's attempt loop began
	// (a hedge's loop counts on from its primary's).
	calls int
	// continuers may continue a broken stream once the candidates are
	// tried (a hedge's loop: its primary's candidate; rescueNext).
	continuers []strategies.Candidate
	// lease is the lease of the client body's pooled buffer, nil when
	// the body is not pooled: each attempt's body holds it until the
	// attempt ends.
	lease *bodyLease
	// candBuf holds the first healthy candidates (no allocation of
	// their own for one or two).
	candBuf [2]strategies.Candidate
}

// resolve turns the request into a plan: it finds the targets of the
// model field (a route, a registered model, or provider/model, plus the
// client's `models` list when enabled), drops candidates that cannot
// serve the request, lets the route's strategy order the rest, and puts
// pairs that are cooling down (or whose provider has no healthy
// upstream) last. It reads the request's prompt into req when a strategy
// or a filter needs it, and never changes the body.
func (h *Handler) resolve(r *http.Request, req *strategies.Request, key *ClientKey) (*plan, *requestError) {
	p := &plan{route: req.Model, retryOn: h.RetryOn, reason: "direct", key: key}
	rt, targets, rerr := h.targetsFor(req.Model)
	if rerr != nil {
		return nil, rerr
	}
	p.rt = rt
	if rt != nil {
		if len(rt.RetryOn) > 0 {
			p.retryOn = rt.RetryOn
		}
		p.reason = "fallback"
	} else if len(targets) == 1 && targets[0].Provider != "" {
		// provider/model
		p.route, p.pinned = targets[0].Model, targets[0].Provider
	}
	if h.ClientModels {
		if targets, rerr = h.withClientModels(req.Body, targets, key); rerr != nil {
			return nil, rerr
		}
	}

	// Reading the messages costs time on long prompts, so it is done only
	// when a strategy, a filter or a token or spend limit will look at
	// them.
	strategy := h.strategyFor(r, rt, key)
	p.strategy = strategy
	_, blind := strategy.(strategies.PromptBlind)
	if (strategy != nil && !blind) || h.needsPrompt || h.filtersApply(rt, targets, req) {
		req.ReadPrompt()
	}
	req.Header = r.Header
	// Healthy candidates are ordered by the strategy; pairs cooling down
	// follow in configured order as a last resort, so at least one
	// candidate is always tried.
	now := time.Now()
	healthy, cooling := p.candBuf[:0], []strategies.Candidate(nil)
	var why string
	for _, t := range targets {
		m := h.model(t.Model)
		if reason := h.unfit(m, rt, req); reason != "" {
			why = reason
			continue
		}
		for _, s := range m.serving {
			if t.Provider != "" && s.provider.Name != t.Provider {
				continue
			}
			if !s.provider.Serves(req.Endpoint) {
				why = fmt.Sprintf("no provider of %s serves %s", m.Name, req.Endpoint)
				continue
			}
			c := newCandidate(m, s, t)
			if strategy != nil {
				c.Stats = s.pair.Snapshot()
			}
			up := s.provider.Available() // (Caddy's health checks)
			s.pair.HealthChecked(up, now)
			if up && s.pair.Available(now) {
				healthy = append(healthy, c)
			} else {
				cooling = append(cooling, c)
			}
		}
	}
	if strategy != nil && len(healthy) > 0 {
		d := strategy.Select(req, healthy)
		p.learner, _ = strategy.(strategies.Learner)
		p.reason = d.Reason
		// A strategy may set parameters, but never the model, the
		// stream flag or the models list: those belong to the target,
		// the client and the gateway.
		for k, v := range d.Params {
			if h.owns(k) { // (Validate refuses the strategies it knows of)
				continue
			}
			if p.params == nil {
				p.params = make(map[string]json.RawMessage, len(d.Params))
			}
			p.params[k] = v
		}
	}
	p.candidates = append(healthy, cooling...)
	p.healthy, p.cooling = len(healthy), len(cooling)
	if rt != nil {
		for _, name := range rt.Fallback {
			if slices.ContainsFunc(p.candidates, func(c strategies.Candidate) bool { return c.Model == name }) {
				continue
			}
			m := h.model(name)
			if reason := h.unfit(m, nil, req); reason != "" {
				why = reason
				continue
			}
			for _, s := range m.serving {
				if s.provider.Serves(req.Endpoint) {
					p.candidates = append(p.candidates, newCandidate(m, s, nil))
				}
			}
		}
	}
	if len(p.candidates) == 0 {
		return nil, badRequest("no_candidate", "no model of %q can serve this request: %s", truncate(req.Model, 128), why)
	}
	// max_attempts caps the attempt loop; a strategy that makes several
	// calls (cascade, consensus) keeps its models, and each of its calls
	// is capped instead (call, multicall.go).
	if h.MaxAttempts > 0 && len(p.candidates) > h.MaxAttempts && !h.orchestrated(req, p) {
		p.candidates = p.candidates[:h.MaxAttempts]
	}
	return p, nil
}

// newCandidate is model m at one of its providers, with target t's
// parameters and weight (t may be nil: a route's fallback model).
func newCandidate(m *Model, s serving, t *Target) strategies.Candidate {
	c := strategies.Candidate{
		Model: m.Name, UpstreamModel: m.UpstreamName,
		Provider: s.provider, Pair: s.pair,
		InputPrice: m.InputPrice, OutputPrice: m.OutputPrice,
		Priced:  m.InputPrice > 0 || m.OutputPrice > 0,
		Quality: m.Quality, Context: m.Context, Weight: 1,
	}
	if t != nil {
		c.Params = t.Params
		if t.Weight != nil {
			c.Weight = *t.Weight
		}
	}
	return c
}

// withClientModels appends the targets of the models the client lists
// in its `models` array (OpenRouter's fallback list) to targets, each
// once. (The array is removed from the body sent upstream by
// rewriteBody.) The list must hold distinct names, no more of them than
// the gateway has routes and model+provider pairs: a longer one repeats
// itself or names what does not exist, and each entry costs a lookup.
func (h *Handler) withClientModels(body []byte, targets []*Target, key *ClientKey) ([]*Target, *requestError) {
	var list []byte
	jsonscan.EachMember(body, 0, func(m jsonscan.Member) bool {
		if m.Is("models") {
			list = m.Value
		}
		return list == nil
	})
	// (An empty array lists no fallback; any other value is an error.)
	if i := jsonscan.SkipSpace(list, 0); list != nil && (i >= len(list) || list[i] != '[') {
		return nil, badRequest("invalid_models", "\"models\" must be an array of model names")
	}
	limit := len(h.routes)
	for _, m := range h.models {
		limit += len(m.Providers)
	}
	for _, m := range h.discoveredModels() {
		limit += len(m.Providers)
	}
	targets = slices.Clip(targets) // never append into a route's own slice
	var names []string
	var rerr *requestError
	jsonscan.EachElement(list, func(v []byte) bool {
		name, ok := jsonscan.String(v)
		switch {
		case !ok:
			rerr = badRequest("invalid_models", "\"models\" must be an array of model names")
		case len(names) == limit:
			rerr = badRequest("invalid_models", "\"models\" lists more than %d models", limit)
		case slices.Contains(names, name):
			rerr = badRequest("invalid_models", "\"models\" lists %q more than once", truncate(name, 128))
		case !h.permits(key, name):
			rerr = &requestError{status: http.StatusForbidden, code: "model_not_allowed",
				msg: fmt.Sprintf("this API key may not use the model %q", truncate(name, 128))}
		}
		if rerr != nil {
			return false
		}
		names = append(names, name)
		var more []*Target
		if _, more, rerr = h.targetsFor(name); rerr != nil {
			return false
		}
		for _, t := range more {
			if !slices.ContainsFunc(targets, func(o *Target) bool { return o.Model == t.Model && o.Provider == t.Provider }) {
				targets = append(targets, t)
			}
		}
		return true
	})
	if rerr != nil {
		return nil, rerr
	}
	return targets, nil
}

// targetsFor resolves a model name: a route (returned too), a model
// pinned to a provider (provider/model), or a registered model.
func (h *Handler) targetsFor(name string) (*Route, []*Target, *requestError) {
	if rt, ok := h.routes[name]; ok {
		return rt, rt.Targets, nil
	}
	if prov, model, ok := h.pin(name); ok {
		return nil, []*Target{{Model: model, Provider: prov}}, nil
	}
	if m := h.model(name); m != nil {
		return nil, m.self, nil
	}
	if prov, model, ok := strings.Cut(name, "/"); ok && h.providers[prov] != nil {
		return nil, nil, &requestError{status: http.StatusNotFound, code: "model_not_found",
			msg: fmt.Sprintf("model %q is not served by provider %q", truncate(model, 128), prov)}
	}
	return nil, nil, &requestError{status: http.StatusNotFound, code: "model_not_found",
		msg: fmt.Sprintf("model %q does not exist", truncate(name, 128))}
}

// pin splits a provider/model name whose provider serves that model: a
// request for it goes to that provider alone. A configured model or route
// cannot be named so (Validate), and a discovered id of that shape (an
// aggregator's "openai/gpt-4o") does not take the pin's place.
func (h *Handler) pin(name string) (prov, model string, ok bool) {
	prov, model, ok = strings.Cut(name, "/")
	if !ok || h.providers[prov] == nil {
		return "", "", false
	}
	m := h.model(model)
	if m == nil || !slices.Contains(m.Providers, prov) {
		return "", "", false
	}
	return prov, model, true
}

// strategyFor returns the strategy ordering a route's candidates: the one
// the client's hint header names, if enabled, known and a route the
// client's key may ask for (a strategy may call models of its own, as a
// cascade's judge), else the route's.
func (h *Handler) strategyFor(r *http.Request, rt *Route, key *ClientKey) strategies.Strategy {
	if h.StrategyHeader != "" {
		if hint := r.Header.Get(h.StrategyHeader); hint != "" {
			if other, ok := h.routes[hint]; ok && other.strategy != nil && h.permits(key, hint) {
				return other.strategy
			}
		}
	}
	if rt == nil {
		return nil
	}
	return rt.strategy
}

// filtersApply reports whether unfit needs the request's text: a model
// the route may try lists capabilities, or has a context window the
// request might not fit. The prompt's token estimate never exceeds the
// body's length in bytes (tokens.Estimate counts at most a token per
// byte of text, and a message's overhead is less than its JSON), so a
// body that fits a window with its max_tokens beside it needs no
// reading. (The price cap reads no text.)
func (h *Handler) filtersApply(rt *Route, targets []*Target, req *strategies.Request) bool {
	needs := func(name string) bool {
		m := h.model(name)
		return len(m.Capabilities) > 0 || m.Context > 0 && int64(len(req.Body))+req.MaxTokens > int64(m.Context)
	}
	if rt != nil && slices.ContainsFunc(rt.Fallback, needs) {
		return true
	}
	return slices.ContainsFunc(targets, func(t *Target) bool { return needs(t.Model) })
}

// unfit says why a model cannot serve the request, or "" if it can: the
// context window is too small for the prompt plus the output cap (the
// client's, clamped to the model's max_output), a
// capability the request needs is missing (only checked when the model
// lists its capabilities), or the route's price cap excludes it.
func (h *Handler) unfit(m *Model, rt *Route, v *strategies.Request) string {
	if out := clampedOutput(v.MaxTokens, m.MaxOutput); m.Context > 0 && int64(v.PromptTokens)+out > int64(m.Context) {
		return fmt.Sprintf("the request (about %d tokens plus %d output) exceeds the context window of %s", v.PromptTokens, out, m.Name)
	}
	if len(m.Capabilities) > 0 {
		for _, need := range []struct {
			on  bool
			cap string
		}{{v.HasTools, "tools"}, {v.HasImages, "vision"}, {v.JSONMode, "json"}} {
			if need.on && !slices.Contains(m.Capabilities, need.cap) {
				return fmt.Sprintf("%s lacks the capability %q", m.Name, need.cap)
			}
		}
	}
	if rt != nil {
		unpriced := m.InputPrice == 0 && m.OutputPrice == 0
		if rt.MaxInputPrice > 0 && (unpriced || m.InputPrice > rt.MaxInputPrice) ||
			rt.MaxOutputPrice > 0 && (unpriced || m.OutputPrice > rt.MaxOutputPrice) {
			return fmt.Sprintf("%s is above the route's max_price", m.Name)
		}
	}
	return ""
}
