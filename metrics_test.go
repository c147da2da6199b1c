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
// Caddy does) a limit the reload removed has no series, nor one whose
// value it changed until the new value's first reservation; an
// unchanged limit keeps its series.
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
	if rec, _, _, _ := serveGateway(t, old, "POST", "/v1/chat/completions", body); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	expect("the old config", []string{"model:qr-m/rpm", "model:qr-m/tpm", "provider:qr-p/daily_requests"})

	// The reload: rpm changed, tpm kept, the provider's limit removed, a
	// route limit added.
	cur := mustLoadHandler(t, config(`"rpm": 20, "tpm": 100000,`, ``, `"rpm": 5,`))
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	expect("after the reload", []string{"model:qr-m/tpm"}, "provider:qr-p/daily_requests", "model:qr-m/rpm", "route:qr-r/rpm")

	if rec, _, _, _ := serveGateway(t, cur, "POST", "/v1/chat/completions", body); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	expect("the new config's request", []string{"model:qr-m/rpm", "model:qr-m/tpm", "route:qr-r/rpm"}, "provider:qr-p/daily_requests")
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
// series held like a configured model's: rebuilding the catalog takes
// nothing more, and the handler's Cleanup lets it go.
func TestQuotaSeriesOfDiscoveredModels(t *testing.T) {
	ls, addr := newListServer(t, `{"object":"list","data":[{"id":"qd-1"}]}`)
	h := mustLoadHandler(t, `{"providers": [{"name": "qd-p", "models": "auto", "models_refresh": "1h", "proxy": `+proxyTo(addr)+`}],
		"models": [{"name": "qd-*", "rpm": 7}]}`)
	metrics.quotaLeft.WithLabelValues("model:qd-1", "rpm").Set(7) // as a request would
	held := len(h.series.keys)
	for range 3 {
		h.disc.rebuild()
	}
	if n := len(h.series.keys); n != held {
		t.Errorf("the handler holds %d series entries after three more builds, had %d", n, held)
	}
	ls.body.Store(`{"object":"list","data":[{"id":"qd-1"},{"id":"qd-2"}]}`)
	if changed, ok := h.disc.fetch(context.Background(), h.providers["qd-p"]); !changed || !ok {
		t.Fatalf("a new list: changed %v ok %v", changed, ok)
	}
	h.disc.rebuild()
	metrics.quotaLeft.WithLabelValues("model:qd-2", "rpm").Set(7)
	if n := len(h.series.keys); n != held+1 {
		t.Errorf("the handler holds %d series entries with a second model found, want %d", n, held+1)
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
