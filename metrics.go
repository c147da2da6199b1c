package llmroute

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-llm-route/llmroute/limits"
	"github.com/caddy-llm-route/llmroute/upstreams"
)

// The metrics are the process's, created once and registered into the
// metrics registry of every configuration that uses llm_route (Caddy
// makes a registry per configuration), so their counts run on across
// reloads. Their labels hold configured names only (routes, models,
// providers, limit subjects), status codes and causes: never request
// ids, keys or prompts.
var metrics = struct {
	requests    *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	cost        *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	fallbacks   *prometheus.CounterVec
	decision    *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	upstream    *prometheus.HistogramVec
	overhead    *prometheus.HistogramVec
	quotaLeft   prometheus.Collector
	pairs       prometheus.Collector
	all         []prometheus.Collector
	own         *prometheus.Registry // the dashboard reads these metrics here
	statusLabel [600]string
}{}

func init() {
	const ns = "llm_route"
	m := &metrics
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
		Help: "Requests handled, by route, the model and provider that answered last, and the status returned."},
		[]string{"route", "model", "provider", "status"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tokens_total",
		Help: "Tokens of the answers' usage, by direction (input or output)."},
		[]string{"route", "model", "provider", "direction"})
	m.cost = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cost_usd_total",
		Help: "Cost of the answers in USD, from their usage and the models' prices."},
		[]string{"route", "model", "provider"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "attempts_total",
		Help: "Calls to providers, by how they ended: ok, connect, timeout, 429, 5xx, 4xx, invalid, broken, client_gone, hedge_lost (cancelled: the other call of a hedge answered first)."},
		[]string{"model", "provider", "cause"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fallbacks_total",
		Help: "Candidates passed for a later one, by cause: a failed call (connect, timeout, 429, 5xx, invalid; 4xx when a context-length or content-policy error moves on), a stream that broke and the next candidate continued (broken), a limit with no room (quota), a pair cooling down (cooldown) or a target that cannot serve the request (unfit). A client that went away (client_gone) and a hedge's cancelled call (hedge_lost) are not fallbacks."},
		[]string{"model", "provider", "cause"})
	m.decision = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "decision_seconds",
		Help:    "Time to choose the candidates (resolve and the strategy).",
		Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10)}, []string{"route"})
	latency := []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_ttft_seconds",
		Help: "Time from calling a provider to the first byte of its answer.", Buckets: latency},
		[]string{"model", "provider"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_seconds",
		Help: "Time inside a provider's reverse proxy, per call, the whole answer included.", Buckets: latency},
		[]string{"model", "provider"})
	m.overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "overhead_seconds",
		Help:    "Time the gateway added to a request: from the end of reading its body to the end, minus the time during which a call to a provider was under way (calls made in parallel count once).",
		Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10)}, []string{"route"})
	m.quotaLeft = quotaCollector{desc: prometheus.NewDesc(ns+"_quota_remaining",
		"Room left on a limit now, by subject (key:, route:, model:, provider: and a name) and limit.",
		[]string{"subject", "limit"}, nil)}
	m.pairs = pairCollector{
		cooling: prometheus.NewDesc(ns+"_cooldown_remaining_seconds",
			"Time left of a provider+model pair's cooldown; 0 when it may be called.", []string{"provider", "model"}, nil),
		inFlight: prometheus.NewDesc(ns+"_in_flight",
			"Calls under way to a provider+model pair.", []string{"provider", "model"}, nil),
	}
	m.all = []prometheus.Collector{m.requests, m.tokens, m.cost, m.attempts, m.fallbacks,
		m.decision, m.ttft, m.upstream, m.overhead, m.quotaLeft, m.pairs}
	m.own = prometheus.NewRegistry()
	m.own.MustRegister(m.all...)
	for i := range m.statusLabel {
		m.statusLabel[i] = strconv.Itoa(i)
	}
}

// registerMetrics adds llm_route's metrics to the configuration's
// registry; another llm_route of the same configuration has done so
// already.
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range metrics.all {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
		}
	}
	return nil
}

// statusLabel is a status code as a label value.
func statusLabel(status int) string {
	if status >= 0 && status < len(metrics.statusLabel) {
		return metrics.statusLabel[status]
	}
	return "other"
}

// observe counts a finished request in the metrics.
func observe(rec *record, end time.Time) {
	m := &metrics
	var route, model, provider string
	if rec.p != nil {
		route = rec.p.route
	}
	chosen := rec.chosen()
	if chosen != nil {
		model, provider = chosen.c.Model, chosen.c.Provider.Name
	}
	set := seriesFor(seriesKey{route, model, provider})
	// setOf is the set of an attempt's model and provider.
	setOf := func(a *attemptRecord) *seriesSet {
		if a.c.Model == model && a.c.Provider.Name == provider {
			return set
		}
		return seriesFor(seriesKey{route, a.c.Model, a.c.Provider.Name})
	}
	set.request(rec.status).Inc()
	// Tokens and cost go to the model and provider of each call that
	// used them: a rescue, a cascade or a consensus makes several.
	for i := range rec.attempts {
		a := &rec.attempts[i]
		if a.aw == nil {
			continue
		}
		u := a.aw.usage
		s := setOf(a)
		if u.PromptTokens > 0 {
			s.token(0).Add(float64(u.PromptTokens))
		}
		if u.CompletionTokens > 0 {
			s.token(1).Add(float64(u.CompletionTokens))
		}
		if cost, priced := rec.attemptCost(a); priced && cost > 0 {
			s.costs().Add(cost)
		}
	}
	if rec.p == nil {
		return
	}
	if !rec.read.IsZero() {
		set.decided().Observe(rec.decided.Sub(rec.read).Seconds())
	}
	for i := range rec.attempts {
		a := &rec.attempts[i]
		am, ap := a.c.Model, a.c.Provider.Name
		called := a.cause != causeQuota && a.cause != causeUnfit
		if called {
			s := setOf(a)
			s.attempt(a.cause).Inc()
			if a.upstream > 0 {
				s.upstreams().Observe(a.upstream.Seconds())
			}
			if a.firstByte > 0 {
				s.ttfts().Observe(a.firstByte.Seconds())
			}
		}
		if next := rec.nextInLane(i); next != nil && next.retry == 0 && a.cause != causeOK && a.cause != causeHedged && a.cause != causeGone {
			// (not when the next is a retry of the same target, nor for
			// a call that answered: the other calls of a cascade or a
			// consensus, and its judge's, are no fallbacks; nor for a
			// hedge's call the other call beat, recorded as it ended;
			// nor for a call the client left, which passed over no one)
			m.fallbacks.WithLabelValues(am, ap, a.cause.String()).Inc()
		}
	}
	if chosen != nil {
		set.overheads().Observe(rec.overhead(end).Seconds())
	}
	// Pairs cooling down that the plan put behind healthy candidates and
	// that were not reached.
	if rec.p.healthy > 0 {
		for _, c := range rec.candidates {
			if c.cooling && !rec.tried(c) {
				m.fallbacks.WithLabelValues(c.model, c.provider, causeCooldown.String()).Inc()
			}
		}
	}
}

// nextInLane returns the attempt after the i-th in its lane, nil when
// it is the lane's last: a voter's call that failed while the other
// voters' calls went on passed over no one.
func (rec *record) nextInLane(i int) *attemptRecord {
	for j := i + 1; j < len(rec.attempts); j++ {
		if rec.attempts[j].lane == rec.attempts[i].lane {
			return &rec.attempts[j]
		}
	}
	return nil
}

// tried reports whether the candidate was attempted (or turned away by
// a limit).
func (rec *record) tried(c candidateRecord) bool {
	for _, a := range rec.attempts {
		if a.c.Model == c.model && a.c.Provider.Name == c.provider {
			return true
		}
	}
	return false
}

// providerSubjectLabel is the subject label of a provider's limits: its
// name (the subject's own name is a digest of its identity, which labels
// should not carry).
func providerSubjectLabel(name string) string { return "provider:" + name }

// quotaCollector reports the room left on the limits of the live
// handlers, read from their stores when the metrics are gathered: a
// window that reset or a bucket that drained shows at once, with no
// request needed, and a limit a reload removed is gone with its
// handler. Subjects of the same label and limit in two handlers (two
// sites each with a model gpt-4o) are reported as one: the least room.
type quotaCollector struct{ desc *prometheus.Desc }

// Describe implements prometheus.Collector.
func (qc quotaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- qc.desc }

// Collect implements prometheus.Collector.
func (qc quotaCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ subject, limit string }
	left := map[key]float64{}
	var order []key
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now()
	hs, _ := liveHandlers()
	for _, h := range hs {
		h.quotaRoom(ctx, now, func(subject, limit string, room float64) {
			k := key{subject, limit}
			if old, ok := left[k]; !ok {
				order = append(order, k)
			} else if old < room {
				return
			}
			left[k] = room
		})
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(qc.desc, prometheus.GaugeValue, left[k], k.subject, k.limit)
	}
}

// quotaRoom calls emit with the room left at now on each limit of h's
// subjects (client keys, models, discovered models, providers, routes),
// as the admin API reads it, labelled as llm_route_quota_remaining
// labels them. A store that cannot be read reports nothing more.
func (h *Handler) quotaRoom(ctx context.Context, now time.Time, emit func(subject, limit string, room float64)) {
	q := &quotaReader{h: h, ctx: ctx, now: now}
	add := func(label string, s *limits.Subject) {
		items := q.of(s)
		if q.err != nil {
			return // (no figure rather than a wrong one)
		}
		for _, it := range items {
			emit(label, it.Limit, it.Remaining)
		}
	}
	for _, k := range h.keys {
		if k.subject != nil {
			add(k.subject.Name(), k.subject)
		}
	}
	for _, m := range h.Models {
		if m.subject != nil && !isTemplate(m) {
			add(m.subject.Name(), m.subject)
		}
	}
	for _, m := range h.discoveredModels() {
		if m.subject != nil {
			add(m.subject.Name(), m.subject)
		}
	}
	for name, s := range h.provSubject {
		add(providerSubjectLabel(name), s)
	}
	for _, rt := range h.Routes {
		if rt.subject != nil {
			add(rt.subject.Name(), rt.subject)
		}
	}
}

// pairCollector reports the state of the provider+model pairs in use,
// read when the metrics are gathered.
type pairCollector struct {
	cooling, inFlight *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (pc pairCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pc.cooling
	ch <- pc.inFlight
}

// Collect implements prometheus.Collector. Pairs of the same provider
// name and model (two sites may each have their own `openai`) are
// reported as one: the longest cooldown, the sum of calls.
func (pc pairCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ provider, model string }
	type state struct {
		cooling  float64
		inFlight int64
	}
	now := time.Now()
	seen := map[key]*state{}
	var order []key
	for _, p := range upstreams.Pairs() {
		k := key{p.Provider, p.Model}
		s := seen[k]
		if s == nil {
			s = new(state)
			seen[k] = s
			order = append(order, k)
		}
		if left := p.CooldownUntil.Sub(now).Seconds(); left > s.cooling {
			s.cooling = left
		}
		s.inFlight += p.Stats.InFlight
	}
	for _, k := range order {
		s := seen[k]
		ch <- prometheus.MustNewConstMetric(pc.cooling, prometheus.GaugeValue, s.cooling, k.provider, k.model)
		ch <- prometheus.MustNewConstMetric(pc.inFlight, prometheus.GaugeValue, float64(s.inFlight), k.provider, k.model)
	}
}

// Interface guards
var _ prometheus.Collector = pairCollector{}
