package llmroute

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// candidate is one attempt the loop may make: a model at a provider, with
// the target's parameter overrides.
type candidate struct {
	model    *Model
	provider *upstreams.Provider
	params   map[string]json.RawMessage
	weight   float64
}

// plan is the resolved model field: the route's name, its candidates in
// the order to try, and why.
type plan struct {
	route      string
	candidates []candidate
	retryOn    []int
	reason     string
	pinned     string // the provider a provider/model request names
	// params are set on every attempt's body (from the strategy).
	params map[string]json.RawMessage
}

// resolve turns the request into a plan: it finds the targets of the
// model field (a route, a registered model, or provider/model, plus the
// client's `models` list when enabled), drops candidates that cannot
// serve the request, lets the route's strategy order the rest, and puts
// pairs that are cooling down last.
func (h *Handler) resolve(r *http.Request, req *Request) (*plan, *requestError) {
	p := &plan{route: req.Model, retryOn: h.RetryOn, reason: "direct"}
	rt, targets, rerr := h.targetsFor(req.Model)
	if rerr != nil {
		return nil, rerr
	}
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
		if list := gjson.GetBytes(req.Body, "models"); list.IsArray() {
			targets = slices.Clip(targets) // never append into a route's own slice
			for _, v := range list.Array() {
				_, more, rerr := h.targetsFor(v.String())
				if rerr != nil {
					return nil, rerr
				}
				for _, t := range more {
					if !slices.ContainsFunc(targets, func(o *Target) bool { return o.Model == t.Model && o.Provider == t.Provider }) {
						targets = append(targets, t)
					}
				}
			}
			req.Body, _ = sjson.DeleteBytes(req.Body, "models")
		}
	}

	// The strategy's view of the request, and every candidate that can
	// serve it. Reading the messages costs time on long prompts, so it is
	// done only when a strategy or a filter will look at them.
	strategy := h.strategyFor(r, rt)
	view := strategies.Request{Endpoint: req.Endpoint, Body: req.Body}
	if strategy != nil || h.filtersApply(rt, targets) {
		view = strategies.BuildRequest(req.Endpoint, req.Body)
	}
	view.Model, view.Stream, view.MaxTokens, view.Header = req.Model, req.Stream, req.MaxTokens, r.Header
	var all []candidate
	var why string
	for _, t := range targets {
		m := h.models[t.Model]
		if reason := h.unfit(m, rt, &view); reason != "" {
			why = reason
			continue
		}
		names := m.Providers
		if t.Provider != "" {
			names = []string{t.Provider}
		}
		for _, name := range names {
			prov := h.providers[name]
			if !prov.Serves(req.Endpoint) {
				why = fmt.Sprintf("no provider of %s serves %s", m.Name, req.Endpoint)
				continue
			}
			w := 1.0
			if t.Weight != nil {
				w = *t.Weight
			}
			all = append(all, candidate{model: m, provider: prov, params: t.Params, weight: w})
		}
	}
	// Healthy candidates are ordered by the strategy; pairs cooling down
	// follow in configured order as a last resort, so at least one
	// candidate is always tried.
	now := time.Now()
	var healthy, cooling []strategies.Candidate
	for i, c := range all {
		sc := strategies.Candidate{
			Model: c.model.Name, Provider: c.provider.Name,
			InputPrice: c.model.InputPrice, OutputPrice: c.model.OutputPrice,
			Priced:  c.model.InputPrice > 0 || c.model.OutputPrice > 0,
			Quality: c.model.Quality, Context: c.model.Context, Weight: c.weight,
			Stats: upstreams.Stats.Pair(c.provider.Name, c.model.UpstreamName).Snapshot(),
			Index: i,
		}
		if upstreams.Cooldowns.Until(c.provider.Name, c.model.UpstreamName).After(now) || !c.provider.Available() {
			cooling = append(cooling, sc)
		} else {
			healthy = append(healthy, sc)
		}
	}
	if strategy != nil && len(healthy) > 0 {
		d := strategy.Select(&view, healthy)
		p.reason = d.Reason
		// A strategy may set parameters, but never the model or the
		// stream flag: those belong to the target and the client.
		for k, v := range d.Params {
			if k == h.ModelKey || k == "stream" {
				continue
			}
			if p.params == nil {
				p.params = make(map[string]json.RawMessage, len(d.Params))
			}
			p.params[k] = v
		}
	}
	ordered := append(healthy, cooling...)
	p.candidates = make([]candidate, 0, len(ordered))
	for _, sc := range ordered {
		p.candidates = append(p.candidates, all[sc.Index])
	}
	if rt != nil {
		for _, name := range rt.Fallback {
			if slices.ContainsFunc(p.candidates, func(c candidate) bool { return c.model.Name == name }) {
				continue
			}
			m := h.models[name]
			if reason := h.unfit(m, nil, &view); reason != "" {
				why = reason
				continue
			}
			for _, pn := range m.Providers {
				if prov := h.providers[pn]; prov.Serves(req.Endpoint) {
					p.candidates = append(p.candidates, candidate{model: m, provider: prov, weight: 1})
				}
			}
		}
	}
	if len(p.candidates) == 0 {
		return nil, badRequest("no_candidate", "no model of %q can serve this request: %s", truncate(req.Model, 128), why)
	}
	if h.MaxAttempts > 0 && len(p.candidates) > h.MaxAttempts {
		p.candidates = p.candidates[:h.MaxAttempts]
	}
	return p, nil
}

// targetsFor resolves a model name: a route (returned too), a registered
// model, or provider/model.
func (h *Handler) targetsFor(name string) (*Route, []*Target, *requestError) {
	if rt, ok := h.routes[name]; ok {
		return rt, rt.Targets, nil
	}
	if _, ok := h.models[name]; ok {
		return nil, []*Target{{Model: name}}, nil
	}
	if prov, model, ok := strings.Cut(name, "/"); ok && h.providers[prov] != nil {
		m, ok := h.models[model]
		if !ok || !slices.Contains(m.Providers, prov) {
			return nil, nil, &requestError{status: http.StatusNotFound, code: "model_not_found",
				msg: fmt.Sprintf("model %q is not served by provider %q", truncate(model, 128), prov)}
		}
		return nil, []*Target{{Model: model, Provider: prov}}, nil
	}
	return nil, nil, &requestError{status: http.StatusNotFound, code: "model_not_found",
		msg: fmt.Sprintf("model %q does not exist", truncate(name, 128))}
}

// strategyFor returns the strategy ordering a route's candidates: the one
// the client's hint header names, if enabled and known, else the route's.
func (h *Handler) strategyFor(r *http.Request, rt *Route) strategies.Strategy {
	if h.StrategyHeader != "" {
		if hint := r.Header.Get(h.StrategyHeader); hint != "" {
			if other, ok := h.routes[hint]; ok && other.strategy != nil {
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
// the route may try has a context window or lists capabilities. (The
// price cap reads no text.)
func (h *Handler) filtersApply(rt *Route, targets []*Target) bool {
	needs := func(name string) bool {
		m := h.models[name]
		return m.Context > 0 || len(m.Capabilities) > 0
	}
	if rt != nil && slices.ContainsFunc(rt.Fallback, needs) {
		return true
	}
	return slices.ContainsFunc(targets, func(t *Target) bool { return needs(t.Model) })
}

// unfit says why a model cannot serve the request, or "" if it can: the
// context window is too small for the prompt plus the output cap, a
// capability the request needs is missing (only checked when the model
// lists its capabilities), or the route's price cap excludes it.
func (h *Handler) unfit(m *Model, rt *Route, v *strategies.Request) string {
	if m.Context > 0 && int64(v.PromptTokens)+v.MaxTokens > int64(m.Context) {
		return fmt.Sprintf("the request (about %d tokens plus %d output) exceeds the context window of %s", v.PromptTokens, v.MaxTokens, m.Name)
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
