package llmroute

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// quotaSeriesNow returns the llm_route_quota_remaining series by
// subject/limit.
func quotaSeriesNow(t *testing.T) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	metrics.quotaLeft.Collect(ch)
	close(ch)
	out := make(map[string]float64)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["subject"]+"/"+labels["limit"]] = d.GetGauge().GetValue()
	}
	return out
}

// The llm_route_quota_remaining series follow the live config: after a
// reload (the new config provisioned, then the old one cleaned up, as
// Caddy does) a limit the reload removed has no series, a changed one
// reports the room of its new value at once, and a new one is there
// before its first request.
func TestQuotaSeriesFollowReload(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	config := func(modelLimits, providerLimits, routeLimits string) string {
		return `{
			"providers": [{"name": "qr-p", "api_key": "k", ` + providerLimits + ` "proxy": ` + gatewayProxy(u.addr()) + `}],
			"models": [{"name": "qr-m", "providers": ["qr-p"], ` + modelLimits + ` "context": 100000}],
			"routes": [{"name": "qr-r", ` + routeLimits + ` "targets": [{"model": "qr-m"}]}]
		}`
	}
	const body = `{"model":"qr-r","messages":[{"role":"user","content":"hi"}]}`
	expect := func(what string, present []string, absent ...string) {
		t.Helper()
		now := quotaSeriesNow(t)
		for _, s := range present {
			if _, ok := now[s]; !ok {
				t.Errorf("%s: no series %s in %v", what, s, now)
			}
		}
		for _, s := range absent {
			if v, ok := now[s]; ok {
				t.Errorf("%s: series %s (%v) is left", what, s, v)
			}
		}
	}

	old := mustLoadHandler(t, config(`"rpm": 10, "tpm": 100000,`, `"daily_requests": 100,`, ``))
	expect("the old config before a request", []string{"model:qr-m/rpm", "model:qr-m/tpm", "provider:qr-p/daily_requests"})
	if rec, _, _, _ := serveGateway(t, old, "POST", "/v1/chat/completions", body); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if v := quotaSeriesNow(t)["provider:qr-p/daily_requests"]; v != 99 {
		t.Errorf("provider:qr-p/daily_requests left %v after a request, want 99", v)
	}

	// The reload: rpm changed, tpm kept, the provider's limit removed, a
	// route limit added.
	cur := mustLoadHandler(t, config(`"rpm": 20, "tpm": 100000,`, ``, `"rpm": 5,`))
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	expect("after the reload", []string{"model:qr-m/tpm", "model:qr-m/rpm", "route:qr-r/rpm"}, "provider:qr-p/daily_requests")
	if v := quotaSeriesNow(t)["model:qr-m/rpm"]; v <= 10 {
		t.Errorf("model:qr-m/rpm left %v, want the room of the new limit 20", v)
	}

	if err := cur.Cleanup(); err != nil {
		t.Fatal(err)
	}
	expect("with no config", nil, "model:qr-m/rpm", "model:qr-m/tpm", "route:qr-r/rpm")

	// A request the old config still serves after its Cleanup (in
	// Caddy's grace period) brings no series back.
	if rec, _, _, _ := serveGateway(t, cur, "POST", "/v1/chat/completions", body); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	expect("after a late request", nil, "model:qr-m/rpm", "model:qr-m/tpm", "route:qr-r/rpm")
}

// A model that discovery finds, with limits from its template, has its
// series (and the template none), until the handler's Cleanup.
func TestQuotaSeriesOfDiscoveredModels(t *testing.T) {
	ls, addr := newListServer(t, `{"object":"list","data":[{"id":"qd-1"}]}`)
	h := mustLoadHandler(t, `{"providers": [{"name": "qd-p", "models": "auto", "models_refresh": "1h", "proxy": `+proxyTo(addr)+`}],
		"models": [{"name": "qd-*", "rpm": 7}]}`)
	if v, ok := quotaSeriesNow(t)["model:qd-1/rpm"]; !ok || v != 7 {
		t.Errorf("model:qd-1/rpm: %v %v, want 7", v, ok)
	}
	ls.body.Store(`{"object":"list","data":[{"id":"qd-1"},{"id":"qd-2"}]}`)
	if changed, ok := h.disc.fetch(context.Background(), h.providers["qd-p"]); !changed || !ok {
		t.Fatalf("a new list: changed %v ok %v", changed, ok)
	}
	h.disc.rebuild()
	now := quotaSeriesNow(t)
	if v, ok := now["model:qd-2/rpm"]; !ok || v != 7 {
		t.Errorf("model:qd-2/rpm: %v %v, want 7", v, ok)
	}
	if v, ok := now["model:qd-*/rpm"]; ok {
		t.Errorf("the template has a series (%v)", v)
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"model:qd-1/rpm", "model:qd-2/rpm"} {
		if v, ok := quotaSeriesNow(t)[s]; ok {
			t.Errorf("series %s (%v) outlived the config of its discovered model", s, v)
		}
	}
}

// llm_route_quota_remaining is the room as of the scrape, as the admin
// API reports it: a concurrency slot given back and a bucket that
// drained show with no request after them.
func TestQuotaRemainingAtScrape(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	h := mustLoadHandler(t, `{
		"providers": [{"name": "qs-p", "api_key": "k", "proxy": `+gatewayProxy(u.addr())+`}],
		"models": [{"name": "qs-m", "providers": ["qs-p"], "rpm": 600, "max_concurrent": 2, "daily_requests": 5, "context": 100000}]
	}`)
	t.Cleanup(func() { _ = h.Cleanup() })
	const body = `{"model":"qs-m","messages":[{"role":"user","content":"hi"}]}`
	if rec, _, _, _ := serveGateway(t, h, "POST", "/v1/chat/completions", body); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	now := quotaSeriesNow(t)
	if v := now["model:qs-m/max_concurrent"]; v != 2 {
		t.Errorf("model:qs-m/max_concurrent left %v with no request under way, want 2", v)
	}
	if v := now["model:qs-m/daily_requests"]; v != 4 {
		t.Errorf("model:qs-m/daily_requests left %v after one request, want 4", v)
	}
	// The rpm bucket drains 10 a second: it is empty again soon.
	deadline := time.Now().Add(30 * time.Second)
	for quotaSeriesNow(t)["model:qs-m/rpm"] != 600 {
		if time.Now().After(deadline) {
			t.Fatalf("model:qs-m/rpm left %v 30s after the only request, want 600", quotaSeriesNow(t)["model:qs-m/rpm"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The admin API says the same.
	st := h.adminState(context.Background(), "qs", time.Now())
	for _, m := range st.Models {
		if m.Name != "qs-m" {
			continue
		}
		scraped := quotaSeriesNow(t)
		for _, q := range m.Quota {
			if v := scraped["model:qs-m/"+q.Limit]; v != q.Remaining {
				t.Errorf("%s: metric %v, admin API %v", q.Limit, v, q.Remaining)
			}
		}
	}
}

// counterValue is the value of one series of a counter vector.
func counterValue(t *testing.T, v *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var d dto.Metric
	if err := v.WithLabelValues(labels...).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// A fallback is a candidate passed over for a later one: a stream that
// broke and the next candidate continued is one, a call the client
// left (both calls of a hedge race, say) is none.
func TestFallbackCauses(t *testing.T) {
	h := mustLoadHandler(t, `{
		"providers": [
			{"name": "fb-causes-1", "proxy": `+proxyTo("127.0.0.1:1")+`},
			{"name": "fb-causes-2", "proxy": `+proxyTo("127.0.0.1:1")+`}
		],
		"models": [{"name": "fbm", "providers": ["fb-causes-1", "fb-causes-2"]}]
	}`)
	c1 := newCandidate(h.models["fbm"], h.models["fbm"].serving[0], nil)
	c2 := newCandidate(h.models["fbm"], h.models["fbm"].serving[1], nil)
	for _, tc := range []struct {
		first, second cause
		counted       float64
	}{
		{causeGone, causeGone, 0},
		{causeBroken, causeOK, 1},
		{cause5xx, causeOK, 1},
	} {
		before := counterValue(t, metrics.fallbacks, "fbm", "fb-causes-1", tc.first.String())
		now := time.Now()
		rec := &record{h: h, start: now, read: now, decided: now, status: 200, p: &plan{route: "fbm"},
			attempts: []attemptRecord{{c: &c1, cause: tc.first}, {c: &c2, cause: tc.second}}}
		observe(rec, now)
		if got := counterValue(t, metrics.fallbacks, "fbm", "fb-causes-1", tc.first.String()) - before; got != tc.counted {
			t.Errorf("%s then %s: %v fallbacks counted, want %v", tc.first, tc.second, got, tc.counted)
		}
	}
}

// Two handlers with a subject of the same label (two sites, each with a
// model dup-m) give one series, the least room, and the registry
// gathers without a duplicate.
func TestQuotaSeriesOfTwoHandlers(t *testing.T) {
	u := newUpstream(t, answer(200, okChat))
	cfg := func(rpm string) string {
		return `{"providers": [{"name": "dup-p", "api_key": "k", "proxy": ` + gatewayProxy(u.addr()) + `}],
			"models": [{"name": "dup-m", "providers": ["dup-p"], "rpm": ` + rpm + `}]}`
	}
	a, b := mustLoadHandler(t, cfg("10")), mustLoadHandler(t, cfg("20"))
	t.Cleanup(func() { _ = a.Cleanup(); _ = b.Cleanup() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.quotaLeft)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subject" && l.GetValue() == "model:dup-m" {
					n++
					if v := m.GetGauge().GetValue(); v != 10 {
						t.Errorf("model:dup-m rpm %v, want the least room 10", v)
					}
				}
			}
		}
	}
	if n != 1 {
		t.Errorf("%d series of model:dup-m, want 1", n)
	}
}
