package llmroute

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-llm-route/llmroute/upstreams"
)

func init() {
	caddy.RegisterModule(Dashboard{})
	httpcaddyfile.RegisterHandlerDirective("llm_route_dashboard", parseDashboard)
	httpcaddyfile.RegisterDirectiveOrder("llm_route_dashboard", httpcaddyfile.Before, "metrics")
}

//go:embed dashboard.html
var dashboardPage []byte

// ringSize is how many decisions the process keeps for dashboards.
const ringSize = 500

// Dashboard is the `llm_route_dashboard` HTTP handler: a page that shows
// what the process's llm_route handlers did, refreshing itself: charts
// of requests, tokens, cost, latency, time to first token and fallbacks
// per model and provider, the health of every provider+model pair, and
// the last routing decisions with their reasons. A GET with
// `?format=json` answers the page's data. It serves whatever path it is
// routed to, and nothing is served unless it is configured: protect it
// like any admin page (basic_auth, remote_ip).
type Dashboard struct {
	// How many of the last decisions to show, up to 500. Default: 50.
	Records int `json:"records,omitempty"`

	// How often the page refreshes. Default: 2s.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Dashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_route_dashboard",
		New: func() caddy.Module { return new(Dashboard) },
	}
}

// dashboards counts the dashboards provisioned; records are kept for
// them only while there is one.
var dashboards atomic.Int64

// Provision sets the defaults and starts keeping decisions.
func (d *Dashboard) Provision(caddy.Context) error {
	if d.Records == 0 {
		d.Records = 50
	}
	if d.Refresh == 0 {
		d.Refresh = caddy.Duration(2 * time.Second)
	}
	dashboards.Add(1)
	return nil
}

// Cleanup stops keeping decisions for this dashboard.
func (d *Dashboard) Cleanup() error {
	dashboards.Add(-1)
	return nil
}

// Validate checks the values.
func (d *Dashboard) Validate() error {
	if d.Records < 0 || d.Records > ringSize {
		return fmt.Errorf("records must be within 1..%d, got %d", ringSize, d.Records)
	}
	if d.Refresh < 0 || d.Refresh > 0 && time.Duration(d.Refresh) < 100*time.Millisecond {
		return fmt.Errorf("refresh must be at least 100ms")
	}
	return nil
}

// ServeHTTP serves the page, or its data with ?format=json.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("format") == "json" {
		b, err := json.Marshal(dashboardState(d.Records, time.Duration(d.Refresh), time.Now()))
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		writeJSON(w, http.StatusOK, b)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	w.Header().Set("Content-Length", strconv.Itoa(len(dashboardPage)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(dashboardPage)
	}
	return nil
}

// decisionEntry is one request as the dashboard lists it.
type decisionEntry struct {
	Time       time.Time `json:"time"`
	ID         string    `json:"request_id"`
	Route      string    `json:"route"`
	Model      string    `json:"model"`
	Provider   string    `json:"provider"`
	Reason     string    `json:"reason"`
	Status     int       `json:"status"`
	Attempts   string    `json:"attempts"` // model@provider:cause, in order
	Duration   float64   `json:"duration_ms"`
	TTFT       float64   `json:"ttft_ms,omitempty"`
	Overhead   float64   `json:"overhead_ms"`
	InputToks  int64     `json:"input_tokens"`
	OutputToks int64     `json:"output_tokens"`
	Cost       float64   `json:"cost_usd"`
}

// ring holds the last decisions of the process.
var ring struct {
	sync.Mutex
	entries [ringSize]decisionEntry
	next    int
	n       int
}

// remember puts a finished request into the ring.
func remember(rec *record, end time.Time) {
	e := decisionEntry{Time: end, ID: rec.id, Status: rec.status,
		Duration: ms(end.Sub(rec.start)), Overhead: ms(rec.overhead(end))}
	if rec.p != nil {
		e.Route, e.Reason = rec.p.route, rec.p.reason
	}
	if a := rec.chosen(); a != nil {
		e.Model, e.Provider = a.c.Model, a.c.Provider.Name
	}
	if !rec.first.IsZero() && rec.status < 300 {
		e.TTFT = ms(rec.first.Sub(rec.start))
	}
	var b strings.Builder
	for i, a := range rec.attempts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.c.Model + "@" + a.c.Provider.Name + ":" + a.cause.String())
	}
	e.Attempts = b.String()
	u := rec.usage()
	e.InputToks, e.OutputToks = u.PromptTokens, u.CompletionTokens
	e.Cost, _ = rec.cost()
	ring.Lock()
	ring.entries[ring.next] = e
	ring.next = (ring.next + 1) % ringSize
	ring.n = min(ring.n+1, ringSize)
	ring.Unlock()
}

// lastDecisions returns up to n decisions, newest first.
func lastDecisions(n int) []decisionEntry {
	ring.Lock()
	defer ring.Unlock()
	n = min(n, ring.n)
	out := make([]decisionEntry, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, ring.entries[(ring.next-i+ringSize)%ringSize])
	}
	return out
}

// modelStats are the totals of one model at one provider, from the
// metrics: the page charts their changes between refreshes.
type modelStats struct {
	Model        string             `json:"model"`
	Provider     string             `json:"provider"`
	Requests     float64            `json:"requests"`
	Errors       float64            `json:"errors"` // answers of status 400 and up but 499 (the client left)
	InputTokens  float64            `json:"input_tokens"`
	OutputTokens float64            `json:"output_tokens"`
	Cost         float64            `json:"cost_usd"`
	Fallbacks    float64            `json:"fallbacks"`
	Attempts     map[string]float64 `json:"attempts"` // by cause
	UpstreamSum  float64            `json:"upstream_seconds_sum"`
	UpstreamN    float64            `json:"upstream_count"`
	TTFTSum      float64            `json:"ttft_seconds_sum"`
	TTFTN        float64            `json:"ttft_count"`
}

// dashPair is the health of one provider+model pair.
type dashPair struct {
	Provider  string  `json:"provider"`
	Model     string  `json:"model"`
	Shared    bool    `json:"shared"`
	Health    string  `json:"health"` // as the admin API names it
	Cooling   float64 `json:"cooldown_seconds"`
	LatencyMs float64 `json:"latency_ms"`
	TTFTMs    float64 `json:"ttft_ms"`
	TPS       float64 `json:"tokens_per_second"`
	ErrorRate float64 `json:"error_rate"`
	InFlight  int64   `json:"in_flight"`
	Samples   int64   `json:"samples"`
}

// dashboardData is what the page reads.
type dashboardData struct {
	Time      time.Time       `json:"time"`
	RefreshMs int64           `json:"refresh_ms"`
	Models    []*modelStats   `json:"models"`
	Pairs     []dashPair      `json:"pairs"`
	Decisions []decisionEntry `json:"decisions"`
}

// dashboardState reads the metrics, the pairs and the ring.
func dashboardState(records int, refresh time.Duration, now time.Time) dashboardData {
	data := dashboardData{Time: now, RefreshMs: refresh.Milliseconds(), Decisions: lastDecisions(records),
		Models: modelTotals(), Pairs: []dashPair{}}
	for _, p := range upstreams.Pairs() {
		data.Pairs = append(data.Pairs, dashPair{Provider: p.Provider, Model: p.Model, Shared: p.Shared,
			Health: healthWord(p.State), Cooling: max(p.CooldownUntil.Sub(now).Seconds(), 0),
			LatencyMs: p.Stats.LatencyMs, TTFTMs: p.Stats.TTFTMs, TPS: p.Stats.TokensPerSecond,
			ErrorRate: p.Stats.ErrorRate, InFlight: p.Stats.InFlight, Samples: p.Stats.Samples})
	}
	sort.Slice(data.Pairs, func(i, j int) bool {
		a, b := data.Pairs[i], data.Pairs[j]
		return a.Provider+"\x00"+a.Model < b.Provider+"\x00"+b.Model
	})
	return data
}

// modelTotals sums llm_route's metrics by model and provider.
func modelTotals() []*modelStats {
	families, _ := metrics.own.Gather()
	byKey := map[string]*modelStats{}
	get := func(labels map[string]string) *modelStats {
		if labels["model"] == "" {
			return nil
		}
		k := labels["model"] + "\x00" + labels["provider"]
		s := byKey[k]
		if s == nil {
			s = &modelStats{Model: labels["model"], Provider: labels["provider"], Attempts: map[string]float64{}}
			byKey[k] = s
		}
		return s
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var s *modelStats
			switch f.GetName() {
			case "llm_route_requests_total", "llm_route_tokens_total", "llm_route_cost_usd_total",
				"llm_route_attempts_total", "llm_route_fallbacks_total", "llm_route_upstream_seconds",
				"llm_route_upstream_ttft_seconds":
				if s = get(labels); s == nil {
					continue
				}
			default:
				continue
			}
			v := m.GetCounter().GetValue()
			switch f.GetName() {
			case "llm_route_requests_total":
				s.Requests += v
				// (499: the client went away, no failure of the
				// model's or the provider's)
				if st, _ := strconv.Atoi(labels["status"]); st >= 400 && st != 499 {
					s.Errors += v
				}
			case "llm_route_tokens_total":
				if labels["direction"] == "input" {
					s.InputTokens += v
				} else {
					s.OutputTokens += v
				}
			case "llm_route_cost_usd_total":
				s.Cost += v
			case "llm_route_attempts_total":
				s.Attempts[labels["cause"]] += v
			case "llm_route_fallbacks_total":
				s.Fallbacks += v
			case "llm_route_upstream_seconds":
				s.UpstreamSum, s.UpstreamN = histogram(m)
			case "llm_route_upstream_ttft_seconds":
				s.TTFTSum, s.TTFTN = histogram(m)
			}
		}
	}
	out := make([]*modelStats, 0, len(byKey))
	for _, s := range byKey {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Model+"\x00"+out[i].Provider < out[j].Model+"\x00"+out[j].Provider
	})
	return out
}

func histogram(m *dto.Metric) (sum, count float64) {
	h := m.GetHistogram()
	return h.GetSampleSum(), float64(h.GetSampleCount())
}

// parseDashboard sets up the dashboard from Caddyfile tokens. Syntax:
//
//	llm_route_dashboard [<matcher>] {
//		records <n>          # how many decisions to list (default 50, up to 500)
//		refresh <duration>   # how often the page refreshes (default 2s)
//	}
func parseDashboard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(Dashboard)
	err := d.UnmarshalCaddyfile(h.Dispenser)
	return d, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (d *Dashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // the directive
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for nesting := disp.Nesting(); disp.NextBlock(nesting); {
		switch disp.Val() {
		case "records":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			n, err := strconv.Atoi(disp.Val())
			if err != nil {
				return disp.Errf("records: %v", err)
			}
			if n == 0 {
				return errZero(disp, "records")
			}
			d.Records = n
		case "refresh":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			v, err := caddy.ParseDuration(disp.Val())
			if err != nil {
				return disp.Errf("refresh: %v", err)
			}
			if v == 0 {
				return errZero(disp, "refresh")
			}
			d.Refresh = caddy.Duration(v)
		default:
			return disp.Errf("unrecognized subdirective: %s", disp.Val())
		}
		if disp.NextArg() {
			return disp.ArgErr()
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Dashboard)(nil)
	_ caddy.CleanerUpper          = (*Dashboard)(nil)
	_ caddy.Validator             = (*Dashboard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Dashboard)(nil)
	_ caddyfile.Unmarshaler       = (*Dashboard)(nil)
)
