package llmroute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// live lists the provisioned llm_route handlers, in the order they were
// provisioned: Provision adds a handler once it is ready, Cleanup
// removes it, so the admin API sees every handler of the running
// configurations (during a reload, briefly, the old and the new one).
var live struct {
	sync.Mutex
	handlers []*Handler
}

func register(h *Handler) {
	live.Lock()
	live.handlers = append(live.handlers, h)
	live.Unlock()
}

func unregister(h *Handler) {
	live.Lock()
	live.handlers = slices.DeleteFunc(live.handlers, func(o *Handler) bool { return o == h })
	live.Unlock()
}

// liveHandlers returns the handlers with their names in the admin API:
// the configured name or a default, made unique with #2, #3 …
func liveHandlers() ([]*Handler, []string) {
	live.Lock()
	hs := slices.Clone(live.handlers)
	live.Unlock()
	names := make([]string, len(hs))
	seen := make(map[string]int)
	for i, h := range hs {
		name := h.Name
		if name == "" {
			name = h.defaultName()
		}
		seen[name]++
		if n := seen[name]; n > 1 {
			name += "#" + strconv.Itoa(n)
		}
		names[i] = name
	}
	return hs, names
}

// defaultName names a handler by what it routes: its providers'
// identities, its models and its routes.
func (h *Handler) defaultName() string {
	sum := sha256.New()
	for _, p := range h.Providers {
		fmt.Fprintf(sum, "p%d:%s;", len(p.Identity()), p.Identity())
	}
	for _, m := range h.Models {
		fmt.Fprintf(sum, "m%d:%s;", len(m.Name), m.Name)
	}
	for _, r := range h.Routes {
		fmt.Fprintf(sum, "r%d:%s;", len(r.Name), r.Name)
	}
	return "llm_route-" + hex.EncodeToString(sum.Sum(nil)[:4])
}

// adminAPI is the admin API module `admin.api.llm_route`: the live
// state of every llm_route handler (GET /llm_route/) and resets of
// cooldowns and stats (POST /llm_route/reset). Caddy's admin server
// checks the request's host and origin before it gets here.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.llm_route",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/llm_route/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case "/llm_route/":
		if r.Method != http.MethodGet {
			return apiError(http.StatusMethodNotAllowed, "method not allowed: GET the state, POST to /llm_route/reset")
		}
		return writeAdminJSON(w, adminState(r.Context(), time.Now()))
	case "/llm_route/reset":
		if r.Method != http.MethodPost {
			return apiError(http.StatusMethodNotAllowed, "method not allowed: POST a reset")
		}
		return a.reset(w, r)
	}
	return apiError(http.StatusNotFound, "unknown llm_route admin path %q: GET /llm_route/ or POST /llm_route/reset", r.URL.Path)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "\t")
	if err := enc.Encode(v); err != nil {
		return apiError(http.StatusInternalServerError, "encoding the state: %v", err)
	}
	return nil
}

// The admin API's JSON. Nothing secret goes in: a provider's api_key
// and headers, and client keys' secrets, are never written; an api_key
// shows as REDACTED.
type (
	adminOutput struct {
		Handlers []adminHandler `json:"handlers"`
	}
	adminHandler struct {
		Name      string          `json:"name"`
		Providers []adminProvider `json:"providers"`
		Models    []adminModel    `json:"models"`
		Routes    []adminRoute    `json:"routes"`
		Keys      []adminKey      `json:"keys,omitempty"`
		// QuotaError says why the quota usage could not be read.
		QuotaError string `json:"quota_error,omitempty"`
	}
	adminProvider struct {
		Name      string           `json:"name"`
		Format    string           `json:"format"`
		BasePath  string           `json:"base_path"`
		APIKey    string           `json:"api_key,omitempty"`
		Healthy   bool             `json:"healthy"` // reverse_proxy has an available upstream
		Upstreams []adminUpstream  `json:"upstreams,omitempty"`
		Discovery *adminDiscovery  `json:"discovery,omitempty"`
		Quota     []adminQuotaItem `json:"quota,omitempty"`
	}
	adminUpstream struct {
		Address     string `json:"address"`
		Healthy     bool   `json:"healthy"`
		NumRequests int    `json:"num_requests"`
		Fails       int    `json:"fails"`
	}
	adminDiscovery struct {
		Models      []string   `json:"models"`
		Fetches     int64      `json:"fetches"`
		LastSuccess *time.Time `json:"last_success,omitempty"`
		// Error is the last fetch's failure: the models are the last
		// known list.
		Error    string     `json:"error,omitempty"`
		FailedAt *time.Time `json:"failed_at,omitempty"`
		Refresh  string     `json:"refresh"`
	}
	adminModel struct {
		Name         string           `json:"name"`
		UpstreamName string           `json:"upstream_name"`
		Discovered   bool             `json:"discovered,omitempty"`
		Providers    []adminPair      `json:"providers"`
		Quota        []adminQuotaItem `json:"quota,omitempty"`
	}
	adminPair struct {
		Provider string `json:"provider"`
		// Health is the pair's own state: healthy, cooling (a
		// cooldown runs), half_open (a probe may go through), probing
		// (a probe is under way) or ramping (recovered; traffic
		// returns gradually). Probes counts the probes begun and
		// Recoveries the cooldowns a success ended.
		Health              string     `json:"health"`
		Probes              uint64     `json:"probes"`
		Recoveries          uint64     `json:"recoveries"`
		CooldownUntil       *time.Time `json:"cooldown_until,omitempty"`
		CooldownRemainingMs int64      `json:"cooldown_remaining_ms,omitempty"`
		Shared              bool       `json:"shared,omitempty"`
		Stats               adminStats `json:"stats"`
	}
	adminStats struct {
		LatencyMs       float64 `json:"latency_ms"`
		TTFTMs          float64 `json:"ttft_ms"`
		TokensPerSecond float64 `json:"tokens_per_second"`
		ErrorRate       float64 `json:"error_rate"`
		InFlight        int64   `json:"in_flight"`
		Samples         int64   `json:"samples"`
		// The 95th percentiles of the recent times (hedge p95's delays).
		LatencyP95Ms float64 `json:"latency_p95_ms,omitempty"`
		TTFTP95Ms    float64 `json:"ttft_p95_ms,omitempty"`
	}
	adminRoute struct {
		Name     string           `json:"name"`
		Strategy string           `json:"strategy"`
		Builtin  bool             `json:"builtin,omitempty"`
		Targets  []adminTarget    `json:"targets"`
		Fallback []string         `json:"fallback,omitempty"`
		Hedge    *adminHedge      `json:"hedge,omitempty"`
		Quota    []adminQuotaItem `json:"quota,omitempty"`
	}
	// adminHedge is a route's hedge setting and the hedges its budget
	// allows now.
	adminHedge struct {
		Delay    string  `json:"delay,omitempty"`
		Adaptive string  `json:"adaptive,omitempty"`
		Budget   float64 `json:"budget"`
		Saved    float64 `json:"saved"`
	}
	adminTarget struct {
		Model    string `json:"model"`
		Provider string `json:"provider,omitempty"`
	}
	adminKey struct {
		Name   string           `json:"name"`
		Models []string         `json:"models,omitempty"`
		Quota  []adminQuotaItem `json:"quota,omitempty"`
	}
	adminQuotaItem struct {
		Limit     string     `json:"limit"` // rpm, tpm, daily_tokens, …
		Max       float64    `json:"max"`
		Used      float64    `json:"used"`
		Remaining float64    `json:"remaining"`
		ResetsAt  *time.Time `json:"resets_at,omitempty"` // calendar limits
	}
)

// adminState reads the state of every live handler.
func adminState(ctx context.Context, now time.Time) adminOutput {
	hs, names := liveHandlers()
	out := adminOutput{Handlers: make([]adminHandler, 0, len(hs))}
	for i, h := range hs {
		out.Handlers = append(out.Handlers, h.adminState(ctx, names[i], now))
	}
	return out
}

func (h *Handler) adminState(ctx context.Context, name string, now time.Time) adminHandler {
	q := &quotaReader{h: h, ctx: ctx, now: now}
	out := adminHandler{Name: name}
	for _, p := range h.Providers {
		ap := adminProvider{Name: p.Name, Format: p.Format, BasePath: p.BasePath, Healthy: p.Available(),
			Quota: q.of(h.provSubject[p.Name])}
		if p.APIKey != "" {
			ap.APIKey = "REDACTED"
		}
		if rp := p.Proxy(); rp != nil {
			for _, u := range rp.Upstreams {
				ap.Upstreams = append(ap.Upstreams, adminUpstream{Address: u.Dial, Healthy: u.Healthy(),
					NumRequests: u.Host.NumRequests(), Fails: u.Host.Fails()})
			}
		}
		if h.disc != nil && h.disc.lists[p.Name] != nil {
			st := h.disc.lists[p.Name].status()
			ad := &adminDiscovery{Models: st.IDs, Fetches: st.Fetches, Error: st.Err,
				Refresh: p.RefreshInterval().String()}
			if ad.Models == nil {
				ad.Models = []string{}
			}
			if !st.Fetched.IsZero() {
				ad.LastSuccess = &st.Fetched
			}
			if st.Err != "" {
				ad.FailedAt = &st.FailedAt
			}
			ap.Discovery = ad
		}
		out.Providers = append(out.Providers, ap)
	}
	addModel := func(m *Model, discovered bool) {
		am := adminModel{Name: m.Name, UpstreamName: m.UpstreamName, Discovered: discovered, Quota: q.of(m.subject)}
		for _, s := range m.serving {
			ps := pairState(s, now)
			ps.Shared = h.shared != nil
			am.Providers = append(am.Providers, ps)
		}
		out.Models = append(out.Models, am)
	}
	for _, m := range h.Models {
		if !isTemplate(m) {
			addModel(m, false)
		}
	}
	disc := h.discoveredModels()
	for _, id := range slices.Sorted(maps.Keys(disc)) {
		addModel(disc[id], true)
	}
	routeNames := make([]string, 0, len(h.routes))
	for name := range h.routes {
		routeNames = append(routeNames, name)
	}
	sort.Strings(routeNames)
	for _, name := range routeNames {
		r := h.routes[name]
		ar := adminRoute{Name: r.Name, Strategy: "fallback", Builtin: !slices.Contains(h.Routes, r),
			Fallback: r.Fallback, Quota: q.of(r.subject)}
		if m, ok := r.strategy.(caddy.Module); ok {
			ar.Strategy = m.CaddyModule().ID.Name()
		}
		for _, t := range r.Targets {
			ar.Targets = append(ar.Targets, adminTarget{Model: t.Model, Provider: t.Provider})
		}
		if hg := r.Hedge; hg != nil {
			ar.Hedge = hg.admin()
		}
		out.Routes = append(out.Routes, ar)
	}
	for _, k := range h.keys {
		out.Keys = append(out.Keys, adminKey{Name: k.Name, Models: k.Models, Quota: q.of(k.subject)})
	}
	if q.err != nil {
		out.QuotaError = q.err.Error()
	}
	return out
}

// pairState is the state of one model at one provider.
func pairState(s serving, now time.Time) adminPair {
	st := s.pair.Snapshot()
	ap := adminPair{Provider: s.provider.Name, Stats: adminStats{
		LatencyMs: st.LatencyMs, TTFTMs: st.TTFTMs, TokensPerSecond: st.TokensPerSecond,
		ErrorRate: st.ErrorRate, InFlight: st.InFlight, Samples: st.Samples}}
	if d, ok := s.pair.Percentile(false, 0.95); ok {
		ap.Stats.LatencyP95Ms = float64(d.Microseconds()) / 1e3
	}
	if d, ok := s.pair.Percentile(true, 0.95); ok {
		ap.Stats.TTFTP95Ms = float64(d.Microseconds()) / 1e3
	}
	if until := s.pair.CooldownUntil(); !until.IsZero() {
		ap.CooldownUntil = &until
		if until.After(now) {
			ap.CooldownRemainingMs = until.Sub(now).Milliseconds()
		}
	}
	var state string
	state, ap.Probes, ap.Recoveries = upstreams.Health(s.pair, now)
	ap.Health = healthWord(state)
	return ap
}

// healthWord names a pair's state as the admin API and the dashboard
// show it; a pair without a health machine is healthy.
func healthWord(state string) string {
	if w, ok := healthWords[state]; ok {
		return w
	}
	return "healthy"
}

// healthWords names the pair states in the admin API.
var healthWords = map[string]string{
	upstreams.StateClosed:   "healthy",
	upstreams.StateOpen:     "cooling",
	upstreams.StateHalfOpen: "half_open",
	upstreams.StateProbing:  "probing",
	upstreams.StateRamping:  "ramping",
}

// quotaReader reads the usage of limit subjects from a handler's store.
type quotaReader struct {
	h   *Handler
	ctx context.Context
	now time.Time
	err error
}

func (q *quotaReader) of(s *limits.Subject) []adminQuotaItem {
	if s == nil || q.h.quotas == nil {
		return nil
	}
	charges := s.Charges(nil, limits.Amount{}, q.now)
	counters := make([]limits.Counter, len(charges))
	for i, ch := range charges {
		counters[i] = ch.Counter
	}
	var levels []float64
	if r, ok := q.h.quotas.(limits.Reader); ok {
		ctx, cancel := context.WithTimeout(q.ctx, 2*time.Second)
		var err error
		levels, err = r.Levels(ctx, counters, q.now)
		cancel()
		if err != nil && q.err == nil {
			q.err = err
		}
	}
	out := make([]adminQuotaItem, len(charges))
	for i, ch := range charges {
		it := adminQuotaItem{Limit: ch.Kind.String(), Max: ch.Counter.Limit}
		if i < len(levels) {
			it.Used = levels[i]
		}
		it.Remaining = max(it.Max-it.Used, 0)
		if !ch.Counter.Expires.IsZero() {
			at := ch.Counter.Expires
			it.ResetsAt = &at
		}
		out[i] = it
	}
	return out
}

// resetRequest is the body of POST /llm_route/reset: the pairs of
// provider (by name), of model (the name clients use), or of both, in
// the handler named (default: every handler); what to reset: cooldown,
// stats or all (default).
type resetRequest struct {
	Handler  string `json:"handler,omitempty"`
	Provider string `json:"provider,omitempty"`
	Model    string `json:"model,omitempty"`
	Reset    string `json:"reset,omitempty"`
}

// resetResult lists what a reset cleared.
type resetResult struct {
	Reset []adminTarget `json:"reset"`
	What  string        `json:"what"`
}

func (adminAPI) reset(w http.ResponseWriter, r *http.Request) error {
	var req resetRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, "decoding the request: %v (want {\"provider\", \"model\", \"handler\", \"reset\"})", err)
	}
	what := 0
	switch req.Reset {
	case "", "all":
		req.Reset, what = "all", upstreams.ResetCooldown|upstreams.ResetStats
	case "cooldown":
		what = upstreams.ResetCooldown
	case "stats":
		what = upstreams.ResetStats
	default:
		return apiError(http.StatusBadRequest, "reset must be cooldown, stats or all, not %q", req.Reset)
	}
	if req.Provider == "" && req.Model == "" {
		return apiError(http.StatusBadRequest, "name a provider, a model or both")
	}
	hs, names := liveHandlers()
	res := resetResult{Reset: []adminTarget{}, What: req.Reset}
	done := make(map[upstreams.Pair]bool)
	var handlerFound, providerFound, modelFound bool // (what the request named exists)
	for i, h := range hs {
		if req.Handler != "" && req.Handler != names[i] {
			continue
		}
		handlerFound = true
		if req.Provider != "" && slices.ContainsFunc(h.Providers, func(p *upstreams.Provider) bool { return p.Name == req.Provider }) {
			providerFound = true
		}
		each := func(m *Model) {
			if req.Model != "" && m.Name != req.Model {
				return
			}
			modelFound = true
			for _, s := range m.serving {
				if req.Provider != "" && s.provider.Name != req.Provider {
					continue
				}
				if !done[s.pair] && upstreams.ResetPair(s.pair, what) {
					done[s.pair] = true
				}
				res.Reset = append(res.Reset, adminTarget{Model: m.Name, Provider: s.provider.Name})
			}
		}
		for _, m := range h.Models {
			if !isTemplate(m) {
				each(m)
			}
		}
		for _, m := range h.discoveredModels() {
			each(m)
		}
	}
	if len(res.Reset) == 0 {
		return resetNotFound(req, names, handlerFound, providerFound, modelFound)
	}
	return writeAdminJSON(w, res)
}

// resetNotFound says what of a reset request matched nothing: the
// handler, the provider or the model it named, or their pairing.
func resetNotFound(req resetRequest, handlers []string, handlerFound, providerFound, modelFound bool) error {
	in := ""
	if req.Handler != "" {
		in = fmt.Sprintf(" in handler %q", req.Handler)
	}
	switch {
	case len(handlers) == 0:
		return apiError(http.StatusNotFound, "no llm_route handler is running")
	case !handlerFound:
		return apiError(http.StatusNotFound, "unknown handler %q (the handlers: %q)", req.Handler, handlers)
	case req.Provider != "" && !providerFound:
		return apiError(http.StatusNotFound, "unknown provider %q%s", req.Provider, in)
	case req.Model != "" && !modelFound:
		return apiError(http.StatusNotFound, "unknown model %q%s", req.Model, in)
	case req.Provider != "" && req.Model != "":
		return apiError(http.StatusNotFound, "provider %q does not serve model %q%s", req.Provider, req.Model, in)
	}
	return apiError(http.StatusNotFound, "provider %q serves no model%s", req.Provider, in)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
