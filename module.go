package llmroute

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/strategies"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults.
const (
	defaultMaxBody           = 8 << 20
	defaultMaxDepth          = 64
	defaultFirstByteTimeout  = 5 * time.Minute
	defaultStreamIdleTimeout = 2 * time.Minute
	defaultReadBodyTimeout   = 30 * time.Second
	defaultCooldown          = 30 * time.Second
	defaultFailThreshold     = 3
	defaultProbeInterval     = time.Second
	defaultRamp              = 2 * time.Second
)

// DefaultPathSuffixes are the request path suffixes llm_route acts on when
// enable_on_path_suffix is not set: Higress model-router's list plus
// `/responses`.
var DefaultPathSuffixes = []string{
	"/completions", "/embeddings", "/images/generations", "/audio/speech",
	"/fine_tuning/jobs", "/moderations", "/image-synthesis", "/video-synthesis",
	"/rerank", "/messages", "/messages/count_tokens", "/responses",
}

// defaultRetryOn are the upstream statuses that move on to the next
// target: 429 and every 5xx (Caddy's status class notation).
var defaultRetryOn = []int{429, 5}

// Handler is the `llm_route` HTTP handler. It reads an LLM API request,
// resolves its model field to a route of targets (model + provider),
// rewrites the body for each target and hands it to that provider's
// reverse proxy, moving on to the next target after a connect error, a
// timeout, a 429 or a 5xx as long as nothing reached the client yet.
//
// Requests on paths that do not end in one of enable_on_path_suffix pass
// to the next handler untouched.
type Handler struct {
	// The handler's name in the admin API (/llm_route/). Default: a
	// name made from its providers, models and routes.
	Name string `json:"name,omitempty"`

	// Answer GET requests on paths ending in /models (and /models/<id>)
	// with the models and routes a client may ask for, in OpenAI's
	// shape, or Anthropic's for Anthropic clients. Default: on.
	ListModels *bool `json:"list_models,omitempty"`

	// The gjson path of the model field in the request body. Default: `model`.
	ModelKey string `json:"model_key,omitempty"`

	// If set, the requested model (as the client sent it) is copied into
	// this request header. Not a credential, hop-by-hop or message
	// header (Authorization, Host, Content-Type, …).
	ModelToHeader string `json:"model_to_header,omitempty"`

	// If set, a requested model of the form `provider/model` puts the
	// provider into this request header, and the body's model field is
	// rewritten to the bare model name. The same headers as for
	// model_to_header are refused.
	ProviderHeader string `json:"provider_header,omitempty"`

	// The request path suffixes to act on; `*` matches every path.
	// Default: /completions /embeddings /images/generations /audio/speech
	// /fine_tuning/jobs /moderations /image-synthesis /video-synthesis
	// /rerank /messages /messages/count_tokens /responses.
	EnableOnPathSuffix []string `json:"enable_on_path_suffix,omitempty"`

	// The largest request body accepted, in bytes; larger ones get 413.
	// Default: 8 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// The deepest JSON nesting accepted in a request body. Default: 64.
	MaxDepth int `json:"max_depth,omitempty"`

	// How long an attempt may take until the first byte of the response
	// body arrives (for streams: the first event with data). Past it the attempt
	// is abandoned and the next target is tried. Default: 5m.
	FirstByteTimeout caddy.Duration `json:"first_byte_timeout,omitempty"`

	// How long reading the request body may take, from the handler's
	// start; past it the client gets 408 in its API's shape. It bounds
	// what a client that trickles its body holds (Caddy's own
	// read_idle_timeout resets on every byte). Default: 30s.
	ReadBodyTimeout caddy.Duration `json:"read_body_timeout,omitempty"`

	// How long a streaming response may go without an event with data
	// once it started (keep-alive comments do not count). Past it the
	// stream is broken: continued by the next candidate (rescue), or
	// ended with an error event. Default: 2m.
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`

	// Upstream statuses that move on to the next target; a single digit
	// means its whole class (5 = 5xx). Default: [429, 5].
	RetryOn []int `json:"retry_on,omitempty"`

	// The most targets tried for one request; 0 means all of them. For
	// a strategy that makes several calls (cascade, consensus) it caps
	// each call (a tier, a voter, the judge), not their number.
	MaxAttempts int `json:"max_attempts,omitempty"`

	// How many times a target is tried again, after a jittered backoff
	// (100ms doubling, at most 2s), when it fails with a 5xx or a
	// connect error, before the next target. Default: 0; at most 10.
	Retries int `json:"retries,omitempty"`

	// A 429 whose Retry-After is at most this long is retried once on
	// the same target after that wait, rather than moving on. Default:
	// 0 (never).
	MaxRetryWait caddy.Duration `json:"max_retry_wait,omitempty"`

	// Errors that move on to the next target although they would not by
	// default: `content_filter` (a content-policy refusal). A prompt too
	// long for a model's context moves on, to a model with a larger
	// `context` only, without being listed.
	FallbackOn []string `json:"fallback_on,omitempty"`

	// Mid-stream rescue: when a text stream (chat completions or
	// messages) breaks after it reached the client, the next candidate
	// continues the answer from the text already sent, spliced into the
	// same stream. Routes may set their own. Default: on.
	Rescue *bool `json:"rescue,omitempty"`

	// How long a provider+model pair is skipped after fail_threshold
	// consecutive failures; it doubles for each failed probe after that,
	// up to 10m. A 429's Retry-After (seconds, HTTP-date or
	// retry-after-ms) sets its own cooldown. Default: 30s.
	Cooldown caddy.Duration `json:"cooldown,omitempty"`

	// Consecutive failures (connect errors, timeouts, retryable
	// statuses) before a pair cools down. Default: 3.
	FailThreshold int `json:"fail_threshold,omitempty"`

	// Fast recovery: during a cooldown (other than one a 429's
	// Retry-After asked for), a single probe request goes to the pair
	// once this long has passed since its last failure, so a recovered
	// provider gets traffic back without waiting out the cooldown. One at
	// least as long as the cooldown turns early probes off. Default: 1s.
	ProbeInterval caddy.Duration `json:"probe_interval,omitempty"`

	// Once a probe (or any attempt) succeeds on a cooling pair, traffic
	// returns to it gradually over this long: a share of the requests
	// that grows from a quarter to all. Default: 2s.
	Ramp caddy.Duration `json:"ramp,omitempty"`

	// Honour an OpenRouter-style `models` array in the request body: an
	// ordered list of fallback models tried after the requested one. The
	// array is removed before the body is forwarded. Off by default.
	ClientModels bool `json:"client_models,omitempty"`

	// Client request headers passed on to providers besides those their
	// format needs (Content-Type, Accept, User-Agent, the trace context,
	// OpenAI-Beta, anthropic-version and anthropic-beta). Every other
	// client header, and the client's query string, is dropped: a client
	// must not choose, with the operator's key, which organization or
	// project is billed (OpenAI-Organization, OpenAI-Project). The
	// model_to_header and provider_header headers are always passed on.
	ForwardHeaders []string `json:"forward_headers,omitempty"`

	// If set, a request header of this name may name a route whose
	// strategy orders the requested route's candidates instead of its
	// own (e.g. `X-LLM-Strategy: cheapest`). Off by default.
	StrategyHeader string `json:"strategy_header,omitempty"`

	// The providers: named API endpoints, each with its own reverse proxy.
	Providers []*upstreams.Provider `json:"providers,omitempty"`

	// The model registry.
	Models []*Model `json:"models,omitempty"`

	// Named routes: a client sends the route's name as its model.
	Routes []*Route `json:"routes,omitempty"`

	// Client keys the gateway hands out. When set, every request needs
	// one (401 otherwise), and a key may use only its models (403).
	Keys []*ClientKey `json:"keys,omitempty"`

	// The time zone (IANA name) in which daily and monthly limits reset.
	// Default: UTC.
	ResetTZ string `json:"reset_tz,omitempty"`

	// Where the counters of limits and budgets live. Default: memory.
	State *State `json:"state,omitempty"`

	// If set, one record per request (route, strategy, reason, features,
	// candidates, attempts and their causes, status, times, tokens, cost)
	// is logged at INFO on the logger http.handlers.llm_route.decisions.
	DecisionLog *DecisionLog `json:"decision_log,omitempty"`

	// If set, POST requests to this path take feedback on an answer,
	// `{"request_id", "score", "comment"}`, authenticated like other
	// requests, and log it on http.handlers.llm_route.decisions. It may
	// not be a path the handler serves otherwise (an API endpoint or a
	// model list).
	FeedbackPath string `json:"feedback_path,omitempty"`

	providers map[string]*upstreams.Provider
	models    map[string]*Model
	routes    map[string]*Route
	policy    upstreams.Policy
	logger    *zap.Logger
	decisions *zap.Logger // the decision log and feedback
	awaiting  *awaiting   // answers of learning strategies, for their feedback

	forward     []string // headers passed on besides the formats' own, canonical
	keys        []*ClientKey
	resetLoc    *time.Location
	quotas      limits.Store               // nil when nothing is limited
	memory      *limits.Memory             // the process's store, taken when anything is limited or the state is in redis
	redis       *limits.Redis              // the shared store, if configured
	redisKey    string                     // its key in redisClients
	shared      *upstreams.Shared          // shares the pairs' state through redis, if configured
	provSubject map[string]*limits.Subject // by provider name
	cleaned     int32                      // set by the first Cleanup
	requests    int64                      // requests under way (ServeHTTP), atomic
	released    int32                      // set when the store is released (releaseStore)
	needsPrompt bool                       // a token or spend limit needs the prompt estimate

	templates   []*Model   // registry entries for discovered models (names with '*')
	disc        *discovery // model discovery, if a provider has models auto
	provisioned time.Time  // (the created time of the model list)
}

// Model is a registry entry: a model clients can ask for by name and the
// providers that serve it.
type Model struct {
	// The name clients use. Required, unique.
	Name string `json:"name"`

	// The providers serving this model, tried in this order.
	Providers []string `json:"providers"`

	// The model's name at the providers (for azure: the deployment).
	// Default: the name.
	UpstreamName string `json:"upstream_name,omitempty"`

	// Price in USD per million input tokens.
	InputPrice float64 `json:"input_price,omitempty"`

	// Price in USD per million output tokens.
	OutputPrice float64 `json:"output_price,omitempty"`

	// A quality score between 0 and 1.
	Quality float64 `json:"quality,omitempty"`

	// The context window in tokens.
	Context int `json:"context,omitempty"`

	// Capabilities: `tools`, `vision`, `json` (no other name). A model
	// that lists them serves only requests whose needs they cover.
	Capabilities []string `json:"capabilities,omitempty"`

	// Price in USD per million cached input tokens read; default: the
	// input price.
	CacheReadPrice *float64 `json:"cache_read_price,omitempty"`

	// Price in USD per million input tokens written to the cache;
	// default: the input price.
	CacheWritePrice *float64 `json:"cache_write_price,omitempty"`

	// The most output tokens the model gives; a body sent asking for
	// more (by the client, a route target's params or a rule's) is
	// clamped to it.
	MaxOutput int64 `json:"max_output,omitempty"`

	// The model's limits, over all its providers.
	limits.Limits

	subject *limits.Subject

	// serving holds, for each of Providers in order, the provider and
	// the live state of the pair.
	serving []serving

	// self is the model as the one target of a request that names it
	// (read only).
	self []*Target
}

// serving is one provider of a model and the state of the pair.
type serving struct {
	provider *upstreams.Provider
	pair     upstreams.Pair
}

// Route is a named, ordered list of targets (Portkey's fallback).
type Route struct {
	// The name clients send as the model. Required, unique, and distinct
	// from every model name.
	Name string `json:"name"`

	// The targets, tried in order.
	Targets []*Target `json:"targets"`

	// The strategy that orders the route's candidates for each request.
	// Default: `fallback` (the configured order).
	StrategyRaw json.RawMessage `json:"strategy,omitempty" caddy:"namespace=http.handlers.llm_route.strategies inline_key=name"`

	// Models tried after the strategy's order, in this order (if not
	// already among the candidates).
	Fallback []string `json:"fallback,omitempty"`

	// If above zero, models whose input price (USD per million tokens)
	// is higher, or that have no price, are not candidates.
	MaxInputPrice float64 `json:"max_input_price,omitempty"`

	// If above zero, models whose output price (USD per million tokens)
	// is higher, or that have no price, are not candidates.
	MaxOutputPrice float64 `json:"max_output_price,omitempty"`

	// Upstream statuses that move on to the next target for this route;
	// default: the handler's retry_on.
	RetryOn []int `json:"retry_on,omitempty"`

	// Mid-stream rescue for this route (see the handler's rescue);
	// default: the handler's.
	Rescue *bool `json:"rescue,omitempty"`

	// What comes after a candidate over a limit: `cheapest` (default:
	// the cheapest remaining candidate with headroom first), `next` (the
	// strategy's order), or a list of model names tried first, in order.
	OnExhausted []string `json:"on_exhausted,omitempty"`

	// Hedge slow answers: after a delay without an answer, the rest of
	// the candidates are asked at once, and the first answer wins.
	Hedge *Hedge `json:"hedge,omitempty"`

	// The route's limits, over all its candidates.
	limits.Limits

	strategy strategies.Strategy
	subject  *limits.Subject
}

// Built-in aliases: routes over every registered model that exist unless
// the config defines a route (or model) of the same name.
var builtinAliases = []struct{ name, strategy string }{
	{"auto", "balanced"},
	{"cheapest", "cheapest"},
	{"fastest", "lowest_latency"},
	{"best_quality", "best_quality"},
}

// Target is one step of a route: a model, optionally pinned to one of its
// providers, with body parameters to override.
type Target struct {
	// The registry name of the model.
	Model string `json:"model"`

	// Pin the target to this provider; default: each of the model's
	// providers in order.
	Provider string `json:"provider,omitempty"`

	// Body parameters set for this target, by gjson/sjson path, e.g.
	// {"temperature": 0.2, "max_tokens": 512}.
	Params map[string]json.RawMessage `json:"params,omitempty"`

	// The target's weight for the `weighted` strategy. Default: 1; 0
	// drains the target (tried only after the others).
	Weight *float64 `json:"weight,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_route",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets up the handler: defaults, indexes and providers.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.decisions = h.logger.Named("decisions")
	h.awaiting = new(awaiting)
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	if h.ModelKey == "" {
		h.ModelKey = "model"
	}
	if len(h.EnableOnPathSuffix) == 0 {
		h.EnableOnPathSuffix = slices.Clone(DefaultPathSuffixes)
	}
	if h.MaxBody == 0 {
		h.MaxBody = defaultMaxBody
	}
	if h.MaxDepth == 0 {
		h.MaxDepth = defaultMaxDepth
	}
	if h.FirstByteTimeout == 0 {
		h.FirstByteTimeout = caddy.Duration(defaultFirstByteTimeout)
	}
	if h.StreamIdleTimeout == 0 {
		h.StreamIdleTimeout = caddy.Duration(defaultStreamIdleTimeout)
	}
	if h.ReadBodyTimeout == 0 {
		h.ReadBodyTimeout = caddy.Duration(defaultReadBodyTimeout)
	}
	if len(h.RetryOn) == 0 {
		h.RetryOn = slices.Clone(defaultRetryOn)
	}
	h.forward = nil
	for _, name := range append(slices.Clone(h.ForwardHeaders), h.ModelToHeader, h.ProviderHeader) {
		if name != "" {
			h.forward = append(h.forward, http.CanonicalHeaderKey(name))
		}
	}
	if h.Cooldown == 0 {
		h.Cooldown = caddy.Duration(defaultCooldown)
	}
	if h.FailThreshold == 0 {
		h.FailThreshold = defaultFailThreshold
	}
	if h.ProbeInterval == 0 {
		h.ProbeInterval = caddy.Duration(defaultProbeInterval)
	}
	if h.Ramp == 0 {
		h.Ramp = caddy.Duration(defaultRamp)
	}
	h.policy = upstreams.Policy{Cooldown: time.Duration(h.Cooldown), FailThreshold: h.FailThreshold,
		ProbeInterval: time.Duration(h.ProbeInterval), Ramp: time.Duration(h.Ramp)}
	h.resetLoc = time.UTC
	if h.ResetTZ != "" {
		loc, err := time.LoadLocation(h.ResetTZ)
		if err != nil {
			return fmt.Errorf("reset_tz: %v", err)
		}
		h.resetLoc = loc
	}

	// Redis, when the state lives there, before the pairs are acquired.
	if err := h.openRedis(); err != nil {
		return err
	}

	h.providers = make(map[string]*upstreams.Provider, len(h.Providers))
	for _, p := range h.Providers {
		if p == nil {
			return fmt.Errorf("null provider")
		}
		if _, dup := h.providers[p.Name]; dup {
			return fmt.Errorf("provider %s defined twice", p.Name)
		}
		if err := p.Provision(ctx); err != nil {
			return err
		}
		h.providers[p.Name] = p
	}
	h.models = make(map[string]*Model, len(h.Models))
	for _, m := range h.Models {
		if m == nil {
			return fmt.Errorf("null model")
		}
		if isTemplate(m) {
			h.templates = append(h.templates, m)
			continue
		}
		if m.UpstreamName == "" {
			m.UpstreamName = m.Name
		}
		if _, dup := h.models[m.Name]; dup {
			return fmt.Errorf("model %s defined twice", m.Name)
		}
		h.models[m.Name] = m
		m.self = []*Target{{Model: m.Name}}
		// The state of each provider+model pair outlives this config:
		// it is taken from the pool here and released in Cleanup.
		// (Unknown providers are Validate's to report.)
		for _, name := range m.Providers {
			if prov := h.providers[name]; prov != nil {
				m.serving = append(m.serving, serving{prov, upstreams.AcquirePair(prov, m.UpstreamName, h.shared)})
			}
		}
	}
	if err := h.provisionKeys(ctx); err != nil {
		return err
	}
	h.routes = make(map[string]*Route, len(h.Routes)+len(builtinAliases))
	for _, r := range h.Routes {
		if r == nil {
			return fmt.Errorf("null route")
		}
		if slices.Contains(r.Targets, nil) {
			return fmt.Errorf("route %s: null target", r.Name)
		}
		if string(r.StrategyRaw) == "null" {
			r.StrategyRaw = nil // JSON null, as for every other field: not set
		}
		if _, dup := h.routes[r.Name]; dup {
			return fmt.Errorf("route %s defined twice", r.Name)
		}
		if r.StrategyRaw != nil {
			mod, err := ctx.LoadModule(r, "StrategyRaw")
			if err != nil {
				return fmt.Errorf("route %s: loading strategy: %v", r.Name, err)
			}
			r.strategy = mod.(strategies.Strategy)
			h.bindRoute(r)
		}
		if r.Hedge != nil {
			r.Hedge.fill()
		}
		h.routes[r.Name] = r
	}
	for _, a := range builtinAliases {
		if h.routes[a.name] != nil || h.models[a.name] != nil || len(h.Models) == 0 {
			continue
		}
		r := &Route{Name: a.name, StrategyRaw: json.RawMessage(`{"name":"` + a.strategy + `"}`)}
		for _, m := range h.Models {
			if isTemplate(m) {
				continue
			}
			r.Targets = append(r.Targets, &Target{Model: m.Name})
		}
		mod, err := ctx.LoadModule(r, "StrategyRaw")
		if err != nil {
			return fmt.Errorf("built-in route %s: loading strategy: %v", a.name, err)
		}
		r.strategy = mod.(strategies.Strategy)
		h.routes[a.name] = r
	}
	if err := h.provisionLimits(); err != nil {
		return err
	}
	h.startDiscovery(ctx)
	h.provisioned = time.Now()
	register(h)
	return nil
}

// Cleanup releases the state of the provider+model pairs this handler
// took (the state of a pair that another config still uses stays) and
// its limit store. It changes nothing that requests still in flight on
// this config read: they finish on the objects they hold. Only the
// first call does anything.
func (h *Handler) Cleanup() error {
	if !atomic.CompareAndSwapInt32(&h.cleaned, 0, 1) {
		return nil
	}
	unregister(h)
	h.stopDiscovery()
	for _, m := range h.Models {
		if m == nil {
			continue
		}
		for _, s := range m.serving {
			upstreams.ReleasePair(s.provider, m.UpstreamName, h.shared)
		}
	}
	if atomic.LoadInt64(&h.requests) == 0 {
		h.releaseStore()
	}
	retire()
	return nil
}

// Validate checks the values of the configuration and that every
// reference resolves. It is the one judge of values: the Caddyfile parser
// checks syntax only, so a JSON config gets every check a Caddyfile gets.
func (h *Handler) Validate() error {
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"max_body", h.MaxBody},
		{"max_depth", int64(h.MaxDepth)},
		{"max_attempts", int64(h.MaxAttempts)},
		{"fail_threshold", int64(h.FailThreshold)},
		{"first_byte_timeout", int64(h.FirstByteTimeout)},
		{"stream_idle_timeout", int64(h.StreamIdleTimeout)},
		{"read_body_timeout", int64(h.ReadBodyTimeout)},
		{"cooldown", int64(h.Cooldown)},
		{"retries", int64(h.Retries)},
		{"probe_interval", int64(h.ProbeInterval)},
		{"ramp", int64(h.Ramp)},
		{"max_retry_wait", int64(h.MaxRetryWait)},
	} {
		if f.value < 0 {
			return fmt.Errorf("%s must not be negative", f.name)
		}
	}
	for _, f := range []struct {
		name  string
		value caddy.Duration
	}{
		{"first_byte_timeout", h.FirstByteTimeout},
		{"stream_idle_timeout", h.StreamIdleTimeout},
		{"read_body_timeout", h.ReadBodyTimeout},
		{"cooldown", h.Cooldown},
		{"probe_interval", h.ProbeInterval},
		{"ramp", h.Ramp},
		{"max_retry_wait", h.MaxRetryWait},
	} {
		if err := upstreams.ValidDuration(f.name, f.value); err != nil {
			return err
		}
	}
	if h.Retries > maxRetries {
		return fmt.Errorf("retries: %d is more than %d", h.Retries, maxRetries)
	}
	if h.MaxRetryWait > 0 && !h.retriesOn(http.StatusTooManyRequests) {
		return fmt.Errorf("max_retry_wait waits out a 429, and neither retry_on nor a route's lists 429 (or 4xx): add 429 to retry_on, or remove max_retry_wait")
	}
	if h.MaxBody > 1<<40 {
		return fmt.Errorf("max_body: %d bytes is more than 1 TiB", h.MaxBody)
	}
	if err := validStatuses(h.RetryOn); err != nil {
		return err
	}
	for _, f := range h.FallbackOn {
		if f != kindContentFilter {
			return fmt.Errorf("fallback_on: unknown error kind %q (want content_filter)", f)
		}
	}
	for _, p := range h.Providers {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	for _, m := range h.Models {
		if err := validName(m.Name); err != nil {
			return fmt.Errorf("model %q: %v", m.Name, err)
		}
		if isTemplate(m) {
			if err := validTemplate(m); err != nil {
				return err
			}
		} else if len(m.Providers) == 0 {
			return fmt.Errorf("model %s: no provider", m.Name)
		}
		for i, p := range m.Providers {
			if _, ok := h.providers[p]; !ok {
				return fmt.Errorf("model %s: unknown provider %q", m.Name, p)
			}
			if slices.Contains(m.Providers[:i], p) {
				return fmt.Errorf("model %s: provider %s listed twice", m.Name, p)
			}
		}
		if !nonNegative(m.InputPrice) {
			return fmt.Errorf("model %s: input_price must not be negative, got %v", m.Name, m.InputPrice)
		}
		if !nonNegative(m.OutputPrice) {
			return fmt.Errorf("model %s: output_price must not be negative, got %v", m.Name, m.OutputPrice)
		}
		if !(m.Quality >= 0 && m.Quality <= 1) { // (NaN fails too)
			return fmt.Errorf("model %s: quality must be within 0..1, got %v", m.Name, m.Quality)
		}
		if m.Context < 0 {
			return fmt.Errorf("model %s: context must not be negative, got %d", m.Name, m.Context)
		}
		if err := validCapabilities(m.Capabilities); err != nil {
			return fmt.Errorf("model %s: %v", m.Name, err)
		}
		for _, p := range []struct {
			name  string
			value *float64
		}{{"cache_read_price", m.CacheReadPrice}, {"cache_write_price", m.CacheWritePrice}} {
			if p.value != nil && !nonNegative(*p.value) {
				return fmt.Errorf("model %s: %s must not be negative, got %v", m.Name, p.name, *p.value)
			}
		}
		if m.MaxOutput < 0 {
			return fmt.Errorf("model %s: max_output must not be negative, got %d", m.Name, m.MaxOutput)
		}
		if err := m.Limits.Validate(); err != nil {
			return fmt.Errorf("model %s: %v", m.Name, err)
		}
		if err := h.validPinName("model", m.Name); err != nil {
			return err
		}
		for _, pn := range m.Providers {
			// Azure puts the deployment (the upstream name) into the path.
			if h.providers[pn].Format == upstreams.FormatAzure && strings.ContainsAny(m.UpstreamName, "/?#\\%") {
				return fmt.Errorf("model %s: upstream_name %q is an Azure deployment and must not contain '/', '?', '#', '%%' or '\\'", m.Name, m.UpstreamName)
			}
		}
	}
	for _, r := range h.Routes {
		if err := validName(r.Name); err != nil {
			return fmt.Errorf("route %q: %v", r.Name, err)
		}
		if _, clash := h.models[r.Name]; clash {
			return fmt.Errorf("route %s has the name of a model", r.Name)
		}
		if err := h.validPinName("route", r.Name); err != nil {
			return err
		}
		if len(r.Targets) == 0 {
			return fmt.Errorf("route %s: no target", r.Name)
		}
		for _, name := range r.Fallback {
			if _, ok := h.models[name]; !ok {
				return fmt.Errorf("route %s: unknown fallback model %q", r.Name, name)
			}
		}
		if !nonNegative(r.MaxInputPrice) || !nonNegative(r.MaxOutputPrice) {
			return fmt.Errorf("route %s: max_price must not be negative, got %v %v", r.Name, r.MaxInputPrice, r.MaxOutputPrice)
		}
		if err := validStatuses(r.RetryOn); err != nil {
			return fmt.Errorf("route %s: %v", r.Name, err)
		}
		if err := r.Limits.Validate(); err != nil {
			return fmt.Errorf("route %s: %v", r.Name, err)
		}
		if err := h.validOnExhausted(r.OnExhausted); err != nil {
			return fmt.Errorf("route %s: %v", r.Name, err)
		}
		if err := h.validJudge(r.strategy); err != nil {
			return fmt.Errorf("route %s: %v", r.Name, err)
		}
		if err := h.validStrategyRefs(r.strategy); err != nil {
			return fmt.Errorf("route %s: %v", r.Name, err)
		}
		if r.Hedge != nil {
			if err := r.Hedge.Validate(); err != nil {
				return fmt.Errorf("route %s: %v", r.Name, err)
			}
		}
		for _, t := range r.Targets {
			if t.Weight != nil && !nonNegative(*t.Weight) {
				return fmt.Errorf("route %s: target %s: weight must not be negative", r.Name, t.Model)
			}
			// Only the weighted strategy reads weights (or one a client
			// picks by strategy_header): elsewhere one would do nothing.
			if _, weighted := r.strategy.(*strategies.Weighted); t.Weight != nil && !weighted && h.StrategyHeader == "" {
				return fmt.Errorf("route %s: target %s has a weight, which only the weighted strategy reads: add strategy weighted to the route, or remove the weight", r.Name, t.Model)
			}
			m, ok := h.models[t.Model]
			if !ok {
				return fmt.Errorf("route %s: unknown model %q", r.Name, t.Model)
			}
			if t.Provider != "" && !slices.Contains(m.Providers, t.Provider) {
				return fmt.Errorf("route %s: model %s is not served by provider %q", r.Name, t.Model, t.Provider)
			}
			for path, v := range t.Params {
				if h.owns(path) {
					return fmt.Errorf("route %s: target %s cannot override %q", r.Name, t.Model, path)
				}
				if !json.Valid(v) {
					return fmt.Errorf("route %s: target %s: parameter %s is not valid JSON", r.Name, t.Model, path)
				}
			}
		}
	}
	if !slices.ContainsFunc(h.Providers, (*upstreams.Provider).Discovers) {
		for _, m := range h.Models {
			if isTemplate(m) {
				return fmt.Errorf("model %s: a pattern sets defaults for discovered models, and no provider discovers any: add models auto to a provider, or name the model", m.Name)
			}
		}
	}
	for _, name := range h.ForwardHeaders {
		if err := validHeaderName("forward_headers", name); err != nil {
			return err
		}
		if upstreams.CredentialHeader(http.CanonicalHeaderKey(name)) {
			return fmt.Errorf("forward_headers: %s carries the client's credentials; a provider passes them on with forward_client_auth", name)
		}
	}
	for _, hd := range []struct{ directive, name string }{{"model_to_header", h.ModelToHeader}, {"provider_header", h.ProviderHeader}} {
		if err := validGatewayHeader(hd.directive, hd.name); err != nil {
			return err
		}
	}
	if err := h.validFeedbackPath(); err != nil {
		return err
	}
	if h.DecisionLog != nil && h.DecisionLog.PromptBytes < 0 {
		return fmt.Errorf("decision_log: prompt_bytes must not be negative")
	}
	for _, s := range h.EnableOnPathSuffix {
		if s != "*" && !strings.HasPrefix(s, "/") {
			return fmt.Errorf("enable_on_path_suffix: %q must start with '/' or be '*'", s)
		}
	}
	if err := h.validKeys(); err != nil {
		return err
	}
	if h.State != nil {
		if err := h.State.Validate(); err != nil {
			return err
		}
	}
	if _, err := time.LoadLocation(h.ResetTZ); err != nil {
		return fmt.Errorf("reset_tz: %v", err)
	}
	return nil
}

// validOnExhausted checks a route's on_exhausted: cheapest or next
// alone, or registered models.
func (h *Handler) validOnExhausted(order []string) error {
	for _, v := range order {
		if (v == "cheapest" || v == "next") && len(order) > 1 {
			return fmt.Errorf("on_exhausted: %s stands alone", v)
		}
		if _, ok := h.models[v]; !ok && v != "cheapest" && v != "next" {
			return fmt.Errorf("on_exhausted: unknown model %q (want cheapest, next or model names)", v)
		}
	}
	return nil
}

// validKeys checks the client keys: names, a secret from one source,
// known models and routes, and the limits.
func (h *Handler) validKeys() error {
	seen := make(map[string]bool, len(h.Keys))
	for _, k := range h.Keys {
		if err := validName(k.Name); err != nil {
			return fmt.Errorf("key %q: %v", k.Name, err)
		}
		if seen[k.Name] {
			return fmt.Errorf("key %s defined twice", k.Name)
		}
		seen[k.Name] = true
		if (k.Secret == "") == (k.SecretFile == "") {
			return fmt.Errorf("key %s: set exactly one of secret and secret_file", k.Name)
		}
		for _, name := range k.Models {
			if h.model(name) == nil && h.routes[name] == nil {
				return fmt.Errorf("key %s: unknown model or route %q", k.Name, name)
			}
		}
		if err := k.Limits.Validate(); err != nil {
			return fmt.Errorf("key %s: %v", k.Name, err)
		}
	}
	return nil
}

// nonNegative reports whether a price, a price cap or a weight is a
// finite number not below zero (NaN fails).
func nonNegative(v float64) bool {
	return v >= 0 && !math.IsInf(v, 1)
}

// validStatuses checks retry_on: statuses 100 to 599, or a status class
// 1 to 5 (5 stands for 5xx). Only an error status (4xx, 5xx) fails an
// attempt, so a lower one could never move on: it is refused rather
// than accepted to do nothing.
func validStatuses(codes []int) error {
	for _, c := range codes {
		if !(c >= 1 && c <= 5 || c >= 100 && c <= 599) {
			return fmt.Errorf("retry_on: invalid status %d (want 100 to 599, or a class 1 to 5, written 5xx in the Caddyfile)", c)
		}
		if c <= 3 || c >= 100 && c < 400 {
			name := strconv.Itoa(c)
			if c <= 3 {
				name += "xx"
			}
			return fmt.Errorf("retry_on: %s is not an error status; only a 4xx or 5xx answer moves on to the next target", name)
		}
	}
	return nil
}

func validName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("name must not contain spaces or control characters")
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
